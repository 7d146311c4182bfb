/**
 * Credits, part 5: a settlement's grant update stays on its page (issue 8).
 *
 * Every settlement takes its charge from the organization's grants. The two indexes that
 * find grants with credits left were partial on `remaining > 0`, so each change of
 * `remaining` was an update no index could skip: a new entry in every index of
 * credit_grants per settlement. On a busy organization the open-grants index then holds
 * one dead entry per settlement since the last vacuum, and each settlement read them all
 * twice (about 300 index entries per call in the benchmark, and a bitmap heap scan and a
 * sort over them). The indexes are now partial on `has_remaining`, a stored generated
 * column that changes only when a grant empties or is refilled, so a settlement's update
 * changes no indexed value and stays on its heap page (a HOT update, with room kept free
 * by the fill factor). The functions that look for grants with credits left say
 * `has_remaining`, which those indexes answer.
 */

-- Section - Tables

-- set first: adding the stored column rewrites the table, with this room on each page
alter table public.credit_grants set (fillfactor = 70);
alter table public.credit_grants
  add column if not exists has_remaining boolean generated always as (remaining > 0) stored;

comment on column public.credit_grants.has_remaining is
  'remaining > 0, stored: the indexes of grants with credits left are partial on it, so taking credits from a grant updates no index.';

drop index if exists public.credit_grants_org_open_idx;
create index credit_grants_org_open_idx on public.credit_grants (org_id, expires_at) where has_remaining;
drop index if exists public.credit_grants_expiring_idx;
create index credit_grants_expiring_idx on public.credit_grants (expires_at) where has_remaining and expired_at is null;

-- Section - Private helpers

/**
 * Takes `amount` credits from the organization's grants, soonest-expiring first (the
 * held part of an expired grant before any other). The caller holds the account row.
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
    where x.org_id = org and x.has_remaining
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
    where x.org_id = org and x.expired_at is not null and x.has_remaining
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

-- Section - Public RPCs

/**
 * Service role (the cron job): releases the holds of requests whose lease lapsed more
 * than `older_than_seconds` ago and expires grants past their expiry. Not callable by
 * users: it moves every organization's credits.
 */
create or replace function public.release_stale_reservations(older_than_seconds integer default 0)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  released integer;
  gid bigint;
  expired integer := 0;
begin
  -- one run at a time: a run locks many organizations' accounts, so two overlapping
  -- runs could take them in opposite orders
  perform pg_advisory_xact_lock(hashtext('public.release_stale_reservations'));
  released := private.release_expired_reservations(null, make_interval(secs => older_than_seconds), 10000);
  for gid in
    select g.id from public.credit_grants g
    where g.expired_at is null and g.has_remaining and g.expires_at <= now()
    limit 10000
  loop
    perform private.expire_grant(gid, 'grant expired');
    expired := expired + 1;
  end loop;
  return jsonb_build_object('released_reservations', released, 'expired_grants', expired);
end;
$$;
revoke execute on function public.release_stale_reservations(integer) from public, anon, authenticated;
grant execute on function public.release_stale_reservations(integer) to service_role;
