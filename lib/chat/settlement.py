"""Settlement that survives the database going away, and leases that keep live holds.

`settle` calls `finish_chat_request`; a transient failure (database down or restarting,
account row locked past the lock timeout: `ServiceUnavailable`) is retried with backoff
for `settle_inline_seconds`; if it still fails, the call's exact arguments are written
to the **outbox** (one fsynced file per request under `metering_outbox_dir`) before the
request ends, and a background drainer retries them with backoff until they land. The
next start of the process, or `tollbooth chat drain-outbox`, replays what is left.
`finish_chat_request` is idempotent by request id, so a replay never charges twice, and
a reservation released meanwhile because its lease lapsed is still charged (late).

With the settlement journal on (lib.chat.journal, the default for the async proxy), a
settlement is journaled before it is sent and made durable with the others of its
interval, instead of waiting for a WAL flush of its own; a successful call's settlement
is then sent behind its answer (`settle_behind`), and shutdown waits for those.

`Leases` renews the reservations of this process's live requests in one round trip
every third of a lease, so a request that lives for ten minutes keeps its hold while
one whose process died stops holding credits within a lease.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lib.chat.journal import FINISH, Journal, Segment, drain_orphans
from lib.chat.metering import Metered, Settlement, Usage, UsageStatus, finish_args
from lib.core.config import Settings, get_settings
from lib.core.db import Database, get_database
from lib.core.db_async import AsyncDatabase, get_async_database
from lib.core.errors import ServiceUnavailable, TollboothError
from lib.core.log import get_logger

log = get_logger("chat.settlement")
FLUSH = "flush_metering"


class Outbox:
    """Unsettled calls, one JSON file each, written with fsync before the request ends."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.failed_dir = self.dir / "failed"

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _name(request_id: str) -> str:
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in request_id)[:200]
        return f"{safe}.json"

    def put(self, request_id: str, args: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / self._name(request_id)
        tmp = self.dir / f".{path.name}.{os.getpid()}.tmp"
        data = json.dumps({"fn": FINISH, "args": args, "written_at": time.time()}, default=str).encode()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._fsync_dir(self.dir)
        return path

    def pending(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0)

    def drain(self, db: Database, on_settled: Callable[[str], None] | None = None) -> tuple[int, int, int]:
        """Replay every pending call: (settled, failed for good, still pending). Stops at
        the first transient failure (the database is still away)."""
        settled = failed = 0
        pending = self.pending()
        for i, path in enumerate(pending):
            try:
                entry = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # another drainer took it
            except ValueError:
                self._fail(path, "not JSON")
                failed += 1
                continue
            args = entry.get("args") or {}
            try:
                Settlement.from_sql(db.rpc(entry.get("fn") or FINISH, args))
            except ServiceUnavailable as exc:
                log.warning("outbox: database still unavailable (%s); %d call(s) wait", exc.message, len(pending) - i)
                return settled, failed, len(pending) - i
            except TollboothError as exc:
                log.error("outbox: settling %s failed for good (%s); kept in %s",
                          args.get("request_id"), exc.message, self.failed_dir)
                self._fail(path, exc.message)
                failed += 1
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            settled += 1
            rid = str(args.get("request_id"))
            log.info("outbox: settled %s", rid)
            if on_settled is not None:
                on_settled(rid)
        return settled, failed, 0

    def _fail(self, path: Path, reason: str) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, self.failed_dir / path.name)
        except FileNotFoundError:
            pass


class Drainer:
    """One background thread per process and outbox: drains at start, then whenever
    woken, retrying with backoff (0.5 s doubling to 10 s) while calls remain."""

    def __init__(self, outbox: Outbox, db: Callable[[], Database], leases: Leases):
        self.outbox, self.db, self.leases = outbox, db, leases
        self.journal_dir = outbox.dir / "journal"  # segments a dead process left
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tollbooth-outbox", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                _, _, left = self.outbox.drain(self.db(), on_settled=self.leases.discard)
                if not left:
                    drain_orphans(self.journal_dir, self.db(), on_settled=self.leases.discard)
            except TollboothError as exc:  # no database (yet, or any more): a line, not a traceback
                log.warning("outbox: cannot drain now: %s", exc.message)
                left = 1
            except Exception:  # never let the drainer die
                log.exception("outbox: drain failed")
                left = 1
            if left:
                woken = self._wake.wait(backoff)
                if not woken:  # a new call woke us: same pace; else back off further
                    backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5
                self._wake.wait(60.0)  # also picks up files a dead sibling process left
            self._wake.clear()


