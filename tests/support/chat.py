"""The whole chat stack as the HTTP chat tests drive it: the real local server on a
fresh database, the fake OpenAI upstream, and ways to make people, keys and balances.
The `upstream` and `stack` fixtures are in tests/chat/conftest.py."""
from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
import psycopg

from lib.local.fake_openai import FakeOpenAI
from tests.support.credits import assert_consistent, balance, set_balance
from tests.support.metering import create_key
from tests.support.personas import Person, make_team, make_user, personal_org
from tests.support.secrets import access_token


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
        return create_key(self.sql, person, org, **kw)

    def keyed_team(self, credits: int | None = None) -> tuple:
        """A team of one owner and an API key of theirs: (org, key plaintext), with
        exactly `credits` when given."""
        owner = self.user("owner")
        org = self.team(owner)
        if credits is not None:
            self.set_balance(org, credits)
        return org, self.key(owner, org)["key"]

    def jwt(self, person: Person) -> str:
        return access_token(person)

    def set_balance(self, org, credits: int) -> None:
        """Expire every grant, then grant exactly `credits` (through the ledger)."""
        set_balance(self.sql, org, credits)

    def balance(self, org) -> int:
        return balance(self.sql, org)

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
             timeout: float = 30, settled: bool = True) -> httpx.Response:
        """POST as `token`; a successful metered call's settlement follows its answer
        (lib.chat.settlement.settle_behind), so by default this waits for it too, as a
        test reading the ledger next needs (`settled=False`: the answer alone)."""
        r = httpx.post(f"{self.base}{path}", json=json, timeout=timeout,
                       headers={"authorization": f"Bearer {token}", **(headers or {})})
        if settled and r.status_code == 200 and "x-request-id" in r.headers:
            self.wait_settled(r.headers["x-request-id"])
        return r

    def wait_settled(self, request_id: str, timeout: float = 10.0) -> None:
        """Until the request's reservation is closed (or there is none)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.sql.execute("select status from public.credit_reservations where request_id = %s",
                                   (request_id,)).fetchone()
            if row is None or row[0] != "open":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{request_id} was answered but not settled within {timeout} s")
            time.sleep(0.005)


def chat_body(text: str = "hello there tollbooth please say many words back to me so that limits matter here", **kw) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **kw}


def expected_cost(prompt: int, completion: int, cached: int = 0, model=("0.15", "0.075", "0.60")) -> Decimal:
    i, c, o = (Decimal(x) for x in model)
    return ((prompt - cached) * i + cached * c + completion * o) / Decimal(1_000_000)
