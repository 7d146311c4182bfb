"""Personas shared by the database tests.

The cast, made as superuser inside the test's rolled-back transaction:

- `owner`, `admin`, `member`: the owner, an admin and a plain member of the team org `team`.
- `banned`: an admin of `team` whose profile role is 'banned' (would be able to write
  if the ban did not hold).
- `outsider`: a user who belongs to none of that, and owns the team org `other_team`.
- `platform_admin`: profiles.role = 'admin', member of no team org.

`team` and `other_team` each have one project and one open invitation. `api(who)`
returns the PostgREST-style request for a persona name, or for "anon" / "service".
`suspended` is an admin of `team` shut out each of the three ways in turn. `race()` runs
two transactions against a `fresh_dsn` database to check the rules hold under concurrency.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass

import psycopg
import pytest

from tests.pg import (
    BAN_KINDS,
    Person,
    Request,
    as_anon,
    as_service,
    as_user,
    ban,
    make_team,
    make_user,
    request_for,
    scalar,
)

PERSONAS = ("owner", "admin", "member", "outsider", "platform_admin", "banned")


@dataclass(frozen=True)
class Cast:
    owner: Person
    admin: Person
    member: Person
    outsider: Person
    platform_admin: Person
    banned: Person
    team: uuid.UUID
    other_team: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID
    invitation: uuid.UUID
    other_invitation: uuid.UUID


def add_member(conn: psycopg.Connection, org_id: uuid.UUID, person: Person, role: str = "member") -> None:
    conn.execute("insert into public.organization_members (org_id, user_id, role) values (%s, %s, %s)",
                 (org_id, person.id, role))


def add_project(conn: psycopg.Connection, org_id: uuid.UUID, name: str, by: Person) -> uuid.UUID:
    return conn.execute("insert into public.projects (org_id, name, created_by) values (%s, %s, %s) returning id",
                        (org_id, name, by.id)).fetchone()[0]


def add_invitation(conn: psycopg.Connection, org_id: uuid.UUID, email: str, by: Person,
                   role: str = "member") -> tuple[uuid.UUID, str]:
    """An open invitation written as superuser; returns (id, token)."""
    token = uuid.uuid4().hex * 2
    inv_id = conn.execute(
        "insert into public.invitations (org_id, email, role, token_hash, invited_by) "
        "values (%s, %s, %s, %s, %s) returning id",
        (org_id, email, role, hashlib.sha256(token.encode()).digest(), by.id)).fetchone()[0]
    return inv_id, token


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


def owners(dsn: str, org_id) -> int:
    with psycopg.connect(dsn) as c:
        return scalar(c, "select count(*) from public.organization_members where org_id = %s and role = 'owner'",
                      (org_id,))


@pytest.fixture
def cast(conn) -> Cast:
    owner, admin, member = make_user(conn, "owner"), make_user(conn, "admin"), make_user(conn, "member")
    outsider, platform_admin = make_user(conn, "outsider"), make_user(conn, "platform-admin")
    banned = make_user(conn, "banned")
    team = make_team(conn, owner, admin=admin, member=member, admin2=banned)
    other_team = make_team(conn, outsider)
    conn.execute("update public.profiles set role = 'admin' where id = %s", (platform_admin.id,))
    ban(conn, banned, "role")
    return Cast(
        owner=owner, admin=admin, member=member, outsider=outsider, platform_admin=platform_admin,
        banned=banned, team=team, other_team=other_team,
        project=add_project(conn, team, "Team project", owner),
        other_project=add_project(conn, other_team, "Other project", outsider),
        invitation=add_invitation(conn, team, "invitee@example.test", owner)[0],
        other_invitation=add_invitation(conn, other_team, "invitee@example.test", outsider)[0],
    )


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
