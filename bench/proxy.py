"""Chat proxy overhead: the same requests sent straight to the fake upstream, through
Tollbooth (`tollbooth serve`) and through LiteLLM's proxy (its own virtualenv under
.tollbooth/, installed on first use; skipped with the reason when it cannot run), in
one run, interleaved, at concurrency 1, 4 and 16, streaming and not. Each cell starts once
every server (and Postgres) has all but stopped using CPU, so no path pays for the
background work the one before it left behind.

Each server runs in its own process (the embedded Postgres, `tollbooth fake-openai`,
`tollbooth serve`, `litellm`), and the load generator (bench/loadgen.py: raw keep-alive
sockets, TCP_NODELAY) is lean. Prints p50/p99 latency, requests per second, the
overhead over direct, the proxy's own overhead header, and CPU ms per request split
into proxy / Postgres / upstream / load generator with synchronous metering commits
on (the zero-loss default) and off.

    .venv/bin/python bench/proxy.py [--requests 300] [--latency-ms 0] [--no-litellm]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Result, run_load  # noqa: E402
from lib.cli.serve import default_workers  # noqa: E402
from lib.local import embedded, migrate  # noqa: E402
from lib.local.dev import demo_api_key  # noqa: E402

ACME = "00000000-0000-4000-8000-00000000ac3e"
BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "benchmark the proxy with a short prompt of a dozen words"}]}


ROUNDS = 3
LITELLM_KEY = "sk-litellm-bench-master"


def merge(results: list[Result]) -> Result:
    """Cells measured in several interleaved rounds, as one: medians of the rounds."""
    return Result(statistics.median(r.p50 for r in results), max(r.p99 for r in results),
                  statistics.mean(r.rps for r in results), sum(r.errors for r in results),
                  statistics.median(r.own_p50 for r in results if r.own_p50 is not None)
                  if all(r.own_p50 is not None for r in results) else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def body_bytes(stream: bool) -> bytes:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
    return json.dumps(body).encode()


def one_row(conn: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row for {sql}")
    return row


def start_database(tmp: Path) -> str:
    """A fresh embedded Postgres under `tmp`, migrated and seeded, with credits for the
    demo organization and every per-key control on its key (issue 12: the Tollbooth row
    pays for the allow-list, budget, rpm/tpm and CIDRs); its DSN."""
    dsn = embedded.start(tmp / "pg", keep_running=False)
    migrate.apply_all(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("select private.grant_credits(%s, 'adjustment', 100000000, null, null, 'benchmark')", (ACME,))
        c.execute("update public.api_keys set models = array['gpt-4o-mini', 'gpt-4.1-mini'], credit_limit = 100000000, "
                  "credit_limit_period = 'monthly', rpm = 1000000, tpm = 2000000000, allowed_ips = array['127.0.0.0/8'::cidr] "
                  "where org_id = %s", (ACME,))
    return dsn


def serve_env(dsn: str, up_port: int, tmp: Path) -> dict[str, str]:
    """The environment `tollbooth serve` runs with here: this database, the fake upstream."""
    env = {**os.environ, "DATABASE_URL": dsn, "OPENAI_API_KEY": "sk-bench", "LOG_LEVEL": "WARNING",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1", "SUPABASE_JWT_SECRET": "x" * 40,
           "METERING_OUTBOX_DIR": str(tmp / "outbox")}
    env.pop("SUPABASE_URL", None)
    return env


def stop_all(procs: Iterable[subprocess.Popen]) -> None:
    """Stop the benchmark's servers: politely, then for good after 20 s."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_litellm(up_port: int, port: int, workers: int, tmp: Path) -> tuple[subprocess.Popen | None, str]:
    """LiteLLM's proxy in its own virtualenv under .tollbooth/ (installed on first use),
    pointed at the same fake upstream; (process, why not) when it cannot run here."""
    venv = ROOT / ".tollbooth" / "litellm-venv"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print("installing LiteLLM's proxy into .tollbooth/litellm-venv (once)...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True, timeout=1200)
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"could not install litellm[proxy]: {exc}"
    config = tmp / "litellm.yaml"
    config.write_text(f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{up_port}/v1
      api_key: sk-bench
general_settings:
  master_key: {LITELLM_KEY}
litellm_settings:
  drop_params: true
""")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = subprocess.Popen([str(exe), "--config", str(config), "--port", str(port), "--host", "127.0.0.1",
                             "--num_workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "litellm.log").open("wb"))
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    except RuntimeError:
        proc.terminate()
        return None, "LiteLLM's proxy did not come up: " + (tmp / "litellm.log").read_text()[-500:]
    return proc, ""


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    import psutil

    out: dict[str, float] = {}
    for name, group in pids.items():
        for pid in group:
            try:
                t = psutil.Process(pid).cpu_times()
                out[name] = out.get(name, 0.0) + t.user + t.system
            except psutil.Error:
                pass
    return out


def server_pids(procs: dict[str, subprocess.Popen]) -> list[int]:
    """Every process of the benchmark's servers (workers included) and of Postgres."""
    import psutil

    pids = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    for proc in procs.values():
        try:
            parent = psutil.Process(proc.pid)
            pids += [parent.pid] + [c.pid for c in parent.children(recursive=True)]
        except psutil.Error:
            pass
    return pids


def wait_quiet(pids: list[int], *, busy_below: float = 0.05, window_s: float = 0.2, limit_s: float = 5.0) -> None:
    """Wait until the servers have all but stopped using CPU (below `busy_below` of a core
    over `window_s`), for at most `limit_s`: a cell must not pay for the work the cell
    before it left behind (a peer's background tasks, Postgres' autovacuum)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = sum(cpu_seconds({"all": pids}).values())
        time.sleep(window_s)
        if sum(cpu_seconds({"all": pids}).values()) - before < busy_below * window_s:
            return


def print_cpu_budget(procs: dict[str, subprocess.Popen], proxied: tuple[str, dict[str, str]],
                     direct: tuple[str, dict[str, str]], dsn: str, total: int = 400) -> None:
    """Where the CPU goes per request (json, concurrency 4), with synchronous metering
    commits on (the zero-loss default) and off: on 2 shared cores, latency under load
    follows the CPU every request costs across all processes."""
    import psutil

    def tree(pid: int) -> list[int]:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]

    postgres = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    pids = {"upstream": tree(procs["upstream"].pid), "proxy": tree(procs["tollbooth"].pid), "postgres": postgres}
    me = psutil.Process()
    rows = []
    for label, target, commit in (("direct", direct, None), ("tollbooth sync commit on", proxied, "on"),
                                  ("tollbooth sync commit off", proxied, "off")):
        if commit:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("update private.app_settings set value = %s where key = 'metering_synchronous_commit'",
                          (commit,))
        wait_quiet([pid for group in pids.values() for pid in group])
        before, mine = cpu_seconds(pids), sum(me.cpu_times()[:2])
        r = run_load(target[0], target[1], body_bytes(False), 4, total)
        after, mine_after = cpu_seconds(pids), sum(me.cpu_times()[:2])
        per = {k: (after.get(k, 0) - before.get(k, 0)) * 1000 / total for k in pids}
        per["load generator"] = (mine_after - mine) * 1000 / total
        rows.append((label, per, r))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("update private.app_settings set value = 'on' where key = 'metering_synchronous_commit'")
    print("\nCPU ms per request (json, concurrency 4):")
    names = ["proxy", "postgres", "upstream", "load generator"]
    print(f"{'path':<27}" + "".join(f"{n:>15}" for n in names) + f"{'total':>8}{'p50 ms':>8}{'rps':>7}")
    for label, per, r in rows:
        print(f"{label:<27}" + "".join(f"{per[n]:>15.2f}" for n in names) + f"{sum(per.values()):>8.2f}"
              f"{r.p50:>8.2f}{r.rps:>7.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=300, help="requests per cell")
    p.add_argument("--latency-ms", type=int, default=0, help="fake upstream latency")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    dsn = start_database(tmp)
    up_port, proxy_port, litellm_port = free_port(), free_port(), free_port()
    tb = str(ROOT / ".venv" / "bin" / "tollbooth")
    env = serve_env(dsn, up_port, tmp)
    cores = os.cpu_count() or 2
    procs = {
        "upstream": subprocess.Popen([tb, "fake-openai", "--port", str(up_port), "--latency-ms", str(args.latency_ms)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "tollbooth": subprocess.Popen([tb, "serve", "--port", str(proxy_port)], env=env,  # its default workers
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        wait_http(f"http://127.0.0.1:{proxy_port}/api/health")
        litellm = None
        if not args.no_litellm:
            litellm, why = start_litellm(up_port, litellm_port, cores, tmp)
            if litellm is None:
                print(f"LiteLLM row skipped: {why}", flush=True)
            else:
                procs["litellm"] = litellm
        direct = (f"http://127.0.0.1:{up_port}/v1/chat/completions", {"authorization": "Bearer sk-bench"})
        proxied = (f"http://127.0.0.1:{proxy_port}/v1/chat/completions", {"authorization": f"Bearer {demo_api_key(dsn)}"})
        targets = [("direct", direct), ("tollbooth", proxied)]
        if litellm is not None:
            targets.append(("litellm", (f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                                        {"authorization": f"Bearer {LITELLM_KEY}"})))
        print(f"{args.requests} requests per cell, interleaved; fake upstream latency {args.latency_ms} ms; "
              f"{cores} cores; LiteLLM {cores} workers, Tollbooth {default_workers(dsn, cores)} (`tollbooth serve`'s "
              "default with Postgres on this machine); upstream + proxies + Postgres + this load generator on one machine")
        header = (f"{'mode':<7}{'conc':>5} {'path':<10}| {'p50 ms':>8}{'p99 ms':>8}{'rps':>7}{'err':>5} | "
                  f"{'overhead p50':>12}{'p99':>8} | {'own p50':>8}")
        print(header)
        print("-" * len(header))
        quiet = server_pids(procs)
        for stream in (False, True):
            for conc in (1, 4, 16):
                results: dict[str, list] = {name: [] for name, _ in targets}
                for _round in range(ROUNDS):  # interleaved: each path in turn, several times
                    for name, (url, headers) in targets:
                        wait_quiet(quiet)
                        results[name].append(run_load(url, headers, body_bytes(stream), conc, args.requests // ROUNDS))
                merged = {name: merge(rs) for name, rs in results.items()}
                d = merged["direct"]
                for name, _ in targets:
                    x = merged[name]
                    over = "" if name == "direct" else f"{x.p50 - d.p50:>12.2f}{x.p99 - d.p99:>8.2f}"
                    own = f"{x.own_p50:>8.2f}" if x.own_p50 is not None else ""
                    print(f"{'stream' if stream else 'json':<7}{conc:>5} {name:<10}| {x.p50:>8.2f}{x.p99:>8.2f}"
                          f"{x.rps:>7.0f}{x.errors:>5} | {over:>20} | {own}", flush=True)
        print_cpu_budget(procs, proxied, direct, dsn)
        with psycopg.connect(dsn) as c:
            n, credits = one_row(c, "select count(*), sum(credits) from usage_events where org_id = %s", (ACME,))
            bal, ledger = one_row(c, "select balance, (select sum(amount) from credit_ledger where org_id = %s) "
                                     "from credit_accounts where org_id = %s", (ACME, ACME))
        print(f"\nmetered rows: {n}, credits charged: {credits}; balance {bal} == ledger sum {ledger}: {bal == ledger}")
    finally:
        stop_all(procs.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
