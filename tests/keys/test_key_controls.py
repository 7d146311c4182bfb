"""Per-key controls in SQL (issue 12): create_api_key / update_api_key arguments, and
begin_chat_request enforcing each control at its boundary — model allow-list, budget
per period, rpm, tpm, IP allow-list, expiry — with refusals that hold nothing."""
from __future__ import annotations

import json

import pytest

from tests.support.clock import early_in_a_minute
from tests.support.credits import assert_consistent, money_snapshot, set_balance
from tests.support.metering import begin, create_key, finish
from tests.support.pg import as_user, fails, one, raises_sqlstate, scalar


@pytest.fixture(autouse=True)
def funded(conn, cast):
    set_balance(conn, cast.team, 1_000_000)


def key_row(conn, key_id) -> dict:
    return one(conn, "select * from public.api_keys where id = %s", (key_id,))


def refused(conn, org, sqlstate: str, match: str | None = None, **kw) -> None:
    before = money_snapshot(conn, org)
    with fails(conn, sqlstate, match):
        begin(conn, **kw)
    assert money_snapshot(conn, org) == before, f"the refused begin ({sqlstate}) held nothing"
    assert_consistent(conn, org)


def detail_of(conn, **kw) -> dict:
    """The DETAIL JSON of a refused begin."""
    try:
        with conn.transaction():
            begin(conn, **kw)
    except Exception as exc:  # psycopg.Error
        return json.loads(exc.diag.message_detail)  # type: ignore[attr-defined]
    raise AssertionError("begin was expected to fail")


# Section - create and update


