"""The CLI's small promises: `migrate` counts what it applied, `token` never starts or
seeds a database, every option has help, errors speak as the CLI, not as a route."""
from __future__ import annotations

import argparse
import os

import psycopg
import pytest

from lib.cli import build_parser, main
from lib.local import embedded, migrate


def test_migrate_counts_what_it_applied(pg_admin_dsn, capsys):
    name = "cli_migrate_count"
    embedded.ensure_database(pg_admin_dsn, name)
    dsn = pg_admin_dsn.replace("/postgres?", f"/{name}?")
    try:
        assert main(["migrate", "--database-url", dsn]) == 0
        n = len(migrate.migration_files())
        assert capsys.readouterr().out.strip().endswith(f"{n} migration(s) applied")
        assert main(["migrate", "--database-url", dsn]) == 0
        assert capsys.readouterr().out.strip().endswith("0 migration(s) applied")
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as c:
            c.execute(f'drop database if exists "{name}" with (force)')


def test_token_without_a_database_fails_and_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    data_dir = tmp_path / "pg"
    assert main(["--data-dir", str(data_dir), "token", "--email", "alice@example.com"]) == 1
    err = capsys.readouterr().err
    assert "no database" in err and "tollbooth db start" in err
    assert not (data_dir / "PG_VERSION").exists(), "token must not create or start a database"


def _actions(parser: argparse.ArgumentParser, path: str = "tollbooth"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help():
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in _actions(build_parser()) if not a.help]
    assert missing == []


def test_missing_setting_is_worded_for_the_cli(fresh_dsn, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_dsn)
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    from lib.core.config import reset_settings

    reset_settings()
    try:
        assert main(["stripe", "sync"]) == 1
    finally:
        reset_settings()
    err = capsys.readouterr().err
    assert "`tollbooth stripe` needs" in err and "this route" not in err


@pytest.mark.parametrize("argv", [["--help"], ["sql", "--help"], ["keys", "create", "--help"]])
def test_help_runs(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: tollbooth" in capsys.readouterr().out


@pytest.mark.parametrize(("url", "local"), [
    ("postgresql://postgres@127.0.0.1:5432/tollbooth", True),
    ("postgresql://postgres@localhost/tollbooth", True),
    ("postgresql://postgres@[::1]:5432/tollbooth", True),
    ("postgresql://postgres@/tollbooth?host=/tmp/pg&port=5432", True),
    ("host=127.0.0.2 dbname=tollbooth", True),
    ("postgresql://postgres@db.abcdefgh.supabase.co:5432/postgres", False),
    ("postgresql://postgres@127.0.0.1,db.example.com/tollbooth", False),
    ("postgresql://u@10.0.0.5/tollbooth", False),
    ("not a = connection string =", False),
])
def test_serve_knows_a_database_on_this_machine(url, local):
    from lib.cli.serve import database_is_local

    assert database_is_local(url) is local


def test_serve_leaves_postgres_a_core_per_worker_when_it_is_local(monkeypatch):
    from lib.cli.serve import default_workers

    local, remote = "postgresql://postgres@127.0.0.1:5432/t", "postgresql://u@db.example.com/t"
    assert [default_workers(local, n) for n in (1, 2, 3, 8)] == [1, 1, 1, 4], "one per two cores, at least one"
    assert [default_workers(remote, n) for n in (1, 2, 8)] == [1, 2, 8], "one per core"
    assert default_workers(None, 4) == 4, "no Postgres URL (PostgREST): one per core"
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    sub = argparse.ArgumentParser().add_subparsers()
    from lib.cli import serve

    serve.register(sub)
    assert sub.choices["serve"].parse_args([]).workers == 3, "WEB_CONCURRENCY still decides when set"
    monkeypatch.delenv("WEB_CONCURRENCY")
    serve.register(sub := argparse.ArgumentParser().add_subparsers())
    assert sub.choices["serve"].parse_args([]).workers is None, "else decided at start, once the database is known"


def test_serve_starts_with_the_default_for_its_database(monkeypatch, capsys):
    from lib.cli import serve

    started: list[int] = []
    monkeypatch.setattr(serve, "serve_asgi", lambda *a, workers: started.append(workers))
    monkeypatch.setattr(serve.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(serve.log, "configure", lambda level: None)  # the suite's logging stays as it is
    # cmd_serve sets these: monkeypatch puts them back after
    for name, default in (("SUPABASE_JWT_SECRET", "x" * 40), ("TOLLBOOTH_WSGI_THREADS", "16")):
        monkeypatch.setenv(name, os.environ.get(name, default))
    for url, workers in (("postgresql://postgres@127.0.0.1:1/t", 1), ("postgresql://u@db.example.com/t", 2)):
        monkeypatch.setenv("DATABASE_URL", url)
        assert main(["serve", "--port", "1"]) == 0
        assert started[-1] == workers and f"({workers} uvicorn workers" in capsys.readouterr().out
