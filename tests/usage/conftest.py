"""Fixtures only the usage tests use."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

from tests.support.personas import Person, make_team, make_user


@dataclass(frozen=True)
class Committed:
    dsn: str
    owner: Person
    org: object
    other: object


@pytest.fixture
def committed(fresh_dsn) -> Committed:
    """A fresh database with two committed team organizations (for concurrency tests)."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        owner = make_user(c, "usage-owner")
        org = make_team(c, owner)
        other = make_team(c, make_user(c, "usage-other"))
    return Committed(fresh_dsn, owner, org, other)
