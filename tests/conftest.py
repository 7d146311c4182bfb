"""One embedded Postgres per test run, migrated and seeded exactly as `make dev` does.

- `conn`: a connection to the shared test database inside a transaction that is rolled
  back after the test (fast; most tests).
- `fresh_dsn`: a database cloned from the migrated template for tests that need commits,
  concurrency or a real HTTP server; dropped afterwards.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from lib.local import embedded, migrate

TEMPLATE = "tollbooth_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    # a private directory (not pytest's rotating basetemp, which a parallel run may prune)
    root = Path(tempfile.mkdtemp(prefix="tollbooth-pg-"))
    data_dir = Path(os.environ.get("TOLLBOOTH_TEST_PGDATA") or root / "data")
    dsn = embedded.start(data_dir, fresh=True, keep_running=False, database="postgres")
    yield dsn
    embedded.stop(data_dir)
    shutil.rmtree(root, ignore_errors=True)


def _dsn_for(admin_dsn: str, name: str) -> str:
    return admin_dsn.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn) -> str:
    embedded.ensure_database(pg_admin_dsn, TEMPLATE)
    dsn = _dsn_for(pg_admin_dsn, TEMPLATE)
    migrate.apply_all(dsn)
    return dsn


def clone_database(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'create database "{name}" template "{TEMPLATE}"')
    return _dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def test_dsn(pg_admin_dsn, template_dsn) -> str:
    return clone_database(pg_admin_dsn, "tollbooth_test")


@pytest.fixture
def conn(test_dsn):
    with psycopg.connect(test_dsn) as c:
        c.execute("select 1")  # open the outer transaction; Request uses savepoints inside it
        yield c
        c.rollback()


@pytest.fixture
def fresh_dsn(pg_admin_dsn, template_dsn):
    name = f"t_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    dsn = clone_database(pg_admin_dsn, name)
    yield dsn
    drop_database(pg_admin_dsn, name)
