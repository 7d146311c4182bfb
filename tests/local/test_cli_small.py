"""The CLI's small promises: `migrate` counts what it applied, `token` never starts or
seeds a database, every option has help, errors speak as the CLI, not as a route."""
from __future__ import annotations

import argparse

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
