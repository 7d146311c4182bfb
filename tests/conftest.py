"""One embedded Postgres per test run, migrated and seeded exactly as `make dev` does.

- `conn`: a connection to the shared test database inside a transaction that is rolled
  back after the test (fast; most tests).
- `fresh_dsn`: a database cloned from the migrated template for tests that need commits,
  concurrency or a real HTTP server; dropped afterwards.

And the personas every database suite shares (tests.support.personas), made inside the
test's rolled-back transaction:

- `cast`: owner, admin, member, banned, outsider, platform_admin, their orgs, projects
  and invitations.
- `api("member")`: a PostgREST request as that persona; also "anon" and "service".
- `suspended`: an admin of `team`, shut out each of the three ways in turn.
- `money`: rows in every money table for both teams (grants, ledger, a settled chat
  request, an open reservation, one API key each).
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
from tests.support.clock import clear_of_a_utc_day_turn
from tests.support.credits import reserve
from tests.support.metering import begin, create_key, finish
from tests.support.personas import BAN_KINDS, Cast, Person, add_member, ban, build_cast, make_user
from tests.support.pg import TEMPLATE, clone_database, drop_database, dsn_for, request_for
from tests.support.rls import Money

_counter = itertools.count()

# every session of the tests (psycopg, the servers they start, the CLI) in UTC, as on
# Supabase: a local zone with DST moves `now() + interval '7 days'` by an hour
os.environ["PGTZ"] = "UTC"


@pytest.fixture(autouse=True)
def _clear_of_a_utc_day_turn():
    """No test starts in the last 10 s of a UTC day: one that begins before midnight
    (its transaction's now(), a Python date) and calls after it (clock_timestamp() of
    begin_chat_request, now() of usage_for_key) would see two days or two months."""
    clear_of_a_utc_day_turn()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    # a private directory (not pytest's rotating basetemp, which a parallel run may prune)
    root = Path(tempfile.mkdtemp(prefix="tollbooth-pg-"))
    data_dir = Path(os.environ.get("TOLLBOOTH_TEST_PGDATA") or root / "data")
    dsn = embedded.start(data_dir, fresh=True, keep_running=False, database="postgres")
    yield dsn
    embedded.stop(data_dir)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn) -> str:
    embedded.ensure_database(pg_admin_dsn, TEMPLATE)
    dsn = dsn_for(pg_admin_dsn, TEMPLATE)
    migrate.apply_all(dsn)
    return dsn


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


@pytest.fixture
def cast(conn) -> Cast:
    return build_cast(conn)


@pytest.fixture
def api(conn, cast):
    """`api("member")` is a request as that persona; also "anon" and "service"."""
    return lambda who: request_for(conn, cast, who)


@pytest.fixture(params=BAN_KINDS)
def suspended(request, conn, cast) -> Person:
    """An admin of `team`, shut out in each of the three ways in turn."""
    person = make_user(conn, f"suspended-{request.param}")
    add_member(conn, cast.team, person, "admin")
    ban(conn, person, request.param)
    return person


@pytest.fixture
def money(conn, cast) -> Money:
    """Rows in every money table for both teams: grants and ledger (from their plan
    allowance), a settled chat request (usage event, api_requests row) and an open
    reservation each, and one API key each."""
    key = create_key(conn, cast.owner, cast.team, name="team key")
    other_key = create_key(conn, cast.outsider, cast.other_team, name="other key")
    for org, k, tag in ((cast.team, key, "team"), (cast.other_team, other_key, "other")):
        began = begin(conn, f"rls-{tag}", completion_tokens_limit=100, key=k["key"])
        finish(conn, f"rls-{tag}", org, prompt_tokens=500, completion_tokens=50, api_key_id=began["api_key_id"],
               user_id=began["user_id"])
        reserve(conn, org, f"rls-{tag}-open", 25)
    return Money(key=key, other_key=other_key)
