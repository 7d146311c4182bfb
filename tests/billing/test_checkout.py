"""POST /api/stripe/checkout, /portal and /sync through the real server, with Stripe's
API faked at the HTTP layer (respx sees stripe-python's httpx requests)."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from tests.support.personas import ban
from tests.support.pg import scalar, snapshot
from tests.support.secrets import bearer
from tests.support.server import running_server
from tests.support.stripe import (
    ENT_PRICE,
    PACK_PRICE,
    PRO_PRICE,
    PRO_PRODUCT,
    STRIPE_API,
    apply,
    catalogue,
    customer_event,
    load_fixture,
    price_event,
    server_env,
    subscription_event,
)

# stripe-python's HTTPXClient sends its form body as `data=<bytes>`, which httpx deprecates
pytestmark = [pytest.mark.stripe_key, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]
URLS = {"success_url": "https://app.example.test/billing?ok=1", "cancel_url": "https://app.example.test/billing"}
TOUCHED = ("public.stripe_customers", "public.organizations", "public.subscriptions")


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def _customer(request: httpx.Request) -> httpx.Response:
    sent = form(request)
    obj = load_fixture("customer.created")["data"]["object"]
    obj.update(id="cus_Created" + sent["metadata[org_id]"][:8], email=sent.get("email"), name=sent["name"],
               metadata={"org_id": sent["metadata[org_id]"]})
    return httpx.Response(200, json=obj)


def _session(request: httpx.Request) -> httpx.Response:
    obj = load_fixture("checkout.session.completed.subscription")["data"]["object"]
    obj.update(id="cs_test_New", status="open", payment_status="unpaid", mode=form(request)["mode"],
               url="https://checkout.stripe.com/c/pay/cs_test_New")
    return httpx.Response(200, json=obj)


@pytest.fixture
def stripe_api(world):
    with world.connect() as c:
        apply(c, *catalogue(), price_event("price_Retired", PRO_PRODUCT, active=False, type="price.updated"))
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(f"{STRIPE_API}/v1/customers", name="customers").mock(side_effect=_customer)
        mock.post(f"{STRIPE_API}/v1/checkout/sessions", name="sessions").mock(side_effect=_session)
        mock.post(f"{STRIPE_API}/v1/billing_portal/sessions", name="portal").mock(return_value=httpx.Response(
            200, json={"id": "bps_1", "object": "billing_portal.session", "customer": "cus_Team",
                       "url": "https://billing.stripe.com/p/session/test_1"}))
        yield mock


def post(world, route: str, body, who=None) -> httpx.Response:
    headers = bearer(who) if who is not None else {}
    kw = {"content": body} if isinstance(body, (str, bytes)) else {"json": body}
    return httpx.post(f"{world.base}/api/stripe/{route}", headers=headers, timeout=30, **kw)


def checkout(world, who, org, price=PRO_PRICE, **extra) -> httpx.Response:
    return post(world, "checkout", {"price_id": price, "org_id": str(org), **URLS, **extra}, who)


def stripe_calls(mock) -> int:
    return sum(route.call_count for route in mock.routes if route.name)


# Section - checkout

@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_and_admins_start_a_subscription_checkout(world, stripe_api, who):
    person, team = getattr(world.people, who), world.people.team
    r = checkout(world, person, team)
    assert r.status_code == 200, r.text
    assert r.json()["url"] == "https://checkout.stripe.com/c/pay/cs_test_New" and r.json()["mode"] == "subscription"
    customer = stripe_api.routes["customers"].calls.last.request
    with world.connect() as c:
        name = scalar(c, "select name from public.organizations where id = %s", (team,))
    assert form(customer) == {"name": name, "email": person.email, "metadata[org_id]": str(team)}
    assert customer.headers["Idempotency-Key"] == f"tollbooth-customer-{team}", "one customer per organization"
    sent = form(stripe_api.routes["sessions"].calls.last.request)
    cus = r.json()["customer_id"]
    assert sent == {"mode": "subscription", "customer": cus, "client_reference_id": str(team),
                    "line_items[0][price]": PRO_PRICE, "line_items[0][quantity]": "1", **URLS,
                    "metadata[org_id]": str(team), "metadata[price_id]": PRO_PRICE, "metadata[quantity]": "1",
                    "subscription_data[metadata][org_id]": str(team)}
    with world.connect() as c:
        assert c.execute("select org_id, synced_at is not null from public.stripe_customers where id = %s",
                         (cus,)).fetchone() == (team, True), "the customer is stored and linked"
        assert scalar(c, "select stripe_customer_id from public.organizations where id = %s", (team,)) == cus


def test_a_second_checkout_reuses_the_customer(world, stripe_api):
    first = checkout(world, world.people.admin, world.people.team)
    second = checkout(world, world.people.owner, world.people.team, price=ENT_PRICE)
    assert first.status_code == second.status_code == 200
    assert stripe_api.routes["customers"].call_count == 1
    assert second.json()["customer_id"] == first.json()["customer_id"]


def test_a_credit_pack_checkout_is_payment_mode_and_names_its_credits(world, stripe_api):
    team = world.people.team
    r = checkout(world, world.people.admin, team, price=PACK_PRICE, quantity=2)
    assert r.status_code == 200 and r.json()["mode"] == "payment"
    sent = form(stripe_api.routes["sessions"].calls.last.request)
    assert sent["mode"] == "payment" and sent["line_items[0][quantity]"] == "2"
    assert (sent["metadata[credits]"], sent["metadata[credits_expire_days]"]) == ("10000", "90")
    assert sent["payment_intent_data[metadata][org_id]"] == str(team)
    assert "subscription_data[metadata][org_id]" not in sent


def test_the_owner_checks_out_for_their_personal_org(world, stripe_api):
    r = checkout(world, world.people.owner, world.people.personal)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("who, org, status", [
    ("member", "team", 403),
    ("outsider", "team", 403),
    ("admin", "other_team", 403),
    ("admin", "nowhere", 404),
    (None, "team", 401),
])
def test_who_may_not_start_a_checkout(world, stripe_api, who, org, status):
    org_id = getattr(world.people, org, None) or uuid.uuid4()
    with world.connect() as c:
        before = snapshot(c, *TOUCHED)
        r = checkout(world, getattr(world.people, who) if who else None, org_id)
        assert r.status_code == status, r.text
        assert snapshot(c, *TOUCHED) == before, "a refused checkout stores nothing"
    assert stripe_calls(stripe_api) == 0, "and never reaches Stripe"


def test_a_banned_admin_may_not_start_a_checkout(world, stripe_api):
    with world.connect() as c:
        ban(c, world.people.admin)
    r = checkout(world, world.people.admin, world.people.team)
    assert r.status_code == 403 and "banned or inactive" in r.json()["error"]["message"]
    assert stripe_calls(stripe_api) == 0


def test_a_forged_token_is_401(world, stripe_api):
    r = httpx.post(f"{world.base}/api/stripe/checkout", headers={"Authorization": "Bearer x.y.z"},
                   json={"price_id": PRO_PRICE, "org_id": str(world.people.team), **URLS})
    assert r.status_code == 401 and stripe_calls(stripe_api) == 0


@pytest.mark.parametrize("change, message", [
    ({"price_id": None}, "price_id"),
    ({"org_id": "not-a-uuid"}, "org_id"),
    ({"success_url": "/billing"}, "success_url"),
    ({"cancel_url": "javascript:alert(1)"}, "cancel_url"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": "lots"}, "quantity"),
    ({"coupon": "FREE"}, "coupon"),
    ({"price_id": "price_NoSuchPrice"}, "price price_NoSuchPrice is not available"),
    ({"price_id": "price_Retired"}, "price price_Retired is not available"),
])
def test_bad_checkout_input_is_400_and_reaches_no_one(world, stripe_api, change, message):
    body = {"price_id": PRO_PRICE, "org_id": str(world.people.team), **URLS, **change}
    r = post(world, "checkout", {k: v for k, v in body.items() if v is not None}, world.people.admin)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert stripe_calls(stripe_api) == 0


@pytest.mark.parametrize("body", [b"not json", b"[]", b""])
def test_a_body_that_is_not_an_object_is_400(world, stripe_api, body):
    r = post(world, "checkout", body, world.people.admin)
    assert r.status_code == 400 and stripe_calls(stripe_api) == 0


def test_an_organization_already_subscribed_goes_to_the_portal(world, stripe_api):
    with world.connect() as c:
        apply(c, subscription_event("sub_Team", "cus_Team", org_id=world.people.team))
    r = checkout(world, world.people.admin, world.people.team)
    assert r.status_code == 409 and r.json()["error"]["type"] == "already_subscribed"
    assert checkout(world, world.people.admin, world.people.team, price=PACK_PRICE).status_code == 200, \
        "credit packs are still for sale"


def test_stripe_refusing_the_session_is_502_with_its_message(world, stripe_api):
    stripe_api.routes["sessions"].mock(side_effect=None, return_value=httpx.Response(400, json={"error": {
        "type": "invalid_request_error", "message": "No such price: 'price_TollProMonthly'", "param": "line_items"}}))
    r = checkout(world, world.people.admin, world.people.team)
    assert r.status_code == 502 and "No such price" in r.json()["error"]["message"]


@pytest.mark.parametrize("route", ["checkout", "portal", "sync"])
def test_without_a_secret_key_the_routes_are_503_naming_it(fresh_dsn, route):

    with running_server(**server_env(fresh_dsn)) as base:
        r = httpx.post(f"{base}/api/stripe/{route}", json={})
    assert r.status_code == 503 and "STRIPE_SECRET_KEY" in r.json()["error"]["message"]


# Section - portal

@pytest.fixture
def team_customer(world):
    with world.connect() as c:
        apply(c, customer_event("cus_Team", org_id=world.people.team))
    return "cus_Team"


def test_admins_open_the_billing_portal(world, stripe_api, team_customer):
    r = post(world, "portal", {"org_id": str(world.people.team), "return_url": URLS["cancel_url"]}, world.people.admin)
    assert r.status_code == 200 and r.json() == {"url": "https://billing.stripe.com/p/session/test_1"}
    assert form(stripe_api.routes["portal"].calls.last.request) == {"customer": team_customer,
                                                                    "return_url": URLS["cancel_url"]}


def test_the_portal_without_a_customer_is_409_no_customer(world, stripe_api):
    r = post(world, "portal", {"org_id": str(world.people.team)}, world.people.owner)
    assert r.status_code == 409 and r.json()["error"]["type"] == "no_customer"
    assert stripe_calls(stripe_api) == 0


@pytest.mark.parametrize("who, body, status", [
    ("member", {}, 403),
    ("outsider", {}, 403),
    (None, {}, 401),
    ("admin", {"return_url": "not a url"}, 400),
    ("admin", {"org_id": "nope"}, 400),
])
def test_who_and_what_may_not_open_the_portal(world, stripe_api, team_customer, who, body, status):
    payload = {"org_id": str(world.people.team), **body}
    r = post(world, "portal", payload, getattr(world.people, who) if who else None)
    assert r.status_code == status, r.text
    assert stripe_calls(stripe_api) == 0


# Section - sync (the success page's refresh)

def _list(objects: list[dict], has_more: bool) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "url": "/v1/subscriptions", "has_more": has_more,
                                     "data": objects})


def test_members_refresh_their_org_from_stripe(world, stripe_api, team_customer):
    team = world.people.team
    subs = [subscription_event(f"sub_Page{n}", team_customer, status=status)["data"]["object"]
            for n, status in ((1, "canceled"), (2, "active"))]
    customer = customer_event(team_customer, org_id=team, email="new@example.test")["data"]["object"]
    fetched = stripe_api.get(f"{STRIPE_API}/v1/customers/{team_customer}").mock(
        return_value=httpx.Response(200, json=customer))
    pages = stripe_api.get(f"{STRIPE_API}/v1/subscriptions").mock(
        side_effect=lambda req: _list(subs[1:], False) if "starting_after" in req.url.params else _list(subs[:1], True))
    r = post(world, "sync", {"org_id": str(team)}, world.people.member)
    assert r.status_code == 200, r.text
    assert r.json() == {"org_id": str(team), "customer_id": team_customer, "subscriptions": ["sub_Page1", "sub_Page2"],
                        "plan_id": "pro", "billing_status": "active"}
    assert fetched.call_count == 1
    first, second = (dict(call.request.url.params) for call in pages.calls)
    assert first == {"customer": team_customer, "status": "all", "limit": "100"}
    assert second == {**first, "starting_after": "sub_Page1"}, "pagination follows has_more"
    with world.connect() as c:
        assert c.execute("select id, status::text, org_id from public.subscriptions order by id").fetchall() == [
            ("sub_Page1", "canceled", team), ("sub_Page2", "active", team)]
        assert scalar(c, "select email from public.stripe_customers where id = %s", (team_customer,)) == \
            "new@example.test"


@pytest.mark.parametrize("who, status", [("outsider", 403), (None, 401)])
def test_others_may_not_refresh_an_org(world, stripe_api, team_customer, who, status):
    r = post(world, "sync", {"org_id": str(world.people.team)}, getattr(world.people, who) if who else None)
    assert r.status_code == status and stripe_calls(stripe_api) == 0


def test_refreshing_an_org_without_a_customer_is_409(world, stripe_api):
    r = post(world, "sync", {"org_id": str(world.people.personal)}, world.people.owner)
    assert r.status_code == 409 and r.json()["error"]["type"] == "no_customer"
