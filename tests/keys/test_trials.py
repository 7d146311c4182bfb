"""Trials (issue 12): start_trial, one active per person and no farming, cancel, expiry
(at the first call and by the lifecycle job) with the trial credits expiring through the
ledger, conversion by a Stripe subscription, and RLS on public.trials."""
from __future__ import annotations

import json

import pytest

from tests.support.credits import assert_consistent, balance, ledger
from tests.support.metering import begin, create_key
from tests.support.personas import make_user
from tests.support.pg import as_anon, as_service, as_user, fails, one, raises_sqlstate, scalar
from tests.support.stripe import apply, catalogue, customer_event, new_id, subscription_event


def start(conn, person, slug: str, tier: str = "standard", name: str = "Trial") -> dict:
    return as_user(conn, person).one("select public.start_trial(%s, %s, %s) as t", (name, slug, tier))["t"]


def setting(conn, key: str) -> int:
    return int(scalar(conn, "select value from private.app_settings where key = %s", (key,)))


def trial(conn, trial_id) -> dict:
    return one(conn, "select * from public.trials where id = %s", (trial_id,))


def refused_trial(conn, key: str) -> dict:
    try:
        with conn.transaction():
            begin(conn, "after-trial", key=key, completion_tokens_limit=5)
    except Exception as exc:  # psycopg.Error
        assert exc.sqlstate == "PT401", exc  # type: ignore[attr-defined]
        return json.loads(exc.diag.message_detail)  # type: ignore[attr-defined]
    raise AssertionError("a key of an ended trial was accepted")


@pytest.mark.parametrize("tier", ["standard", "enterprise"])
def test_start_trial_creates_the_workspace_with_its_tier_credits(conn, tier):
    alice = make_user(conn, "alice")
    t = start(conn, alice, f"alice-{tier}", tier)
    assert t["status"] == "active" and t["tier"] == tier and t["owner_id"] == str(alice.id)
    org = t["org_id"]
    assert one(conn, "select role from public.organization_members where org_id = %s and user_id = %s",
               (org, alice.id))["role"] == "owner"
    assert balance(conn, org) == setting(conn, f"trial_{tier}_credits")
    days = scalar(conn, "select extract(day from expires_at - created_at) from public.trials where id = %s", (t["id"],))
    assert int(days) == setting(conn, f"trial_{tier}_days")
    assert_consistent(conn, org)


@pytest.mark.parametrize("args, sqlstate", [(("T", "ok-slug", "gold"), "PT400"), (("", "ok-slug", "standard"), "PT400"),
                                            (("T", "Bad Slug", "standard"), "PT400")])
def test_bad_input(conn, args, sqlstate):
    with raises_sqlstate(sqlstate):
        as_user(conn, make_user(conn, "bob")).one("select public.start_trial(%s, %s, %s)", args)


def test_one_active_trial_per_person_and_no_farming(conn):
    alice = make_user(conn, "alice", email="alice@example.test")
    t = start(conn, alice, "alice-one")
    with raises_sqlstate("PT409", "active trial"):
        start(conn, alice, "alice-two")
    as_user(conn, alice)("select public.cancel_trial(%s)", (t["id"],))
    with raises_sqlstate("PT429", "trials"):
        start(conn, alice, "alice-three")
    # the same person with another account (a +tag of the same address) gets no new trial either
    again = make_user(conn, "alice2", email="Alice+again@example.test")
    with raises_sqlstate("PT429", "trials"):
        start(conn, again, "alice-four")


def test_slug_taken_is_409(conn):
    start(conn, make_user(conn, "a"), "taken-slug")
    with raises_sqlstate("PT409", "taken"):
        start(conn, make_user(conn, "b"), "taken-slug")


def test_cancel_stops_keys_and_expires_trial_credits(conn):
    alice = make_user(conn, "alice")
    t = start(conn, alice, "alice-cancel")
    key = create_key(conn, alice, t["org_id"])["key"]
    assert begin(conn, "in-trial", key=key, completion_tokens_limit=5)
    out = as_user(conn, alice).one("select public.cancel_trial(%s) as t", (t["id"],))["t"]
    assert out["status"] == "cancelled" and out["cancelled_at"]
    assert refused_trial(conn, key)["type"] == "trial_expired"
    rows = [r for r in ledger(conn, t["org_id"]) if r["kind"] == "expiry"]
    assert rows and balance(conn, t["org_id"]) == 0, "what was left of the trial credits expired"
    with raises_sqlstate("PT409"):
        as_user(conn, alice)("select public.cancel_trial(%s)", (t["id"],))
    assert_consistent(conn, t["org_id"])


