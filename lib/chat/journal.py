"""The settlement journal: the async proxy's settlements made durable in batches.

Without it, each settlement waits for a WAL flush (flush_metering) before the client
gets its answer. With it (`metering_journal_ms` > 0, the default except on Vercel, whose
instances keep no files), `settle_async` appends the settlement's arguments to this
process's open journal segment (one `write`, no fsync) before it sends
finish_chat_request with `flush_follows`, and answers without waiting for a flush.
Every `metering_journal_ms` the open segment is closed; once every settlement in it has
returned, one call of confirm_settlements makes all of them durable with one
synchronous commit and names any whose settlement is not in the database (Postgres
crashed before the flush). Those are replayed from the segment (finish_chat_request is
idempotent by request id, and a replay commits synchronously), then the segment is
deleted.

What survives what:
- Postgres crashing or restarting: the segments still hold every settlement since the
  last confirmation, and the confirmation after Postgres is back replays what it lost.
- This process dying (kill -9 included): its segments stay on disk (the kernel has
  them), and the drainer of the next start or `tollbooth chat drain-outbox` confirms and
  replays them (a live process's segment only once it is older than `ORPHAN_AFTER_S`).
- The machine losing power: a settlement of the last interval is lost only if Postgres
  lost it too (Postgres on the same machine). `metering_journal_ms = 0` flushes each
  settlement before its answer instead.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.core.db import Database
from lib.core.db_async import AsyncDatabase
from lib.core.errors import ServiceUnavailable, TollboothError
from lib.core.log import get_logger

log = get_logger("chat.journal")
FINISH = "finish_chat_request"
CONFIRM = "confirm_settlements"
ORPHAN_AFTER_S = 30.0  # a segment untouched this long belongs to no live process
_sequence = itertools.count(1)


class Segment:
    """One journal file: the settlements appended to it, and how many are still in flight."""

    __slots__ = ("fd", "inflight", "path", "records")

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.records: dict[str, dict[str, Any]] = {}
        self.inflight = 0

    def append(self, request_id: str, args: dict[str, Any]) -> bool:
        """One line per settlement, in one write; False (and no more appends) on a short one."""
        if self.fd is None:
            return False
        line = json.dumps({"fn": FINISH, "args": args}, default=str).encode() + b"\n"
        if os.write(self.fd, line) != len(line):
            self.close()
            return False
        self.records[request_id] = args
        self.inflight += 1
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Journal:
    """This process's journal under `directory`: one open segment, the closed ones
    awaiting confirmation, and the task that confirms them (in the event loop of the
    database it was first given)."""

    def __init__(self, directory: str | Path, interval_ms: int):
        self.dir = Path(directory)
        self.interval = max(interval_ms, 1) / 1000
        self._open: Segment | None = None
        self._closed: list[Segment] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken = False

    def record(self, db: AsyncDatabase, request_id: str, args: dict[str, Any]) -> Segment | None:
        """Journal a settlement about to be sent; None when the journal cannot be written
        (the caller then flushes this settlement itself)."""
        try:
            if self._open is None or self._open.fd is None:
                self._retire_open()
                self.dir.mkdir(parents=True, exist_ok=True)
                self._open = Segment(self.dir / f"{os.getpid()}-{time.time_ns()}-{next(_sequence)}.jsonl")
            if not self._open.append(request_id, args):
                raise OSError("short write")
        except OSError as exc:
            if self._open is not None:
                self._open.close()  # what it holds is confirmed with the rest; new lines go elsewhere
            if not self._broken:
                log.error("settlement journal %s cannot be written (%s); flushing each settlement instead",
                          self.dir, exc)
            self._broken = True
            return None
        self._broken = False
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop, self._task = loop, loop.create_task(self._run(db))
        return self._open

    def runs_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._loop is loop

    @staticmethod
    def returned(segment: Segment) -> None:
        """The settlement journaled in `segment` came back (settled or in the outbox)."""
        segment.inflight -= 1

    async def _run(self, db: AsyncDatabase) -> None:
        backoff = self.interval
        while True:
            await asyncio.sleep(backoff)
            try:
                await self.confirm(db)
                backoff = self.interval
            except ServiceUnavailable as exc:
                log.warning("journal: cannot confirm %d segment(s) yet: %s", len(self._closed), exc.message)
                backoff = min(max(backoff * 2, 0.5), 5.0)
            except Exception:  # never let the confirmer die
                log.exception("journal: confirmation failed")
                backoff = min(max(backoff * 2, 0.5), 5.0)

    def _retire_open(self) -> None:
        """Close the open segment; one that holds settlements awaits confirmation."""
        segment, self._open = self._open, None
        if segment is None:
            return
        segment.close()
        if segment.records:
            self._closed.append(segment)
        else:
            segment.path.unlink(missing_ok=True)

    async def confirm(self, db: AsyncDatabase) -> int:
        """Close the open segment, then confirm and delete every closed segment whose
        settlements all returned: the number of settlements confirmed."""
        self._retire_open()
        confirmed = 0
        for segment in list(self._closed):
            if segment.inflight:
                continue
            unsettled = await db.rpc(CONFIRM, {"request_ids": list(segment.records)})
            for request_id in unsettled or []:
                await _replay_async(db, segment.records[request_id])
            self._closed.remove(segment)
            segment.path.unlink(missing_ok=True)
            confirmed += len(segment.records)
        return confirmed

    async def close(self, db: AsyncDatabase) -> None:
        """At shutdown: confirm what can be (the rest stays on disk for the next start)."""
        if self._task is not None:
            self._task.cancel()
        for _ in range(50):
            if not any(s.inflight for s in self._closed) and not (self._open and self._open.inflight):
                break
            await asyncio.sleep(0.1)
        try:
            await self.confirm(db)
        except TollboothError as exc:
            log.warning("journal: %d segment(s) left for the next start: %s", len(self._closed), exc.message)


def _failed_for_good(args: dict[str, Any], exc: TollboothError) -> None:
    log.error("journal: replaying the settlement of %s failed for good (%s): %s",
              args.get("request_id"), exc.message, json.dumps(args, default=str))


async def _replay_async(db: AsyncDatabase, args: dict[str, Any]) -> None:
    try:
        await db.rpc(FINISH, args)
    except ServiceUnavailable:
        raise
    except TollboothError as exc:
        _failed_for_good(args, exc)
        return
    log.warning("journal: replayed the settlement of %s (Postgres lost it before its flush)", args.get("request_id"))


def read_segment(path: Path) -> dict[str, dict[str, Any]]:
    """A segment's settlements by request id; a line cut short by a crash is skipped (its
    write never finished, so its request was never answered)."""
    records: dict[str, dict[str, Any]] = {}
    for line in path.read_bytes().splitlines():
        try:
            args = json.loads(line).get("args")
        except (ValueError, AttributeError):
            continue
        if isinstance(args, dict) and isinstance(args.get("request_id"), str):
            records[args["request_id"]] = args
    return records


def _orphaned(path: Path, now: float, older_than_s: float) -> bool:
    """Another process's segment, and that process is gone (or it stopped writing it long ago)."""
    owner = path.name.split("-", 1)[0]
    pid = int(owner) if owner.isdigit() else 0
    if pid == os.getpid():
        return False  # this process confirms its own
    if pid <= 0 or now - path.stat().st_mtime >= older_than_s:
        return True  # no owner in its name, or none that still writes it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def drain_orphans(directory: str | Path, db: Database, *, older_than_s: float = ORPHAN_AFTER_S,
                  on_settled: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Confirm and replay the segments a dead process left (or one untouched for `older_than_s`):
    (segments done, settlements replayed). Raises ServiceUnavailable while the database
    is away (the segments stay)."""
    root = Path(directory)
    if not root.is_dir():
        return 0, 0
    done = replayed = 0
    now = time.time()
    for path in sorted(root.glob("*.jsonl")):
        try:
            if not _orphaned(path, now, older_than_s):
                continue
            records = read_segment(path)
        except FileNotFoundError:
            continue  # its owner confirmed it meanwhile
        for request_id in db.rpc(CONFIRM, {"request_ids": list(records)}) or []:
            args = records[request_id]
            try:
                db.rpc(FINISH, args)
            except ServiceUnavailable:
                raise
            except TollboothError as exc:
                _failed_for_good(args, exc)
                continue
            replayed += 1
            log.warning("journal: replayed the settlement of %s from %s", request_id, path.name)
            if on_settled is not None:
                on_settled(request_id)
        path.unlink(missing_ok=True)
        done += 1
    return done, replayed
