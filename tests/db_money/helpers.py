"""Helpers for the credit ledger, API key and usage tests (database level).

Everything here reads and writes as superuser unless it says otherwise; requests as a
role go through tests.pg (as_user / as_anon / as_service), exactly as PostgREST runs them.

The `cast` and `api` fixtures are defined here (this folder has no conftest); a test
module imports them by name: `from tests.db_money.helpers import api, cast  # noqa: F401`.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from decimal import ROUND_CEILING, Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.pg import (
    Person,
    Request,
    as_anon,
    as_service,
    as_user,
    ban,
    make_team,
    make_user,
    raises_sqlstate,
    request_for,
    scalar,
)

ACME = uuid.UUID("00000000-0000-4000-8000-00000000ac3e")
ALICE = uuid.UUID("00000000-0000-4000-8000-00000000a11c")  # Acme's owner (seed)
KEY_RE = re.compile(r"^xan_[0-9a-f]{64}$")

# Section - reading as superuser


@contextmanager
def fails(conn: psycopg.Connection, sqlstate: str, match: str | None = None):
    """Like raises_sqlstate, for statements run directly on `conn` (as superuser): the
    statement runs in a savepoint, so the test's transaction stays usable after the error."""
    with raises_sqlstate(sqlstate, match):
        with conn.transaction():
            yield


def rows(conn: psycopg.Connection, sql: str, params=None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def one(conn: psycopg.Connection, sql: str, params=None) -> dict | None:
    found = rows(conn, sql, params)
    return found[0] if found else None


def account(conn, org) -> dict:
    acct = one(conn, "select * from public.credit_accounts where org_id = %s", (org,))
    assert acct is not None, f"organization {org} has a credit account"
    return acct


def balance(conn, org) -> int:
    return account(conn, org)["balance"]


def reserved(conn, org) -> int:
    return account(conn, org)["reserved"]


def ledger(conn, org, request_id: str | None = None) -> list[dict]:
    if request_id is None:
        return rows(conn, "select * from public.credit_ledger where org_id = %s order by id", (org,))
    return rows(conn, "select * from public.credit_ledger where org_id = %s and request_id = %s order by id",
                (org, request_id))


def grants(conn, org) -> list[dict]:
    return rows(conn, "select * from public.credit_grants where org_id = %s order by id", (org,))


def grant(conn, grant_id) -> dict:
    g = one(conn, "select * from public.credit_grants where id = %s", (grant_id,))
    assert g is not None, f"grant {grant_id} exists"
    return g


def reservation(conn, request_id) -> dict | None:
    return one(conn, "select * from public.credit_reservations where request_id = %s", (request_id,))


def money_snapshot(conn, org) -> dict:
    """Every credit row of one organization, to prove that a refused call changed nothing."""
    return {
        "account": rows(conn, "select balance, reserved, period_start, period_end from public.credit_accounts "
                              "where org_id = %s", (org,)),
        "grants": rows(conn, "select id, remaining, expired_at from public.credit_grants where org_id = %s order by id",
                       (org,)),
        "ledger": rows(conn, "select id from public.credit_ledger where org_id = %s order by id", (org,)),
        "reservations": rows(conn, "select request_id, status, charged from public.credit_reservations "
                                   "where org_id = %s order by request_id", (org,)),
    }


def month_bounds(conn) -> tuple[datetime, datetime]:
    """The current calendar month (UTC) at the transaction's now(), computed in Python."""
    now = scalar(conn, "select now()").astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


# Section - the invariant


def assert_consistent(conn, org) -> None:
    """The ledger invariant of one organization:
    sum(credit_ledger.amount) = credit_accounts.balance, reserved = the open reservations,
    balance >= 0, and every ledger row's balance_after is the running sum up to it."""
    acct = account(conn, org)
    entries = ledger(conn, org)
    total = sum(e["amount"] for e in entries)
    assert acct["balance"] == total, f"org {org}: balance {acct['balance']} != ledger sum {total}"
    open_holds = scalar(conn, "select coalesce(sum(amount), 0) from public.credit_reservations "
                              "where org_id = %s and status = 'open'", (org,))
    assert acct["reserved"] == open_holds, f"org {org}: reserved {acct['reserved']} != open reservations {open_holds}"
    assert acct["balance"] >= 0, f"org {org}: balance {acct['balance']} went below zero"
    assert acct["reserved"] >= 0, f"org {org}: reserved {acct['reserved']} went below zero"
    running = 0
    for e in entries:
        running += e["amount"]
        assert e["balance_after"] == running, \
            f"org {org}: ledger row {e['id']} ({e['kind']}) has balance_after {e['balance_after']}, " \
            f"running sum {running}"
    closes = rows(conn, "select l.request_id, count(*) as n from public.credit_ledger l "
                        "where l.org_id = %s and l.kind in ('settlement', 'release') group by 1 having count(*) > 1",
                  (org,))
    assert closes == [], f"org {org}: reservations closed more than once: {closes}"


def assert_grants_cover(conn, org) -> None:
    """The grant buckets account for the balance: with nothing reserved, what the
    organization may spend is exactly what its live (not expired) grants still hold."""
    acct = account(conn, org)
    live = scalar(conn, "select coalesce(sum(remaining), 0) from public.credit_grants "
                        "where org_id = %s and expired_at is null", (org,))
    assert acct["balance"] + acct["reserved"] == live, \
        f"org {org}: balance {acct['balance']} + reserved {acct['reserved']} != what live grants hold ({live})"


# Section - moving credits as superuser


def set_balance(conn, org, credits: int) -> None:
    """Expire every grant, then grant exactly `credits` (through the ledger), as the chat tests do."""
    conn.execute("select private.expire_grant(id, 'test reset') from public.credit_grants where org_id = %s", (org,))
    if credits:
        conn.execute("select private.grant_credits(%s, 'adjustment', %s, null, null, 'test balance')", (org, credits))
    assert balance(conn, org) == credits, f"balance set to {credits}"


def reserve(conn, org, request_id: str, amount: int, ttl_seconds: int | None = None) -> dict:
    if ttl_seconds is None:
        return scalar(conn, "select public.reserve_credits(org_id := %s, request_id := %s, amount := %s)",
                      (org, request_id, amount))
    return scalar(conn, "select public.reserve_credits(org_id := %s, request_id := %s, amount := %s, "
                        "ttl_seconds := %s)", (org, request_id, amount, ttl_seconds))


def settle(conn, request_id: str, charge: int) -> dict:
    return scalar(conn, "select public.settle_credits(request_id := %s, charge := %s)", (request_id, charge))


def release(conn, request_id: str, reason: str | None = None) -> dict:
    return scalar(conn, "select public.release_credits(request_id := %s, reason := %s)", (request_id, reason))


def add_grant(conn, org, amount: int, kind: str = "purchase", expires_at=None, external_id: str | None = None) -> int:
    return scalar(conn, "select private.grant_credits(%s, %s::public.credit_grant_kind, %s, %s, %s, null)",
                  (org, kind, amount, expires_at, external_id))


# Section - API keys and the chat proxy's calls


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def create_key(conn, person: Person, org, name: str = "test key", **kw) -> dict:
    """create_api_key as `person` (PostgREST-style); returns its JSON result."""
    args = "".join(f", {k} := %({k})s" for k in kw)
    row = as_user(conn, person).one(f"select public.create_api_key(org_id := %(org)s, name := %(name)s{args}) as k",
                                    {"org": org, "name": name, **kw})
    assert row and row["k"]["key"], "create_api_key returned the plaintext key"
    return row["k"]


def begin(conn, request_id: str, model: str = "gpt-4o-mini", prompt_tokens_bound: int = 1000, *,
          key: str | None = None, **kw) -> dict:
    """public.begin_chat_request as superuser; `key` is the plaintext, hashed in SQL."""
    params = {"request_id": request_id, "model": model, "prompt_tokens_bound": prompt_tokens_bound, **kw}
    named = [f"{k} := %({k})s" for k in params]
    if key is not None:
        named.append("key_hash := sha256(convert_to(%(key)s, 'UTF8'))")
        params["key"] = key
    return scalar(conn, f"select public.begin_chat_request({', '.join(named)})", params)


def finish(conn, request_id: str, org, model: str = "gpt-4o-mini", *, status: str = "succeeded",
           http_status: int = 200, endpoint: str = "/v1/chat/completions", **kw) -> dict:
    params = {"request_id": request_id, "status": status, "http_status": http_status, "endpoint": endpoint,
              "org_id": org, "model": model, **kw}
    named = ", ".join(f"{k} := %({k})s" for k in params)
    return scalar(conn, f"select public.finish_chat_request({named})", params)


def price(conn, model: str) -> dict:
    p = one(conn, "select * from public.model_prices where model = %s", (model,))
    assert p is not None, f"model {model} has a price"
    return p


def credits_per_usd(conn) -> Decimal:
    return Decimal(scalar(conn, "select value from private.app_settings where key = 'credits_per_usd'"))


def ceil(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_CEILING))


