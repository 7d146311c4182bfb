"""The people of the billing tests, and a server for the HTTP ones.

- `owner` owns the team org `team` (where `admin` is an admin and `member` a member)
  and has a personal org `personal`.
- `outsider` owns `other_team` and nothing else.
`people` makes them inside the test's rolled-back transaction (`conn`); `world` makes
them, committed, in a fresh database served by the real HTTP server (`base`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest

from tests.helpers_server import running_server
from tests.pg import Person, make_team, make_user, personal_org
from tests.stripe.helpers import SECRET_KEY, server_env


@dataclass(frozen=True)
class People:
    owner: Person
    admin: Person
    member: Person
    outsider: Person
    team: uuid.UUID
    other_team: uuid.UUID
    personal: uuid.UUID


def make_people(conn: psycopg.Connection) -> People:
    owner, admin, member, outsider = (make_user(conn, n) for n in ("owner", "admin", "member", "outsider"))
    return People(owner=owner, admin=admin, member=member, outsider=outsider,
                  team=make_team(conn, owner, admin=admin, member=member), other_team=make_team(conn, outsider),
                  personal=personal_org(conn, owner))


@pytest.fixture
def people(conn) -> People:
    return make_people(conn)


@dataclass(frozen=True)
class World:
    base: str
    dsn: str
    people: People

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def world(fresh_dsn, request) -> World:
    """People committed in a fresh database, and the real server on it. Tests marked
    `stripe_key` get STRIPE_SECRET_KEY set (Stripe's API then faked with respx)."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        people = make_people(c)
    extra = {"STRIPE_SECRET_KEY": SECRET_KEY} if request.node.get_closest_marker("stripe_key") else {}
    with running_server(**server_env(fresh_dsn, **extra)) as base:
        yield World(base, fresh_dsn, people)


def pytest_configure(config):
    config.addinivalue_line("markers", "stripe_key: run the server with STRIPE_SECRET_KEY set")
