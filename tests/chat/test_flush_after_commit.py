"""A settlement's WAL flush no longer holds its organization's account row (issue 8,
migration chat_flush): on a pipelining connection the proxy sends finish_chat_request
with `flush_follows` (it commits without waiting, releasing the row) and flush_metering
right behind it in one round trip (it commits a WAL record synchronously, so it returns
only once the settlement is durable). A flush that fails after the settlement committed
is retried like any settlement: the replay charges nothing more."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg

from lib.chat.metering import Grant, Metered, Usage
from lib.chat.settlement import settle_async
from lib.core.config import Settings
from lib.core.db_async import AsyncPsycopgDatabase
from lib.core.errors import ServiceUnavailable
from tests.support.credits import assert_consistent, balance, ledger
from tests.support.metering import begin, finish
from tests.support.personas import make_user, personal_org
from tests.support.pg import scalar


def test_finish_commits_without_waiting_only_when_a_flush_follows(conn, cast):
    with conn.transaction():
        begin(conn, "fl-1", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
        finish(conn, "fl-1", cast.team, prompt_tokens=10, completion_tokens=5, flush_follows=True)
        assert scalar(conn, "select current_setting('synchronous_commit')") == "off", "releases the row at once"
    with conn.transaction():
        begin(conn, "fl-2", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
        finish(conn, "fl-2", cast.team, prompt_tokens=10, completion_tokens=5)
        assert scalar(conn, "select current_setting('synchronous_commit')") == "on", "without it: durable itself"
    assert_consistent(conn, cast.team)


def test_flush_metering_commits_a_wal_record_synchronously(conn):
    before = scalar(conn, "select pg_current_wal_insert_lsn()")
    scalar(conn, "select public.flush_metering()")
    assert scalar(conn, "select current_setting('synchronous_commit')") == "on", "waits for the flush"
    assert scalar(conn, "select pg_current_xact_id_if_assigned() is not null"), \
        "it has a transaction id: its commit writes a record and waits for the WAL to reach it"
    assert scalar(conn, "select pg_current_wal_insert_lsn() > %s::pg_lsn", (str(before),)), "a WAL record to wait for"
    conn.execute("update private.app_settings set value = 'off' where key = 'metering_synchronous_commit'")
    scalar(conn, "select public.flush_metering()")
    assert scalar(conn, "select current_setting('synchronous_commit')") == "off", "the setting can trade it away"


class SpyDatabase(AsyncPsycopgDatabase):
    """The real async database, recording each round trip; `fail_first` raises
    ServiceUnavailable after the first round trip ran (its flush was lost)."""

    def __init__(self, dsn: str, fail_first: bool = False):
        super().__init__(dsn, pool_size=2)
        self.trips: list[list[tuple[str, dict[str, Any]]]] = []
        self.fail_first = fail_first

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: object = None) -> list[Any]:
        self.trips.append(calls)
        answers = await super().rpc_pipeline(calls)
        if self.fail_first:
            self.fail_first = False
            raise ServiceUnavailable("database unreachable")
        return answers


def _metered(sql: psycopg.Connection, org) -> Metered:
    owner = scalar(sql, "select personal_owner_id from public.organizations where id = %s", (org,))
    rid = f"fl-{uuid.uuid4()}"
    answer = begin(sql, rid, completion_tokens_limit=50, user_id=owner)
    return Metered(request_id=rid, endpoint="/v1/chat/completions", body={}, grant=Grant.from_sql(answer),
                   meeting_id=None, stream=False)


def _settle(db: SpyDatabase, m: Metered, tmp_path):
    async def go():
        try:
            return await settle_async(db, Settings(metering_outbox_dir=str(tmp_path / "outbox"),
                                                   settle_inline_seconds=5, metering_journal_ms=0), m,
                                      status="succeeded", http_status=200, usage=Usage(1000, 200))
        finally:
            await db.close()
    return asyncio.run(go())


def test_settle_sends_the_settlement_and_its_flush_in_one_round_trip(fresh_dsn, tmp_path):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        org = personal_org(sql, make_user(sql, "flusher"))
        m = _metered(sql, org)
        db = SpyDatabase(fresh_dsn)
        result = _settle(db, m, tmp_path)
        assert result is not None and result.charged > 0 and not result.replayed
        assert len(db.trips) == 1, "one round trip"
        (finish_call, finish_args), (flush_call, flush_args) = db.trips[0]
        assert (finish_call, finish_args["flush_follows"], flush_call, flush_args) == \
            ("finish_chat_request", True, "flush_metering", {})
        assert [e["kind"] for e in ledger(sql, org, m.request_id)] == ["reservation", "settlement"]
        assert balance(sql, org) == result.remaining
        assert_consistent(sql, org)


def test_a_flush_lost_after_the_settlement_committed_is_retried_and_charges_once(fresh_dsn, tmp_path):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        org = personal_org(sql, make_user(sql, "flusher"))
        m = _metered(sql, org)
        db = SpyDatabase(fresh_dsn, fail_first=True)
        result = _settle(db, m, tmp_path)
        assert len(db.trips) == 2, "the settlement was sent again"
        assert result is not None and result.replayed and result.charged > 0, "the replay answers the first charge"
        assert [e["kind"] for e in ledger(sql, org, m.request_id)] == ["reservation", "settlement"], "charged once"
        assert scalar(sql, "select count(*) from public.usage_events where request_id = %s", (m.request_id,)) == 1
        assert_consistent(sql, org)
