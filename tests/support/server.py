"""Run the real local server (every function) in a thread for HTTP tests; `env` sets
settings for a block. Both come from lib.local.threaded (the benchmarks use it too)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lib.local.threaded import env
from lib.local.threaded import running_server as _running_server

__all__ = ["env", "running_server"]


@contextmanager
def running_server(**settings: str | None) -> Iterator[str]:
    """Serve every function on 127.0.0.1:<free port> with these environment settings."""
    from functions import mounts

    with _running_server(mounts(), **settings) as base:
        yield base