def test_create_api_key_takes_and_returns_every_control(conn, cast):
    k = create_key(conn, cast.owner, cast.team, models=["gpt-4o-mini"], credit_limit=500, credit_limit_period="30d",
                   rpm=10, tpm=5000, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    assert k["models"] == ["gpt-4o-mini"] and k["credit_limit"] == 500 and k["credit_limit_period"] == "30d"
    assert (k["rpm"], k["tpm"]) == (10, 5000) and k["allowed_ips"] == ["10.0.0.0/8", "2001:db8::/32"]
    row = key_row(conn, k["id"])
    assert row["budget_spent"] == 0 and row["budget_reserved"] == 0


def test_defaults_are_unlimited(conn, cast):
    k = create_key(conn, cast.owner, cast.team)
    assert k["models"] is None and k["credit_limit"] is None and k["rpm"] is None and k["allowed_ips"] is None
    assert k["credit_limit_period"] == "monthly"


@pytest.mark.parametrize("kw, match", [
    ({"models": ["no-such-model"]}, "unknown model"),
    ({"models": []}, "models must list"),
    ({"credit_limit": -1}, "credit_limit"),
    ({"credit_limit_period": "fortnightly"}, "credit_limit_period"),
    ({"credit_limit_period": "0d"}, "credit_limit_period"),
    ({"rpm": 0}, "rpm and tpm"),
    ({"tpm": -5}, "rpm and tpm"),
])
def test_bad_controls_are_refused(conn, cast, kw, match):
    with raises_sqlstate("PT400", match):
        create_key(conn, cast.owner, cast.team, **kw)


@pytest.mark.parametrize("period, stored", [("daily", "1d"), ("7", "7d"), ("30d", "30d"), ("Monthly", "monthly")])
def test_periods_are_normalized(conn, cast, period, stored):
    assert create_key(conn, cast.owner, cast.team, credit_limit=5, credit_limit_period=period)["credit_limit_period"] == stored


def test_update_api_key_replaces_the_controls(conn, cast):
    k = create_key(conn, cast.admin, cast.team, rpm=5)
    out = as_user(conn, cast.admin).one(
        "select public.update_api_key(key_id := %s, models := array['gpt-4o-mini'], credit_limit := 7) as k", (k["id"],))["k"]
    assert out["models"] == ["gpt-4o-mini"] and out["credit_limit"] == 7 and out["rpm"] is None, "rpm cleared: null = unlimited"
    assert out["name"] == "test key" and "key" not in out, "name kept, no secret"


@pytest.mark.parametrize("who, sqlstate", [("member", "42501"), ("outsider", "PT404"), ("banned", "42501")])
def test_only_admins_of_the_org_update_a_key(conn, cast, who, sqlstate):
    k = create_key(conn, cast.owner, cast.team)
    before = key_row(conn, k["id"])
    with raises_sqlstate(sqlstate):
        as_user(conn, getattr(cast, who)).one("select public.update_api_key(key_id := %s, rpm := 1)", (k["id"],))
    assert key_row(conn, k["id"]) == before


# Section - model allow-list


def test_model_allow_list(conn, cast):
    k = create_key(conn, cast.owner, cast.team, models=["gpt-4o-mini"])
    assert begin(conn, "ok-1", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)["reserved"] >= 0
    refused(conn, cast.team, "PT403", 'may not call model "gpt-4.1-nano"', request_id="no-1", model="gpt-4.1-nano",
            prompt_tokens_bound=10, key=k["key"], completion_tokens_limit=10)
    assert detail_of(conn, request_id="no-2", model="gpt-4.1-nano", prompt_tokens_bound=10, key=k["key"],
                     completion_tokens_limit=10)["type"] == "model_not_allowed"


# Section - budget


def test_budget_boundary_reserve_settle_and_402_naming_the_key(conn, cast):
    first = begin(conn, "probe", "gpt-4o-mini", 100, key=create_key(conn, cast.owner, cast.team)["key"],
                  completion_tokens_limit=100)
    hold = first["reserved"]
    k = create_key(conn, cast.owner, cast.team, name="budgeted", credit_limit=2 * hold, credit_limit_period="30d")
    for i in range(2):
        assert begin(conn, f"b-{i}", "gpt-4o-mini", 100, key=k["key"], completion_tokens_limit=100)["reserved"] == hold
    assert key_row(conn, k["id"])["budget_reserved"] == 2 * hold
    refused(conn, cast.team, "PT402", "API key budget", request_id="b-2", model="gpt-4o-mini",
            prompt_tokens_bound=100, key=k["key"], completion_tokens_limit=100)
    assert detail_of(conn, request_id="b-3", model="gpt-4o-mini", prompt_tokens_bound=100, key=k["key"],
                     completion_tokens_limit=100)["type"] == "key_budget_exceeded"
    # settling one returns its unused hold to the key's budget and counts what it cost
    done = finish(conn, "b-0", cast.team, api_key_id=k["id"], prompt_tokens=1, completion_tokens=1)
    row = key_row(conn, k["id"])
    assert row["budget_reserved"] == hold and row["budget_spent"] == done["charged"]
    budgets = as_user(conn, cast.member).one("select * from public.api_key_budgets(%s) where api_key_id = %s",
                                             (cast.team, k["id"]))
    assert budgets["spent"] == done["charged"] and budgets["reserved"] == hold
    assert budgets["remaining"] == 2 * hold - hold - done["charged"]
    assert_consistent(conn, cast.team)


def test_without_a_limit_the_completion_limit_is_capped_by_the_key_budget(conn, cast):
    k = create_key(conn, cast.owner, cast.team, credit_limit=3)
    g = begin(conn, "cap-1", "gpt-4o-mini", 10, key=k["key"])
    assert g["limit_capped"] and g["reserved"] <= 3
    refused(conn, cast.team, "PT402", "API key budget", request_id="cap-2", model="gpt-4o-mini",
            prompt_tokens_bound=10, key=k["key"])


def test_budget_resets_when_the_period_turns(conn, cast):
    k = create_key(conn, cast.owner, cast.team, credit_limit=1)
    begin(conn, "p-1", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)
    finish(conn, "p-1", cast.team, api_key_id=k["id"], prompt_tokens=10, completion_tokens=10)
    refused(conn, cast.team, "PT402", "API key budget", request_id="p-2", model="gpt-4o-mini",
            prompt_tokens_bound=10, key=k["key"], completion_tokens_limit=10)
    conn.execute("update public.api_keys set budget_period_start = budget_period_start - interval '40 days' "
                 "where id = %s", (k["id"],))
    assert begin(conn, "p-3", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)
    assert key_row(conn, k["id"])["budget_spent"] == 0, "the new month starts from zero"


def test_a_call_begun_as_the_period_turns_counts_in_the_period_it_was_reserved_in(conn, cast):
    """A reservation is stamped when it is written, after begin chose the key's budget
    period: a call whose transaction started just before the key's period turned, and
    reached the key just after, is counted in the period it was reserved in, never in none."""
    k = create_key(conn, cast.owner, cast.team, credit_limit=1000, credit_limit_period="30d")
    # the key's 30-day period turns 20 ms after this transaction began, before the begin below
    conn.execute("update public.api_keys set created_at = now() - interval '30 days' + interval '20 ms' "
                 "where id = %s", (k["id"],))
    conn.execute("select pg_sleep(0.1)")
    began = begin(conn, "turn-1", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)
    assert key_row(conn, k["id"])["budget_reserved"] == began["reserved"]
    done = finish(conn, "turn-1", cast.team, api_key_id=k["id"], prompt_tokens=10, completion_tokens=10)
    row = key_row(conn, k["id"])
    assert done["charged"] > 0
    assert (row["budget_spent"], row["budget_reserved"]) == (done["charged"], 0), "the charge counts against the key"
    assert_consistent(conn, cast.team)


def test_day_count_periods_start_at_creation(conn, cast):
    start = scalar(conn, "select private.key_period_start('7d', '2026-01-01T00:00Z', '2026-01-15T12:00Z')")
    assert start.isoformat().startswith("2026-01-15T00:00")
    assert scalar(conn, "select private.key_period_start('monthly', now(), '2026-03-31T23:59Z')").day == 1


def test_budget_periods_are_counted_in_utc_in_any_session_zone(conn):
    """A session on a zone with daylight saving time (Berlin's clocks go forward on
    2026-03-29) still gets periods of whole UTC days and UTC months."""
    conn.execute("set local timezone = 'Europe/Berlin'")
    utc = "at time zone 'UTC'"
    assert str(scalar(conn, f"select private.key_period_start('30d', '2026-03-20T00:00Z', '2026-04-20T00:00Z') {utc}")) \
        == "2026-04-19 00:00:00"
    assert str(scalar(conn, f"select private.key_period_end('30d', '2026-03-20T00:00Z') {utc}")) == "2026-04-19 00:00:00"
    assert str(scalar(conn, f"select private.key_period_end('monthly', '2026-03-01T00:00Z') {utc}")) \
        == "2026-04-01 00:00:00"


# Section - rate limits


def test_rpm_boundary_with_openai_headers(conn, cast):
    k = create_key(conn, cast.owner, cast.team, rpm=2)
    early_in_a_minute()  # r-0 .. r-3 in one rate window (begin's is the clock's minute)
    g = begin(conn, "r-0", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)
    assert g["ratelimit"]["x-ratelimit-limit-requests"] == "2" and g["ratelimit"]["x-ratelimit-remaining-requests"] == "1"
    begin(conn, "r-1", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10)
    refused(conn, cast.team, "PT429", "2 per minute", request_id="r-2", model="gpt-4o-mini", prompt_tokens_bound=10,
            key=k["key"], completion_tokens_limit=10)
    d = detail_of(conn, request_id="r-3", model="gpt-4o-mini", prompt_tokens_bound=10, key=k["key"],
                  completion_tokens_limit=10)
    h = d["headers"]
    assert d["type"] == "rate_limit_exceeded" and h["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(h["retry-after"]) <= 60 and h["x-ratelimit-reset-requests"].endswith("s")
    conn.execute("update public.api_keys set rate_window_start = rate_window_start - interval '1 minute' where id = %s",
                 (k["id"],))
    assert begin(conn, "r-4", "gpt-4o-mini", 10, key=k["key"], completion_tokens_limit=10), "a new minute"


def test_tpm_counts_the_worst_case_and_gives_back_unused_tokens(conn, cast):
    k = create_key(conn, cast.owner, cast.team, tpm=300)
    early_in_a_minute()  # t-0 .. t-3 in one token window
    begin(conn, "t-0", "gpt-4o-mini", 100, key=k["key"], completion_tokens_limit=100)  # 200 of 300
    refused(conn, cast.team, "PT429", "tokens", request_id="t-1", model="gpt-4o-mini", prompt_tokens_bound=100,
            key=k["key"], completion_tokens_limit=100)
    finish(conn, "t-0", cast.team, api_key_id=k["id"], prompt_tokens=20, completion_tokens=30)
    assert key_row(conn, k["id"])["rate_tokens"] == 50, "corrected to the real usage"
    assert begin(conn, "t-2", "gpt-4o-mini", 100, key=k["key"], completion_tokens_limit=100)
    g = begin(conn, "t-3", "gpt-4o-mini", 10, key=k["key"])
    assert g["completion_tokens_limit"] == 300 - 250 - 10, "no max_tokens: capped by the token window"


# Section - IP allow-list and expiry


@pytest.mark.parametrize("ip, ok", [("10.1.2.3", True), ("10.255.255.255", True), ("11.0.0.1", False),
                                    ("2001:db8::1", True), ("2001:db9::1", False), (None, False)])
def test_ip_allow_list(conn, cast, ip, ok):
    k = create_key(conn, cast.owner, cast.team, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    kw = dict(request_id="ip", model="gpt-4o-mini", prompt_tokens_bound=10, key=k["key"], completion_tokens_limit=10,
              client_ip=ip)
    if ok:
        assert begin(conn, **kw)
    else:
        refused(conn, cast.team, "PT403", "may not be used from", **kw)
        assert detail_of(conn, **kw)["type"] == "ip_not_allowed"


def test_expired_key_is_refused(conn, cast):
    k = create_key(conn, cast.owner, cast.team)
    conn.execute("update public.api_keys set expires_at = now() - interval '1 second' where id = %s", (k["id"],))
    refused(conn, cast.team, "PT401", "expired", request_id="e", model="gpt-4o-mini", prompt_tokens_bound=10,
            key=k["key"], completion_tokens_limit=10)


# Section - rotation


def rotate(conn, person, key_id, grace: int) -> dict:
    return as_user(conn, person).one("select public.rotate_api_key(%s, %s) as k", (key_id, grace))["k"]


def test_rotation_keeps_the_old_secret_for_the_grace_period(conn, cast):
    k = create_key(conn, cast.owner, cast.team)
    new = rotate(conn, cast.admin, k["id"], 60)
    assert new["key"] != k["key"] and new["id"] == k["id"] and new["prefix"] != k["prefix"]
    assert begin(conn, "old", key=k["key"], completion_tokens_limit=5)["api_key_id"] == str(k["id"])
    assert begin(conn, "new", key=new["key"], completion_tokens_limit=5)["api_key_id"] == str(k["id"])
    conn.execute("update public.api_keys set previous_key_expires_at = now() - interval '1 second' where id = %s",
                 (k["id"],))
    refused(conn, cast.team, "PT401", "rotated", request_id="old-2", model="gpt-4o-mini", prompt_tokens_bound=10,
            key=k["key"], completion_tokens_limit=5)
    assert begin(conn, "new-2", key=new["key"], completion_tokens_limit=5)


def test_rotation_without_grace_ends_the_old_secret_at_once(conn, cast):
    k = create_key(conn, cast.owner, cast.team)
    new = rotate(conn, cast.owner, k["id"], 0)
    conn.execute("select pg_sleep(0.01)")
    refused(conn, cast.team, "PT401", None, request_id="o", model="gpt-4o-mini", prompt_tokens_bound=10, key=k["key"],
            completion_tokens_limit=5)
    assert begin(conn, "n", key=new["key"], completion_tokens_limit=5)


@pytest.mark.parametrize("who, sqlstate", [("member", "42501"), ("outsider", "PT404")])
def test_only_admins_rotate(conn, cast, who, sqlstate):
    k = create_key(conn, cast.owner, cast.team)
    with raises_sqlstate(sqlstate):
        rotate(conn, getattr(cast, who), k["id"], 10)


def test_bad_grace_and_revoked_keys_are_refused(conn, cast):
    k = create_key(conn, cast.owner, cast.team)
    with raises_sqlstate("PT400", "grace_seconds"):
        rotate(conn, cast.owner, k["id"], -1)
    as_user(conn, cast.owner)("select public.revoke_api_key(%s)", (k["id"],))
    with raises_sqlstate("PT400", "active"):
        rotate(conn, cast.owner, k["id"], 10)
