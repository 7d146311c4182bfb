"""A successful call's answer does not wait for its settlement (issue 8, migration
chat_price, lib.chat.settlement.settle_behind): the settlement is journaled, the client
is answered, and finish_chat_request follows. The answer's `x-credits-remaining` is
still the balance after settlement (the proxy prices the usage as finish does), and the
charge lands exactly once, even when the organization's account row is locked at
settlement time."""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from lib.chat.metering import Grant, Metered, Price, Usage
from lib.chat.settlement import close_journals, settle_behind
from lib.core.config import Settings
from lib.core.db_async import AsyncPsycopgDatabase
from tests.support.chat import Stack, chat_body
from tests.support.credits import assert_consistent, balance
from tests.support.faults import assert_charged_once, serve_process
from tests.support.metering import begin
from tests.support.personas import make_user, personal_org
from tests.support.pg import scalar
from tests.support.secrets import JWT_SECRET, OPENAI_API_KEY
from tests.support.server import env

PRICE_COLUMNS = "input_usd_per_1m::text, cached_input_usd_per_1m::text, output_usd_per_1m::text, credit_multiplier::text"


def _price(sql: psycopg.Connection, model: str) -> Price:
    row = sql.execute(f"select {PRICE_COLUMNS}, private.setting('credits_per_usd') from public.model_prices "
                      "where model = %s", (model,)).fetchone()
    assert row is not None
    names = ("input_usd_per_1m", "cached_input_usd_per_1m", "output_usd_per_1m", "credit_multiplier",
             "credits_per_usd")
    return Price.from_sql(dict(zip(names, row, strict=True)))


def test_the_proxys_price_charges_exactly_what_finish_charges(fresh_dsn):
    """Every model's price, and odd ones (six decimals, a multiplier of four), at token
    counts from none to a billion, cached tokens below, at and above the prompt."""
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        sql.execute("insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, "
                    "output_usd_per_1m, credit_multiplier) values ('odd-a', 0.000001, 0.000003, 123456.789012, "
                    "1.2345), ('odd-b', 7.777777, 0, 0.000001, 0.0001), ('free', 0, 0, 0, 1)")
        models = [m for (m,) in sql.execute("select model from public.model_prices order by model").fetchall()]
        counts = (0, 1, 7, 999, 1_000_000, 1_000_000_000)
        checked = 0
        for model in models:
            price = _price(sql, model)
            for prompt, completion, cached in itertools.product(counts, counts, (0, 1, 500, 2_000_000_000)):
                usage = Usage(prompt, completion, cached)
                expected = scalar(sql, "select private.usd_to_credits(private.usage_cost_usd(m, %s, %s, %s), "
                                       "m.credit_multiplier) from public.model_prices m where m.model = %s",
                                  (prompt, completion, cached, model))
                assert price.credits(usage) == expected, (model, usage)
                checked += 1
        assert checked == len(models) * 6 * 6 * 4 and len(models) >= 5