# Section - personas


@dataclass(frozen=True)
class Cast:
    owner: Person
    admin: Person
    member: Person
    outsider: Person
    banned: Person
    team: uuid.UUID
    other_team: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID


PERSONAS = ("owner", "admin", "member", "outsider", "banned")


def add_project(conn, org_id, name: str, by: Person) -> uuid.UUID:
    return conn.execute("insert into public.projects (org_id, name, created_by) values (%s, %s, %s) returning id",
                        (org_id, name, by.id)).fetchone()[0]


@pytest.fixture
def cast(conn) -> Cast:
    """`owner`, `admin`, `member` of the team org `team`; `banned` is an admin of `team`
    whose profile is banned; `outsider` owns `other_team` and nothing else."""
    owner, admin, member = make_user(conn, "owner"), make_user(conn, "admin"), make_user(conn, "member")
    outsider, banned = make_user(conn, "outsider"), make_user(conn, "banned")
    team = make_team(conn, owner, admin=admin, member=member, admin2=banned)
    other_team = make_team(conn, outsider)
    ban(conn, banned, "role")
    return Cast(owner=owner, admin=admin, member=member, outsider=outsider, banned=banned,
                team=team, other_team=other_team,
                project=add_project(conn, team, "Team project", owner),
                other_project=add_project(conn, other_team, "Other project", outsider))


@pytest.fixture
def api(conn, cast):
    """`api("member")` is a request as that persona; also "anon" and "service"."""
    return lambda who: request_for(conn, cast, who)

