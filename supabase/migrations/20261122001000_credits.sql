/**
 * Credits: every organization holds a balance that only SQL functions move, and every
 * movement is a row in the append-only credit_ledger, so the balance always equals the
 * ledger's sum. Grants (the plan's allowance per period, purchased packs, trials) are
 * buckets with an expiry that settlements consume soonest-expiring first. The chat
 * proxy reserves the worst case before calling upstream and settles the real cost
 * after; a reservation never settled is released by `release_stale_reservations`.
 *
 * Concurrency: every function that moves credits first locks the organization's
 * credit_accounts row (one conditional update), then touches grants and the ledger,
 * so they serialize per organization, never deadlock, and never go below zero.
 */

-- Section - Types

create type public.credit_grant_kind as enum ('plan', 'purchase', 'trial', 'adjustment');
create type public.credit_entry_kind as enum (
  'grant', 'reservation', 'settlement', 'release', 'expiry', 'adjustment'
);

-- Section - Tables

/**
 * One row per organization: what it may spend now (`balance`) and what is held by
 * in-flight requests (`reserved`). Only SQL functions write it.
 */
create table public.credit_accounts (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  balance bigint not null default 0 check (balance >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  -- the plan allowance period the balance belongs to; rolled when it ends
  period_start timestamptz,
  period_end timestamptz,
  updated_at timestamptz not null default now()
);
alter table public.credit_accounts enable row level security;
revoke all on public.credit_accounts from anon, authenticated;
grant select on public.credit_accounts to authenticated;

comment on table public.credit_accounts is
  'Per organization: the credits it may spend now (balance) and those held by requests in flight (reserved).';

/**
 * Buckets of credits. `remaining` is what settlements have not consumed yet; at
 * `expires_at` whatever is left expires (a ledger row says so).
 */
create table public.credit_grants (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  kind public.credit_grant_kind not null,
  amount bigint not null check (amount > 0),
  remaining bigint not null check (remaining >= 0 and remaining <= amount),
  expires_at timestamptz,
  -- idempotency key of the grant's cause: 'plan:<org>:<period start>', 'stripe:cs_…'
  external_id text unique,
  description text,
  expired_at timestamptz,
  created_at timestamptz not null default now()
);
create index credit_grants_org_open_idx on public.credit_grants (org_id, expires_at) where remaining > 0;
create index credit_grants_expiring_idx on public.credit_grants (expires_at) where remaining > 0 and expired_at is null;
alter table public.credit_grants enable row level security;
revoke all on public.credit_grants from anon, authenticated;
grant select on public.credit_grants to authenticated;

comment on table public.credit_grants is
  'Buckets of credits (plan allowance, purchases, trials, adjustments) with what is left and when it expires.';

/**
 * Append-only: every change of a balance, signed (+ adds to what the org may spend).
 * sum(amount) per organization = credit_accounts.balance.
 */
create table public.credit_ledger (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  kind public.credit_entry_kind not null,
  amount bigint not null,
  balance_after bigint not null check (balance_after >= 0),
  grant_id bigint references public.credit_grants (id) on delete set null,
  request_id text,
  description text,
  created_at timestamptz not null default now()
);
create index credit_ledger_org_created_idx on public.credit_ledger (org_id, created_at);
create index credit_ledger_grant_id_idx on public.credit_ledger (grant_id);
create index credit_ledger_request_id_idx on public.credit_ledger (request_id) where request_id is not null;
alter table public.credit_ledger enable row level security;
revoke all on public.credit_ledger from anon, authenticated;
grant select on public.credit_ledger to authenticated;

comment on table public.credit_ledger is
  'Append-only record of every credit movement; its sum per organization equals the balance.';

/**
 * The worst-case hold of one request, settled or released exactly once (by request_id).
 */
create table public.credit_reservations (
  request_id text primary key check (char_length(request_id) between 1 and 200),
  org_id uuid not null references public.organizations (id) on delete cascade,
  amount bigint not null check (amount >= 0),
  status text not null default 'open' check (status in ('open', 'settled', 'released')),
  charged bigint check (charged >= 0),
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  closed_at timestamptz
);
create index credit_reservations_org_id_idx on public.credit_reservations (org_id);
create index credit_reservations_open_idx on public.credit_reservations (expires_at) where status = 'open';
create index credit_reservations_org_open_idx on public.credit_reservations (org_id, expires_at) where status = 'open';
alter table public.credit_reservations enable row level security;
revoke all on public.credit_reservations from anon, authenticated;

comment on table public.credit_reservations is
  'The worst-case hold of one metered request, settled or released exactly once.';

/**
 * What the frontend shows: remaining credits per organization (members only, via RLS
 * of credit_accounts: the view runs with the caller's rights).
 */
create view public.credit_balances with (security_invoker = true) as
  select a.org_id, a.balance as remaining, a.reserved, a.period_start, a.period_end,
         coalesce((select sum(g.remaining) from public.credit_grants g
                   where g.org_id = a.org_id and g.kind = 'plan' and g.remaining > 0), 0)::bigint as plan_remaining,
         a.updated_at
  from public.credit_accounts a;
revoke all on public.credit_balances from anon, authenticated;
grant select on public.credit_balances to authenticated;

comment on view public.credit_balances is
  'Remaining and reserved credits per organization, as the frontend shows them.';

-- Section - Triggers

/**
 * Ledger rows are never changed or removed (except with their organization).
 */
create or replace function private.forbid_ledger_rewrite()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'credit_ledger is append-only' using errcode = '42501';
end;
$$;
create trigger credit_ledger_append_only before update on public.credit_ledger
  for each row execute function private.forbid_ledger_rewrite();

/**
 * Ledger rows leave only with their organization (the cascade runs after the
 * organization row is gone); any other delete is refused.
 */
create or replace function private.forbid_ledger_delete()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (select 1 from public.organizations o where o.id = old.org_id) then
    raise exception 'credit_ledger is append-only' using errcode = '42501';
  end if;
  return old;
end;
$$;
create trigger credit_ledger_no_delete before delete on public.credit_ledger
  for each row execute function private.forbid_ledger_delete();
create trigger credit_ledger_no_truncate before truncate on public.credit_ledger
  for each statement execute function private.forbid_ledger_rewrite();

/**
 * New organization: credit account plus the current period's plan allowance.
 */
create or replace function private.handle_new_organization()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.credit_accounts (org_id) values (new.id) on conflict (org_id) do nothing;
  perform private.ensure_current_period(new.id);
  return new;
end;
$$;

create trigger on_organization_created
  after insert on public.organizations
  for each row execute function private.handle_new_organization();

-- Section - Private helpers

/**
 * Appends one ledger row (the account row is already locked and updated).
 */
create or replace function private.append_ledger(
  org uuid, kind public.credit_entry_kind, delta bigint, balance_after bigint,
  grant_id bigint default null, request_id text default null, description text default null
)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.credit_ledger (org_id, kind, amount, balance_after, grant_id, request_id, description)
  values (append_ledger.org, append_ledger.kind, append_ledger.delta, append_ledger.balance_after,
          append_ledger.grant_id, append_ledger.request_id, append_ledger.description);
$$;

/**
 * Moves the balance of an already locked account by `delta` (and what is held by
 * `reserved_delta`) in one update, and appends the ledger row. The balance check
 * constraint refuses anything that would take it below zero.
 */
create or replace function private.post_ledger(
  org uuid, kind public.credit_entry_kind, delta bigint, grant_id bigint default null,
  request_id text default null, description text default null, reserved_delta bigint default 0
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_balance bigint;
begin
  update public.credit_accounts a
  set balance = a.balance + post_ledger.delta, reserved = a.reserved + post_ledger.reserved_delta,
      updated_at = now()
  where a.org_id = post_ledger.org
  returning a.balance into new_balance;
  if new_balance is null then
    raise exception 'organization % has no credit account', org using errcode = 'PT404';
  end if;
  perform private.append_ledger(org, kind, delta, new_balance, grant_id, request_id, description);
  return new_balance;
end;
$$;

/**
 * Locks the organization's account row (creating it if missing): the first step of
 * every credit movement, so movements of one organization run one at a time.
 */
create or replace function private.lock_account(org uuid)
returns public.credit_accounts
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
begin
  select * into acct from public.credit_accounts a where a.org_id = lock_account.org for update;
  if acct.org_id is null then
    insert into public.credit_accounts (org_id) values (org) on conflict (org_id) do nothing;
    select * into acct from public.credit_accounts a where a.org_id = lock_account.org for update;
  end if;
  return acct;
end;
$$;

/**
 * Adds a grant (a bucket) and its ledger row. Idempotent by `external_id`: a second
 * call with the same id returns the first grant and changes nothing.
 */
create or replace function private.grant_credits(
  org uuid, kind public.credit_grant_kind, amount bigint, expires_at timestamptz default null,
  external_id text default null, description text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_id bigint;
begin
  if amount is null or amount <= 0 then
    raise exception 'a grant must be a positive number of credits' using errcode = 'PT400';
  end if;
  perform private.lock_account(org);
  if external_id is not null then
    select g.id into new_id from public.credit_grants g
    where g.external_id = grant_credits.external_id and g.org_id = grant_credits.org;
    if new_id is not null then
      return new_id;
    end if;
    if exists (select 1 from public.credit_grants g where g.external_id = grant_credits.external_id) then
      raise exception 'grant % belongs to another organization', external_id using errcode = 'PT409';
    end if;
  end if;
  insert into public.credit_grants (org_id, kind, amount, remaining, expires_at, external_id, description)
  values (org, kind, amount, amount, expires_at, external_id, description)
  returning id into new_id;
  perform private.post_ledger(org, 'grant', amount, new_id, null, coalesce(description, kind::text || ' grant'));
  return new_id;
end;
$$;

/**
 * Expires what is left of one grant (the part not held by reservations in flight).
 */
create or replace function private.expire_grant(grant_id bigint, reason text default 'expired')
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  g public.credit_grants;
  acct public.credit_accounts;
  gone bigint;
begin
  select * into g from public.credit_grants x where x.id = expire_grant.grant_id;
  if g.id is null or g.expired_at is not null then
    return 0;
  end if;
  acct := private.lock_account(g.org_id);
  select * into g from public.credit_grants x where x.id = expire_grant.grant_id for update;
  gone := least(g.remaining, acct.balance);
  update public.credit_grants x set remaining = x.remaining - gone, expired_at = now() where x.id = g.id;
  if gone > 0 then
    perform private.post_ledger(g.org_id, 'expiry', -gone, g.id, null, reason);
  end if;
  return gone;
end;
$$;

/**
 * Starts a plan allowance period: what is left of the previous plan grant expires and
 * the plan's monthly credits are granted until `period_end`. Idempotent per period.
 */
create or replace function private.start_plan_period(
  org uuid, plan text, period_start timestamptz, period_end timestamptz, reason text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  allowance bigint;
  old_grant bigint;
  new_grant bigint;
  ext text := 'plan:' || org || ':' || plan || ':' || extract(epoch from period_start)::bigint;
begin
  select p.monthly_credits into allowance from public.plans p where p.id = start_plan_period.plan;
  if allowance is null then
    raise exception 'unknown plan %', plan using errcode = 'PT400';
  end if;
  perform private.lock_account(org);
  select g.id into new_grant from public.credit_grants g where g.external_id = ext;
  if new_grant is not null then
    -- this plan's allowance for this period was granted already (maybe the org switched
    -- away and back): no second allowance, but no other plan's credits stay live either
    for old_grant in
      select g.id from public.credit_grants g
      where g.org_id = org and g.kind = 'plan' and g.expired_at is null and g.id <> new_grant
    loop
      perform private.expire_grant(old_grant, coalesce(reason, 'plan changed'));
    end loop;
    return new_grant;
  end if;
  for old_grant in
    select g.id from public.credit_grants g
    where g.org_id = org and g.kind = 'plan' and g.expired_at is null
  loop
    perform private.expire_grant(old_grant, coalesce(reason, 'plan period ended'));
  end loop;
  if allowance > 0 then
    new_grant := private.grant_credits(org, 'plan', allowance, period_end, ext,
                                       coalesce(reason, plan || ' plan allowance'));
  end if;
  update public.credit_accounts a
  set period_start = start_plan_period.period_start, period_end = start_plan_period.period_end
  where a.org_id = org;
  return new_grant;
end;
$$;

/**
 * Organizations without a billing period of their own (free plan, no subscription)
 * run on calendar months (UTC). Rolls the period when it has ended; cheap when not.
 */
create or replace function private.ensure_current_period(org uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
  plan text;
  month_start timestamptz := date_trunc('month', now() at time zone 'utc') at time zone 'utc';
begin
  select * into acct from public.credit_accounts a where a.org_id = org;
  if acct.org_id is not null and acct.period_end is not null and acct.period_end > now() then
    return;
  end if;
  select o.plan_id into plan from public.organizations o where o.id = org;
  if plan is null then
    return;
  end if;
  perform private.start_plan_period(org, plan, month_start, month_start + interval '1 month');
end;
$$;

/**
 * Consumes `amount` from the organization's open grants, soonest-expiring first.
 */
create or replace function private.consume_grants(org uuid, amount bigint)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  left_to_take bigint := amount;
  g record;
  take bigint;
begin
  -- credits of an expired grant that were held by a reservation at expiry go first
  for g in
    select x.id, x.remaining from public.credit_grants x
    where x.org_id = org and x.remaining > 0
    order by (x.expired_at is null), x.expires_at nulls last, x.id
    for update
  loop
    exit when left_to_take <= 0;
    take := least(g.remaining, left_to_take);
    update public.credit_grants set remaining = remaining - take where id = g.id;
    left_to_take := left_to_take - take;
  end loop;
end;
$$;

/**
 * A grant that expired while part of it was held by reservations keeps that part until
 * the holds close; then whatever of it came back to the balance expires too. Returns
 * the balance after.
 */
create or replace function private.expire_leftovers(org uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  g record;
  gone bigint;
  available bigint;
begin
  select a.balance into available from public.credit_accounts a where a.org_id = org;
  for g in
    select x.id, x.remaining from public.credit_grants x
    where x.org_id = org and x.expired_at is not null and x.remaining > 0
    order by x.id
    for update
  loop
    gone := least(g.remaining, available);
    exit when gone <= 0;
    update public.credit_grants set remaining = remaining - gone where id = g.id;
    available := private.post_ledger(org, 'expiry', -gone, g.id, null, 'expired grant: held credits returned');
  end loop;
  return available;
end;
$$;

-- existing organizations
select private.ensure_current_period(o.id) from public.organizations o;

-- Section - Policies

/**
 * Members see their organization's balance.
 */
create policy "Credit accounts are viewable by members" on public.credit_accounts
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Members see their organization's grants.
 */
create policy "Credit grants are viewable by members" on public.credit_grants
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Members see their organization's ledger.
 */
create policy "Credit ledger is viewable by members" on public.credit_ledger
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));
