"""Fixtures of the credit tests."""
from __future__ import annotations

import pytest

from tests.support.personas import make_user, personal_org


@pytest.fixture
def org(conn):
    """A new user's personal organization: free plan, 1000 credits."""
    return personal_org(conn, make_user(conn, "payer"))
