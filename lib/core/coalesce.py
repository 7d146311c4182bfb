"""A client connection's writes made in one turn of the event loop leave in one send.

uvicorn writes a response's status line and headers as soon as the app starts the
response, and its body in a second write: two sends, two TCP segments, and a client
woken twice for every JSON answer. Wrapped in `CoalescingTransport`, the writes of one
turn are joined and sent once, when the turn ends (`loop.call_soon`): the headers and
body of a whole response, or the events of a stream that arrived together. Nothing
waits longer than the rest of the turn that wrote it; closing sends what is pending
first, aborting drops it.
"""
from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Stands in for an asyncio transport: `write` is deferred to the end of the loop's
    turn, every other method is the transport's own."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport: Any = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data if type(data) is bytes else bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size()) + sum(len(d) for d in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
