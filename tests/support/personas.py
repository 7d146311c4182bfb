"""The people of the database tests, made as superuser on the caller's connection.

`make_user` inserts an auth user (the signup trigger makes the profile and the personal
org); `make_team` a team org with its members; `ban` shuts a user out one of the three
ways the schema knows. `build_cast` makes the cast every database suite shares:

- `owner`, `admin`, `member`: the owner, an admin and a plain member of the team org `team`.
- `banned`: an admin of `team` whose profile role is 'banned' (would be able to write
  if the ban did not hold).
- `outsider`: a user who belongs to none of that, and owns the team org `other_team`.
- `platform_admin`: profiles.role = 'admin', member of no team org.
- `personal`: the owner's personal org.

`team` and `other_team` each have one project and one open invitation. The fixtures
(`cast`, `api`, `suspended`) are in tests/conftest.py.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

import psycopg

from tests.support.pg import scalar

PERSONAS = ("owner", "admin", "member", "outsider", "platform_admin", "banned")
BAN_KINDS = ("role", "inactive", "banned_until")


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


def owners(dsn: str, org_id) -> int:
    with psycopg.connect(dsn) as c:
        return scalar(c, "select count(*) from public.organization_members where org_id = %s and role = 'owner'",
                      (org_id,))


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
    personal: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID
    invitation: uuid.UUID
    other_invitation: uuid.UUID


def build_cast(conn: psycopg.Connection) -> Cast:
    """The cast above, made on `conn` (inside the test's transaction, or committed)."""
    owner, admin, member = make_user(conn, "owner"), make_user(conn, "admin"), make_user(conn, "member")
    outsider, platform_admin = make_user(conn, "outsider"), make_user(conn, "platform-admin")
    banned = make_user(conn, "banned")
    team = make_team(conn, owner, admin=admin, member=member, admin2=banned)
    other_team = make_team(conn, outsider)
    conn.execute("update public.profiles set role = 'admin' where id = %s", (platform_admin.id,))
    ban(conn, banned, "role")
    return Cast(
        owner=owner, admin=admin, member=member, outsider=outsider, platform_admin=platform_admin,
        banned=banned, team=team, other_team=other_team, personal=personal_org(conn, owner),
        project=add_project(conn, team, "Team project", owner),
        other_project=add_project(conn, other_team, "Other project", outsider),
        invitation=add_invitation(conn, team, "invitee@example.test", owner)[0],
        other_invitation=add_invitation(conn, other_team, "invitee@example.test", outsider)[0],
    )
