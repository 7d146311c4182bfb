"""lib.chat.http1's cap on open connections: at most `max_connections` to the upstream at
once, callers beyond it served in turn as connections come back or close, and a caller
that waits longer than `connect_timeout` gets httpx.PoolTimeout (a timeout: 504)."""
from __future__ import annotations

import asyncio

import httpx

from tests.support.raw_http import RawServer, client_for, post, response


def gated(gate: asyncio.Event, *, close: bool = False):
    """A keep-alive server that answers each request only once `gate` is set."""
    async def handler(server, reader, writer):
        while (req := await server.read_request(reader)) is not None:
            await gate.wait()
            writer.write(response(req[1], headers={"connection": "close"} if close else None))
            await writer.drain()
            if close:
                return
    return handler


def test_callers_beyond_the_cap_wait_for_a_connection_and_reuse_it(run):
    async def main():
        gate = asyncio.Event()
        async with RawServer(gated(gate)) as server:
            client = client_for(server, max_connections=2)
            calls = [asyncio.ensure_future(post(client, b'{"n":%d}' % i)) for i in range(6)]
            await asyncio.sleep(0.2)
            in_flight = server.connections
            gate.set()
            answers = await asyncio.gather(*calls)
            await client.aclose()
            return in_flight, server.connections, answers
    in_flight, total, answers = run(main())
    assert in_flight == 2, "two connections while six calls are in flight"
    assert total == 2, "the four others waited and reused them"
    assert answers == [(200, b'{"n":%d}' % i) for i in range(6)], "each answer is its own call's"


def test_a_connection_that_closes_frees_its_place(run):
    async def main():
        gate = asyncio.Event()
        gate.set()
        async with RawServer(gated(gate, close=True)) as server:
            client = client_for(server, max_connections=1)
            answers = await asyncio.gather(*(post(client, b"%d" % i) for i in range(3)))
            await client.aclose()
            return server.connections, answers
    connections, answers = run(main())
    assert answers == [(200, b"0"), (200, b"1"), (200, b"2")]
    assert connections == 3, "each closed connection made room for the next, one at a time"


def test_waiting_longer_than_the_connect_timeout_is_a_pool_timeout(run):
    async def main():
        gate = asyncio.Event()
        async with RawServer(gated(gate)) as server:
            client = client_for(server, max_connections=1, connect_timeout=0.2)
            first = asyncio.ensure_future(post(client, b"first"))
            await asyncio.sleep(0.05)
            try:
                await post(client, b"second")
            except httpx.TimeoutException as exc:
                outcome: object = exc
            else:
                outcome = "answered"
            gate.set()
            answered = await first
            after = await post(client, b"third")
            await client.aclose()
            return outcome, answered, after, server.connections
    outcome, answered, after, connections = run(main())
    assert isinstance(outcome, httpx.PoolTimeout), f"a timeout (the proxy's 504): {outcome!r}"
    assert answered == (200, b"first") and after == (200, b"third"), "the connection served on"
    assert connections == 1, "the caller that gave up opened nothing"
