"""A local, deterministic OpenAI-compatible Chat Completions server (no database).

For development, tests and benchmarks of the metered proxy. Endpoints:
`POST /v1/chat/completions` (also `/chat/completions`), `GET /v1/models`, and
`POST /v1/embeddings` and `POST /v1/responses` (lib.local.fake_openai_endpoints). Every
request needs `Authorization: Bearer <anything>`.

The reply is `"echo:"` followed by the words of the last user message, one word per
completion token, capped by `max_completion_tokens` / `max_tokens` (else 16 words).
`prompt_tokens` = sum over messages of ceil(utf8 bytes of its text / 4) + 3, plus 3, which
never exceeds the text bytes + 8 per message + 8.

Per-request test headers:
  x-fake-status: N            answer status N (>= 400) with an OpenAI error body
  x-fake-error-code: CODE     override the error body's `code` (e.g. insufficient_quota)
  x-fake-delay-ms: N          sleep N ms before answering
  x-fake-cached-tokens: N     usage.prompt_tokens_details.cached_tokens (capped at prompt)
  x-fake-reasoning-tokens: N  reasoning tokens per choice, counted in completion_tokens
  x-fake-drop-usage: 1        stream: send the content and finish chunks, then cut the
                              connection (no usage chunk, no [DONE]); non-stream: usage null
  x-fake-disconnect-after: K  stream: cut the connection after K chunks; non-stream: cut
                              the connection without any response
  x-fake-disconnect-mode: M   how streams are cut: "abort" (default: the chunked body is
                              left incomplete, as on a network failure) or "clean" (the
                              body ends normally, just without usage and [DONE])
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from lib.local import fake_openai_endpoints as more
from lib.local.fake_http import Cut, FakeHttpServer, FakeReply, FakeRequest, Pause, StreamItem, json_reply

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini")
DEFAULT_REPLY_WORDS = 16
SYSTEM_FINGERPRINT = "fp_fake_openai"
_ERROR_KINDS = {  # status -> (type, code)
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"), 404: ("invalid_request_error", "unknown_url"),
    405: ("invalid_request_error", "method_not_allowed"), 429: ("rate_limit_error", "rate_limit_exceeded"),
}


class ApiError(Exception):
    """An OpenAI-style error answer: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        err_type, default_code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "api_error", None))
        self.status, self.param = status, param
        self.body = {"error": {"message": message, "type": err_type, "param": param, "code": code or default_code}}

    def reply(self) -> FakeReply:
        return _json_response(self.body, self.status)


