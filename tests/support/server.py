"""Run the real local server (every function) in a thread for HTTP tests."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

from lib.core.config import reset_settings
from lib.core.db import set_database


@contextmanager
def env(**values: str | None):
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
def running_server(**settings: str | None):
    """Serve every function on 127.0.0.1:<free port> with these environment settings."""
    from functions import mounts
    from lib.core.server import build_server

    with env(**settings):
        set_database(None)
        server = build_server("127.0.0.1", 0, mounts())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(5)
            set_database(None)
