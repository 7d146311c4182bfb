"""Run SQL exactly as PostgREST runs a request, for `tollbooth sql --as` and the admin
commands that go through the frontend's RPCs (`keys`, `credits`, `usage`).

PostgREST, for every request, opens one transaction, sets the role and the JWT's
claims transaction-locally, runs the query and commits. `Session.run` does the same
with a signed-in user's claims (`sub`, `email`, `role`, `aud`) or the anonymous role,
and rolls back unless the session was opened with `commit=True`, so trying an RPC
changes nothing by default.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg


class SessionError(RuntimeError):
    """A person, organization or statement the session cannot use; the message says which."""


@dataclass(frozen=True)
class Identity:
    role: str  # 'authenticated' or 'anon'
    claims: dict[str, Any]
    label: str  # for messages: the email, or "anon"

    @property
    def user_id(self) -> str | None:
        sub = self.claims.get("sub")
        return str(sub) if sub else None


ANON = Identity("anon", {"role": "anon"}, "anon")


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    status: str  # the command tag, e.g. "SELECT 2", "UPDATE 0"
    rowcount: int = -1
    notices: list[str] = field(default_factory=list)


def signed_in(conn: psycopg.Connection, email: str) -> Identity:
    """The claims Supabase Auth puts in a user's access token (what RLS reads)."""
    row = conn.execute("select id, email from auth.users where lower(email) = lower(%s)", (email,)).fetchone()
    if not row:
        raise SessionError(f"no user with email {email}")
    uid, mail = row
    return Identity("authenticated", {"sub": str(uid), "email": mail, "role": "authenticated",
                                      "aud": "authenticated"}, mail)


def org_by_slug(conn: psycopg.Connection, slug_or_id: str) -> tuple[uuid.UUID, str]:
    """(id, slug) of an organization given its slug (or id)."""
    row = conn.execute("select id, slug from public.organizations where slug = %s or id::text = %s",
                       (slug_or_id, slug_or_id)).fetchone()
    if not row:
        raise SessionError(f"no organization with slug {slug_or_id}")
    return row[0], row[1]


def owner_email(conn: psycopg.Connection, org_id: uuid.UUID) -> str:
    row = conn.execute(
        "select u.email from public.organization_members m join auth.users u on u.id = m.user_id "
        "where m.org_id = %s and m.role = 'owner' order by m.created_at limit 1", (org_id,)).fetchone()
    if not row:
        raise SessionError(f"organization {org_id} has no owner")
    return str(row[0])


def personal_org(conn: psycopg.Connection, email: str) -> tuple[uuid.UUID, str]:
    row = conn.execute("select o.id, o.slug from public.organizations o join auth.users u "
                       "on u.id = o.personal_owner_id where lower(u.email) = lower(%s)", (email,)).fetchone()
    if not row:
        raise SessionError(f"{email} has no personal organization")
    return row[0], row[1]


class Session:
    """One connection (as the database owner, like PostgREST's authenticator) that runs
    each statement as its own PostgREST request for `identity`."""

    def __init__(self, dsn: str, identity: Identity, *, commit: bool = False):
        self.conn = psycopg.connect(dsn)
        self.identity, self.commit = identity, commit
        self._notices: list[str] = []
        self.conn.add_notice_handler(lambda d: self._notices.append(d.message_primary or ""))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def run(self, sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> Result:
        """One request: begin; set role and claims (local); the statement; commit or roll back."""
        notices = self._notices = []
        try:
            with self.conn.transaction(force_rollback=not self.commit), self.conn.cursor() as cur:
                cur.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                            (self.identity.role, json.dumps(self.identity.claims)))
                cur.execute(sql, params)
                columns = [c.name for c in cur.description] if cur.description else []
                rows = cur.fetchall() if cur.description else []
                return Result(columns, rows, cur.statusmessage or "", cur.rowcount, notices)
        except psycopg.Error as exc:
            diag = exc.diag
            detail = f" ({diag.sqlstate})" if diag.sqlstate else ""
            raise SessionError(f"{diag.message_primary or exc}{detail}") from exc

    def one(self, sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> Any:
        """The first column of the first row (an RPC's answer)."""
        result = self.run(sql, params)
        return result.rows[0][0] if result.rows else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, Decimal):
        return format(value.normalize() if value == value.to_integral() else value, "f")
    return str(value)


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """psql's aligned format: a header, a rule, the rows, `(N rows)`."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float, Decimal)) or r[i] is None for r in rows)
               for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return " | ".join(v.rjust(w) if num else v.ljust(w)
                          for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [" | ".join(c.center(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
           "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)


def split_statements(text: str) -> list[str]:
    """Statements separated by `;` (outside quotes, dollar quotes and comments)."""
    out, buf, i, n = [], [], 0, len(text)
    quote: str | None = None
    while i < n:
        ch = text[i]
        if quote:
            if text.startswith(quote, i):
                buf.append(quote)
                i += len(quote)
                quote = None
                continue
            buf.append(ch)
            i += 1
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "$":
            j = text.find("$", i + 1)
            tag = text[i:j + 1] if j != -1 else ""
            if tag and (len(tag) == 2 or tag[1:-1].replace("_", "").isalnum()):
                quote = tag
                buf.append(tag)
                i += len(tag)
                continue
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j == -1 else j
            continue
        elif ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return out
