"""Chat proxy overhead: the same requests sent straight to the fake upstream and
through the proxy, in one run, at concurrency 1, 4 and 16, streaming and not.

Each server runs in its own process (the embedded Postgres, `tollbooth fake-openai`,
`tollbooth serve`), so the load generator here does not share their interpreter.
Prints p50/p99 latency, requests per second and the overhead (proxy minus direct),
plus the proxy's own overhead header (time not spent waiting for upstream).

    .venv/bin/python bench/proxy.py [--requests 300] [--latency-ms 0]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
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

ACME = "00000000-0000-4000-8000-00000000ac3e"
BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "benchmark the proxy with a short prompt of a dozen words"}]}


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


def one_request(client: httpx.Client, url: str, headers: dict, stream: bool) -> tuple[float, float | None]:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
    start = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body, headers=headers) as r:
            for _ in r.iter_raw():
                pass
            status, own = r.status_code, r.headers.get("x-tollbooth-overhead-ms")
    else:
        r = client.post(url, json=body, headers=headers)
        status, own = r.status_code, r.headers.get("x-tollbooth-overhead-ms")
    elapsed = (time.perf_counter() - start) * 1000
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return elapsed, float(own) if own else None


def one_row(conn: psycopg.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row for {sql}")
    return row


def run_load(url: str, headers: dict, stream: bool, concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    own: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker():
        with httpx.Client(timeout=60) as client:
            one_request(client, url, headers, stream)  # warm the connection
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                ms, o = one_request(client, url, headers, stream)
                with lock:
                    latencies.append(ms)
                    if o is not None:
                        own.append(o)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "rps": len(latencies) / wall,
        "own_p50": statistics.median(own) if own else None,
    }


def _cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
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


def print_cpu_budget(procs: list[Any], proxied: tuple[str, dict[str, str]], direct: tuple[str, dict[str, str]],
                     total: int = 400) -> None:
    """Where the CPU goes per request (json, concurrency 4): on 2 shared cores, latency
    under load follows the CPU every request costs across all processes."""
    import psutil

    def tree(pid: int) -> list[int]:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]

    postgres = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    pids = {"upstream": tree(procs[0].pid), "proxy": tree(procs[1].pid), "postgres": postgres}
    me = psutil.Process()
    rows = []
    for label, target in (("direct", direct), ("proxy", proxied)):
        before, mine = _cpu_seconds(pids), sum(me.cpu_times()[:2])
        run_load(*target, False, 4, total)
        after, mine_after = _cpu_seconds(pids), sum(me.cpu_times()[:2])
        per = {k: (after.get(k, 0) - before.get(k, 0)) * 1000 / total for k in pids}
        per["load generator"] = (mine_after - mine) * 1000 / total
        rows.append((label, per))
    print("\nCPU ms per request (json, concurrency 4):")
    names = ["proxy", "postgres", "upstream", "load generator"]
    print(f"{'path':<8}" + "".join(f"{n:>16}" for n in names) + f"{'total':>10}")
    for label, per in rows:
        print(f"{label:<8}" + "".join(f"{per[n]:>16.2f}" for n in names) + f"{sum(per.values()):>10.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=300, help="requests per cell")
    p.add_argument("--latency-ms", type=int, default=0, help="fake upstream latency")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-bench-"))
    dsn = embedded.start(tmp / "pg", keep_running=False)
    migrate.apply_all(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("select private.grant_credits(%s, 'adjustment', 100000000, null, null, 'benchmark')", (ACME,))
        # issue 12: the Tollbooth row pays for every per-key control (allow-list, budget, rpm/tpm, CIDRs)
        c.execute("update public.api_keys set models = array['gpt-4o-mini', 'gpt-4.1-mini'], credit_limit = 100000000, "
                  "credit_limit_period = 'monthly', rpm = 1000000, tpm = 2000000000, allowed_ips = array['127.0.0.0/8'::cidr] "
                  "where org_id = %s", (ACME,))

    up_port, proxy_port = free_port(), free_port()
    tb = str(ROOT / ".venv" / "bin" / "tollbooth")
    env = {**os.environ, "DATABASE_URL": dsn, "OPENAI_API_KEY": "sk-bench", "LOG_LEVEL": "WARNING",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1", "SUPABASE_JWT_SECRET": "x" * 40}
    env.pop("SUPABASE_URL", None)
    procs = [
        subprocess.Popen([tb, "fake-openai", "--port", str(up_port), "--latency-ms", str(args.latency_ms)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([tb, "serve", "--port", str(proxy_port)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        wait_http(f"http://127.0.0.1:{proxy_port}/api/health")
        direct = (f"http://127.0.0.1:{up_port}/v1/chat/completions", {"authorization": "Bearer sk-bench"})
        proxied = (f"http://127.0.0.1:{proxy_port}/v1/chat/completions", {"authorization": f"Bearer {demo_api_key(dsn)}"})
        print(f"{args.requests} requests per cell; fake upstream latency {args.latency_ms} ms; "
              f"{os.cpu_count()} cores; proxy + upstream + Postgres + this load generator on one machine")
        header = (f"{'mode':<7}{'conc':>5} | {'direct p50':>10}{'p99':>8}{'rps':>7} | {'proxy p50':>10}{'p99':>8}"
                  f"{'rps':>7} | {'overhead p50':>12}{'p99':>8} | {'own p50':>8}")
        print(header)
        print("-" * len(header))
        for stream in (False, True):
            for conc in (1, 4, 16):
                d = run_load(*direct, stream, conc, args.requests)
                x = run_load(*proxied, stream, conc, args.requests)
                print(f"{'stream' if stream else 'json':<7}{conc:>5} | {d['p50']:>10.2f}{d['p99']:>8.2f}{d['rps']:>7.0f} | "
                      f"{x['p50']:>10.2f}{x['p99']:>8.2f}{x['rps']:>7.0f} | {x['p50'] - d['p50']:>12.2f}"
                      f"{x['p99'] - d['p99']:>8.2f} | {x['own_p50'] or 0:>8.2f}", flush=True)
        print_cpu_budget(procs, proxied, direct)
        with psycopg.connect(dsn) as c:
            n, credits = one_row(c, "select count(*), sum(credits) from usage_events where org_id = %s", (ACME,))
            bal, ledger = one_row(c, "select balance, (select sum(amount) from credit_ledger where org_id = %s) "
                                     "from credit_accounts where org_id = %s", (ACME, ACME))
        print(f"\nmetered rows: {n}, credits charged: {credits}; balance {bal} == ledger sum {ledger}: {bal == ledger}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
