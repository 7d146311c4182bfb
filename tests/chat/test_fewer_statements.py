"""A metered call in fewer statements (issue 8, migration chat_fewer): begin and finish
run no SQL-language helper (each one was an executor of its own per call), read the
metering settings once each, refuse in the same order as before, and a reservation
made after the plan period ended still starts the next period first."""
from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.support.credits import assert_consistent, balance
from tests.support.metering import create_key, finish
from tests.support.personas import add_member, ban, make_team, make_user
from tests.support.pg import as_service, raises_sqlstate, scalar


def begin_with_key(conn, key: str, request_id: str | None = None) -> dict:
    return as_service(conn).one(
        "select public.begin_chat_request(request_id := %s, model := 'gpt-4o-mini', prompt_tokens_bound := 10, "
        "completion_tokens_limit := 10, key_hash := %s, client_ip := '127.0.0.1') as r",
        (request_id or f"fewer-{uuid.uuid4().hex}", hashlib.sha256(key.encode()).digest()))["r"]


def calls(conn, language: str | None = None) -> dict[str, int]:
    """Calls of our functions in this transaction (of one language, when given)."""
    rows = conn.execute("select s.funcname, s.calls from pg_stat_xact_user_functions s "
                        "join pg_proc p on p.oid = s.funcid join pg_language l on l.oid = p.prolang "
                        "where s.schemaname in ('public', 'private') and (%s::text is null or l.lanname = %s)",
                        (language, language)).fetchall()
    return {name: n for name, n in rows}


@pytest.fixture
def team(conn):
    owner, admin = make_user(conn, "owner"), make_user(conn, "admin")
    org = make_team(conn, owner, allowance=100_000)
    add_member(conn, org, admin, "admin")
    return owner, admin, org


def test_a_metered_call_runs_no_sql_helper_and_reads_the_settings_once_each(conn, team):
    """With every control on the key (the benchmark's key): the helpers a call needs
    are PL/pgSQL, and the settings are read once by begin and once by finish."""
    owner, admin, org = team
    key = create_key(conn, admin, org, models=["gpt-4o-mini"], credit_limit=50_000, credit_limit_period="monthly",
                     rpm=1000, tpm=1_000_000, allowed_ips=["127.0.0.0/8"])["key"]
    conn.execute("set local track_functions = 'all'")
    grant = begin_with_key(conn, key, "fewer-1")
    done = finish(conn, "fewer-1", org, prompt_tokens=10, completion_tokens=5, api_key_id=grant["api_key_id"],
                  user_id=admin.id, reserved=grant["reserved"], flush_follows=True)
    assert (done["status"], done["replayed"]) == ("settled", False)
    assert calls(conn, "sql") == {}, "no SQL-language helper runs (before: is_user_active, setting, ...)"
    seen = calls(conn)
    assert seen.get("metering_start") == 2, "the metering settings: one read by begin, one by finish"
    assert "org_gate" not in seen and "key_by_hash" in seen, "the trial rule comes from begin's one organization read"
    assert_consistent(conn, org)


def test_begin_refuses_in_the_same_order(conn, team):
    """Owners first, then the key's creator, then the trial, then the address, then the
    model: each refusal appears once the one before it is fixed."""
    owner, admin, org = team
    key = create_key(conn, admin, org, allowed_ips=["10.0.0.0/8"])["key"]
    conn.execute("insert into public.trials (org_id, owner_id, name, slug, tier, credits, expires_at) "
                 "values (%s, %s, 'T', %s, 'standard', 10, now() - interval '1 day')",
                 (org, owner.id, f"t-{uuid.uuid4().hex[:8]}"))
    ban(conn, owner)
    ban(conn, admin, "inactive")
    before = balance(conn, org)
    with raises_sqlstate("PT401", "every owner"):
        begin_with_key(conn, key)
    conn.execute("update public.profiles set role = 'user' where id = %s", (owner.id,))
    with raises_sqlstate("PT401", "banned, inactive or deleted"):
        begin_with_key(conn, key)
    conn.execute("update public.profiles set is_active = true where id = %s", (admin.id,))
    with raises_sqlstate("PT401", "has ended"):
        begin_with_key(conn, key)
    conn.execute("update public.trials set status = 'converted' where org_id = %s", (org,))
    with raises_sqlstate("PT403", "may not be used from 127.0.0.1"):
        begin_with_key(conn, key)
    conn.execute("update public.api_keys set allowed_ips = null where org_id = %s", (org,))
    assert begin_with_key(conn, key)["org_id"] == str(org)
    assert balance(conn, org) < before, "only the last one reserved"
    assert scalar(conn, "select count(*) from public.credit_reservations where org_id = %s", (org,)) == 1


