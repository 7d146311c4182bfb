"""Finding 2 of issue 11: anon and authenticated hold exactly the privileges in `public`
that our tables and RPCs need, written out below, so a new grant must be intended. No
sequence is theirs (Supabase's default privileges used to grant every sequence, so anon
could `setval` the ledger's id sequence and break every later ledger write)."""
from __future__ import annotations

import pytest

from tests.support.personas import make_user
from tests.support.pg import as_anon, as_user, raises_sqlstate

# Every privilege anon, authenticated (or PUBLIC, which both inherit) hold in schema public.
ALLOWED = {
    "anon SELECT columns public.stripe_prices(active, created_at, currency, deleted_at, id, lookup_key, "
    "metadata, nickname, product_id, recurring_interval, recurring_interval_count, synced_at, type, "
    "unit_amount, updated_at)",
    "anon SELECT columns public.stripe_products(active, created_at, deleted_at, description, id, "
    "metadata, name, plan_id, synced_at, updated_at)",
    "anon SELECT table public.model_prices",
    "anon SELECT table public.plans",
    "authenticated DELETE table public.invitations",
    "authenticated DELETE table public.projects",
    "authenticated EXECUTE function public.accept_invitation(token text)",
    # issue 12: keys with controls, changed and rotated by admins; members read budgets
    "authenticated EXECUTE function public.create_api_key(org_id uuid, name text, description text, "
    "project_id uuid, expires_at timestamp with time zone, models text[], credit_limit bigint, "
    "credit_limit_period text, rpm integer, tpm integer, allowed_ips cidr[])",
    "authenticated EXECUTE function public.update_api_key(key_id uuid, name text, description text, "
    "expires_at timestamp with time zone, models text[], credit_limit bigint, credit_limit_period text, "
    "rpm integer, tpm integer, allowed_ips cidr[])",
    "authenticated EXECUTE function public.rotate_api_key(key_id uuid, grace_seconds integer)",
    "authenticated EXECUTE function public.api_key_budgets(org_id uuid)",
    # issue 12: trials, started and cancelled by people, read by the owner and members (RLS)
    "authenticated EXECUTE function public.start_trial(name text, slug text, tier text)",
    "authenticated EXECUTE function public.cancel_trial(trial_id uuid)",
    "authenticated SELECT table public.trials",
    "authenticated EXECUTE function public.create_organization(name text, slug text)",
    "authenticated EXECUTE function public.delete_organization(org_id uuid)",
    "authenticated EXECUTE function public.invite_member(org_id uuid, email text, role member_role)",
    "authenticated EXECUTE function public.leave_organization(org_id uuid)",
    "authenticated EXECUTE function public.organization_stripe_customer_id(org_id uuid)",
    "authenticated EXECUTE function public.remove_member(org_id uuid, user_id uuid)",
    "authenticated EXECUTE function public.revoke_api_key(id uuid)",
    "authenticated EXECUTE function public.update_member_role(org_id uuid, user_id uuid, role member_role)",
    "authenticated INSERT columns public.projects(description, name, org_id)",
    "authenticated SELECT columns public.api_keys(allowed_ips, budget_period_start, budget_reserved, "
    "budget_spent, created_at, created_by, credit_limit, credit_limit_period, description, expires_at, id, "
    "last_used_at, models, name, org_id, prefix, previous_key_expires_at, project_id, rate_requests, "
    "rate_tokens, rate_window_start, revoked_at, revoked_by, rotated_at, rpm, status, tier, tpm, unkey_key_id, "
    "updated_at, usage_count)",
    "authenticated SELECT columns public.invitations(accepted_at, accepted_by, created_at, email, "
    "expires_at, id, invited_by, org_id, role, voided_at)",
    "authenticated SELECT columns public.organizations(billing_status, created_at, created_by, id, name, "
    "personal, personal_owner_id, plan_id, slug, updated_at)",
    "authenticated SELECT columns public.payments(amount, amount_paid, billing_reason, created_at, "
    "currency, customer_id, description, failure_message, hosted_invoice_url, id, kind, org_id, "
    "period_end, period_start, status, subscription_id, synced_at, updated_at)",
    "authenticated SELECT columns public.stripe_customers(created_at, deleted_at, email, id, metadata, "
    "name, org_id, synced_at, updated_at)",
    "authenticated SELECT columns public.stripe_prices(active, created_at, currency, deleted_at, id, "
    "lookup_key, metadata, nickname, product_id, recurring_interval, recurring_interval_count, synced_at, "
    "type, unit_amount, updated_at)",
    "authenticated SELECT columns public.stripe_products(active, created_at, deleted_at, description, id, "
    "metadata, name, plan_id, synced_at, updated_at)",
    "authenticated SELECT columns public.subscriptions(cancel_at, cancel_at_period_end, canceled_at, "
    "created_at, current_period_end, current_period_start, customer_id, ended_at, id, metadata, org_id, "
    "price_id, product_id, quantity, status, synced_at, trial_end, trial_start, updated_at)",
    "authenticated SELECT table public.api_requests",
    "authenticated SELECT table public.credit_accounts",
    "authenticated SELECT table public.credit_balances",
    "authenticated SELECT table public.credit_grants",
    "authenticated SELECT table public.credit_ledger",
    "authenticated SELECT table public.model_prices",
    # meetings: members read meetings and participants, room state without its sealed secrets
    "authenticated SELECT table public.meetings",
    "authenticated SELECT table public.participants",
    "authenticated SELECT columns public.rooms(created_at, key_id, meeting_id, org_id, state, updated_at, updated_by, version)",
    "authenticated EXECUTE function public.meeting_costs(org_id uuid, meeting_ids uuid[])",
    # usage: members read the rollup and the usage page; admins what was reported to Stripe
    "authenticated SELECT table public.usage_daily",
    "authenticated EXECUTE function public.usage_summary(org_id uuid, days integer, tz text, group_by text)",
    "authenticated SELECT columns public.stripe_meter_reports(attempts, created_at, customer_id, error, event_name, "
    "http_status, id, identifier, org_id, reported_at, seq, status, subscription_id, value, window_end, window_start)",
    "authenticated SELECT table public.organization_members",
    "authenticated SELECT table public.plans",
    "authenticated SELECT table public.profiles",
    "authenticated SELECT table public.projects",
    "authenticated SELECT table public.usage_events",
    "authenticated UPDATE columns public.organizations(name, slug)",
    "authenticated UPDATE columns public.profiles(avatar_url, company, full_name)",
    "authenticated UPDATE columns public.projects(archived_at, description, name)",
}

