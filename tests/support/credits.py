"""The credit ledger as superuser: reading accounts, grants, the ledger and reservations;
moving credits (reserve, settle, release, grants); and the ledger invariant
(`assert_consistent`) that every suite touching money checks.

Requests as a role go through tests.support.pg (as_user / as_anon / as_service), exactly
as PostgREST runs them."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.support.pg import one, rows, scalar

ACME = uuid.UUID("00000000-0000-4000-8000-00000000ac3e")
ALICE = uuid.UUID("00000000-0000-4000-8000-00000000a11c")  # Acme's owner (seed)

# Section - reading as superuser


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


def plan_grants(conn, org) -> list[dict]:
    return [g for g in grants(conn, org) if g["kind"] == "plan"]


def start_plan_period(conn, org, plan: str, start, end):
    return scalar(conn, "select private.start_plan_period(%s, %s, %s, %s)", (org, plan, start, end))


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
