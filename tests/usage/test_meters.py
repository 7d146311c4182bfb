"""Stripe Billing Meters, Stripe faked at the HTTP layer (respx): closed UTC days of a
metered subscription reported once with a deterministic identifier; a repeated run
sends nothing; late usage goes as a new report of the difference; a failed report is
retried with the same identifier; a 4xx is recorded and not resent; a window older
than 35 days is marked expired, not sent. Today's open window is never reported.

Request shape from Stripe's API reference, "Create a billing meter event"
(POST /v1/billing/meter_events: event_name, payload[stripe_customer_id],
payload[value], identifier, timestamp); answer shape from its example response."""
from __future__ import annotations

import datetime as dt
import urllib.parse

import httpx
import psycopg
import pytest
import respx

from lib.core.db import PsycopgDatabase
from lib.usage.meters import report_usage
from tests.support.pg import rows, scalar
from tests.support.rls import ADMINS, NOT_SERVICE, check_direct_write_is_refused, check_select, t
from tests.support.usage import add_event, rollup

URL = "https://api.stripe.com/v1/billing/meter_events"
# The clock under test: noon UTC today, passed to every claim, so that a later run
# (an hour, six minutes) never crosses midnight and closes today's window.
TODAY = dt.datetime.now(dt.UTC).date()
NOW = dt.datetime.combine(TODAY, dt.time(12), dt.UTC)


def ok(request: httpx.Request) -> httpx.Response:
    form = dict(urllib.parse.parse_qsl(request.content.decode()))
    return httpx.Response(200, json={"object": "billing.meter_event", "created": int(NOW.timestamp()),
                                     "event_name": form["event_name"], "identifier": form["identifier"],
                                     "livemode": False, "payload": {"stripe_customer_id": form["payload[stripe_customer_id]"],
                                                                    "value": form["payload[value]"]},
                                     "timestamp": int(form["timestamp"])})


def sent_forms(route) -> list[dict]:
    return [dict(urllib.parse.parse_qsl(call.request.content.decode())) for call in route.calls]


@pytest.fixture
def metered(committed):
    with psycopg.connect(committed.dsn, autocommit=True) as c:
        c.execute("insert into public.stripe_prices (id, product_id, currency, type, recurring_interval, synced_at, "
                  "metadata, stripe_data) values ('price_metered', 'prod_metered', 'usd', 'recurring', 'month', now(), "
                  "'{\"meter_event_name\": \"api_credits\"}', "
                  "'{\"recurring\": {\"interval\": \"month\", \"meter\": \"mtr_123\", \"usage_type\": \"metered\"}}')")
        c.execute("insert into public.subscriptions (id, org_id, customer_id, status, price_id, created_at, synced_at, "
                  "stripe_data) values ('sub_metered', %s, 'cus_metered', 'active', 'price_metered', %s, now(), '{}')",
                  (committed.org, NOW - dt.timedelta(days=60)))
        for days, credits in ((1, 10), (3, 20), (38, 5)):
            add_event(c, committed.org, at=NOW - dt.timedelta(days=days), credits=credits)
        add_event(c, committed.org, at=NOW, credits=99)  # today: the window is still open
        add_event(c, committed.other, at=NOW - dt.timedelta(days=1), credits=1000)  # not metered
        rollup(c)
    db = PsycopgDatabase(committed.dsn, pool_size=2)
    yield committed, db
    db.close()


def reports(dsn) -> list[dict]:
    with psycopg.connect(dsn) as c:
        return rows(c, "select * from public.stripe_meter_reports order by window_start, seq")