def test_begin_answers_the_price_finish_charges_from(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        org = personal_org(sql, make_user(sql, "priced"))
        owner = scalar(sql, "select personal_owner_id from public.organizations where id = %s", (org,))
        grant = Grant.from_sql(begin(sql, "priced-1", completion_tokens_limit=10, user_id=owner))
        assert grant.price == _price(sql, "gpt-4o-mini")
        assert grant.price is not None and grant.price.output_usd_per_1m == Decimal("0.6")
        usage = Usage(100, 10)
        assert grant.remaining_after(usage) == grant.remaining + grant.reserved - grant.price.credits(usage)
        assert Grant.from_sql({**begin(sql, "priced-2", completion_tokens_limit=10, user_id=owner),
                               "price": None}).remaining_after(usage) is None, "no price, no guess"


class HeldAccount:
    """Another transaction holds `org`'s account row (FOR UPDATE) from `after` seconds
    for `hold` seconds: as a long admin or cron transaction would, at settlement time."""

    def __init__(self, dsn: str, org, after: float, hold: float):
        self.dsn, self.org, self.after, self.hold = dsn, org, after, hold
        self.locked_at = self.released_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        time.sleep(self.after)
        with psycopg.connect(self.dsn) as conn:
            conn.execute("select 1 from public.credit_accounts where org_id = %s for update", (self.org,))
            self.locked_at = time.monotonic()
            time.sleep(self.hold)
            conn.commit()
            self.released_at = time.monotonic()

    def __enter__(self) -> HeldAccount:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(10)


def _keyed(stack: Stack):
    org, key = stack.keyed_team()
    return org, key, stack.balance(org)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_answer_does_not_wait_for_a_settlement_the_account_row_holds_up(stack, fresh_dsn, stream):
    org, key, before = _keyed(stack)
    stack.upstream.default_headers = {"x-fake-delay-ms": "400"}  # the row is taken while upstream thinks
    body = chat_body(max_tokens=8, stream=stream, **({"stream_options": {"include_usage": True}} if stream else {}))
    with HeldAccount(fresh_dsn, org, after=0.15, hold=1.5) as held:
        r = stack.post(token=key, json=body, settled=False)
        answered_at = time.monotonic()
        assert r.status_code == 200, r.text
        assert held.locked_at and not held.released_at, "answered while the account row was still held"
        assert scalar(stack.sql, "select count(*) from public.usage_events where org_id = %s", (org,)) == 0, \
            "its settlement is still waiting for the row"
    assert held.released_at - answered_at > 0.5
    row = stack.wait_for_usage(org)[0]
    assert row["request_id"] == r.headers["x-request-id"] and row["status"] == "succeeded" and row["credits"] > 0
    assert_charged_once(stack.sql, org, [row["request_id"]])
    assert stack.balance(org) == before - row["credits"]
    if not stream:  # a stream's headers go before its usage is known (the README says so)
        assert r.headers["x-credits-remaining"] == str(before - row["credits"]), "the balance after settlement"
    stack.assert_ledger_consistent(org)


def test_answers_before_their_settlements_keep_one_clients_calls_in_order(stack):
    """The next call of the same organization goes behind the settlement in its lane, so
    a client calling one call after another never meets the hold of the call before:
    each call holds 10 credits and is charged about one, and a balance of 15 affords
    call after call (with the previous hold still in place, the second would be 402)."""
    org, key, _ = _keyed(stack)
    stack.set_balance(org, 15)
    body = chat_body(max_tokens=16000)  # gpt-4o-mini: 16000 x $0.60/1M = 9.6 credits, and the prompt's
    answers = [stack.post(token=key, json=body, settled=False) for _ in range(8)]
    statuses = [r.status_code for r in answers]
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 402, statuses
    assert statuses == sorted(statuses), f"once refused, refused for good: {statuses}"
    paid = [int(r.headers["x-credits-remaining"]) for r in answers if r.status_code == 200]
    assert paid == sorted(paid, reverse=True) and paid[-1] == stack.balance(org) >= 0, paid
    stack.assert_ledger_consistent(org)


def test_a_server_killed_between_answer_and_settlement_is_charged_once_by_the_next_drain(fresh_dsn, upstream,
                                                                                       tmp_path: Path):
    """`kill -9` after a call was answered and before its settlement landed (the account
    row is held, so it cannot): the dead process's journal holds the call, and
    `tollbooth chat drain-outbox` (as the next start's drainer) charges it once, at what
    its answer said."""
    from lib.cli import main
    from lib.core.db import set_database

    outbox = tmp_path / "outbox"
    proc, base = serve_process({"DATABASE_URL": fresh_dsn, "SUPABASE_URL": "", "OPENAI_BASE_URL": upstream.base_url,
                                "OPENAI_API_KEY": OPENAI_API_KEY, "SUPABASE_JWT_SECRET": JWT_SECRET,
                                "METERING_OUTBOX_DIR": str(outbox)})
    try:
        with psycopg.connect(fresh_dsn, autocommit=True) as sql:
            stack = Stack(base, sql, upstream)
            org, key, _ = _keyed(stack)
            upstream.default_headers = {"x-fake-delay-ms": "300"}
            with HeldAccount(fresh_dsn, org, after=0.1, hold=2.5) as held:
                r = stack.post(token=key, json=chat_body(max_tokens=8), settled=False)
                assert r.status_code == 200 and held.locked_at and not held.released_at
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            assert stack.usage(org) == [], "the killed process never settled it"
            assert list((outbox / "journal").glob("*.jsonl")), "its journal holds it"
            with env(DATABASE_URL=fresh_dsn, METERING_OUTBOX_DIR=str(outbox)):
                set_database(None)
                try:
                    assert main(["chat", "drain-outbox"]) == 0
                finally:
                    set_database(None)
            assert_charged_once(sql, org, [r.headers["x-request-id"]])
            assert stack.balance(org) == int(r.headers["x-credits-remaining"]), "charged what the answer said"
            assert not list((outbox / "journal").glob("*.jsonl"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_shutdown_waits_for_the_settlements_behind_their_answers(fresh_dsn, tmp_path: Path, monkeypatch):
    from lib.core.config import reset_settings
    from lib.core.db_async import get_async_database

    monkeypatch.setenv("DATABASE_URL", fresh_dsn)  # close_journals confirms on this process's database
    reset_settings()
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        org = personal_org(sql, make_user(sql, "closing"))
        owner = scalar(sql, "select personal_owner_id from public.organizations where id = %s", (org,))
        rid = f"behind-{uuid.uuid4()}"
        m = Metered(request_id=rid, endpoint="/v1/chat/completions", body={}, meeting_id=None, stream=False,
                    grant=Grant.from_sql(begin(sql, rid, completion_tokens_limit=50, user_id=owner)))
        settings = Settings(metering_outbox_dir=str(tmp_path / "outbox"), settle_inline_seconds=5,
                            metering_journal_ms=60_000)

        async def go() -> float:
            db = AsyncPsycopgDatabase(fresh_dsn, pool_size=2)
            try:
                with HeldAccount(fresh_dsn, org, after=0, hold=1.0) as held:
                    while not held.locked_at:
                        await asyncio.sleep(0.01)
                    assert settle_behind(db, settings, m, usage=Usage(1000, 200))
                    await close_journals()
                    return held.released_at
            finally:
                await db.close()
                await get_async_database().close()

        try:
            released_at = asyncio.run(go())
        finally:
            reset_settings()
        assert released_at and time.monotonic() >= released_at, "close_journals returned after the row was free"
        assert_charged_once(sql, org, [rid])
        assert list((tmp_path / "outbox" / "journal").glob("*.jsonl")) == [], "confirmed before the process ends"
        assert_consistent(sql, org)
        assert balance(sql, org) >= 0


def test_without_a_journal_the_answer_waits_for_its_settlement(stack, monkeypatch):
    """settle_behind declines when it cannot journal (Vercel, or a journal that cannot be
    written): nothing is sent, and the caller settles before answering."""
    from lib.chat import settlement

    org, key, before = _keyed(stack)
    monkeypatch.setattr(settlement, "journal", lambda settings: None)
    r = stack.post(token=key, json=chat_body(max_tokens=8))
    assert r.status_code == 200
    row = stack.usage(org)[0]  # no waiting: it settled before the answer
    assert r.headers["x-credits-remaining"] == str(before - row["credits"]) == str(stack.balance(org))
    assert httpx.get(f"{stack.base}/api/health").status_code == 200
