"""Faults injected at the database transport, as the money-path fault tests use them:
a `Database` that answers `ServiceUnavailable` (as the real transports do when Postgres
is down or restarting) for chosen functions, N times or until a moment; and the
invariant every fault test checks afterwards."""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from lib.core.errors import ServiceUnavailable
from tests.support.credits import assert_consistent
from tests.support.pg import rows


class FlakyDatabase:
    """Wraps a real Database; `rpc` of a function made to fail raises ServiceUnavailable."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.fail_times: Counter[str] = Counter()
        self.down_until: dict[str, float] = {}
        self.failed: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def fail(self, fn: str, times: int) -> None:
        with self._lock:
            self.fail_times[fn] = times

    def down_for(self, fn: str, seconds: float) -> None:
        with self._lock:
            self.down_until[fn] = time.monotonic() + seconds

    def up(self, fn: str) -> None:
        with self._lock:
            self.down_until.pop(fn, None)
            self.fail_times.pop(fn, None)

    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        with self._lock:
            self.calls[fn] += 1
            down = self.down_until.get(fn, 0) > time.monotonic()
            if not down and self.fail_times[fn] > 0:
                self.fail_times[fn] -= 1
                down = True
            if down:
                self.failed[fn] += 1
        if down:
            raise ServiceUnavailable("injected fault: database unavailable")
        return self.inner.rpc(fn, args)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def assert_charged_once(sql, org, request_ids: list[str]) -> list[dict]:
    """Every one of these requests has exactly one usage row and its reservation is
    settled with that row's credits (never twice), and the ledger invariant holds."""
    usage = rows(sql, "select request_id, credits, status from public.usage_events where org_id = %s", (org,))
    by_id = Counter(u["request_id"] for u in usage)
    for rid in request_ids:
        assert by_id[rid] == 1, f"{rid}: {by_id[rid]} usage rows, expected exactly one"
    res = {r["request_id"]: r for r in rows(sql, "select request_id, status, charged from public.credit_reservations "
                                                 "where org_id = %s", (org,))}
    for u in usage:
        if u["request_id"] in request_ids:
            r = res[u["request_id"]]
            assert r["status"] == "settled" and r["charged"] == u["credits"], f"{u}: reservation {r}"
    assert_consistent(sql, org)
    return usage


def wait_until(predicate, timeout: float = 20.0, step: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve_process(env: dict[str, str], *, workers: int = 1, threads: int = 8):
    """`tollbooth serve` (uvicorn) as a child process in its own session: (Popen, base URL).
    The caller kills it with os.killpg(proc.pid, SIGKILL)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lib.cli", "serve", "--port", str(port), "--workers", str(workers),
                             "--threads", str(threads)], cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "LOG_LEVEL": "WARNING", **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/api/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return proc.poll() is not None

    wait_until(answers, timeout=60, what="tollbooth serve to start")
    assert proc.poll() is None, "tollbooth serve exited at start"
    return proc, base
