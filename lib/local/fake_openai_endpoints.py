"""The fake OpenAI upstream's `POST /v1/embeddings` and `POST /v1/responses` (see
lib.local.fake_openai), deterministic, in OpenAI's shapes (API reference: Embeddings
"Create embeddings"; Responses "Create a model response" and its streaming events
response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta, response.output_text.done,
response.content_part.done, response.output_item.done, response.completed).

Embeddings: `prompt_tokens` = ceil(utf8 bytes / 4) per string input (token arrays count
their length), `dimensions` numbers per input (default 8). Responses: the reply is
"echo:" and the words of the input text, one word per output token, capped by
`max_output_tokens` (else 16); `input_tokens` = ceil(bytes of the input and instructions
text / 4) + 3.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

DEFAULT_WORDS = 16


class BadInput(ValueError):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def embeddings(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise BadInput("you must provide a model parameter", "model")
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    if not isinstance(items, list) or not items:
        raise BadInput("'input' must be a string, an array of strings or an array of token arrays", "input")
    dims = body.get("dimensions") or 8
    data, tokens = [], 0
    for index, item in enumerate(items):
        if isinstance(item, str):
            tokens += max(math.ceil(len(item.encode("utf-8")) / 4), 1)
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            tokens += len(item)
        else:
            raise BadInput(f"Invalid 'input[{index}]'", "input")
        data.append({"object": "embedding", "index": index,
                     "embedding": [round(((index + 1) * (d + 1) % 17) / 17 - 0.5, 6) for d in range(dims)]})
    return {"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _input_text(body: dict) -> str:
    raw = body.get("input")
    if isinstance(raw, str):
        return raw
    parts: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return " ".join(parts)


class Response:
    """The deterministic answer to one Responses API request."""

    def __init__(self, body: Any):
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            raise BadInput("you must provide a model parameter", "model")
        if not isinstance(body.get("input"), (str, list)) or not body["input"]:
            raise BadInput("'input' must be a string or an array of input items", "input")
        limit = body.get("max_output_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 16):
            raise BadInput("Invalid 'max_output_tokens': integer below minimum value 16", "max_output_tokens")
        self.body, self.model = body, body["model"]
        self.id, self.msg_id, self.created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
        text = _input_text(body)
        words = ["echo:", *text.split()]
        self.words = words[:limit if limit is not None else DEFAULT_WORDS]
        self.incomplete = limit is not None and len(words) > limit
        prompt_bytes = len(text.encode("utf-8")) + len(str(body.get("instructions") or "").encode("utf-8"))
        self.input_tokens = math.ceil(prompt_bytes / 4) + 3

    def usage(self) -> dict[str, Any]:
        out = len(self.words)
        return {"input_tokens": self.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + out}

    def message(self, done: bool) -> dict[str, Any]:
        content = [{"type": "output_text", "text": " ".join(self.words), "annotations": [], "logprobs": []}]
        return {"id": self.msg_id, "type": "message", "status": "completed" if done else "in_progress",
                "role": "assistant", "content": content if done else []}

    def obj(self, done: bool) -> dict[str, Any]:
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        incomplete = {"reason": "max_output_tokens"} if done and self.incomplete else None
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                "error": None, "incomplete_details": incomplete,
                "instructions": self.body.get("instructions"), "max_output_tokens": self.body.get("max_output_tokens"),
                "model": self.model, "output": [self.message(True)] if done else [], "parallel_tool_calls": True,
                "previous_response_id": None, "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": self.usage() if done else None, "metadata": {}}

    def events(self, cut_after: int | None = None) -> Iterator[bytes]:
        """SSE: `event: <type>` and `data: <json>` per event; no [DONE] line. With
        `cut_after`, stops (without response.completed) after that many deltas."""
        seq = 0

        def ev(kind: str, **data: Any) -> bytes:
            nonlocal seq
            payload = {"type": kind, "sequence_number": seq, **data}
            seq += 1
            return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

        yield ev("response.created", response=self.obj(False))
        yield ev("response.in_progress", response=self.obj(False))
        yield ev("response.output_item.added", output_index=0, item=self.message(False))
        part = {"type": "output_text", "text": "", "annotations": []}
        yield ev("response.content_part.added", item_id=self.msg_id, output_index=0, content_index=0, part=part)
        for i, word in enumerate(self.words):
            if cut_after is not None and i >= cut_after:
                return
            yield ev("response.output_text.delta", item_id=self.msg_id, output_index=0, content_index=0,
                     delta=word if i == 0 else " " + word, logprobs=[])
        text = " ".join(self.words)
        yield ev("response.output_text.done", item_id=self.msg_id, output_index=0, content_index=0, text=text,
                 logprobs=[])
        yield ev("response.content_part.done", item_id=self.msg_id, output_index=0, content_index=0,
                 part={**part, "text": text})
        yield ev("response.output_item.done", output_index=0, item=self.message(True))
        yield ev("response.completed", response=self.obj(True))
