"""The whole chat stack: a migrated database, the fake OpenAI upstream and the real
local server, with helpers to make people, keys and balances."""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
import psycopg
import pytest

from lib.core.auth import mint_access_token
from lib.local.fake_openai import FakeOpenAI
from tests.db_money.helpers import assert_consistent
from tests.helpers_server import running_server
from tests.pg import Person, as_user, make_team, make_user, personal_org

JWT_SECRET = "chat-test-secret-with-at-least-32-characters"
OPENAI_KEY = "sk-test-upstream"


@dataclass
class Stack:
    base: str
    sql: psycopg.Connection
    upstream: FakeOpenAI

    def user(self, name: str) -> Person:
        return make_user(self.sql, name)

    def team(self, owner: Person, **members: Person):
        return make_team(self.sql, owner, **members)

    def personal_org(self, person: Person):
        return personal_org(self.sql, person)

    def key(self, person: Person, org, **kw) -> dict:
        args = ", ".join(f"{k} := %({k})s" for k in kw)
        with self.sql.transaction():
            row = as_user(self.sql, person).one(
                f"select public.create_api_key(org_id := %(org)s, name := 'test key'{', ' + args if args else ''}) as k",
                {"org": org, **kw})
        return row["k"]

    def jwt(self, person: Person) -> str:
        return mint_access_token(person.id, person.email, JWT_SECRET)

    def set_balance(self, org, credits: int) -> None:
        """Expire every grant, then grant exactly `credits` (through the ledger)."""
        self.sql.execute("select private.expire_grant(id, 'test reset') from public.credit_grants where org_id = %s", (org,))
        if credits:
            self.sql.execute("select private.grant_credits(%s, 'adjustment', %s, null, null, 'test balance')", (org, credits))

    def balance(self, org) -> int:
        return self.sql.execute("select balance from public.credit_accounts where org_id = %s", (org,)).fetchone()[0]

    def assert_ledger_consistent(self, org) -> None:
        assert_consistent(self.sql, org)

    def usage(self, org) -> list[dict]:
        with self.sql.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("select * from public.usage_events where org_id = %s order by created_at", (org,)).fetchall()

    def wait_for_usage(self, org, count: int = 1, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.usage(org)
            if len(rows) >= count:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"expected {count} usage rows for {org}, got {len(self.usage(org))}")

    def post(self, path: str = "/v1/chat/completions", *, token: str, json: dict, headers: dict | None = None,
             timeout: float = 30) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=json, timeout=timeout,
                          headers={"authorization": f"Bearer {token}", **(headers or {})})


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def stack(fresh_dsn, upstream):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None, OPENAI_BASE_URL=upstream.base_url,
                            OPENAI_API_KEY=OPENAI_KEY, SUPABASE_JWT_SECRET=JWT_SECRET,
                            UPSTREAM_TIMEOUT_SECONDS="2", DISCONNECT_DRAIN_SECONDS="5") as base:
            yield Stack(base, sql, upstream)


def chat_body(text: str = "hello there tollbooth please say many words back to me so that limits matter here", **kw) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **kw}


def expected_cost(prompt: int, completion: int, cached: int = 0, model=("0.15", "0.075", "0.60")) -> Decimal:
    i, c, o = (Decimal(x) for x in model)
    return ((prompt - cached) * i + cached * c + completion * o) / Decimal(1_000_000)
