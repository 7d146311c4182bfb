"""The meetings tests' world: people committed in a fresh database, the fake Daily REST
API (lib.local.fake_daily) and the real server pointed at it."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

from lib.local.fake_daily import FakeDaily
from tests.support.daily import server_env
from tests.support.personas import Cast, build_cast
from tests.support.server import running_server


@dataclass(frozen=True)
class World:
    base: str
    dsn: str
    people: Cast
    daily: FakeDaily

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def world(fresh_dsn) -> World:
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        people = build_cast(c)
    with FakeDaily() as daily, running_server(**server_env(fresh_dsn, daily.base_url)) as base:
        yield World(base, fresh_dsn, people, daily)
