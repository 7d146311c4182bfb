"""The whole chat stack: a migrated database, the fake OpenAI upstream and the real
local server (helpers in tests.support.chat)."""
from __future__ import annotations

import asyncio

import psycopg
import pytest
import uvloop

from lib.local.fake_openai import FakeOpenAI
from tests.support.chat import Stack
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import running_server


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def stack(fresh_dsn, upstream, tmp_path):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None, OPENAI_BASE_URL=upstream.base_url,
                            OPENAI_API_KEY=OPENAI_API_KEY, SUPABASE_JWT_SECRET=JWT_SECRET,
                            UPSTREAM_TIMEOUT_SECONDS="2", DISCONNECT_DRAIN_SECONDS="5",
                            METERING_OUTBOX_DIR=str(tmp_path / "outbox")) as base:
            yield Stack(base, sql, upstream)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a coroutine on asyncio's event loop, then on uvloop's (`tollbooth serve`'s)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(coro):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 20))
    return run
