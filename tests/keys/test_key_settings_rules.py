"""The rules on a key's settings (migration keys_settings): every writer of api_keys meets
them on insert and on an update of a setting, as the CHECK constraints they replace
reported them (23514 naming the constraint); an update of the key's counters alone, as
every metered call makes, does not run them."""
from __future__ import annotations

import pytest

from tests.support.metering import create_key
from tests.support.pg import one, raises_sqlstate, scalar, snapshot

# (column, a value the rule refuses, the constraint named, a value at its edge it accepts)
BROKEN = [
    ("name", "   ", "api_keys_name_check", "n" * 100),
    ("name", "n" * 101, "api_keys_name_check", " n "),
    ("description", "d" * 1001, "api_keys_description_check", "d" * 1000),
    ("status", "paused", "api_keys_status_check", "expired"),
    ("models", ["m"] * 201, "api_keys_models_check", ["m"] * 200),
    ("credit_limit", -1, "api_keys_credit_limit_check", 0),
    ("credit_limit_period", "weekly", "api_keys_credit_limit_period_check", "9999d"),
    ("credit_limit_period", "0d", "api_keys_credit_limit_period_check", "monthly"),
    ("rpm", 0, "api_keys_rpm_check", 1),
    ("tpm", -5, "api_keys_tpm_check", 1),
    ("allowed_ips", [], "api_keys_allowed_ips_check", ["10.0.0.0/8"] * 100),
    ("allowed_ips", ["10.0.0.0/8"] * 101, "api_keys_allowed_ips_check", ["127.0.0.1/32"]),
]
CAST = {"models": "::text[]", "allowed_ips": "::cidr[]"}
# settings a CHECK let through as NULL, and still may be NULL
NULLABLE = ["description", "models", "credit_limit", "rpm", "tpm", "allowed_ips"]


@pytest.fixture
def key_id(conn, cast):
    return create_key(conn, cast.owner, cast.team, name="rules")["id"]


def copy_with(conn, key_id, column: str, value) -> None:
    """Insert a copy of the key (new id and hash) with `column` set to `value`."""
    kept = ", ".join(c for c in ("org_id", "created_by", "name", "prefix") if c != column)
    conn.execute(
        f"insert into public.api_keys ({kept}, key_hash, {column}) "
        f"select {kept}, sha256(gen_random_uuid()::text::bytea), %s{CAST.get(column, '')} "
        "from public.api_keys where id = %s", (value, key_id))


@pytest.mark.parametrize("column,bad,constraint,edge", BROKEN)
def test_a_bad_setting_is_refused_on_insert_and_update(conn, key_id, column, bad, constraint, edge):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("23514", constraint), conn.transaction():
        copy_with(conn, key_id, column, bad)
    with raises_sqlstate("23514", constraint), conn.transaction():
        conn.execute(f"update public.api_keys set {column} = %s{CAST.get(column, '')} where id = %s", (bad, key_id))
    assert snapshot(conn, "public.api_keys") == before, f"{column} = {bad!r} changed no key"

    with conn.transaction():
        copy_with(conn, key_id, column, edge)
        conn.execute(f"update public.api_keys set {column} = %s{CAST.get(column, '')} where id = %s", (edge, key_id))
    assert scalar(conn, f"select count(*) from public.api_keys where {column} = %s{CAST.get(column, '')} "
                        "and prefix = (select prefix from public.api_keys where id = %s)",
                  (edge, key_id)) == 2, f"{column} = {edge!r} is at the rule's edge: both writes kept it"


@pytest.mark.parametrize("column", NULLABLE)
def test_null_settings_pass_as_they_did(conn, key_id, column):
    conn.execute(f"update public.api_keys set {column} = null where id = %s", (key_id,))
    copy_with(conn, key_id, column, None)
    assert scalar(conn, f"select count(*) from public.api_keys where {column} is null "
                        "and prefix = (select prefix from public.api_keys where id = %s)", (key_id,)) == 2


def test_the_error_names_its_table_and_constraint(conn, key_id):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation) as caught, conn.transaction():
        conn.execute("update public.api_keys set rpm = 0 where id = %s", (key_id,))
    diag = caught.value.diag
    assert (diag.schema_name, diag.table_name, diag.constraint_name) == ("public", "api_keys", "api_keys_rpm_check")
    assert str(caught.value).startswith('new row for relation "api_keys" violates check constraint "api_keys_rpm_check"')


def _rule_runs(conn) -> int:
    return scalar(conn, "select coalesce(sum(calls), 0) from pg_stat_xact_user_functions "
                        "where schemaname = 'private' and funcname = 'check_api_key_settings'")


def test_counter_updates_do_not_run_the_rules(conn, key_id):
    conn.execute("set local track_functions = 'pl'")
    start = _rule_runs(conn)
    conn.execute("update public.api_keys set usage_count = usage_count + 1, last_used_at = now(), "
                 "budget_reserved = budget_reserved + 5, budget_spent = budget_spent + 1, "
                 "rate_requests = rate_requests + 1, rate_tokens = rate_tokens + 10 where id = %s", (key_id,))
    assert _rule_runs(conn) == start, "a metered call's counter update does not run the settings rules"
    conn.execute("update public.api_keys set rpm = 60 where id = %s", (key_id,))
    assert _rule_runs(conn) == start + 1, "an update of a setting runs them once"
    row = one(conn, "select usage_count, rpm from public.api_keys where id = %s", (key_id,))
    assert (row["usage_count"], row["rpm"]) == (1, 60)