@pytest.mark.parametrize("who", ["stranger", "member"])
def test_only_the_owner_cancels(conn, who):
    alice = make_user(conn, "alice")
    t = start(conn, alice, "alice-guard")
    other = make_user(conn, who)
    if who == "member":
        conn.execute("insert into public.organization_members (org_id, user_id, role) values (%s, %s, 'member')",
                     (t["org_id"], other.id))
    with raises_sqlstate("PT404" if who == "stranger" else "42501"):
        as_user(conn, other)("select public.cancel_trial(%s)", (t["id"],))
    assert trial(conn, t["id"])["status"] == "active"


def test_expiry_at_the_first_call_and_by_the_lifecycle_job(conn):
    alice = make_user(conn, "alice")
    t = start(conn, alice, "alice-expire")
    key = create_key(conn, alice, t["org_id"])["key"]
    conn.execute("update public.trials set expires_at = now() - interval '1 second' where id = %s", (t["id"],))
    assert refused_trial(conn, key)["type"] == "trial_expired"
    assert as_service(conn).one("select public.expire_trials() as r")["r"] == {"expired_trials": 1}
    ended = trial(conn, t["id"])
    assert ended["status"] == "expired" and ended["expired_at"] is not None
    assert balance(conn, t["org_id"]) == 0 and any(r["kind"] == "expiry" for r in ledger(conn, t["org_id"]))
    assert as_service(conn).one("select public.expire_trials() as r")["r"] == {"expired_trials": 0}, "once"
    assert_consistent(conn, t["org_id"])


def test_expire_trials_is_for_the_service_role(conn):
    with raises_sqlstate("42501"):
        as_user(conn, make_user(conn, "alice"))("select public.expire_trials()")


def test_an_active_stripe_subscription_converts_the_trial_and_keys_keep_working(conn):
    alice = make_user(conn, "alice")
    t = start(conn, alice, "alice-convert")
    key = create_key(conn, alice, t["org_id"])["key"]
    conn.execute("update public.trials set expires_at = now() - interval '1 second' where id = %s", (t["id"],))
    as_service(conn)("select public.expire_trials()")
    cus, sub = new_id("cus"), new_id("sub")
    apply(conn, *catalogue(), customer_event(cus, org_id=t["org_id"]), subscription_event(sub, cus, org_id=t["org_id"]))
    converted = trial(conn, t["id"])
    assert converted["status"] == "converted" and converted["converted_at"] is not None
    assert begin(conn, "after-convert", key=key, completion_tokens_limit=5)["org_id"] == t["org_id"]
    assert_consistent(conn, t["org_id"])


# Section - RLS


def test_owner_and_members_read_the_trial_nobody_else(conn):
    alice, member, stranger = make_user(conn, "alice"), make_user(conn, "member"), make_user(conn, "stranger")
    t = start(conn, alice, "alice-rls")
    conn.execute("insert into public.organization_members (org_id, user_id, role) values (%s, %s, 'member')",
                 (t["org_id"], member.id))
    q = "select id from public.trials"
    assert [r["id"] for r in as_user(conn, alice)(q)] == [t["id"]] or str(as_user(conn, alice)(q)[0]["id"]) == t["id"]
    assert len(as_user(conn, member)(q)) == 1
    assert as_user(conn, stranger)(q) == []
    with raises_sqlstate("42501"):
        as_anon(conn)(q)


@pytest.mark.parametrize("sql", [
    "update public.trials set status = 'converted'",
    "delete from public.trials",
    "insert into public.trials (org_id, owner_id, name, slug, tier, credits, expires_at) "
    "select org_id, owner_id, name, slug || '-x', tier, 999999, now() + interval '1 year' from public.trials",
])
def test_nobody_writes_trials_directly(conn, sql):
    alice = make_user(conn, "alice")
    start(conn, alice, "alice-write")
    with raises_sqlstate("42501"):
        as_user(conn, alice)(sql)


def test_trial_claims_are_private(conn):
    with fails(conn, "42501"):
        as_user(conn, make_user(conn, "alice"))("select * from private.trial_claims")