def message_text(message: dict) -> str:
    """The text of a message: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def count_prompt_tokens(messages: list[dict]) -> int:
    return sum(math.ceil(len(message_text(m).encode("utf-8")) / 4) + 3 for m in messages) + 3


def reply_words(messages: list[dict]) -> list[str]:
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    return ["echo:", *message_text(last_user).split()]


def _json_response(payload: Any, status: int = 200) -> FakeReply:
    return json_reply(payload, status, {"x-request-id": f"req_{uuid.uuid4().hex}"})


def _event_stream(events: Iterator[StreamItem]) -> FakeReply:
    return FakeReply(200, {"content-type": "text/event-stream", "cache-control": "no-cache",
                           "x-request-id": f"req_{uuid.uuid4().hex}"}, None, events)


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n"


def _header_int(request: FakeRequest, name: str) -> int | None:
    raw = request.header(name).strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ApiError(400, f"header {name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def validate_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "We could not parse the JSON body of your request: expected a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Invalid 'messages': expected a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"Invalid 'messages[{i}]': expected an object with a 'role'.", param=f"messages[{i}]")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise ApiError(400, "Invalid 'stream': expected a boolean.", param="stream")
    for key, maximum in (("n", 128), ("max_tokens", None), ("max_completion_tokens", None)):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1
                                  or (maximum is not None and value > maximum)):
            bound = f" and <= {maximum}" if maximum else ""
            raise ApiError(400, f"Invalid '{key}': expected an integer >= 1{bound}", param=key)
    return body


class FakeOpenAI:
    """A fake OpenAI upstream; `start()` it in a daemon thread or use it as a context manager.
    Served by lib.local.fake_http (one event loop, keep-alive, one send per answer), so a
    benchmark's CPU goes to what it measures."""

    def __init__(self, latency_ms: int = 0, chunk_delay_ms: int = 0, record_limit: int = 100,
                 log_requests: bool = False):
        self.latency_ms, self.chunk_delay_ms, self.log_requests = latency_ms, chunk_delay_ms, log_requests
        self._recorded: deque[dict] = deque(maxlen=record_limit)
        self._lock = threading.Lock()
        self._server: FakeHttpServer | None = None
        # test headers applied to every request that does not carry them itself
        self.default_headers: dict[str, str] = {}

    @property
    def requests(self) -> list[dict]:
        """A snapshot of the last requests: dicts with method, path, headers (lower-case keys), body."""
        with self._lock:
            return list(self._recorded)

    def clear_requests(self) -> None:
        with self._lock:
            self._recorded.clear()

    @property
    def base_url(self) -> str:
        if self._server is None or self._server.address is None:
            raise RuntimeError("the fake OpenAI server is not running")
        host, port = self._server.address
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = FakeHttpServer(self.handle)
        self._server.start(host, port)
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> FakeOpenAI:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8788) -> None:
        self._server = FakeHttpServer(self.handle)

        def ready() -> None:
            print(f"fake OpenAI listening on {self.base_url}", file=sys.stderr, flush=True)

        try:
            self._server.serve_forever(host, port, ready)
        finally:
            self._server = None

    def handle(self, request: FakeRequest) -> FakeReply:
        for name, value in self.default_headers.items():
            request.headers.setdefault(name.lower(), value)
        try:
            reply = self._dispatch(request)
        except ApiError as err:
            reply = err.reply()
        if self.log_requests:
            print(f"{request.method} {request.path} {reply.status}", file=sys.stderr, flush=True)
        return reply

    def _record(self, request: FakeRequest, body: Any) -> None:
        with self._lock:
            self._recorded.append({"method": request.method, "path": request.path, "body": body,
                                   "headers": dict(request.headers)})

    def _dispatch(self, request: FakeRequest) -> FakeReply:
        path = request.path.rstrip("/")
        if path in ("/v1/chat/completions", "/chat/completions"):
            if request.method != "POST":
                raise ApiError(405, f"Method {request.method} not allowed for {request.path}")
            return self._chat_completions(request)
        if path in ("/v1/embeddings", "/embeddings", "/v1/responses", "/responses"):
            return self._more(request, path.rsplit("/", 1)[-1])
        if path in ("/v1/models", "/models") and request.method == "GET":
            _require_auth(request)
            return _json_response({"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake-openai"} for m in MODELS]})
        raise ApiError(404, f"Unknown request URL: {request.method} {request.path}.")

    def _more(self, request: FakeRequest, endpoint: str) -> FakeReply:
        """POST /v1/embeddings and /v1/responses (lib.local.fake_openai_endpoints)."""
        if request.method != "POST":
            raise ApiError(405, f"Method {request.method} not allowed for {request.path}")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        self._record(request, body)
        return _delayed(self.latency_ms, lambda: self._more_reply(request, endpoint, body))

    def _more_reply(self, request: FakeRequest, endpoint: str, body: Any) -> FakeReply:
        _require_auth(request)
        status = _header_int(request, "x-fake-status")
        if status and status >= 400:
            raise ApiError(status, f"Injected error (x-fake-status: {status}).")
        try:
            if endpoint == "embeddings":
                return _json_response(more.embeddings(body))
            answer = more.Response(body)
        except more.BadInput as err:
            raise ApiError(400, str(err), param=err.param) from err
        if isinstance(body, dict) and body.get("stream"):
            # cut after that many deltas: the body ends there, without response.completed
            return _event_stream(iter(answer.events(_header_int(request, "x-fake-disconnect-after"))))
        return _json_response(answer.obj(True))

    def _chat_completions(self, request: FakeRequest) -> FakeReply:
        raw = request.body.decode("utf-8", "replace")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None  # recorded as raw text, answered with a 400 after auth
        self._record(request, body if body is not None else raw)
        delay_ms = self.latency_ms + (_header_int(request, "x-fake-delay-ms") or 0)
        return _delayed(delay_ms, lambda: self._completion_reply(request, body))

    def _completion_reply(self, request: FakeRequest, body: Any) -> FakeReply:
        _require_auth(request)
        status = _header_int(request, "x-fake-status")
        if status and status >= 400:
            raise ApiError(status, f"Injected error (x-fake-status: {status}).",
                           code=request.header("x-fake-error-code") or None)
        body = validate_body(body)
        disconnect_after = _header_int(request, "x-fake-disconnect-after")
        drop_usage = request.header("x-fake-drop-usage").lower() in ("1", "true", "yes")
        completion = _Completion(body, _header_int(request, "x-fake-cached-tokens") or 0,
                                 _header_int(request, "x-fake-reasoning-tokens") or 0)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            clean = request.header("x-fake-disconnect-mode", "abort").lower() == "clean"
            return _event_stream(self._stream(completion, include_usage, drop_usage, disconnect_after, clean))
        if disconnect_after is not None:
            return FakeReply(200, {}, None, iter([Cut()]))  # the connection ends without any answer
        return _json_response(completion.full_object(include_usage=not drop_usage))

    def _stream(self, completion: _Completion, include_usage: bool, drop_usage: bool,
                disconnect_after: int | None, clean: bool) -> Iterator[StreamItem]:
        for sent, chunk in enumerate(completion.chunks(include_usage)):
            if disconnect_after is not None and sent >= disconnect_after:
                yield Cut(clean)
                return
            if sent and self.chunk_delay_ms:
                yield Pause(self.chunk_delay_ms / 1000)
            yield _sse(chunk)
        if drop_usage:
            yield Cut(clean)
            return
        if include_usage:
            yield _sse(completion.chunk(choices=[], usage=completion.usage))
        yield b"data: [DONE]\n\n"


