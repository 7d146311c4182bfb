"""SSE as the chat proxy relays it: upstream reads split into whole events, batched per
read (lib.chat.sse.async_sse_batches), and the meter that watches them go by."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from lib.chat.sse import StreamMeter, async_sse_batches

# chunk shapes from https://platform.openai.com/docs/api-reference/chat-streaming/streaming
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None}
USAGE = {**CHUNK, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}


def event(payload: object) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode())


class Reads:
    """A response body arriving in the given reads."""

    def __init__(self, reads: list[bytes]):
        self.reads = reads

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for piece in self.reads:
            yield piece


def batches(reads: list[bytes]) -> list[list[bytes]]:
    async def collect() -> list[list[bytes]]:
        return [b async for b in async_sse_batches(Reads(reads))]

    return asyncio.run(collect())


def test_the_events_of_one_read_come_as_one_batch():
    one, two, done = event(CHUNK), event(USAGE), event(b"[DONE]")
    assert batches([one + b"\n\n" + two + b"\n\n" + done + b"\n\n"]) == [[one, two, done]]


def test_an_event_split_across_reads_comes_whole_once_its_end_arrives():
    one, two = event(CHUNK), event(USAGE)
    wire = one + b"\n\n" + two + b"\n\n"
    cut = len(one) + 5  # inside the second event
    assert batches([wire[:10], wire[10:cut], wire[cut:]]) == [[one], [two]], "a read with no whole event is no batch"


def test_crlf_line_ends_and_an_unterminated_last_event():
    one, last = event(CHUNK), event(b"[DONE]")
    assert batches([one + b"\r\n\r\n" + last]) == [[one], [last]]
    assert batches([one + b"\n\n", b"\n  \n"]) == [[one]], "blank trailing bytes are no event"


def test_meter_counts_chunks_finds_usage_and_hides_it_from_a_client_that_did_not_ask():
    meter = StreamMeter(client_wants_usage=False)
    relayed = [meter.observe(e) for e in (event(CHUNK), event(CHUNK), event(USAGE), event(b"[DONE]"))]
    assert relayed[2] is None, "the usage-only chunk is held back"
    assert b'"usage"' not in relayed[0], "usage: null is stripped as OpenAI omits it"
    assert meter.chunks == 2 and meter.done and meter.upstream_id == "chatcmpl-1"
    assert meter.usage is not None and (meter.usage.prompt_tokens, meter.usage.completion_tokens) == (9, 2)


def test_meter_passes_the_usage_chunk_to_a_client_that_asked():
    meter = StreamMeter(client_wants_usage=True)
    assert meter.observe(event(USAGE)) == event(USAGE)
    assert meter.observe(event(b"not json {")) == event(b"not json {"), "an unparsable event is relayed as is"
