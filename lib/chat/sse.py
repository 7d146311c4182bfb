"""Server-sent events as the chat proxy relays them: splitting upstream bytes into
events, and watching them go by for the usage chunk, the chunk count and the id."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import httpx

from lib.chat.metering import Usage


class StreamMeter:
    """Watches SSE events go by: the usage chunk, the chunk count, the upstream id."""

    def __init__(self, client_wants_usage: bool):
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.upstream_id: str | None = None
        self.chunks = 0
        self.done = False

    def observe(self, event: bytes) -> bytes | None:
        """The event to send the client, or None to hold it back."""
        data = event[6:] if event.startswith(b"data: ") else (event[5:] if event.startswith(b"data:") else None)
        if data is None:
            return event
        if data.strip() == b"[DONE]":
            self.done = True
            return event
        if not self.client_wants_usage and b'"usage"' in event:
            # we asked upstream for usage; a client that did not sees chunks as OpenAI sends them
            event = event.replace(b',"usage":null', b"").replace(b', "usage": null', b"")
        if self.upstream_id is None or _has_usage(data):
            try:
                chunk = json.loads(data)
            except ValueError:
                return event
            self.upstream_id = self.upstream_id or chunk.get("id")
            usage = Usage.from_openai(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
                if not chunk.get("choices") and not self.client_wants_usage:
                    return None
                return event
        self.chunks += 1
        return event


def _has_usage(data: bytes) -> bool:
    """Cheap pre-check before parsing: a chunk with a non-null usage object."""
    at = data.find(b'"usage"')
    return at >= 0 and data[at + 7:at + 16].lstrip(b": ")[:1] == b"{"


class SseSplitter:
    """Upstream bytes in, whole SSE events out (CRLF or LF line ends)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, piece: bytes) -> list[bytes]:
        buffer = self.buffer + piece
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = buffer.split(b"\n\n")
        self.buffer = events.pop()
        return [e for e in events if e]

    def rest(self) -> list[bytes]:
        return [self.buffer] if self.buffer.strip() else []


def sse_events(resp: httpx.Response) -> Iterator[bytes]:
    splitter = SseSplitter()
    for piece in resp.iter_raw():
        yield from splitter.feed(piece)
    yield from splitter.rest()


class RawBody(Protocol):
    """A response body read as it arrives (lib.chat.http1.Response, httpx.Response)."""

    def aiter_raw(self) -> AsyncIterator[bytes]: ...


async def async_sse_batches(resp: RawBody) -> AsyncIterator[list[bytes]]:
    """The whole SSE events of each upstream read, together (a read can carry several:
    relayed in one write, they cost one send each way instead of one per event)."""
    splitter = SseSplitter()
    async for piece in resp.aiter_raw():
        events = splitter.feed(piece)
        if events:
            yield events
    rest = splitter.rest()
    if rest:
        yield rest
