"""The chat path's HTTP/1.1 client (lib.chat.http1) against real servers on 127.0.0.1
(tests.support.raw_http), on asyncio's event loop and on uvloop's (the one `tollbooth
serve` runs): keep-alive, framing, streaming, the server's closes, timeouts, limits."""
from __future__ import annotations

import asyncio
import socket
import struct

import httpx
import pytest
import uvloop

from lib.chat.http1 import HIGH_WATER, MAX_HEAD_BYTES, Http1Client
from tests.support.raw_http import RawServer, chunked, client_for, echo_forever, post, response, tls_contexts


def test_sequential_requests_share_one_connection_and_send_one_well_formed_request(run):
    async def main():
        async with RawServer(echo_forever) as server:
            client = client_for(server)
            for i in range(5):
                assert await post(client, b'{"n":%d}' % i, {"user-agent": "ua/1", "x-request-id": f"r{i}"}) == \
                    (200, b'{"n":%d}' % i), "each answer is the request's own"
            await client.aclose()
            return server
    server = run(main())
    assert server.connections == 1, "five requests, one keep-alive connection"
    head, body = server.requests[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n"), head
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in head and b"content-length: 7\r\n" in head
    assert b"user-agent: ua/1\r\n" in head and b"x-request-id: r0\r\n" in head
    assert b"accept-encoding: identity\r\n" in head, "we never ask for a body we would have to decode"


def test_chunked_body_is_decoded_and_the_connection_reused(run):
    async def handler(server, reader, writer):
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nX-Thing: a\r\nx-thing: b\r\n\r\n"
                         + chunked(b"hello ", b"chunked ", b"world"))

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            assert resp.headers["X-THING"] == "a, b" and "x-Thing" in resp.headers and resp.headers.get("nope") is None
            assert await resp.aread() == b"hello chunked world"
            assert await post(client) == (200, b"hello chunked world")
            return server.connections
    assert run(main()) == 1


def test_a_stream_is_yielded_as_it_arrives(run):
    """The second piece is sent only after the client got the first: a client that
    buffered the body would wait forever."""
    async def main():
        first = asyncio.Event()

        async def handler(server, reader, writer):
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"6\r\ndata: \r\n")
            await first.wait()
            writer.write(b"2\r\nA\n\r\n" + b"0\r\n\r\n")

        async with RawServer(handler) as server:
            client = client_for(server)
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            pieces = []
            async for piece in resp.aiter_raw():
                pieces.append(piece)
                first.set()
            await resp.aclose()
            return pieces
    assert run(main()) == [b"data: ", b"A\n"]


def test_a_response_in_one_byte_writes_and_a_big_header_parse(run):
    big = "v" * 40_000

    async def handler(server, reader, writer):
        await server.read_request(reader)
        raw = response(b'{"ok":true}', headers={"x-big": big})
        # the status line and the body's end byte by byte, the big header in 4 KiB pieces
        cuts = [*range(0, 100), *range(100, len(raw) - 40, 4096), *range(len(raw) - 40, len(raw))]
        for start, end in zip(cuts, [*cuts[1:], len(raw)]):
            writer.write(raw[start:end])
            await writer.drain()
            await asyncio.sleep(0.001)
        await server.read_request(reader)

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            assert resp.headers["x-big"] == big
            return await resp.aread()
    assert run(main()) == b'{"ok":true}'


def test_a_head_over_the_limit_is_refused(run):
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(response(headers={"x-huge": "v" * (MAX_HEAD_BYTES + 1)}))
        await reader.read()

    async def main():
        async with RawServer(handler) as server:
            with pytest.raises(httpx.RemoteProtocolError, match="response head over"):
                await post(client_for(server))
    run(main())


def test_an_idle_connection_the_server_closed_is_replaced(run):
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(response(b"one"))  # keep-alive by default, then close anyway
        await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            assert await post(client) == (200, b"one")
            await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle in the pool
            assert await post(client) == (200, b"one")
            return server.connections
    assert run(main()) == 2


def test_a_request_sent_as_the_server_closes_is_retried_once_on_a_new_connection(run):
    """The keep-alive race: the pooled connection looks open, the server closes it
    when the next request arrives, without a byte of answer."""
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(response(b"first"))
        await writer.drain()
        await server.read_request(reader)  # then close, answering nothing

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            assert await post(client, b"1") == (200, b"first")
            assert await post(client, b"2") == (200, b"first"), "retried on a fresh connection"
            return server
    server = run(main())
    assert server.connections == 2 and [body for _, body in server.requests] == [b"1", b"2", b"2"]


def test_no_retry_once_a_byte_of_the_answer_came_back(run):
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(response(b"first"))
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 O")  # then close mid-head

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            await post(client)
            with pytest.raises(httpx.RemoteProtocolError, match="mid-response"):
                await post(client)
            return server.connections
    assert run(main()) == 1, "never resent"