def _delayed(delay_ms: int, build: Callable[[], FakeReply]) -> FakeReply:
    """The reply `build` makes (an OpenAI error included), sent after `delay_ms`."""
    try:
        reply = build()
    except ApiError as err:
        reply = err.reply()
    reply.delay = delay_ms / 1000
    return reply


class _Completion:
    """The deterministic answer to one validated request."""

    def __init__(self, body: dict, cached_tokens: int, reasoning_tokens: int):
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body["model"]
        self.n = body.get("n") or 1
        limit = body.get("max_completion_tokens")
        limit = body.get("max_tokens") if limit is None else limit
        words = reply_words(body["messages"])
        reasoning = min(reasoning_tokens, limit) if limit is not None else reasoning_tokens
        budget = DEFAULT_REPLY_WORDS if limit is None else limit - reasoning
        self.words = words[:budget]
        self.finish_reason = "length" if limit is not None and len(words) > budget else "stop"
        prompt = count_prompt_tokens(body["messages"])
        completion = (len(self.words) + reasoning) * self.n
        self.usage = {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": min(cached_tokens, prompt), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning * self.n, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def full_object(self, include_usage: bool = True) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(self.words), "refusal": None,
                                   "annotations": []}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": i, "message": dict(message), "logprobs": None,
                             "finish_reason": self.finish_reason} for i in range(self.n)],
                "usage": self.usage if include_usage else None,
                "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT}

    def chunk(self, choices: list[dict], **extra: Any) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices, **extra}

    def chunks(self, include_usage: bool) -> Iterator[dict]:
        """Role chunk, one chunk per word, finish chunk (each per choice); usage null if asked."""
        extra = {"usage": None} if include_usage else {}
        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(self.words)]
        for delta in deltas:
            for index in range(self.n):
                yield self.chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}], **extra)
        for index in range(self.n):
            final = {"index": index, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}
            yield self.chunk([final], **extra)


def _require_auth(request: FakeRequest) -> None:
    scheme, _, token = request.header("authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-openai", description="Run a fake OpenAI Chat Completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before each response starts")
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="delay between streamed chunks")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    server = FakeOpenAI(latency_ms=args.latency_ms, chunk_delay_ms=args.chunk_delay_ms, log_requests=not args.quiet)
    try:
        server.serve_forever(args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
