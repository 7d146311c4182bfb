"""The people of the billing tests, and a server for the HTTP ones.

`people` is the shared cast (tests.support.personas: `owner` owns the team org `team`,
where `admin` is an admin and `member` a member, and has a personal org `personal`;
`outsider` owns `other_team`) made inside the test's rolled-back transaction (`conn`);
`world` makes it, committed, in a fresh database served by the real HTTP server (`base`).
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

from tests.support.personas import Cast, build_cast
from tests.support.secrets import STRIPE_SECRET_KEY
from tests.support.server import running_server
from tests.support.stripe import server_env


@pytest.fixture
def people(cast) -> Cast:
    return cast


@dataclass(frozen=True)
class World:
    base: str
    dsn: str
    people: Cast

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def world(fresh_dsn, request) -> World:
    """People committed in a fresh database, and the real server on it. Tests marked
    `stripe_key` get STRIPE_SECRET_KEY set (Stripe's API then faked with respx)."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        people = build_cast(c)
    extra = {"STRIPE_SECRET_KEY": STRIPE_SECRET_KEY} if request.node.get_closest_marker("stripe_key") else {}
    with running_server(**server_env(fresh_dsn, **extra)) as base:
        yield World(base, fresh_dsn, people)


def pytest_configure(config):
    config.addinivalue_line("markers", "stripe_key: run the server with STRIPE_SECRET_KEY set")
