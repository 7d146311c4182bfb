"""public.begin_chat_request and public.finish_chat_request, the chat proxy's two calls,
called directly as superuser (the proxy calls them as the service role): who may
spend, what is held, what is charged and what is recorded."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.credits import (
    ACME,
    ALICE,
    assert_consistent,
    balance,
    ledger,
    money_snapshot,
    reservation,
    set_balance,
)
from tests.support.metering import begin, ceil, create_key, credits_per_usd, finish, price
from tests.support.personas import BAN_KINDS, ban, personal_org
from tests.support.pg import fails, one, rows, scalar


@pytest.fixture
def key(conn, cast) -> dict:
    """An API key of the team org, created by its owner through create_api_key."""
    return create_key(conn, cast.owner, cast.team, name="proxy key")


def key_row(conn, key_id) -> dict:
    return one(conn, "select * from public.api_keys where id = %s", (key_id,))


def expected_hold(conn, model: str, prompt: int, limit: int, choices: int = 1) -> int:
    p, per_usd = price(conn, model), credits_per_usd(conn)
    prompt_credits = Decimal(prompt) * p["input_usd_per_1m"] / 1_000_000 * per_usd * p["credit_multiplier"]
    per_token = p["output_usd_per_1m"] / 1_000_000 * per_usd * p["credit_multiplier"] * choices
    return ceil(prompt_credits + limit * per_token)


def expected_cost(conn, model: str, prompt: int, completion: int, cached: int) -> Decimal:
    p = price(conn, model)
    return ((prompt - cached) * p["input_usd_per_1m"] + cached * p["cached_input_usd_per_1m"]
            + completion * p["output_usd_per_1m"]) / Decimal(1_000_000)


def refused_begin(conn, org, sqlstate: str, match: str | None = None, **kw) -> None:
    """begin_chat_request fails with `sqlstate` and holds nothing."""
    before = money_snapshot(conn, org) if org else None
    with fails(conn, sqlstate, match):
        begin(conn, **kw)
    if org:
        assert money_snapshot(conn, org) == before, f"the refused begin ({sqlstate}) held nothing"
        assert_consistent(conn, org)


# Section - API key authentication


def test_key_auth_reserves_for_the_keys_org(conn, cast, key):
    result = begin(conn, "b-key", prompt_tokens_bound=1000, completion_tokens_limit=100, key=key["key"])
    hold = expected_hold(conn, "gpt-4o-mini", 1000, 100)
    assert result == {"org_id": str(cast.team), "api_key_id": key["id"], "project_id": None,
                      "user_id": str(cast.owner.id), "plan_id": "free", "model": "gpt-4o-mini", "reserved": hold,
                      "remaining": 1000 - hold, "completion_tokens_limit": 100, "limit_capped": False,
                      "ratelimit": None,
                      "price": {"input_usd_per_1m": "0.150000", "cached_input_usd_per_1m": "0.075000",
                                "output_usd_per_1m": "0.600000", "credit_multiplier": "1.0000",
                                "credits_per_usd": "1000"}}, \
        f"the key's org is billed and the key's creator is the user, and finish's price, got {result}"
    r = reservation(conn, "b-key")
    assert (r["org_id"], r["amount"], r["status"]) == (cast.team, hold, "open"), "the hold is an open reservation"
    assert balance(conn, cast.team) == 1000 - hold, "the team's balance paid the hold"
    assert_consistent(conn, cast.team)


def test_key_scoped_to_a_project_reports_it(conn, cast):
    scoped = create_key(conn, cast.admin, cast.team, name="scoped", project_id=cast.project)
    result = begin(conn, "b-scoped", completion_tokens_limit=10, key=scoped["key"])
    assert result["project_id"] == str(cast.project), "usage is attributed to the key's project"
    assert result["user_id"] == str(cast.admin.id), "and to the admin who created the key"


def test_unknown_key_is_401(conn, cast):
    refused_begin(conn, cast.team, "PT401", "invalid API key", request_id="b-unknown", key="xan_" + "0" * 64)


def test_revoked_key_is_401(conn, cast, key):
    conn.execute("update public.api_keys set status = 'revoked', revoked_at = now() where id = %s", (key["id"],))
    refused_begin(conn, cast.team, "PT401", "revoked", request_id="b-revoked", key=key["key"])


def test_key_revoked_through_the_rpc_is_401(conn, api, cast, key):
    api("admin")("select public.revoke_api_key(id := %s)", (key["id"],))
    refused_begin(conn, cast.team, "PT401", "revoked", request_id="b-revoked-rpc", key=key["key"])


def test_key_past_its_expiry_is_401(conn, cast):
    expiring = create_key(conn, cast.owner, cast.team, name="short",
                          expires_at=scalar(conn, "select now() + interval '1 hour'"))
    assert begin(conn, "b-before", completion_tokens_limit=10, key=expiring["key"])["org_id"] == str(cast.team), \
        "the key works before it expires"
    conn.execute("update public.api_keys set expires_at = now() - interval '1 second' where id = %s",
                 (expiring["id"],))
    refused_begin(conn, cast.team, "PT401", "expired", request_id="b-after", key=expiring["key"])


def test_key_marked_expired_is_401(conn, cast, key):
    conn.execute("update public.api_keys set status = 'expired' where id = %s", (key["id"],))
    refused_begin(conn, cast.team, "PT401", "expired", request_id="b-expired", key=key["key"])


@pytest.mark.parametrize("how", BAN_KINDS)
def test_key_of_an_org_whose_owners_are_all_banned_is_401(conn, cast, key, how):
    ban(conn, cast.owner, how)
    refused_begin(conn, cast.team, "PT401", "owner", request_id=f"b-owner-{how}", key=key["key"])


def test_key_works_while_one_owner_is_active(conn, cast):
    conn.execute("update public.organization_members set role = 'owner' where org_id = %s and user_id = %s",
                 (cast.team, cast.admin.id))
    k = create_key(conn, cast.admin, cast.team, name="co-owner's key")
    ban(conn, cast.owner, "role")
    result = begin(conn, "b-coowner", completion_tokens_limit=10, key=k["key"])
    assert result["org_id"] == str(cast.team), "an active co-owner keeps the organization's keys working"
    # a key whose creator is banned stops: tests/tenancy/test_hardening_keys.py


def test_usage_count_and_last_used_at(conn, cast, key):
    assert (key_row(conn, key["id"])["usage_count"], key_row(conn, key["id"])["last_used_at"]) == (0, None), \
        "a new key is unused"
    now = scalar(conn, "select now()")
    for i in range(3):
        begin(conn, f"b-count-{i}", completion_tokens_limit=10, key=key["key"])
        assert key_row(conn, key["id"])["usage_count"] == i + 1, f"usage_count counts every call ({i + 1})"
    assert key_row(conn, key["id"])["last_used_at"] == now, "the first use stamps last_used_at"

    recent = scalar(conn, "select now() - interval '30 seconds'")
    conn.execute("update public.api_keys set last_used_at = %s where id = %s", (recent, key["id"]))
    begin(conn, "b-count-recent", completion_tokens_limit=10, key=key["key"])
    row = key_row(conn, key["id"])
    assert (row["usage_count"], row["last_used_at"]) == (4, recent), \
        "last_used_at less than a minute old is not rewritten (the count still moves)"

    old = scalar(conn, "select now() - interval '2 minutes'")
    conn.execute("update public.api_keys set last_used_at = %s where id = %s", (old, key["id"]))
    begin(conn, "b-count-old", completion_tokens_limit=10, key=key["key"])
    row = key_row(conn, key["id"])
    assert (row["usage_count"], row["last_used_at"]) == (5, now), "last_used_at older than a minute is rewritten"


def test_refused_calls_do_not_count_as_use(conn, cast, key):
    set_balance(conn, cast.team, 0)
    with fails(conn, "PT402"):
        begin(conn, "b-broke", key=key["key"])
    with fails(conn, "PT400"):
        begin(conn, "b-bad-model", model="no-such-model", key=key["key"])
    row = key_row(conn, key["id"])
    assert (row["usage_count"], row["last_used_at"]) == (0, None), "refused calls leave the key's counters alone"


# Section - user authentication


def test_user_is_billed_to_their_personal_org_by_default(conn, cast):
    mine = personal_org(conn, cast.member)
    result = begin(conn, "b-user", completion_tokens_limit=10, user_id=cast.member.id)
    assert (result["org_id"], result["user_id"], result["api_key_id"]) == (str(mine), str(cast.member.id), None), \
        f"a signed-in user pays from their personal org, got {result}"
    assert reservation(conn, "b-user")["org_id"] == mine, "the hold is on the personal org"
    assert_consistent(conn, mine)


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
def test_user_may_bill_an_org_they_belong_to(conn, cast, who):
    person = getattr(cast, who)
    result = begin(conn, f"b-team-{who}", completion_tokens_limit=10, user_id=person.id, org_id=cast.team)
    assert result["org_id"] == str(cast.team), f"a {who} may bill the team"
    assert_consistent(conn, cast.team)


def test_user_may_not_bill_an_org_they_are_not_in(conn, cast):
    refused_begin(conn, cast.team, "42501", "not a member", request_id="b-outsider", user_id=cast.outsider.id,
                  org_id=cast.team)


@pytest.mark.parametrize("how", BAN_KINDS)
def test_banned_user_is_refused(conn, cast, how):
    ban(conn, cast.member, how)
    refused_begin(conn, cast.team, "42501", "banned or inactive", request_id=f"b-banned-{how}",
                  user_id=cast.member.id, org_id=cast.team)
    refused_begin(conn, personal_org(conn, cast.member), "42501", "banned or inactive",
                  request_id=f"b-banned-own-{how}", user_id=cast.member.id)


def test_no_key_and_no_user_is_401(conn):
    with fails(conn, "PT401"):
        begin(conn, "b-nobody")


# Section - models


def test_unknown_model_is_400(conn, cast):
    refused_begin(conn, cast.team, "PT400", "does not exist", request_id="b-model", model="gpt-9",
                  user_id=cast.owner.id, org_id=cast.team)


def test_inactive_model_is_400(conn, cast):
    conn.execute("update public.model_prices set active = false where model = 'gpt-4o-mini'")
    refused_begin(conn, cast.team, "PT400", "not available", request_id="b-inactive", user_id=cast.owner.id,
                  org_id=cast.team)


def test_model_outside_the_free_plan_is_400(conn, cast, key):
    refused_begin(conn, cast.team, "PT400", "free", request_id="b-gpt4o", model="gpt-4o", key=key["key"])


def test_pro_plan_has_every_model(conn):
    result = begin(conn, "b-pro", model="gpt-4o", completion_tokens_limit=10, user_id=ALICE, org_id=ACME)
    assert (result["plan_id"], result["model"]) == ("pro", "gpt-4o"), "a plan without a model list allows all"
    assert result["reserved"] == expected_hold(conn, "gpt-4o", 1000, 10), "held at gpt-4o prices"
    assert_consistent(conn, ACME)


@pytest.mark.parametrize("limit", [0, -1])
def test_completion_limit_below_one_is_400(conn, cast, limit):
    refused_begin(conn, cast.team, "PT400", "max_tokens", request_id="b-limit", user_id=cast.owner.id,
                  org_id=cast.team, completion_tokens_limit=limit)


# Section - the hold


def test_hold_covers_every_choice(conn, cast):
    result = begin(conn, "b-choices", prompt_tokens_bound=5000, completion_tokens_limit=4000, choices=3,
                   user_id=cast.owner.id, org_id=cast.team)
    hold = expected_hold(conn, "gpt-4o-mini", 5000, 4000, choices=3)
    assert result["reserved"] == hold == 8, f"ceil(0.75 prompt + 3 choices x 2.4): {result}"


def test_no_limit_gets_the_models_maximum_when_affordable(conn, cast):
    result = begin(conn, "b-nolimit", prompt_tokens_bound=1000, user_id=cast.owner.id, org_id=cast.team)
    maximum = price(conn, "gpt-4o-mini")["max_output_tokens"]
    assert (result["completion_tokens_limit"], result["limit_capped"]) == (maximum, True), \
        f"with 1000 credits the limit is the model's maximum, got {result}"
    assert result["reserved"] == expected_hold(conn, "gpt-4o-mini", 1000, maximum), "the hold is for that limit"


def test_no_limit_is_capped_to_what_the_balance_affords(conn, cast):
    set_balance(conn, cast.team, 5)
    result = begin(conn, "b-capped", prompt_tokens_bound=1000, user_id=cast.owner.id, org_id=cast.team)
    p, per_usd = price(conn, "gpt-4o-mini"), credits_per_usd(conn)
    prompt_credits = 1000 * p["input_usd_per_1m"] / 1_000_000 * per_usd
    per_token = p["output_usd_per_1m"] / 1_000_000 * per_usd
    limit = int((5 - ceil(prompt_credits)) / per_token)
    assert limit == 6666, "the expected limit: (5 - ceil(0.15)) / 0.0006 tokens"
    assert (result["completion_tokens_limit"], result["limit_capped"]) == (limit, True), \
        f"the limit is what 5 credits afford, got {result}"
    assert result["reserved"] <= 5 and result["remaining"] == 5 - result["reserved"], \
        f"the hold fits in the balance, got {result}"
    assert result["reserved"] == expected_hold(conn, "gpt-4o-mini", 1000, limit), "the hold is for that limit"
    assert_consistent(conn, cast.team)


def test_no_limit_and_nothing_affordable_is_402(conn, cast):
    set_balance(conn, cast.team, 1)  # the prompt alone costs ceil(0.15) = 1 credit: no room for output
    refused_begin(conn, cast.team, "PT402", "insufficient", request_id="b-poor", user_id=cast.owner.id,
                  org_id=cast.team)


def test_limit_above_the_balance_is_402(conn, cast):
    set_balance(conn, cast.team, 5)
    refused_begin(conn, cast.team, "PT402", "insufficient", request_id="b-too-long", user_id=cast.owner.id,
                  org_id=cast.team, completion_tokens_limit=16384)


def test_begin_reusing_a_request_id_is_409(conn, cast):
    begin(conn, "b-dup", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
    refused_begin(conn, cast.team, "PT409", "already used", request_id="b-dup", completion_tokens_limit=10,
                  user_id=cast.owner.id, org_id=cast.team)


# Section - finish with usage


@pytest.fixture
def acme_request(conn):
    """A gpt-4o request on Acme (pro) by Alice, with a 1.5 credit multiplier."""
    conn.execute("update public.model_prices set credit_multiplier = 1.5 where model = 'gpt-4o'")
    began = begin(conn, "f-acme", model="gpt-4o", prompt_tokens_bound=20000, completion_tokens_limit=8000,
                  user_id=ALICE, org_id=ACME)
    return began


def finish_acme(conn, **kw):
    args = dict(prompt_tokens=12345, completion_tokens=6789, cached_tokens=2345, reasoning_tokens=1000,
                user_id=ALICE, upstream_id="chatcmpl-1", latency_ms=321, stream=True)
    return finish(conn, "f-acme", ACME, "gpt-4o", **{**args, **kw})


def test_finish_prices_exactly_and_settles(conn, acme_request):
    hold = acme_request["reserved"]
    before = balance(conn, ACME)
    result = finish_acme(conn)
    cost = expected_cost(conn, "gpt-4o", 12345, 6789, 2345)
    assert cost == Decimal("0.09582125"), "(10000*2.5 + 2345*1.25 + 6789*10) / 1e6"
    credits = ceil(cost * credits_per_usd(conn) * Decimal("1.5"))
    assert credits == 144, "ceil(95.82125 * 1.5)"
    assert Decimal(result["cost_usd"]) == cost and result["credits"] == credits, f"finish reports them: {result}"
    assert (result["charged"], result["status"], result["replayed"], result["uncollected"]) == \
        (credits, "settled", False, 0), f"the reservation is settled: {result}"
    assert balance(conn, ACME) == before + hold - credits, "the unused hold came back"
    assert [(e["kind"], e["amount"]) for e in ledger(conn, ACME, "f-acme")] == \
        [("reservation", -hold), ("settlement", hold - credits)], "reservation and settlement rows"

    usage = rows(conn, "select * from public.usage_events where request_id = 'f-acme'")
    assert len(usage) == 1, "one usage event"
    u = usage[0]
    assert (u["org_id"], u["user_id"], u["model"], u["kind"], u["status"]) == \
        (ACME, ALICE, "gpt-4o", "chat", "succeeded"), f"who and what: {u}"
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"], u["cached_tokens"],
            u["reasoning_tokens"]) == (12345, 6789, 19134, 2345, 1000), "token counts"
    assert (u["cost_usd"], u["credits"]) == (cost, credits), f"exact cost and credits: {u['cost_usd']} {u['credits']}"
    assert (u["upstream_id"], u["latency_ms"], u["stream"], u["estimated"], u["metadata"]) == \
        ("chatcmpl-1", 321, True, False, {}), "the rest of the row"

    logged = rows(conn, "select * from public.api_requests where request_id = 'f-acme'")
    assert [(r["org_id"], r["user_id"], r["endpoint"], r["method"], r["status_code"], r["latency_ms"])
            for r in logged] == [(ACME, ALICE, "/v1/chat/completions", "POST", 200, 321)], "one api_requests row"
    assert_consistent(conn, ACME)


def test_finish_twice_is_a_replay(conn, acme_request):
    first = finish_acme(conn)
    before = money_snapshot(conn, ACME)
    again = finish_acme(conn, completion_tokens=99999)
    assert again["replayed"] is True and again["charged"] == first["charged"], f"a replay: {again}"
    assert money_snapshot(conn, ACME) == before, "the replay moved no credits"
    assert scalar(conn, "select count(*) from public.usage_events where request_id = 'f-acme'") == 1, \
        "no second usage event"
    assert scalar(conn, "select count(*) from public.api_requests where request_id = 'f-acme'") == 1, \
        "no second api_requests row"
    assert_consistent(conn, ACME)


def test_finish_without_usage_releases(conn, acme_request):
    hold = acme_request["reserved"]
    before = balance(conn, ACME)
    result = finish(conn, "f-acme", ACME, "gpt-4o", status="upstream_error", http_status=502, user_id=ALICE,
                    error="upstream returned 500")
    assert (result["status"], result["replayed"], result["credits"], Decimal(result["cost_usd"])) == \
        ("released", False, 0, 0), f"nothing charged: {result}"
    assert balance(conn, ACME) == before + hold, "the whole hold came back"
    assert [(e["kind"], e["amount"], e["description"]) for e in ledger(conn, ACME, "f-acme")] == \
        [("reservation", -hold, None), ("release", hold, "upstream returned 500")], "a release row with the error"
    u = one(conn, "select * from public.usage_events where request_id = 'f-acme'")
    assert (u["credits"], u["cost_usd"], u["prompt_tokens"], u["completion_tokens"], u["status"]) == \
        (0, 0, 0, 0, "upstream_error"), f"a usage row with no charge: {u}"
    assert u["metadata"] == {"error": "upstream returned 500"}, "the error is kept"
    assert scalar(conn, "select status_code from public.api_requests where request_id = 'f-acme'") == 502, \
        "the request is logged with its status"
    again = finish_acme(conn)
    assert again["replayed"] is True and again["charged"] == 0, "usage after a release is a replay"
    assert scalar(conn, "select count(*) from public.usage_events where request_id = 'f-acme'") == 1, "still one row"
    assert_consistent(conn, ACME)


def test_finish_charge_above_the_balance_is_capped_and_recorded(conn, cast):
    set_balance(conn, cast.team, 3)
    began = begin(conn, "f-poor", prompt_tokens_bound=100, completion_tokens_limit=10, user_id=cast.owner.id,
                  org_id=cast.team)
    assert began["reserved"] == 1, "a tiny hold"
    result = finish(conn, "f-poor", cast.team, prompt_tokens=100, completion_tokens=10000, user_id=cast.owner.id)
    credits = ceil(expected_cost(conn, "gpt-4o-mini", 100, 10000, 0) * credits_per_usd(conn))
    assert credits == 7, "ceil(6.015)"
    assert (result["charged"], result["uncollected"], result["credits"]) == (3, 4, 3), \
        f"only the 3 credits there were are charged: {result}"
    assert balance(conn, cast.team) == 0, "the balance stops at zero"
    u = one(conn, "select credits, metadata from public.usage_events where request_id = 'f-poor'")
    assert (u["credits"], u["metadata"]) == (3, {"uncollected_credits": 4}), f"the usage row says so: {u}"
    assert_consistent(conn, cast.team)


def test_finish_attributes_the_key_and_project(conn, cast):
    scoped = create_key(conn, cast.owner, cast.team, name="scoped", project_id=cast.project)
    began = begin(conn, "f-key", completion_tokens_limit=50, key=scoped["key"])
    finish(conn, "f-key", cast.team, prompt_tokens=10, completion_tokens=5, api_key_id=began["api_key_id"],
           project_id=began["project_id"], user_id=began["user_id"])
    u = one(conn, "select api_key_id, project_id, user_id from public.usage_events where request_id = 'f-key'")
    assert (str(u["api_key_id"]), str(u["project_id"]), str(u["user_id"])) == \
        (scoped["id"], str(cast.project), str(cast.owner.id)), f"key, project and user recorded: {u}"
    r = one(conn, "select api_key_id from public.api_requests where request_id = 'f-key'")
    assert str(r["api_key_id"]) == scoped["id"], "the request log names the key"
    assert_consistent(conn, cast.team)


def test_finish_of_an_unknown_request_is_404(conn):
    before = scalar(conn, "select count(*) from public.usage_events")
    with fails(conn, "PT404"):
        finish(conn, "f-never-began", ACME, prompt_tokens=10, completion_tokens=10)
    assert scalar(conn, "select count(*) from public.usage_events") == before, "no usage row"


def test_finish_for_a_model_without_a_price_is_400(conn, cast):
    begin(conn, "f-priceless", completion_tokens_limit=10, user_id=cast.owner.id, org_id=cast.team)
    before = money_snapshot(conn, cast.team)
    with fails(conn, "PT400", "no price"):
        finish(conn, "f-priceless", cast.team, model="gpt-9", prompt_tokens=10, completion_tokens=10)
    assert money_snapshot(conn, cast.team) == before, "the reservation stays open for the stale-release job"


def test_finish_refuses_another_organizations_request(conn):
    """Usage rows always land on the organization the credits were reserved for."""
    from tests.support.personas import make_user, personal_org
    from tests.support.pg import raises_sqlstate

    a, b = make_user(conn, "fin-a"), make_user(conn, "fin-b")
    org_a, org_b = personal_org(conn, a), personal_org(conn, b)
    conn.execute("select public.reserve_credits(org_id := %s, request_id := 'fin-x', amount := 5)", (org_a,))
    with raises_sqlstate("PT409", "another organization"):
        with conn.transaction():
            conn.execute("select public.finish_chat_request(request_id := 'fin-x', status := 'succeeded', "
                         "http_status := 200, endpoint := '/v1/chat/completions', org_id := %s, "
                         "model := 'gpt-4o-mini', prompt_tokens := 1, completion_tokens := 1)", (org_b,))
    status = conn.execute("select status from public.credit_reservations where request_id = 'fin-x'").fetchone()[0]
    assert status == "open", "nothing was settled for the wrong organization"
    n = conn.execute("select count(*) from public.usage_events where request_id = 'fin-x'").fetchone()[0]
    assert n == 0, "and no usage row was written"
