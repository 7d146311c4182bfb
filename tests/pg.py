"""Test helpers: run SQL exactly as PostgREST would for a role and claims, and make people."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    email: str

    @property
    def claims(self) -> dict:
        return {"sub": str(self.id), "email": self.email, "role": "authenticated", "aud": "authenticated"}


def make_user(conn: psycopg.Connection, name: str, email: str | None = None, **meta) -> Person:
    """Insert an auth user (the signup trigger makes the profile and personal org)."""
    uid = uuid.uuid4()
    email = email or f"{name}-{uid.hex[:8]}@example.test"
    conn.execute(
        "insert into auth.users (id, aud, role, email, raw_user_meta_data, raw_app_meta_data) "
        "values (%s, 'authenticated', 'authenticated', %s, %s, '{}')",
        (uid, email, json.dumps({"full_name": name.title(), **meta})),
    )
    return Person(uid, email)


def personal_org(conn: psycopg.Connection, person: Person) -> uuid.UUID:
    return conn.execute("select id from public.organizations where personal_owner_id = %s", (person.id,)).fetchone()[0]


def make_team(conn: psycopg.Connection, owner: Person, slug: str | None = None, allowance: int = 1000,
              **members: Person) -> uuid.UUID:
    """A team org owned by `owner`; keyword args name the role of each extra member.

    A team on the free plan gets no plan allowance (the free allowance is personal), so
    the team starts with `allowance` credits granted as superuser exactly as the free plan
    grant of the period would be (the money tests need something to spend); 0 for none."""
    slug = slug or f"team-{uuid.uuid4().hex[:10]}"
    org_id = conn.execute(
        "insert into public.organizations (name, slug, created_by) values (%s, %s, %s) returning id",
        (slug.title(), slug, owner.id)).fetchone()[0]
    conn.execute("insert into public.organization_members (org_id, user_id, role) values (%s, %s, 'owner')",
                 (org_id, owner.id))
    for role, person in members.items():
        role = role.rstrip("0123456789")
        conn.execute("insert into public.organization_members (org_id, user_id, role) values (%s, %s, %s)",
                     (org_id, person.id, role))
    if allowance:
        conn.execute(
            "select private.grant_credits(a.org_id, 'plan', %s, a.period_end, "
            "'plan:' || a.org_id || ':free:' || extract(epoch from a.period_start)::bigint, 'free plan allowance') "
            "from public.credit_accounts a where a.org_id = %s", (allowance, org_id))
    return org_id


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


BAN_KINDS = ("role", "inactive", "banned_until")


def ban(conn: psycopg.Connection, person: Person, how: str = "role") -> None:
    """Shut a user out one of the three ways the schema knows (as superuser):
    profiles.role = 'banned', profiles.is_active = false, or auth.users.banned_until ahead."""
    if how == "role":
        conn.execute("update public.profiles set role = 'banned' where id = %s", (person.id,))
    elif how == "inactive":
        conn.execute("update public.profiles set is_active = false where id = %s", (person.id,))
    elif how == "banned_until":
        conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", (person.id,))
    else:
        raise ValueError(f"unknown ban kind {how!r}; expected one of {BAN_KINDS}")


def snapshot(conn: psycopg.Connection, *tables: str) -> dict[str, list[str]]:
    """Every row of these tables as the superuser sees them (row text, sorted), so a test
    can assert that a refused request changed nothing."""
    return {t: [r[0] for r in conn.execute(f"select x::text from {t} x order by 1").fetchall()] for t in tables}


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