PRIVILEGES = """
with api_roles(oid, name) as (
  select oid, rolname from pg_roles where rolname in ('anon', 'authenticated')
  union all select 0, 'PUBLIC'
),
tables as (
  select c.oid, c.relname, c.relkind, c.relowner, c.relacl from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
)
select r.name || ' ' || a.privilege_type || ' '
       || case when t.relkind = 'S' then 'sequence' else 'table' end || ' public.' || t.relname
from tables t, aclexplode(coalesce(t.relacl, acldefault((case when t.relkind = 'S' then 's' else 'r' end)::"char", t.relowner))) a
join api_roles r on r.oid = a.grantee
union all
select r.name || ' ' || a.privilege_type || ' columns public.' || t.relname
       || '(' || string_agg(att.attname::text, ', ' order by att.attname) || ')'
from tables t join pg_attribute att on att.attrelid = t.oid and att.attnum > 0 and not att.attisdropped
cross join aclexplode(att.attacl) a
join api_roles r on r.oid = a.grantee
group by r.name, a.privilege_type, t.relname
union all
select r.name || ' ' || a.privilege_type || ' function public.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'public'
cross join aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a
join api_roles r on r.oid = a.grantee
"""


def test_api_roles_hold_exactly_the_allowed_privileges_in_public(conn):
    held = {row[0] for row in conn.execute(PRIVILEGES).fetchall()}
    unexpected, missing = sorted(held - ALLOWED), sorted(ALLOWED - held)
    assert (unexpected, missing) == ([], []), (
        "privileges of anon/authenticated/PUBLIC in public differ from the allow-list in this test:\n"
        f"held but not allowed: {unexpected}\nallowed but not held: {missing}")


def test_no_sequence_in_public_is_granted_to_the_api_roles(conn):
    rows = conn.execute(
        "select c.relname, r.rolname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "cross join pg_roles r where n.nspname = 'public' and c.relkind = 'S' "
        "and r.rolname in ('anon', 'authenticated') "
        "and (has_sequence_privilege(r.oid, c.oid, 'usage') or has_sequence_privilege(r.oid, c.oid, 'select') "
        "or has_sequence_privilege(r.oid, c.oid, 'update'))").fetchall()
    assert rows == [], f"sequences the API roles may use: {rows}"


def test_anon_cannot_setval_the_ledger_sequence(conn):
    seq = conn.execute("select pg_get_serial_sequence('public.credit_ledger', 'id')").fetchone()[0]
    before = conn.execute(f"select last_value from {seq}").fetchone()[0]
    with raises_sqlstate("42501"):
        as_anon(conn)("select setval(%s, 9223372036854775807)", (seq,))
    assert conn.execute(f"select last_value from {seq}").fetchone()[0] == before, "the sequence did not move"


@pytest.mark.parametrize("sql", ["select last_value from {seq}", "select nextval('{seq}')"])
def test_signed_in_user_cannot_read_or_move_a_sequence(conn, sql):
    seq = conn.execute("select pg_get_serial_sequence('public.credit_grants', 'id')").fetchone()[0]
    with raises_sqlstate("42501"):
        as_user(conn, make_user(conn, "curious"))(sql.format(seq=seq))


def test_future_sequences_and_tables_are_not_granted_by_default(conn):
    conn.execute("create sequence public.hardening_probe_seq")
    conn.execute("create table public.hardening_probe (id bigint generated always as identity primary key)")
    rows = conn.execute(
        "select r.rolname, c.relname from pg_class c cross join pg_roles r "
        "where c.relname in ('hardening_probe_seq', 'hardening_probe', 'hardening_probe_id_seq') "
        "and r.rolname in ('anon', 'authenticated') "
        "and (case when c.relkind = 'S' then has_sequence_privilege(r.oid, c.oid, 'usage,select,update') "
        "          else has_table_privilege(r.oid, c.oid, 'select,insert,update,delete,truncate,references,trigger') "
        "     end)").fetchall()
    assert rows == [], f"new objects granted to the API roles by default privileges: {rows}"
