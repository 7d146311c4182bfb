"""One source per rule, and SQL owns it: the usage statuses, the API key prefix (and the
demo key built from it), the plans, and what a credit pack buys."""
from __future__ import annotations

import hashlib
import re
import uuid

import psycopg
import pytest

from lib.chat.metering import USAGE_STATUSES
from lib.local import migrate
from tests.support.personas import make_team, make_user
from tests.support.pg import raises_sqlstate, scalar, snapshot
from tests.support.stripe import PACK_CREDITS, PACK_EXPIRE_DAYS, PACK_PRICE, PRO_PRICE, apply, catalogue

SEED = migrate.SUPABASE_DIR / "seed.sql"
DEMO_KEY_ID = "00000000-0000-4000-8000-0000000000ce"
DEMO_PHRASE = b"tollbooth-local-demo-key"
PLANS_INSERT = re.compile(r"insert\s+into\s+(public\.)?plans\b", re.IGNORECASE)


def test_usage_statuses_are_the_sql_enum(conn):
    values = scalar(conn, "select enum_range(null::public.usage_status)::text[]")
    assert tuple(values) == USAGE_STATUSES, "lib.chat.metering.USAGE_STATUSES must equal public.usage_status"
    column = scalar(conn, "select atttypid::regtype::text from pg_attribute "
                          "where attrelid = 'public.usage_events'::regclass and attname = 'status'")
    assert column == "usage_status", "usage_events.status is typed by the enum"


def test_an_unknown_usage_status_is_refused_and_writes_nothing(conn):
    org = make_team(conn, make_user(conn, "owner"))
    before = snapshot(conn, "public.usage_events", "public.api_requests", "public.credit_ledger")
    with raises_sqlstate("PT400", 'unknown usage status "exploded"'), conn.transaction():
        conn.execute("select public.finish_chat_request(request_id := 'r-unknown', status := 'exploded', "
                     "http_status := 500, endpoint := '/v1/chat/completions', org_id := %s, model := 'gpt-4o-mini')",
                     (org,))
    assert snapshot(conn, "public.usage_events", "public.api_requests", "public.credit_ledger") == before


def test_the_seed_has_no_key_prefix_and_no_plans():
    seed = SEED.read_text()
    assert "xan_" not in seed, "the seed builds the demo key from private.app_settings, not a literal prefix"
    assert not PLANS_INSERT.search(seed), "plans are inserted by their migration only"
    holders = [p.name for p in migrate.migration_files() if PLANS_INSERT.search(p.read_text())]
    assert len(holders) == 1, f"exactly one migration inserts the plans, found {holders}"


def _demo_key(conn: psycopg.Connection) -> tuple[str, bytes]:
    return conn.execute("select prefix, key_hash from public.api_keys where id = %s", (DEMO_KEY_ID,)).fetchone()


@pytest.mark.parametrize("prefix", [None, "tb_"])
def test_the_demo_key_is_built_from_the_prefix_setting(conn, prefix):
    if prefix:  # seed again with another prefix: the demo key follows the setting
        conn.execute("delete from public.api_keys where id = %s", (DEMO_KEY_ID,))
        conn.execute("update private.app_settings set value = %s where key = 'api_key_prefix'", (prefix,))
        conn.execute(SEED.read_text())
    setting = scalar(conn, "select value from private.app_settings where key = 'api_key_prefix'")
    assert setting == (prefix or "xan_")
    key = setting + hashlib.sha256(DEMO_PHRASE).hexdigest()
    shown, key_hash = _demo_key(conn)
    assert shown == key[:len(setting) + 8], "display prefix: the key prefix and the first 8 characters"
    assert bytes(key_hash) == hashlib.sha256(key.encode()).digest(), "key_hash is sha256 of the whole key"


@pytest.mark.parametrize("bad", ["bad.prefix", "x", "1abc_", "a" * 17 + "_", ""])
def test_the_api_key_prefix_setting_refuses_a_bad_prefix(conn, bad):
    with raises_sqlstate("23514", "app_settings_api_key_prefix_format"), conn.transaction():
        conn.execute("update private.app_settings set value = %s where key = 'api_key_prefix'", (bad,))
    assert scalar(conn, "select value from private.app_settings where key = 'api_key_prefix'") == "xan_"


def test_the_api_key_prefix_setting_takes_a_good_prefix(conn):
    conn.execute("update private.app_settings set value = 'Acme2_' where key = 'api_key_prefix'")
    assert scalar(conn, "select value from private.app_settings where key = 'api_key_prefix'") == "Acme2_"


def _context(conn, org: uuid.UUID, user: uuid.UUID, price: str, **quantity) -> dict:
    args = ", quantity := %(quantity)s" if quantity else ""
    return scalar(conn, f"select public.stripe_billing_context(org_id := %(org)s, user_id := %(user)s, "
                        f"price_id := %(price)s{args})", {"org": org, "user": user, "price": price, **quantity})


def test_billing_context_answers_what_a_pack_checkout_buys(conn):
    owner = make_user(conn, "owner")
    team = make_team(conn, owner)
    apply(conn, *catalogue())
    one = _context(conn, team, owner.id, PACK_PRICE)
    three = _context(conn, team, owner.id, PACK_PRICE, quantity=3)
    assert (one["checkout_credits"], one["credits_expire_days"]) == (PACK_CREDITS, PACK_EXPIRE_DAYS)
    assert (three["checkout_credits"], three["credits_expire_days"]) == (3 * PACK_CREDITS, PACK_EXPIRE_DAYS)
    plan = _context(conn, team, owner.id, PRO_PRICE, quantity=2)
    assert (plan["checkout_credits"], plan["credits_expire_days"]) == (None, None), "a plan price is not a pack"


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_a_pack_whose_expiry_is_not_a_positive_day_count_never_expires(conn, days):
    owner = make_user(conn, "owner")
    team = make_team(conn, owner)
    apply(conn, *catalogue())
    conn.execute("update public.stripe_prices set metadata = metadata || jsonb_build_object('credits_expire_days', "
                 "%s::text) where id = %s", (days, PACK_PRICE))
    ctx = _context(conn, team, owner.id, PACK_PRICE)
    assert (ctx["checkout_credits"], ctx["credits_expire_days"]) == (PACK_CREDITS, None), \
        f"credits_expire_days {days!r} means no expiry, not an expiry today"
