"""Run SQL exactly as PostgREST would for a role and claims (as_user / as_anon / as_service),
and read as superuser (scalar, rows, one, snapshot). People are made in tests.support.personas."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import dict_row

if TYPE_CHECKING:
    from tests.support.personas import Person


class Request:
    """One PostgREST request: inside the caller's transaction, a savepoint, then
    set_config('role', …, true) and set_config('request.jwt.claims', …, true), then
    the query. Role and claims are reset afterwards; on error the savepoint is rolled
    back (so the test's transaction stays usable) and the error re-raised."""

    def __init__(self, conn: psycopg.Connection, role: str, claims: dict | None):
        self.conn, self.role, self.claims = conn, role, claims

    def __call__(self, sql: str, params=None) -> list[dict]:
        with self.conn.transaction():
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                            (self.role, json.dumps(self.claims) if self.claims is not None else ""))
                try:
                    cur.execute(sql, params)
                    rows = cur.fetchall() if cur.description else []
                    rowcount = cur.rowcount
                finally:
                    if not self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                        cur.execute("reset role; select set_config('request.jwt.claims', '', true)")
        self.rowcount = rowcount
        return rows

    def one(self, sql: str, params=None) -> dict | None:
        rows = self(sql, params)
        return rows[0] if rows else None

    def count(self, sql: str, params=None) -> int:
        """Rows changed by a write (use with `returning`); a USING denial gives 0."""
        self(sql, params)
        return self.rowcount


def as_user(conn: psycopg.Connection, person: Person) -> Request:
    return Request(conn, "authenticated", person.claims)


def as_anon(conn: psycopg.Connection) -> Request:
    return Request(conn, "anon", {"role": "anon"})


def as_service(conn: psycopg.Connection) -> Request:
    return Request(conn, "service_role", {"role": "service_role"})


@contextmanager
def raises_sqlstate(sqlstate: str, match: str | None = None):
    """Expect a Postgres error with this SQLSTATE (42501 for RLS/grant denials)."""
    try:
        yield
    except psycopg.Error as exc:
        assert exc.sqlstate == sqlstate, f"expected SQLSTATE {sqlstate}, got {exc.sqlstate}: {exc}"
        if match:
            assert match.lower() in str(exc).lower(), f"expected {match!r} in {exc}"
        return
    raise AssertionError(f"expected SQLSTATE {sqlstate}, but the statement succeeded")


def snapshot(conn: psycopg.Connection, *tables: str) -> dict[str, list[str]]:
    """Every row of these tables as the superuser sees them (row text, sorted), so a test
    can assert that a refused request changed nothing."""
    return {t: [r[0] for r in conn.execute(f"select x::text from {t} x order by 1").fetchall()] for t in tables}


def insert_row(conn: psycopg.Connection, table: str, values: dict) -> None:
    """One row into `table` (a trusted name), its columns and values from `values`."""
    conn.execute(f"insert into {table} ({', '.join(values)}) values ({', '.join(['%s'] * len(values))})",
                 list(values.values()))


def scalar(conn: psycopg.Connection, sql: str, params=None):
    """The first column of the first row, read as superuser (None when there is no row)."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def request_for(conn: psycopg.Connection, cast, who: str) -> Request:
    """A PostgREST request as persona `who` of `cast`, or as "anon" / "service"."""
    if who == "anon":
        return as_anon(conn)
    if who == "service":
        return as_service(conn)
    return as_user(conn, getattr(cast, who))


def rows(conn: psycopg.Connection, sql: str, params=None) -> list[dict]:
    """Every row, as dicts, read as superuser."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def one(conn: psycopg.Connection, sql: str, params=None) -> dict | None:
    found = rows(conn, sql, params)
    return found[0] if found else None


@contextmanager
def fails(conn: psycopg.Connection, sqlstate: str, match: str | None = None):
    """Like raises_sqlstate, for statements run directly on `conn` (as superuser): the
    statement runs in a savepoint, so the test's transaction stays usable after the error."""
    with raises_sqlstate(sqlstate, match):
        with conn.transaction():
            yield


def race(dsn: str, first, second) -> str | None:
    """Run `first(conn)` in an open transaction, start `second(conn)` in another
    connection while it is open, then commit the first. Returns the second's SQLSTATE
    (None when it succeeded and committed)."""
    outcome: dict[str, str | None] = {}
    with psycopg.connect(dsn) as c1, psycopg.connect(dsn) as c2:
        c1.execute("select 1")  # keep c1's transaction open across the request
        first(c1)

        def run_second():
            try:
                c2.execute("select 1")
                second(c2)
                c2.commit()
                outcome["sqlstate"] = None
            except psycopg.Error as exc:
                c2.rollback()
                outcome["sqlstate"] = exc.sqlstate

        thread = threading.Thread(target=run_second)
        thread.start()
        thread.join(0.5)  # the second may be waiting for the first's lock
        c1.commit()
        thread.join(10)
        assert not thread.is_alive(), "the second transaction finished once the first committed"
    return outcome["sqlstate"]


# Section - databases cloned from the migrated template (tests/conftest.py makes it)

TEMPLATE = "tollbooth_template"


def dsn_for(admin_dsn: str, name: str) -> str:
    return admin_dsn.replace("/postgres?", f"/{name}?")


def clone_database(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'create database "{name}" template "{TEMPLATE}"')
    return dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'drop database if exists "{name}" with (force)')
