"""The settlement journal (issue 8, lib.chat.journal, migration chat_journal): the async
proxy journals each settlement before sending it, commits it without a WAL flush of its
own, and confirms a closed segment with one synchronous commit; what Postgres lost
before that flush is replayed from the segment, exactly once, and a dead process's
segments are replayed by the drainer or `tollbooth chat drain-outbox`."""
from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lib.chat.journal import Journal, drain_orphans, read_segment
from lib.chat.metering import Grant, Metered, Usage, finish_args
from lib.chat.settlement import settle_async
from lib.core.config import Settings
from lib.core.db import PsycopgDatabase
from lib.core.db_async import AsyncPsycopgDatabase
from tests.support.credits import assert_consistent, balance, ledger
from tests.support.faults import assert_charged_once
from tests.support.metering import begin
from tests.support.personas import make_user, personal_org
from tests.support.pg import scalar


class SpyDatabase(AsyncPsycopgDatabase):
    """The real async database, recording each round trip's calls."""

    def __init__(self, dsn: str):
        super().__init__(dsn, pool_size=2)
        self.trips: list[list[str]] = []

    async def rpc_pipeline(self, calls: list[tuple[str, dict[str, Any]]], lane: object = None) -> list[Any]:
        self.trips.append([fn for fn, _ in calls])
        return await super().rpc_pipeline(calls)


def _metered(sql: psycopg.Connection, org) -> Metered:
    owner = scalar(sql, "select personal_owner_id from public.organizations where id = %s", (org,))
    rid = f"jr-{uuid.uuid4()}"
    answer = begin(sql, rid, completion_tokens_limit=50, user_id=owner)
    return Metered(request_id=rid, endpoint="/v1/chat/completions", body={}, grant=Grant.from_sql(answer),
                   meeting_id=None, stream=False)


def _settings(tmp_path: Path, journal_ms: int = 50) -> Settings:
    return Settings(metering_outbox_dir=str(tmp_path / "outbox"), settle_inline_seconds=5,
                    metering_journal_ms=journal_ms)


def _segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "outbox" / "journal").glob("*.jsonl"))


@pytest.fixture
def org(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        yield sql, personal_org(sql, make_user(sql, "journaled"))


def test_a_journaled_settlement_is_one_call_then_confirmed_and_its_segment_deleted(fresh_dsn, org, tmp_path):
    sql, org_id = org
    ms = [_metered(sql, org_id) for _ in range(3)]
    db = SpyDatabase(fresh_dsn)
    settings = _settings(tmp_path, journal_ms=60_000)  # confirmed below, not by the timer

    async def go():
        try:
            results = [await settle_async(db, settings, m, status="succeeded", http_status=200,
                                          usage=Usage(1000, 200)) for m in ms]
            segments = _segments(tmp_path)
            assert len(segments) == 1 and set(read_segment(segments[0])) == {m.request_id for m in ms}, \
                "journaled before the answer"
            assert db.trips == [["finish_chat_request"]] * 3, "no flush of its own"
            from lib.chat.settlement import journal
            book = journal(settings)
            assert book is not None and await book.confirm(db) == 3
            assert db.trips[-1] == ["confirm_settlements"], "one confirmation for the segment"
            assert _segments(tmp_path) == [], "deleted once confirmed"
            return results
        finally:
            await db.close()

    results = asyncio.run(go())
    assert all(r is not None and r.charged > 0 and not r.replayed for r in results)
    assert_charged_once(sql, org_id, [m.request_id for m in ms])
    assert balance(sql, org_id) == results[-1].remaining


def test_a_settlement_postgres_lost_before_the_flush_is_replayed_from_the_journal_once(fresh_dsn, org, tmp_path):
    """The journal holds a settlement the database does not (as after a crash that took
    its unflushed commit): the confirmation names it, it is replayed, and charged once."""
    sql, org_id = org
    lost, kept = _metered(sql, org_id), _metered(sql, org_id)
    book = Journal(tmp_path / "journal", 60_000)
    db = AsyncPsycopgDatabase(fresh_dsn, pool_size=2)

    async def go():
        try:
            for m in (lost, kept):
                segment = book.record(db, m.request_id, finish_args(m, status="succeeded", http_status=200,
                                                                      usage=Usage(1000, 200)))
                assert segment is not None
                Journal.returned(segment)
            await db.rpc("finish_chat_request", finish_args(kept, status="succeeded", http_status=200,
                                                             usage=Usage(1000, 200)))
            assert await db.rpc("confirm_settlements", {"request_ids": [lost.request_id, kept.request_id]}) == \
                [lost.request_id], "names only what the database does not have"
            assert await book.confirm(db) == 2
            assert await book.confirm(db) == 0, "nothing left to confirm"
        finally:
            await db.close()

    asyncio.run(go())
    assert_charged_once(sql, org_id, [lost.request_id, kept.request_id])
    assert [e["kind"] for e in ledger(sql, org_id, lost.request_id)] == ["reservation", "settlement"]
    assert not list((tmp_path / "journal").glob("*.jsonl"))


def test_a_segment_is_confirmed_only_once_every_settlement_in_it_returned(fresh_dsn, org, tmp_path):
    sql, org_id = org
    m = _metered(sql, org_id)
    book = Journal(tmp_path / "journal", 60_000)
    db = SpyDatabase(fresh_dsn)

    async def go():
        try:
            segment = book.record(db, m.request_id, finish_args(m, status="succeeded", http_status=200,
                                                                  usage=Usage(1000, 200)))
            assert segment is not None
            assert await book.confirm(db) == 0 and db.trips == [], "in flight: not confirmed (it could be replayed "\
                                                                   "before it lands)"
            assert segment.path.exists()
            await db.rpc("finish_chat_request", finish_args(m, status="succeeded", http_status=200,
                                                             usage=Usage(1000, 200)))
            Journal.returned(segment)
            assert await book.confirm(db) == 1
            assert not segment.path.exists()
        finally:
            await db.close()

    asyncio.run(go())
    assert_charged_once(sql, org_id, [m.request_id])


def test_the_timer_confirms_without_being_asked(fresh_dsn, org, tmp_path):
    sql, org_id = org
    m = _metered(sql, org_id)
    db = AsyncPsycopgDatabase(fresh_dsn, pool_size=2)

    async def go():
        try:
            await settle_async(db, _settings(tmp_path, journal_ms=20), m, status="succeeded", http_status=200,
                               usage=Usage(1000, 200))
            for _ in range(100):
                if not _segments(tmp_path):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the segment was never confirmed")
        finally:
            await db.close()

    asyncio.run(go())
    assert_charged_once(sql, org_id, [m.request_id])


def _write_segment(directory: Path, pid: int, records: list[dict[str, Any]], tail: bytes = b"") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}-{uuid.uuid4().hex}-1.jsonl"
    lines = b"".join(json.dumps({"fn": "finish_chat_request", "args": a}, default=str).encode() + b"\n"
                     for a in records)
    path.write_bytes(lines + tail)
    return path


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1


