"""The money path under the faults tests cannot make deterministic, end to end through
`tollbooth serve` on a bench-owned embedded Postgres: Postgres restarted (`pg_ctl
restart -m fast`) and crashed (`-m immediate`) while streams are in flight, crashed
under a steady load of short JSON calls (settlements committed just before the crash
were not flushed yet: the settlement journal replays them), and the server killed
(`kill -9`) mid-stream. Prints, for each fault: requests, outcomes,
completed vs charged, and the ledger invariants (balance = ledger sum, never negative,
charged at most once, no hold left open).

    .venv/bin/python bench/faults.py [--streams 16]
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.local import embedded, migrate  # noqa: E402
from lib.local.dev import demo_api_key  # noqa: E402
from lib.local.fake_openai import FakeOpenAI  # noqa: E402

ACME = "00000000-0000-4000-8000-00000000ac3e"
LEASE_SECONDS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], log: Path | None = None):
        self.env, self.port = env, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([sys.executable, "-m", "lib.cli", "serve", "--port", str(self.port)],  # default workers
                                     cwd=ROOT, env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/api/health", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("tollbooth serve did not start")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def stream_calls(base: str, key: str, n: int) -> tuple[list[threading.Thread], list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        out: dict[str, Any] = {"rid": None, "outcome": "error", "done": False}
        try:
            with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=60,
                              headers={"authorization": f"Bearer {key}"},
                              json={"model": "gpt-4o-mini", "max_tokens": 24, "stream": True, "messages": [
                                  {"role": "user", "content": f"fault run {i} " + "word " * 20}]}) as r:
                out["rid"] = r.headers.get("x-request-id")
                body = r.read()
                out["done"] = b"[DONE]" in body
                out["outcome"] = f"{r.status_code}{' [DONE]' if out['done'] else ''}"
        except httpx.HTTPError as exc:
            out["outcome"] = type(exc).__name__
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def json_calls(base: str, key: str, stop: threading.Event, concurrency: int = 4
               ) -> tuple[list[threading.Thread], list[dict[str, Any]]]:
    """Short JSON calls back to back on `concurrency` keep-alive connections until `stop`."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def loop(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                out: dict[str, Any] = {"rid": None, "outcome": "error", "done": False}
                try:
                    r = client.post(f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                    json={"model": "gpt-4o-mini", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": f"crash run {i}"}]})
                    out.update(rid=r.headers.get("x-request-id"), outcome=str(r.status_code), done=r.status_code == 200)
                except httpx.HTTPError as exc:
                    out["outcome"] = type(exc).__name__
                with lock:
                    results.append(out)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    return threads, results


def run_crash_under_load(dsn: str, env: dict[str, str], key: str, data_dir: Path, log: Path,
                         wide: bool = False) -> tuple[str, ...]:
    """`pg_ctl restart -m immediate` during a steady JSON load: every answered call charged
    once. `wide` holds commits unflushed for longer (the journal confirms every second,
    the WAL writer wakes every 10 s), so that the crash surely takes some settlements."""
    if wide:
        env = {**env, "METERING_JOURNAL_MS": "1000"}
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"alter system set wal_writer_delay = '{'10s' if wide else '200ms'}'")
        c.execute("select pg_reload_conf()")
    log.write_bytes(b"")
    server = Server({**env, "LOG_LEVEL": "WARNING"}, log=log)
    stop = threading.Event()
    try:
        threads, results = json_calls(server.base, key, stop)
        time.sleep(1.5)
        started = time.monotonic()
        embedded.restart(data_dir, "immediate")
        back = time.monotonic() - started
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(60)
        completed = [r["rid"] for r in results if r["done"]]
        wait_settled(dsn, completed, timeout=60)
        charged, inv = invariants(dsn, completed)
        replayed = log.read_text(errors="replace").count("replayed the settlement")
        outcomes = ", ".join(f"{n}x {o}" for o, n in collections.Counter(r["outcome"] for r in results).most_common())
        name = "restart -m immediate, JSON c4" + (", wide window" if wide else "")
        return (name, str(len(results)), outcomes,
                f"{charged}/{len(completed)} completed charged", f"{inv}; {replayed} replayed from the journal; "
                f"Postgres back after {back:.1f} s")
    finally:
        stop.set()
        server.stop()


def scalar(c: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    row = c.execute(sql, params).fetchone()
    return row[0] if row else None


def invariants(dsn: str, rids: list[str]) -> tuple[int, str]:
    with psycopg.connect(dsn) as c:
        charged = scalar(c, "select count(distinct request_id) from usage_events where request_id = any(%s) "
                            "and credits > 0", (rids,))
        dup = scalar(c, "select count(*) from (select request_id from usage_events group by request_id "
                        "having count(*) > 1) d", ())
        bal, ledger = c.execute("select balance, (select coalesce(sum(amount), 0) from credit_ledger where org_id = %s) "
                                "from credit_accounts where org_id = %s", (ACME, ACME)).fetchone() or (None, None)
        open_holds = scalar(c, "select count(*) from credit_reservations where org_id = %s and status = 'open'",
                            (ACME,))
    ok = bal == ledger and bal >= 0 and dup == 0 and open_holds == 0
    return charged, (f"{'ok' if ok else 'BROKEN'}: balance {bal} = ledger {ledger}, "
                     f"{dup} charged twice, {open_holds} holds open")


def wait_settled(dsn: str, rids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn) as c:
                n = scalar(c, "select count(distinct request_id) from usage_events where request_id = any(%s)",
                           (rids,))
                open_holds = scalar(c, "select count(*) from credit_reservations where org_id = %s and status = 'open'",
                                    (ACME,))
            if n >= len(rids) and open_holds == 0:
                return
        except psycopg.Error:
            pass
        time.sleep(0.5)


def run_fault(name: str, dsn: str, env: dict[str, str], key: str, streams: int, fault: Any) -> tuple[str, ...]:
    server = Server(env)
    try:
        threads, results = stream_calls(server.base, key, streams)
        time.sleep(1.0)  # every stream is in flight
        note = fault(server)
        for t in threads:
            t.join(90)
        rids = [r["rid"] for r in results if r["rid"]]
        completed = [r["rid"] for r in results if r["done"]]
        if server.proc.poll() is not None:  # the fault killed it: a new one takes over (its drainer, the leases)
            server = Server(env)
        wait_settled(dsn, rids, timeout=LEASE_SECONDS * 3 + 30)
        with psycopg.connect(dsn, autocommit=True) as c:  # the cron's sweep, as a scheduler runs it
            c.execute("select public.release_stale_reservations()")
        charged, inv = invariants(dsn, rids)
        charged_completed, _ = invariants(dsn, completed)
        outcomes = ", ".join(f"{n}x {o}" for o, n in collections.Counter(r["outcome"] for r in results).most_common())
        return (name, str(streams), outcomes, f"{charged_completed}/{len(completed)} completed charged "
                f"({charged} of {len(rids)} charged in all)", inv + (f"; {note}" if note else ""))
    finally:
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--streams", type=int, default=16)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-faults-"))
    data_dir = tmp / "pg"
    dsn = embedded.start(data_dir, keep_running=True)
    try:
        migrate.apply_all(dsn)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("select private.grant_credits(%s, 'adjustment', 100000000, null, null, 'faults')", (ACME,))
        fake = FakeOpenAI(chunk_delay_ms=150)
        up = fake.start()
        env = {**os.environ, "DATABASE_URL": dsn, "OPENAI_API_KEY": "sk-faults", "OPENAI_BASE_URL": up,
               "SUPABASE_JWT_SECRET": "x" * 40, "LOG_LEVEL": "ERROR", "METERING_OUTBOX_DIR": str(tmp / "outbox"),
               "RESERVATION_LEASE_SECONDS": str(LEASE_SECONDS)}
        env.pop("SUPABASE_URL", None)
        key = demo_api_key(dsn)

        def restart(mode: str) -> Any:
            def fault(_server: Server) -> str:
                started = time.monotonic()
                embedded.restart(data_dir, mode)
                return f"Postgres back after {time.monotonic() - started:.1f} s"
            return fault

        def kill(server: Server) -> str:
            server.kill()
            return f"server killed; lease {LEASE_SECONDS} s"

        rows = [run_fault(name, dsn, env, key, args.streams, fault) for name, fault in (
            ("pg_ctl restart -m fast, mid-stream", restart("fast")),
            ("pg_ctl restart -m immediate, mid-stream", restart("immediate")),
            ("kill -9 of tollbooth serve, mid-stream", kill),
        )]
        rows[2:2] = [run_crash_under_load(dsn, env, key, data_dir, tmp / "serve.log", wide=wide)
                     for wide in (False, True)]
        fake.stop()
        print(f"{'fault':<42}| {'req':>5} | {'outcomes':<36} | {'charged vs completed':<44} | invariants")
        print("-" * 180)
        for name, n, outcomes, charged, inv in rows:
            print(f"{name:<42}| {n:>5} | {outcomes:<36} | {charged:<44} | {inv}")
    finally:
        embedded.stop(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
