"""Calling the money path's sync functions (`metering.begin`: its logic and signature
stay one, whichever transport awaits them) from async code without a thread.

`call_async(fn, adb, ...)` runs `fn` with a database whose `rpc` answers from the
answers gathered so far; the first call it has no answer for stops `fn`, is awaited on
the real async database, and `fn` runs again from the start. `fn` must be a function
of its arguments and its `rpc` answers (begin is: the request id is fixed), so the
replays make exactly the calls, with exactly the effects, of one sync run.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from lib.core.db import Database
from lib.core.db_async import AsyncDatabase
from lib.core.errors import TollboothError

P = ParamSpec("P")
T = TypeVar("T")
MAX_CALLS = 16


class _NeedCall(BaseException):
    """Not an Exception: no `except Exception` inside `fn` may swallow it."""

    def __init__(self, fn: str, args: dict[str, Any] | None):
        super().__init__(fn)
        self.fn, self.call_args = fn, args


class _Replay:
    def __init__(self, answers: list[tuple[str, bool, Any]]):
        self.answers, self.at = answers, 0

    def rpc(self, fn: str, args: dict[str, Any] | None = None) -> Any:
        if self.at >= len(self.answers):
            raise _NeedCall(fn, args)
        name, ok, value = self.answers[self.at]
        self.at += 1
        if name != fn:
            raise TollboothError(f"replay diverged: called {fn} where {name} was answered")
        if ok:
            return value
        raise value

    def ping(self) -> None:
        return None


async def call_async(fn: Callable[Concatenate[Database, P], T], adb: AsyncDatabase,
                     *args: P.args, **kwargs: P.kwargs) -> T:
    answers: list[tuple[str, bool, Any]] = []
    for _ in range(MAX_CALLS):
        try:
            return fn(_Replay(answers), *args, **kwargs)
        except _NeedCall as need:
            try:
                answers.append((need.fn, True, await adb.rpc(need.fn, need.call_args)))
            except TollboothError as err:
                answers.append((need.fn, False, err))
    raise TollboothError(f"{getattr(fn, '__name__', fn)} made more than {MAX_CALLS} database calls")
