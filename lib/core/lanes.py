"""Calls that would queue on the same rows inside Postgres queue here instead, and go
together.

One organization's metering calls all lock its account row, so on separate
connections they run one after another anyway: each waits on the row lock, sleeps, is
woken and reads the row again, and every backend pays its own wake-up. In a lane
(one per key: the organization) at most one batch is in flight; calls that arrive
meanwhile wait in the process and are sent together as the next batch, in one round
trip on one connection, where the backend runs them back to back. Each call is still
its own transaction with its own answer or error; only the calls of one key wait for
each other, so a stalled organization never delays another.

A batch runs its calls one after another, so when a key's rows are locked by someone
else (an admin's long transaction) each call of the batch would wait out its own lock
timeout in turn. A batch whose answers say so (`stalled`) opens the lane for
`OPEN_SECONDS`: until then the key's calls go straight out, side by side, each
waiting for the lock on its own as they did without lanes.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# the most calls one batch sends; the rest go in the next
MAX_BATCH = 16
# how long a lane whose batch met a lock timeout lets its calls go side by side
OPEN_SECONDS = 5.0


class Lanes(Generic[Item, Answer]):
    """`run(key, items)` sends `items` through `send` at once when nothing of `key` is in
    flight, else with everything queued for `key` when the batch in flight returns.
    `send` answers one value per item, in order (or raises: every caller of the batch
    gets the error)."""

    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Answer]]],
                 stalled: Callable[[list[Answer]], bool] = lambda answers: False):
        self._send, self._stalled = send, stalled
        self._open_until: dict[Hashable, float] = {}
        # key -> calls waiting for the batch in flight; a key is present while one is
        self._queued: dict[Hashable, list[tuple[list[Item], asyncio.Future[list[Answer]]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, key: Hashable, items: list[Item]) -> list[Answer]:
        if self._open_until and self._is_open(key):
            return await self._answered(key, self._send(items))
        queued = self._queued.get(key)
        if queued is None:  # the lane is free: go now
            self._queued[key] = []
            try:
                return await self._answered(key, self._send(items))
            finally:
                self._next(key)
        waiting: asyncio.Future[list[Answer]] = asyncio.get_running_loop().create_future()
        queued.append((items, waiting))
        return await waiting  # cancelled before its batch left: it is left out of it

    def _is_open(self, key: Hashable) -> bool:
        until = self._open_until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._open_until[key]
        return False

    async def _answered(self, key: Hashable, sent: Awaitable[list[Answer]]) -> list[Answer]:
        answers = await sent
        if self._stalled(answers):
            self._open_until[key] = time.monotonic() + OPEN_SECONDS
        return answers

    def _next(self, key: Hashable) -> None:
        """The batch in flight returned: send what queued meanwhile (up to MAX_BATCH
        calls), or free the lane; an open lane sends each on its own."""
        queued = [(items, waiting) for items, waiting in self._queued.get(key, []) if not waiting.done()]
        if not queued or self._is_open(key):
            self._queued.pop(key, None)
            for entry in queued:
                self._start(key, [entry], chained=False)
            return
        batch: list[tuple[list[Item], asyncio.Future[list[Answer]]]] = []
        size = 0
        while queued and (not batch or size + len(queued[0][0]) <= MAX_BATCH):
            batch.append(queued.pop(0))
            size += len(batch[-1][0])
        self._queued[key] = queued
        self._start(key, batch, chained=True)

    def _start(self, key: Hashable, batch: list[tuple[list[Item], asyncio.Future[list[Answer]]]], *,
               chained: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._run_batch(key, batch, chained))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, key: Hashable, batch: list[tuple[list[Item], asyncio.Future[list[Answer]]]],
                         chained: bool) -> None:
        """Send a batch and hand each caller its answers; a chained batch is the lane's
        one in flight, and starts the next when it returns."""
        try:
            answers = await self._answered(key, self._send([item for items, _ in batch for item in items]))
        except Exception as exc:
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(exc)
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for _, waiting in batch:
                waiting.cancel()
            raise
        else:
            at = 0
            for items, waiting in batch:
                if not waiting.done():
                    waiting.set_result(answers[at:at + len(items)])
                at += len(items)
        finally:
            if chained:
                self._next(key)
