"""The real local server (every function) in a background thread on 127.0.0.1, for the
test suite and the benchmarks. The caller passes the mounts (`functions.mounts()`), as
`tollbooth dev` does: lib/local never imports functions/."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lib.core.config import reset_settings
from lib.core.db import set_database
from lib.core.server import Mount, build_server


@contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) these environment settings for the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


@contextmanager
def running_server(mounts: Iterable[Mount], **settings: str | None) -> Iterator[str]:
    """Serve `mounts` on 127.0.0.1:<free port> with these environment settings; yields the base URL."""
    with env(**settings):
        set_database(None)
        server = build_server("127.0.0.1", 0, mounts).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            set_database(None)