def test_a_fresh_connection_closed_without_an_answer_is_not_retried(run):
    async def handler(server, reader, writer):
        await server.read_request(reader)

    async def main():
        async with RawServer(handler) as server:
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await post(client_for(server))
            return server.connections
    assert run(main()) == 1


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_body_cut_short_is_a_transport_error_and_the_connection_is_dropped(run, how):
    async def handler(server, reader, writer):
        while await server.read_request(reader) is not None:
            if len(server.requests) == 1:
                writer.write(response(b"x" * 100)[:-90])  # content-length 100, 10 sent
                await writer.drain()
                if how == "reset":  # RST instead of FIN
                    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                               struct.pack("ii", 1, 0))
                writer.close()
                return
            writer.write(response(b"fine"))

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            with pytest.raises(httpx.ReadError if how == "reset" else httpx.RemoteProtocolError):
                await post(client)
            assert await post(client) == (200, b"fine")
            return server.connections
    assert run(main()) == 2


def test_connection_close_answers_and_bodies_left_unread_are_not_pooled(run):
    async def handler(server, reader, writer):
        while await server.read_request(reader) is not None:
            close = {"connection": "close"} if len(server.requests) == 1 else {}
            writer.write(response(b"body", headers=close))  # and the socket stays open

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            await post(client)
            assert server.connections == 1
            await post(client)
            assert server.connections == 2, "the server said close: a new connection"
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            await resp.aclose()  # body not read
            await post(client)
            return server.connections
    assert run(main()) == 3


def test_a_body_delimited_by_the_close_is_read_to_the_end(run):
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        writer.write(b"the end")

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            assert await post(client) == (200, b"until the end"), "the 100 skipped, the body ends with the connection"
            assert await post(client) == (200, b"until the end")
            return server.connections
    assert run(main()) == 2


def test_idle_connections_expire(run):
    async def main():
        async with RawServer(echo_forever) as server:
            client = client_for(server, idle_expiry=0.05)
            await post(client)
            await asyncio.sleep(0.1)
            await post(client)
            return server.connections
    assert run(main()) == 2


def test_read_timeouts_waiting_for_the_head_and_for_the_body(run):
    async def handler(server, reader, writer):
        while await server.read_request(reader) is not None:
            if len(server.requests) == 2:
                writer.write(response(b"x" * 10)[:-5])  # headers, then half the body, then nothing
        # reading returned None: the client closed

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server, timeout=0.2)
            with pytest.raises(httpx.ReadTimeout):
                await post(client)
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            with pytest.raises(httpx.ReadTimeout):
                await resp.aread()
            return server.connections
    assert run(main()) == 2, "a timed-out connection is not reused"


def test_connect_refused_is_a_connect_error(run):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        client = Http1Client(f"http://127.0.0.1:{port}/v1", timeout=1, connect_timeout=1)
        with pytest.raises(httpx.ConnectError):
            await post(client)
    run(main())


def test_a_header_that_would_split_the_request_is_refused_before_sending(run):
    async def main():
        async with RawServer(echo_forever) as server:
            client = client_for(server)
            with pytest.raises(httpx.LocalProtocolError):
                await post(client, headers={"user-agent": "x\r\nx-injected: 1"})
            return server.connections
    assert run(main()) == 0


def test_a_slow_consumer_pauses_reading(run):
    """The server can write only what the socket buffers and the client's high-water
    mark hold while the consumer sleeps; then the whole body arrives."""
    size = 64 * 1024 * 1024
    written = [0]

    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        piece = b"x" * (1024 * 1024)
        for _ in range(size // len(piece)):
            writer.write(piece)
            await writer.drain()
            written[0] += len(piece)
        await reader.read()

    async def main():
        async with RawServer(handler) as server:
            client = client_for(server)
            resp = await client.send(client.build_request("POST", "chat/completions", content=b"{}"))
            total, stalled = 0, None
            async for piece in resp.aiter_raw():
                total += len(piece)
                assert len(piece) <= HIGH_WATER + 512 * 1024, "never more queued than the mark and one read"
                if stalled is None:
                    await asyncio.sleep(0.5)
                    stalled = written[0]
            return total, stalled
    total, stalled = run(main())
    assert total == size
    assert stalled < size // 2, f"the server wrote {stalled} bytes while the consumer slept: reading was not paused"


def test_https(run, tmp_path):
    server_ctx, client_ctx = tls_contexts(tmp_path)

    async def main():
        async with RawServer(echo_forever, ssl_context=server_ctx) as server:
            client = client_for(server, ssl_context=client_ctx)
            assert await post(client, b"secret") == (200, b"secret")
            assert await post(client, b"again") == (200, b"again")
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(client_for(server))  # the default context (certifi's roots) does not trust it
            return server.connections
    assert run(main()) == 1, "one connection for both requests (the refused handshake never reached the handler)"
