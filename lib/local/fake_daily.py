"""A local, in-memory fake of Daily's REST API (no database), for `make dev` and tests.

`/v1/rooms` (POST, GET, DELETE `/v1/rooms/<name>`), `/v1/meetings?room=`,
`/v1/recordings?room_name=` and `/v1/recordings/<id>/access-link`,
`/v1/transcript?roomId=` and `/v1/transcript/<id>/access-link`, shaped as Daily's
reference documents them; errors are Daily's `{"error", "info"}`. Every request needs
`Authorization: Bearer <anything>`.

`POST /v1/_fake/rooms/<name>/simulate` plays a short meeting in that room (two
participants) and, when `webhook_url` and `webhook_secret` are set, delivers its
webhooks signed as Daily signs them; the sessions it played are then listed by
`/v1/meetings`. Tests seed state with `add_session`, `add_recording`,
`add_transcript`, and make the next call fail with `fail_next`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

import httpx
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(status: int, kind: str, info: str) -> Response:
    return _json({"error": kind, "info": info}, status)


def sign(raw: bytes, b64_secret: str, ts: str) -> str:
    key = base64.b64decode(b64_secret)
    return base64.b64encode(hmac.new(key, ts.encode() + b"." + raw, hashlib.sha256).digest()).decode()


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class FakeDaily:
    def __init__(self, webhook_url: str | None = None, webhook_secret: str | None = None):
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.rooms: dict[str, dict] = {}
        self.sessions: dict[str, list[dict]] = {}
        self.recordings: list[dict] = []
        self.transcripts: list[dict] = []
        self.requests: list[tuple[str, str, Any]] = []
        self._fail: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None

    # -- test hooks -------------------------------------------------------------------

    def fail_next(self, status: int = 500, info: str = "something went wrong", kind: str = "server-error") -> None:
        self._fail.append((status, kind, info))

    def add_session(self, room: str, start: float, duration: float, participants: list[dict],
                    ongoing: bool = False) -> dict:
        session = {"id": str(uuid.uuid4()), "room": room, "start_time": int(start), "duration": int(duration),
                   "ongoing": ongoing, "max_participants": len(participants), "participants": participants}
        self.sessions.setdefault(room, []).append(session)
        return session

    def add_recording(self, room: str, start: float, duration: float, status: str = "finished") -> dict:
        rec = {"id": str(uuid.uuid4()), "room_name": room, "start_ts": int(start), "status": status,
               "max_participants": 2, "duration": int(duration), "s3key": f"fake/{room}/{int(start)}.mp4",
               "tracks": []}
        self.recordings.append(rec)
        return rec

    def add_transcript(self, room_id: str, duration: float, status: str = "t_finished") -> dict:
        t = {"transcriptId": str(uuid.uuid4()), "domainId": "fake-domain", "roomId": room_id,
             "mtgSessionId": str(uuid.uuid4()), "status": status, "duration": int(duration)}
        self.transcripts.append(t)
        return t

    # -- the server ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Daily server is not running")
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(host, port, self.wsgi_app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, name="fake-daily", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeDaily:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wsgi_app(self, environ, start_response):
        request = Request(environ)
        return self.handle(request)(environ, start_response)

    def handle(self, request: Request) -> Response:
        body = request.get_json(silent=True) if request.data else None
        with self._lock:
            self.requests.append((request.method, request.path, body))
            failure = self._fail.pop(0) if self._fail else None
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "authentication-error", "missing or invalid API key")
        if failure:
            return _error(*failure)
        parts = request.path.strip("/").split("/")[1:]  # after v1
        args = request.args
        if parts == ["rooms"] and request.method == "POST":
            return self._create_room(body or {})
        if len(parts) == 2 and parts[0] == "rooms":
            room = self.rooms.get(parts[1])
            if room is None:
                return _error(404, "not-found", f"room {parts[1]} was not found")
            if request.method == "DELETE":
                del self.rooms[parts[1]]
                return _json({"deleted": True, "name": parts[1]})
            return _json(room)
        if parts == ["meetings"]:
            return self._list(self.sessions.get(args.get("room", ""), []))
        if parts == ["recordings"]:
            return self._list([r for r in self.recordings if r["room_name"] == args.get("room_name")])
        if parts == ["transcript"]:
            return self._list([t for t in self.transcripts if t["roomId"] == args.get("roomId")])
        if len(parts) == 3 and parts[2] == "access-link":
            if parts[0] == "recordings" and any(r["id"] == parts[1] for r in self.recordings):
                return _json({"download_link": f"https://fake-daily.local/recordings/{parts[1]}.mp4",
                              "expires": int(time.time()) + 3600})
            if parts[0] == "transcript" and any(t["transcriptId"] == parts[1] for t in self.transcripts):
                return _json({"transcriptId": parts[1], "link": f"https://fake-daily.local/transcripts/{parts[1]}.vtt"})
            return _error(404, "not-found", f"{parts[0]} {parts[1]} was not found")
        if parts[:2] == ["_fake", "rooms"] and len(parts) == 4 and parts[3] == "simulate":
            return _json({"events": self.simulate(parts[2])})
        return _error(404, "not-found", f"no route for {request.method} {request.path}")

    def _list(self, items: list[dict]) -> Response:
        return _json({"total_count": len(items), "data": items})

    def _create_room(self, body: dict) -> Response:
        name = body.get("name") or uuid.uuid4().hex[:12]
        if name in self.rooms:
            return _error(400, "invalid-request-error", f"a room named {name} already exists")
        if body.get("privacy", "public") not in ("public", "private"):
            return _error(400, "invalid-request-error", "privacy must be public or private")
        room = {"id": str(uuid.uuid4()), "name": name, "api_created": True, "privacy": body.get("privacy", "public"),
                "url": f"https://fake.daily.co/{name}", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                                                    time.gmtime()),
                "config": dict(body.get("properties") or {})}
        self.rooms[name] = room
        return _json(room)

    # -- a played meeting -------------------------------------------------------------

    def simulate(self, room: str, minutes: float = 5) -> list[dict]:
        """Events of a short meeting that just ended in `room`, recorded as a session
        and delivered to the webhook URL when one is set."""
        end = time.time()
        start = end - minutes * 60
        meeting_id = str(uuid.uuid4())
        people = [("host", True, start + 5), ("guest", False, start + 30)]
        events: list[dict] = [self._event("meeting.started", {"start_ts": start, "meeting_id": meeting_id,
                                                               "room": room}, start)]
        listed = []
        for name, owner, joined in people:
            sid = str(uuid.uuid4())
            base = {"joined_at": joined, "session_id": sid, "room": room, "user_id": f"{name}-{sid[:4]}",
                    "user_name": name.title(), "owner": owner, "will_eject_at": None, "permissions": {}}
            events.append(self._event("participant.joined", base, joined))
            left = end - 10
            events.append(self._event("participant.left", {**base, "duration": round(left - joined)}, left))
            listed.append({"user_id": base["user_id"], "participant_id": sid, "user_name": base["user_name"],
                           "join_time": int(joined), "duration": round(left - joined)})
        events.append(self._event("meeting.ended", {"start_ts": int(start), "end_ts": end, "meeting_id": meeting_id,
                                                    "room": room}, end))
        self.add_session(room, start, end - start, listed)
        if self.webhook_url and self.webhook_secret:
            for evt in events:
                raw = json.dumps(evt).encode()
                ts = str(int(time.time()))
                httpx.post(self.webhook_url, content=raw, timeout=10, headers={
                    "Content-Type": "application/json", "X-Webhook-Timestamp": ts,
                    "X-Webhook-Signature": sign(raw, self.webhook_secret, ts)})
        return events

    @staticmethod
    def _event(kind: str, payload: dict, at: float) -> dict:
        return {"version": "1.0.0", "type": kind, "id": f"fake-{kind}-{uuid.uuid4()}", "payload": payload,
                "event_ts": at}
