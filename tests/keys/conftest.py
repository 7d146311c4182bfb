"""The chat stack for the per-key controls over HTTP (as tests/chat's): a migrated
database, the fake OpenAI upstream and the real local server; `trusted_stack` trusts
127.0.0.1 as a proxy (TRUSTED_PROXY_CIDRS), so X-Forwarded-For names the client."""
from __future__ import annotations

import psycopg
import pytest

from lib.local.fake_openai import FakeOpenAI
from tests.support.chat import Stack
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import running_server


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


def _stack(fresh_dsn, upstream, tmp_path, **extra):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None, OPENAI_BASE_URL=upstream.base_url,
                            OPENAI_API_KEY=OPENAI_API_KEY, SUPABASE_JWT_SECRET=JWT_SECRET,
                            UPSTREAM_TIMEOUT_SECONDS="5", DISCONNECT_DRAIN_SECONDS="5",
                            METERING_OUTBOX_DIR=str(tmp_path / "outbox"), **extra) as base:
            yield Stack(base, sql, upstream)


@pytest.fixture
def stack(fresh_dsn, upstream, tmp_path):
    yield from _stack(fresh_dsn, upstream, tmp_path, TRUSTED_PROXY_CIDRS=None)


@pytest.fixture
def trusted_stack(fresh_dsn, upstream, tmp_path):
    yield from _stack(fresh_dsn, upstream, tmp_path, TRUSTED_PROXY_CIDRS="127.0.0.0/8, ::1/128")


@pytest.fixture
def misconfigured_stack(fresh_dsn, upstream, tmp_path):
    yield from _stack(fresh_dsn, upstream, tmp_path, TRUSTED_PROXY_CIDRS="127.0.0.0/8, not-a-cidr")