@respx.mock
def test_closed_days_are_reported_once_with_deterministic_identifiers(metered):
    committed, db = metered
    route = respx.post(URL).mock(side_effect=ok)
    counts = report_usage(db, "sk_test_meters", at=NOW)
    assert counts == {"created": 3, "expired": 1, "sent": 2, "failed": 0, "rejected": 0}
    forms = sent_forms(route)
    day1, day3 = TODAY - dt.timedelta(days=1), TODAY - dt.timedelta(days=3)
    assert [(f["identifier"], f["payload[value]"]) for f in forms] == [
        (f"tollbooth:cus_metered:{day3}:0", "20"), (f"tollbooth:cus_metered:{day1}:0", "10")]
    assert all(f["event_name"] == "api_credits" and f["payload[stripe_customer_id]"] == "cus_metered" for f in forms)
    end_of_day1 = dt.datetime.combine(day1 + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert int(forms[1]["timestamp"]) == int(end_of_day1.timestamp()) - 1
    assert route.calls[0].request.headers["Idempotency-Key"] == forms[0]["identifier"]
    assert route.calls[0].request.headers["Authorization"] == "Bearer sk_test_meters"
    got = reports(committed.dsn)
    assert [r["status"] for r in got] == ["expired", "sent", "sent"]
    assert "35 days" in got[0]["error"] and got[0]["attempts"] == 0, "the old window was never sent"
    assert got[1]["answer"]["object"] == "billing.meter_event" and got[1]["http_status"] == 200

    assert report_usage(db, "sk_test_meters", at=NOW)["sent"] == 0 and route.call_count == 2, "a repeated run sends nothing"


@respx.mock
def test_late_usage_is_reported_as_the_difference(metered):
    committed, db = metered
    route = respx.post(URL).mock(side_effect=ok)
    report_usage(db, "sk_test_meters", at=NOW)
    with psycopg.connect(committed.dsn, autocommit=True) as c:
        add_event(c, committed.org, at=NOW - dt.timedelta(days=1), credits=7)
        rollup(c)
    assert report_usage(db, "sk_test_meters", at=NOW)["sent"] == 1
    last = sent_forms(route)[-1]
    assert last["identifier"] == f"tollbooth:cus_metered:{TODAY - dt.timedelta(days=1)}:1"
    assert last["payload[value]"] == "7"
    with psycopg.connect(committed.dsn) as c:
        total = scalar(c, "select sum(value) from public.stripe_meter_reports where status = 'sent'")
        assert total == scalar(c, "select sum(credits) from public.usage_daily where org_id = %s "
                                  "and day between %s and %s", (committed.org, TODAY - dt.timedelta(days=35),
                                                                 TODAY - dt.timedelta(days=1)))


@respx.mock
def test_a_failed_report_is_retried_with_the_same_identifier(metered):
    committed, db = metered
    route = respx.post(URL).mock(side_effect=[httpx.Response(500, json={"error": {"message": "boom"}}),
                                              httpx.ConnectError("lost"), ok, ok])
    assert report_usage(db, "sk_test_meters", at=NOW) == {"created": 3, "expired": 1, "sent": 0, "failed": 2, "rejected": 0}
    assert report_usage(db, "sk_test_meters", at=NOW)["sent"] == 0, "claimed a moment ago: not resent at once"
    later = NOW + dt.timedelta(minutes=6)
    assert report_usage(db, "sk_test_meters", at=later)["sent"] == 2
    ids = [f["identifier"] for f in sent_forms(route)]
    assert ids[:2] == ids[2:], "the retry reuses the identifiers, so Stripe deduplicates a lost success"
    assert [r["status"] for r in reports(committed.dsn)] == ["expired", "sent", "sent"]
    assert [r["attempts"] for r in reports(committed.dsn)][1:] == [2, 2]


@respx.mock
def test_a_4xx_is_recorded_and_not_resent(metered):
    committed, db = metered
    answer = {"error": {"type": "invalid_request_error", "code": "resource_missing",
                        "message": "No such customer: 'cus_metered'"}}
    route = respx.post(URL).mock(return_value=httpx.Response(400, json=answer))
    assert report_usage(db, "sk_test_meters", at=NOW)["rejected"] == 2
    got = reports(committed.dsn)[1:]
    assert all(r["status"] == "rejected" and r["http_status"] == 400 and r["answer"] == answer for r in got)
    assert "No such customer" in got[0]["error"]
    report_usage(db, "sk_test_meters", at=NOW + dt.timedelta(hours=1))
    assert route.call_count == 2, "a rejected report waits for a person"


@respx.mock
def test_a_429_is_retried(metered):
    committed, db = metered
    respx.post(URL).mock(side_effect=[httpx.Response(429, json={"error": {"message": "slow down"}}), ok, ok])
    assert report_usage(db, "sk_test_meters", at=NOW)["failed"] == 1
    assert report_usage(db, "sk_test_meters", at=NOW + dt.timedelta(minutes=6))["sent"] >= 1


METER_REPORTS = t("public.stripe_meter_reports", ADMINS,
                  insert="insert into public.stripe_meter_reports (org_id, customer_id, event_name, window_start, "
                         "window_end, value, identifier) values (%(org)s, 'cus_x', 'e', now(), now(), 1, 'forged') "
                         "returning 1",
                  update="update public.stripe_meter_reports set status = 'sent' where org_id = %(org)s returning 1")


@pytest.fixture
def a_report(conn, cast):
    for org in (cast.team, cast.other_team):
        conn.execute("insert into public.stripe_meter_reports (org_id, customer_id, event_name, window_start, "
                     "window_end, value, identifier) values (%s, %s, 'e', now(), now(), 3, %s)",
                     (org, f"cus_{org}", f"rls-{org}"))


@pytest.mark.parametrize("who", ["anon", "owner", "admin", "member", "outsider", "banned", "service"])
def test_meter_reports_are_read_by_org_admins_only(conn, api, cast, a_report, who):
    check_select(conn, api, cast, METER_REPORTS, who)


@pytest.mark.parametrize("op", ["insert", "update", "delete"])
@pytest.mark.parametrize("who", NOT_SERVICE)
def test_meter_reports_direct_writes_are_refused(conn, api, cast, a_report, op, who):
    check_direct_write_is_refused(conn, api, cast, METER_REPORTS, op, who)