def test_a_reservation_after_the_period_ended_starts_the_next_period_first(conn, team):
    owner, admin, org = team
    key = create_key(conn, admin, org)["key"]
    # the month turned: the period is over, and this month's allowance not granted yet
    conn.execute("update public.credit_accounts set period_end = now() - interval '1 second' where org_id = %s",
                 (org,))
    conn.execute("update public.credit_grants set external_id = external_id || ':last-month' "
                 "where org_id = %s and kind = 'plan'", (org,))
    conn.execute("select private.grant_credits(%s, 'purchase', 1000, null)", (org,))  # outlives the period
    grant = begin_with_key(conn, key)
    assert grant["reserved"] > 0
    assert scalar(conn, "select period_end > now() from public.credit_accounts where org_id = %s", (org,)), \
        "the next period started before the hold"
    assert_consistent(conn, org)


def test_the_active_users_view_is_the_rule_is_user_active_applies(conn):
    people = {how: make_user(conn, f"u-{how}") for how in ("active", "role", "inactive", "banned_until", "past_ban")}
    for how in ("role", "inactive", "banned_until"):
        ban(conn, people[how], how)
    conn.execute("update auth.users set banned_until = now() - interval '1 day' where id = %s",
                 (people["past_ban"].id,))
    deleted = make_user(conn, "u-deleted")
    conn.execute("update auth.users set deleted_at = now() where id = %s", (deleted.id,))
    people["deleted"] = deleted
    for how, person in people.items():
        in_view = scalar(conn, "select exists (select 1 from private.active_users where id = %s)", (person.id,))
        assert in_view == scalar(conn, "select private.is_user_active(%s)", (person.id,)), how
        assert in_view == (how in ("active", "past_ban")), how


@pytest.mark.parametrize("relation", ["private.active_users", "private.metering_settings"])
def test_the_new_private_relations_are_not_for_api_roles(conn, relation):
    for role in ("anon", "authenticated"):
        for privilege in ("select", "insert", "update", "delete"):
            assert not scalar(conn, "select has_table_privilege(%s, %s, %s)", (role, relation, privilege)), \
                (role, privilege)


def metering_row(conn) -> tuple:
    return conn.execute("select synchronous_commit, lock_timeout, credits_per_usd "
                        "from private.metering_settings").fetchall()


def test_the_metering_settings_row_follows_app_settings(conn):
    """private.app_settings is where the settings are set; the one-row copy the hot path
    reads changes with it, in the same transaction, and falls back to the defaults."""
    assert metering_row(conn) == [("on", "2s", 1000)]
    conn.execute("update private.app_settings set value = '750ms' where key = 'metering_lock_timeout'")
    conn.execute("update private.app_settings set value = '1200' where key = 'credits_per_usd'")
    assert metering_row(conn) == [("on", "750ms", 1200)]
    with conn.transaction():
        conn.execute("select private.metering_start(true)")
        assert scalar(conn, "select current_setting('lock_timeout')") == "750ms"
    conn.execute("delete from private.app_settings where key in ('metering_lock_timeout', "
                 "'metering_synchronous_commit')")
    assert metering_row(conn) == [("on", "2s", 1200)], "the defaults, as before"


def test_a_credit_rate_that_is_not_a_number_is_refused(conn):
    with raises_sqlstate("22P02"), conn.transaction():
        conn.execute("update private.app_settings set value = 'lots' where key = 'credits_per_usd'")
    assert metering_row(conn) == [("on", "2s", 1000)]