class Leases:
    """The request ids this process is serving; renewed in one call every third of a lease."""

    def __init__(self, db: Callable[[], Database], lease_seconds: int):
        self.db, self.lease_seconds = db, max(int(lease_seconds), 1)
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, request_id: str) -> None:
        with self._lock:
            self._ids.add(request_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tollbooth-leases", daemon=True)
                self._thread.start()

    def discard(self, request_id: str) -> None:
        with self._lock:
            self._ids.discard(request_id)

    def live(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)

    def renew(self) -> int:
        ids = self.live()
        if not ids:
            return 0
        answer = self.db().rpc("renew_chat_leases", {"request_ids": ids, "lease_seconds": self.lease_seconds})
        return int(answer.get("renewed", 0)) if isinstance(answer, dict) else 0

    def _run(self) -> None:
        while True:
            time.sleep(max(self.lease_seconds / 3, 0.2))
            try:
                self.renew()
            except TollboothError as exc:
                log.warning("could not renew %d lease(s): %s", len(self.live()), exc.message)
            except Exception:
                log.exception("lease renewal failed")


_runtime: dict[tuple[str, int], tuple[Outbox, Drainer, Leases]] = {}
_runtime_lock = threading.Lock()


def runtime(settings: Settings) -> tuple[Outbox, Drainer, Leases]:
    """This process's outbox, drainer and lease keeper for these settings (the drainer
    starts at once, so a restart replays what the last run left)."""
    key = (os.path.abspath(settings.metering_outbox_dir), settings.reservation_lease_seconds)
    with _runtime_lock:
        if key not in _runtime:
            leases = Leases(get_database, settings.reservation_lease_seconds)
            outbox = Outbox(key[0])
            drainer = Drainer(outbox, get_database, leases)
            _runtime[key] = (outbox, drainer, leases)
            if outbox.pending() or any(drainer.journal_dir.glob("*.jsonl")):
                drainer.wake()
        return _runtime[key]


_journals: dict[tuple[str, int], Journal] = {}


def journal(settings: Settings) -> Journal | None:
    """This process's settlement journal for these settings; None when it is off."""
    if settings.metering_journal_ms <= 0:
        return None
    key = (settings.metering_outbox_dir, settings.metering_journal_ms)
    found = _journals.get(key)  # every settlement asks: no lock, no path work once it exists
    if found is None:
        with _runtime_lock:
            found = _journals.setdefault(key, Journal(Path(os.path.abspath(key[0])) / "journal", key[1]))
    return found


async def close_journals() -> None:
    """Shutdown: let the settlements sent behind their answers return (for as long as a
    settlement may retry), then confirm what this loop's journals hold (the rest waits
    for the next start)."""
    loop = asyncio.get_running_loop()
    behind = [t for t in _behind if t.get_loop() is loop]
    if behind:
        await asyncio.wait(behind, timeout=get_settings().settle_inline_seconds + 1)
    for j in list(_journals.values()):
        if j.runs_in(loop):
            await j.close(get_async_database())


def _retry_delays(settings: Settings) -> Iterator[float]:
    """How long to wait before each retry of a settlement the database refused as
    transient: 50 ms doubling to 1 s, for `settle_inline_seconds` in all."""
    deadline = time.monotonic() + settings.settle_inline_seconds
    delay = 0.05
    while time.monotonic() + delay <= deadline:
        yield delay
        delay = min(delay * 2, 1.0)


def _keep(settings: Settings, request_id: str, args: dict[str, Any], last: str) -> None:
    """Settlement outlasted its retries: into the outbox (fsynced) for the drainer."""
    outbox, drainer, _ = runtime(settings)
    path = outbox.put(request_id, args)
    log.error("could not settle %s (%s); written to the outbox %s, retried in the background",
              request_id, last, path)
    drainer.wake()


def settle(db: Database, settings: Settings, m: Metered, *, status: UsageStatus, http_status: int,
           usage: Usage | None, estimated: bool = False, upstream_id: str | None = None,
           error: str | None = None) -> Settlement | None:
    """Settle (or release) a metered request; None when it went to the outbox instead
    (it will be settled, exactly once, when the database answers again)."""
    leases = runtime(settings)[2]
    args = finish_args(m, status=status, http_status=http_status, usage=usage, estimated=estimated,
                       upstream_id=upstream_id, error=error)
    delays = _retry_delays(settings)
    while True:
        try:
            result = Settlement.from_sql(db.rpc(FINISH, args))
        except ServiceUnavailable as exc:
            delay = next(delays, None)
            if delay is None:
                _keep(settings, m.request_id, args, exc.message)
                return None
            time.sleep(delay)
            continue
        leases.discard(m.request_id)
        return result


async def settle_async(db: AsyncDatabase, settings: Settings, m: Metered, *, status: UsageStatus,
                       http_status: int, usage: Usage | None, estimated: bool = False,
                       upstream_id: str | None = None, error: str | None = None) -> Settlement | None:
    """`settle` for async handlers: the same call, retries, outbox and leases, awaited.
    On a connection that pipelines, the settlement commits without holding its
    organization's account row through the WAL flush; it is journaled first and made
    durable with the rest of its interval (lib.chat.journal), or, with the journal off,
    flush_metering sent right behind it returns once it is durable (migration chat_flush)."""
    args = finish_args(m, status=status, http_status=http_status, usage=usage, estimated=estimated,
                       upstream_id=upstream_id, error=error)
    segment = _journaled(db, settings, m.request_id, args)
    if segment is not None:
        return await _settle_journaled(db, settings, m, args, segment)
    calls = [(FINISH, {**args, "flush_follows": True}), (FLUSH, {})] if db.pipelined else [(FINISH, args)]
    return await _settle_calls(db, settings, m, args, calls)


def settle_behind(db: AsyncDatabase, settings: Settings, m: Metered, *, usage: Usage, estimated: bool = False,
                  upstream_id: str | None = None) -> bool:
    """Settle a successful call behind its answer: journal the settlement (which makes
    it survive either side crashing, as in `settle_async`) and send it from a task of
    its own, in its organization's lane, so the answer need not wait for it. False, with
    nothing done, when it cannot be journaled (the journal is off or unwritable): the
    caller awaits `settle_async` instead."""
    args = finish_args(m, status="succeeded", http_status=200, usage=usage, estimated=estimated,
                       upstream_id=upstream_id)
    segment = _journaled(db, settings, m.request_id, args)
    if segment is None:
        return False
    task = asyncio.get_running_loop().create_task(_settle_quietly(db, settings, m, args, segment))
    _behind.add(task)
    task.add_done_callback(_behind.discard)
    return True


def _journaled(db: AsyncDatabase, settings: Settings, request_id: str, args: dict[str, Any]) -> Segment | None:
    """The journal segment this settlement was appended to; None when the database does
    not pipeline, or the journal is off or cannot be written."""
    book = journal(settings) if db.pipelined else None
    return book.record(db, request_id, args) if book is not None else None


# the settlements sent behind their answers and not yet returned (close_journals awaits them)
_behind: set[asyncio.Task[None]] = set()


async def _settle_quietly(db: AsyncDatabase, settings: Settings, m: Metered, args: dict[str, Any],
                          segment: Segment) -> None:
    """A settlement nobody awaits: what goes wrong is logged (the journal still holds it)."""
    try:
        await _settle_journaled(db, settings, m, args, segment)
    except TollboothError:  # not transient (those go to the outbox): a contract break, loudly
        log.exception("could not settle request %s", m.request_id)
    except OSError:
        log.exception("could not settle request %s nor write it to the outbox", m.request_id)


async def _settle_journaled(db: AsyncDatabase, settings: Settings, m: Metered, args: dict[str, Any],
                            segment: Segment) -> Settlement | None:
    try:
        return await _settle_calls(db, settings, m, args, [(FINISH, {**args, "flush_follows": True})])
    finally:
        Journal.returned(segment)


async def _settle_calls(db: AsyncDatabase, settings: Settings, m: Metered, args: dict[str, Any],
                        calls: list[tuple[str, dict[str, Any]]]) -> Settlement | None:
    leases = runtime(settings)[2]
    delays = _retry_delays(settings)
    while True:
        try:
            # in its organization's lane: behind that account row's other calls, not in a lock wait
            result = Settlement.from_sql((await db.rpc_pipeline(calls, lane=m.org_id))[0])
        except ServiceUnavailable as exc:
            delay = next(delays, None)
            if delay is None:
                await asyncio.to_thread(_keep, settings, m.request_id, args, exc.message)
                return None
            await asyncio.sleep(delay)
            continue
        leases.discard(m.request_id)
        return result


def drain_outbox(settings: Settings, db: Database) -> tuple[int, int, int]:
    """Replay the outbox once (`tollbooth chat drain-outbox`), then the journal segments
    of processes that are gone: (settled, failed, pending)."""
    outbox = Outbox(settings.metering_outbox_dir)
    settled, failed, pending = outbox.drain(db)
    if not pending:
        settled += drain_orphans(outbox.dir / "journal", db)[1]
    return settled, failed, pending
