"""The request bodies, prompt bounds and usage of the other metered OpenAI endpoints:
`POST /v1/embeddings` (input tokens only) and `POST /v1/responses` (the Responses API).

Both go through the chat path (lib.chat.metering.begin with their `kind`, then
lib.chat.forward, then settlement), so the per-key controls and the exact charges are the
chat proxy's. Bounds follow lib.chat.token_bounds: a token is at least one UTF-8 byte.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lib.chat.metering import Usage
from lib.chat.token_bounds import IMAGE_PART_BOUND, REPLY_PRIMING

# the Responses fields that the model reads as its prompt
RESPONSES_PROMPT_FIELDS = ("input", "instructions", "tools", "tool_choice", "text", "reasoning")


class EmbeddingsBody(BaseModel):
    """`POST /v1/embeddings`; other fields (encoding_format, dimensions, user) pass through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]] = Field(min_length=1)
    stream: bool = False
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


class ResponsesBody(BaseModel):
    """`POST /v1/responses`; other fields pass through. The completion limit is
    `max_output_tokens`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    max_output_tokens: StrictInt | None = Field(default=None, ge=1)
    n: int | None = None
    max_tokens: int | None = None

    @property
    def max_completion_tokens(self) -> int | None:
        return self.max_output_tokens


def embeddings_token_bound(body: EmbeddingsBody) -> int:
    """Strings: their UTF-8 bytes (at least one token each); token arrays: their length."""
    items: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
    if items and isinstance(items[0], int):
        return len(items)
    return sum(max(len(i.encode("utf-8")), 1) if isinstance(i, str) else len(i) for i in items)


def _image_parts(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if value.get("type") in ("input_image", "image_url") else 0
        return own + sum(_image_parts(v) for v in value.values())
    if isinstance(value, list):
        return sum(_image_parts(v) for v in value)
    return 0


def responses_token_bound(raw: dict[str, Any]) -> int:
    """The UTF-8 size of everything the model reads, images bounded per part."""
    size = sum(len(json.dumps(raw[f], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
               for f in RESPONSES_PROMPT_FIELDS if raw.get(f) is not None)
    return size + IMAGE_PART_BOUND * _image_parts(raw.get("input")) + REPLY_PRIMING


def responses_usage(usage: Any) -> Usage | None:
    """The Responses API's usage object (input_tokens, output_tokens and their details)."""
    if not isinstance(usage, dict) or "input_tokens" not in usage:
        return None
    return Usage(prompt_tokens=int(usage.get("input_tokens") or 0),
                 completion_tokens=int(usage.get("output_tokens") or 0),
                 cached_tokens=int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0),
                 reasoning_tokens=int((usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0))


def embeddings_usage(usage: Any) -> Usage | None:
    """The Embeddings usage object (prompt_tokens, total_tokens): input only."""
    if not isinstance(usage, dict) or "prompt_tokens" not in usage:
        return None
    return Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=0)