def test_a_dead_process_segment_is_replayed_by_the_drainer_and_a_cut_line_skipped(fresh_dsn, org, tmp_path):
    sql, org_id = org
    m, cut = _metered(sql, org_id), _metered(sql, org_id)
    args = finish_args(m, status="succeeded", http_status=200, usage=Usage(1000, 200))
    cut_line = json.dumps({"fn": "finish_chat_request",
                           "args": finish_args(cut, status="succeeded", http_status=200, usage=Usage(5, 5))})
    orphan = _write_segment(tmp_path, _dead_pid(), [args], tail=cut_line.encode()[:40])
    live = _write_segment(tmp_path, 1, [args])  # pid 1 is alive and its segment is fresh: not ours to drain
    db = PsycopgDatabase(fresh_dsn, pool_size=2)
    try:
        assert drain_orphans(tmp_path, db) == (1, 1)
        assert drain_orphans(tmp_path, db) == (0, 0), "done once"
    finally:
        db.close()
    assert not orphan.exists() and live.exists()
    assert_charged_once(sql, org_id, [m.request_id])
    assert scalar(sql, "select status from public.credit_reservations where request_id = %s", (cut.request_id,)) \
        == "open", "a line its process never finished writing was never answered: nothing to settle"
    assert_consistent(sql, org_id)


def test_the_cli_drain_replays_a_dead_process_segment(fresh_dsn, org, tmp_path, monkeypatch):
    from lib.cli import main
    from lib.core.config import reset_settings

    sql, org_id = org
    m = _metered(sql, org_id)
    outbox = tmp_path / "outbox"
    _write_segment(outbox / "journal", _dead_pid(),
                   [finish_args(m, status="succeeded", http_status=200, usage=Usage(1000, 200))])
    monkeypatch.setenv("DATABASE_URL", fresh_dsn)
    monkeypatch.setenv("METERING_OUTBOX_DIR", str(outbox))
    reset_settings()
    try:
        assert main(["chat", "drain-outbox"]) == 0
        assert main(["chat", "drain-outbox"]) == 0, "again: nothing to do, nothing charged"
    finally:
        reset_settings()
    assert_charged_once(sql, org_id, [m.request_id])
    assert not list((outbox / "journal").glob("*.jsonl"))


def test_an_unwritable_journal_falls_back_to_a_flush_per_settlement(fresh_dsn, org, tmp_path):
    sql, org_id = org
    m = _metered(sql, org_id)
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "journal").write_text("a file where the journal directory should be")
    db = SpyDatabase(fresh_dsn)

    async def go():
        try:
            return await settle_async(db, _settings(tmp_path), m, status="succeeded", http_status=200,
                                      usage=Usage(1000, 200))
        finally:
            await db.close()

    result = asyncio.run(go())
    assert result is not None and result.charged > 0
    assert db.trips == [["finish_chat_request", "flush_metering"]], "durable before the answer all the same"
    assert_charged_once(sql, org_id, [m.request_id])


def test_confirm_settlements_is_for_the_service_role_and_refuses_what_is_not_an_array(conn):
    scalar(conn, "select public.confirm_settlements('[]'::jsonb)")
    with pytest.raises(psycopg.Error) as refused:
        with conn.transaction():
            scalar(conn, "select public.confirm_settlements('{\"a\": 1}'::jsonb)")
    assert refused.value.sqlstate == "PT400"
    for role in ("anon", "authenticated"):
        assert not scalar(conn, "select has_function_privilege(%s, 'public.confirm_settlements(jsonb)', 'execute')",
                          (role,))
    assert scalar(conn, "select has_function_privilege('service_role', 'public.confirm_settlements(jsonb)', "
                        "'execute')")
    assert scalar(conn, "select current_setting('synchronous_commit')") == "on", "its commit waits for the flush"


def test_the_journal_is_off_on_vercel_and_configurable():
    assert Settings.from_env({}).metering_journal_ms > 0
    assert Settings.from_env({"VERCEL": "1"}).metering_journal_ms == 0, "Vercel instances keep no files"
    assert Settings.from_env({"VERCEL": "1", "METERING_JOURNAL_MS": "25"}).metering_journal_ms == 25
