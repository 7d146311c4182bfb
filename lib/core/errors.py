"""One error hierarchy for every function, and its one mapping to HTTP JSON errors.

A function raises a `TollboothError` subclass; `lib.core.http` turns it into
`{"error": {"type", "message"}}` with the class's status. Database errors are mapped
from their SQLSTATE by `from_sqlstate`, with the same rules PostgREST uses, so both
database transports fail the same way.
"""
from __future__ import annotations


class TollboothError(Exception):
    status = 500
    type = "internal_error"
    # a database error's DETAIL, when it had one (SQL may say more there: see lib.chat.metering)
    detail: str | None = None

    def __init__(self, message: str, *, type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if type:
            self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"type": self.type, "message": self.message}}


class BadRequest(TollboothError):
    status, type = 400, "invalid_request_error"


class Unauthorized(TollboothError):
    status, type = 401, "authentication_error"


class PaymentRequired(TollboothError):
    status, type = 402, "insufficient_credits"


class Forbidden(TollboothError):
    status, type = 403, "permission_error"


class NotFound(TollboothError):
    status, type = 404, "not_found"


class MethodNotAllowed(TollboothError):
    status, type = 405, "method_not_allowed"


class Conflict(TollboothError):
    status, type = 409, "conflict"


class Gone(TollboothError):
    status, type = 410, "gone"


class PayloadTooLarge(TollboothError):
    status, type = 413, "request_too_large"


class HeadersTooLarge(TollboothError):
    status, type = 431, "request_headers_too_large"


class Unprocessable(TollboothError):
    status, type = 422, "unprocessable_entity"


class RateLimited(TollboothError):
    status, type = 429, "rate_limit_error"


class UpstreamError(TollboothError):
    status, type = 502, "upstream_error"


class UpstreamTimeout(TollboothError):
    status, type = 504, "upstream_timeout"


class ServiceUnavailable(TollboothError):
    """The database (or another dependency) is down or busy: retry shortly. Carries
    `retry-after` so that SDK clients back off instead of hammering."""

    status, type = 503, "service_unavailable"
    retry_after_seconds = 1

    def __init__(self, message: str, *, type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, type=type, headers=headers)
        if self.retry_after_seconds:
            self.headers.setdefault("retry-after", str(self.retry_after_seconds))


class MissingSetting(ServiceUnavailable):
    type = "missing_setting"
    retry_after_seconds = 0  # a configuration problem: retrying soon will not help

    def __init__(self, name: str, problem: str = "which is not configured"):
        super().__init__(f"this route needs the {name} setting, {problem}")
        self.setting = name


class InvalidSetting(MissingSetting):
    """A setting a route needs is set but cannot be read: the same 503 as a missing one."""

    type = "invalid_setting"

    def __init__(self, name: str, expected: str):
        super().__init__(name, f"which is not valid ({expected})")


_BY_STATUS: dict[int, type[TollboothError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, PaymentRequired, Forbidden, NotFound, Conflict, Gone,
                Unprocessable, RateLimited, UpstreamError, ServiceUnavailable, UpstreamTimeout)
}


# SQLSTATEs that mean "the database is going away or busy; the same call may succeed
# shortly": connection exceptions (08), insufficient resources (53), operator
# intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
# 57014 statement timeout), lock not available (55P03, lock_timeout), serialization
# failure and deadlock (40001, 40P01).
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03", "40001", "40P01"})


def is_unavailable_sqlstate(sqlstate: str | None) -> bool:
    code = (sqlstate or "").upper()
    return code.startswith("08") or code.startswith("53") or code in TRANSIENT_SQLSTATES


def status_for_sqlstate(sqlstate: str | None) -> int:
    """The HTTP status PostgREST gives a SQLSTATE (authenticated caller)."""
    code = (sqlstate or "").upper()
    if code.startswith("PT") and code[2:].isdigit():
        return int(code[2:])
    if code == "42501" or code.startswith("28") or code.startswith("0L") or code.startswith("0P"):
        return 403
    if code in ("23503", "23505"):
        return 409
    if code in ("42883", "42P01"):
        return 404
    if is_unavailable_sqlstate(code):
        return 503
    if code == "P0001" or code.startswith("22") or code.startswith("23"):
        return 400
    return 500


def from_sqlstate(sqlstate: str | None, message: str, detail: str | None = None) -> TollboothError:
    err = _from_sqlstate(sqlstate, message)
    err.detail = detail
    return err


def _from_sqlstate(sqlstate: str | None, message: str) -> TollboothError:
    status = status_for_sqlstate(sqlstate)
    cls = _BY_STATUS.get(status)
    if cls is None:
        err = TollboothError(message if status < 500 else "database error")
        err.status = status
        return err
    if status >= 500 and cls is not ServiceUnavailable:
        return TollboothError("database error")
    if cls is ServiceUnavailable:
        return ServiceUnavailable("the database is unavailable or busy; retry shortly")
    return cls(message)
