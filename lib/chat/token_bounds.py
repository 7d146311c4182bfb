"""Token counts without a tokenizer (none can be downloaded here).

A BPE token is at least one byte of UTF-8, so the UTF-8 size of everything the model
reads bounds its prompt tokens from above; the serialized JSON of the messages also
covers the per-message framing tokens. Images are bounded per part. The estimate
(for a stream that ended without usage) is the usual four bytes per token.
"""
from __future__ import annotations

import json
import math
from typing import Any

# gpt-4o high detail at 2048x2048 is 85 + 170 * 16 = 2805 tokens; round up
IMAGE_PART_BOUND = 3000
REPLY_PRIMING = 8

PROMPT_FIELDS = ("messages", "tools", "functions", "tool_choice", "response_format", "prediction")


def _image_parts(messages: list[Any]) -> int:
    count = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content
                         if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"))
    return count


def prompt_bytes(body: dict[str, Any]) -> int:
    return sum(len(json.dumps(body[f], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
               for f in PROMPT_FIELDS if body.get(f) is not None)


def prompt_token_bound(body: dict[str, Any]) -> int:
    """An upper bound on the prompt tokens the upstream will count for this body."""
    messages = body.get("messages") or []
    return prompt_bytes(body) + IMAGE_PART_BOUND * _image_parts(messages) + REPLY_PRIMING


def prompt_token_estimate(body: dict[str, Any]) -> int:
    """A typical count (about four bytes a token), for charging when usage never came."""
    messages = body.get("messages") or []
    return math.ceil(prompt_bytes(body) / 4) + 3 * len(messages) + 3 + 765 * _image_parts(messages)
