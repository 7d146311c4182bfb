/**
 * Reservations: the chat proxy holds a request's worst case before calling upstream
 * and settles the real cost after (or releases the hold), exactly once per request id.
 * A reservation never settled is released by the next reservation of its organization
 * or by `release_stale_reservations`. The service-role RPCs over credits live here too.
 */

-- Section - Private helpers

/**
 * Holds `amount` credits for one request. One conditional update: under any
 * concurrency the balance never goes below zero. Idempotent by request id.
 * Not enough credits: PT402.
 */
create or replace function private.reserve_credits(
  org uuid, request_id text, amount bigint, ttl_seconds integer default 900
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  if amount is null or amount < 0 then
    raise exception 'a reservation must be zero or more credits' using errcode = 'PT400';
  end if;
  perform private.prepare_account(org);
  return private.hold_credits(org, request_id, amount, ttl_seconds);
end;
$$;

/**
 * The first step of every reservation: the current plan period, the account row
 * locked, and holds of crashed requests released.
 */
create or replace function private.prepare_account(org uuid)
returns public.credit_accounts
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
begin
  perform private.ensure_current_period(org);
  acct := private.lock_account(org);
  if private.release_expired_reservations(org) > 0 then
    select * into acct from public.credit_accounts a where a.org_id = prepare_account.org;
  end if;
  return acct;
end;
$$;

/**
 * Holds `amount` on a prepared (locked) account: one conditional update, so the
 * balance never goes below zero. PT409 for a reused request id, PT402 when short.
 */
create or replace function private.hold_credits(org uuid, request_id text, amount bigint, ttl_seconds integer)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_balance bigint;
begin
  if exists (select 1 from public.credit_reservations r where r.request_id = hold_credits.request_id) then
    raise exception 'request id % was already used', request_id using errcode = 'PT409';
  end if;
  update public.credit_accounts a
  set balance = a.balance - hold_credits.amount, reserved = a.reserved + hold_credits.amount, updated_at = now()
  where a.org_id = hold_credits.org and a.balance >= hold_credits.amount
  returning a.balance into new_balance;
  if new_balance is null then
    raise exception 'insufficient credits: this request may cost up to % credits', amount
      using errcode = 'PT402';
  end if;
  insert into public.credit_reservations (request_id, org_id, amount, expires_at)
  values (request_id, org, amount, now() + make_interval(secs => ttl_seconds));
  perform private.append_ledger(org, 'reservation', -amount, new_balance, null, request_id, null);
  return new_balance;
end;
$$;

/**
 * Closes a reservation exactly once: with a charge (settle) the unused part returns
 * to the balance, and a charge above the hold takes what the balance has and no more
 * (never below zero); without one (release) the whole hold returns. Closing a closed
 * reservation changes nothing and returns what it recorded (`replayed`).
 */
create or replace function private.close_reservation(request_id text, charge bigint, reason text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  r public.credit_reservations;
  acct public.credit_accounts;
  settling boolean := charge is not null;
  final_charge bigint := 0;
  result jsonb;
begin
  select * into r from public.credit_reservations x where x.request_id = close_reservation.request_id;
  if r.request_id is null then
    raise exception 'no reservation for request %', request_id using errcode = 'PT404';
  end if;
  acct := private.lock_account(r.org_id);
  select * into r from public.credit_reservations x where x.request_id = close_reservation.request_id for update;
  if r.status <> 'open' then
    result := jsonb_build_object('org_id', r.org_id, 'status', r.status, 'remaining', acct.balance, 'replayed', true);
    return case when settling then result || jsonb_build_object('charged', coalesce(r.charged, 0)) else result end;
  end if;

  if settling then
    final_charge := least(greatest(charge, 0), r.amount + acct.balance);
  end if;
  update public.credit_reservations x
  set status = case when settling then 'settled' else 'released' end, charged = final_charge, closed_at = now()
  where x.request_id = r.request_id;
  perform private.post_ledger(r.org_id, case when settling then 'settlement' else 'release' end::public.credit_entry_kind,
    r.amount - final_charge, null, r.request_id,
    case when not settling then reason
         when final_charge < charge then 'charge capped at the available balance; uncollected ' || (charge - final_charge) end,
    -r.amount);
  if final_charge > 0 then
    perform private.consume_grants(r.org_id, final_charge);
  end if;
  result := jsonb_build_object('org_id', r.org_id, 'status', case when settling then 'settled' else 'released' end,
                               'remaining', private.expire_leftovers(r.org_id), 'replayed', false);
  return case when settling
              then result || jsonb_build_object('charged', final_charge, 'uncollected', charge - final_charge)
              else result end;
end;
$$;

/**
 * Settles a reservation with its real charge (see private.close_reservation).
 */
create or replace function private.settle_credits(request_id text, charge bigint)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.close_reservation(settle_credits.request_id, coalesce(settle_credits.charge, 0));
$$;

/**
 * Returns a whole reservation to the balance (see private.close_reservation).
 */
create or replace function private.release_credits(request_id text, reason text default null)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.close_reservation(release_credits.request_id, null, release_credits.reason);
$$;

/**
 * Releases reservations that outlived their ttl by `grace` (a function that crashed
 * between reserve and settle): one organization's (reserve_credits calls it with the
 * account locked, so a crash never strands credits even when no cron runs), or, with
 * `org` null, everybody's (the cron job, under its advisory lock).
 */
create or replace function private.release_expired_reservations(
  org uuid, grace interval default interval '0', max_rows integer default 100
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  rid text;
  released integer := 0;
begin
  for rid in
    select r.request_id from public.credit_reservations r
    where (release_expired_reservations.org is null or r.org_id = release_expired_reservations.org)
      and r.status = 'open' and r.expires_at <= now() - grace
    order by r.expires_at
    limit max_rows
  loop
    perform private.release_credits(rid, 'stale reservation released');
    released := released + 1;
  end loop;
  return released;
end;
$$;

-- Section - Public RPCs

/**
 * Service role: hold credits for a request (see private.reserve_credits).
 */
create or replace function public.reserve_credits(org_id uuid, request_id text, amount bigint, ttl_seconds integer default 900)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select jsonb_build_object('remaining', private.reserve_credits(reserve_credits.org_id, reserve_credits.request_id,
                                                                 reserve_credits.amount, reserve_credits.ttl_seconds),
                            'reserved', reserve_credits.amount);
$$;

revoke execute on function public.reserve_credits(uuid, text, bigint, integer) from public, anon, authenticated;

grant execute on function public.reserve_credits(uuid, text, bigint, integer) to service_role;

/**
 * Service role: settle a reservation with its real charge (idempotent).
 */
create or replace function public.settle_credits(request_id text, charge bigint)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.settle_credits(settle_credits.request_id, settle_credits.charge);
$$;

revoke execute on function public.settle_credits(text, bigint) from public, anon, authenticated;

grant execute on function public.settle_credits(text, bigint) to service_role;

/**
 * Service role: release a reservation (idempotent).
 */
create or replace function public.release_credits(request_id text, reason text default null)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.release_credits(release_credits.request_id, release_credits.reason);
$$;

revoke execute on function public.release_credits(text, text) from public, anon, authenticated;

grant execute on function public.release_credits(text, text) to service_role;

/**
 * Service role (cron): releases reservations whose request never settled (a crashed
 * function), and expires grants past their expiry. Returns what it did.
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
    where g.expired_at is null and g.remaining > 0 and g.expires_at <= now()
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

/**
 * Service role: add credits to an organization (purchases, trials, support adjustments).
 * Idempotent by external_id.
 */
create or replace function public.grant_credits(
  org_id uuid, kind public.credit_grant_kind, amount bigint, expires_at timestamptz default null,
  external_id text default null, description text default null
)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select jsonb_build_object('grant_id', private.grant_credits(grant_credits.org_id, grant_credits.kind,
    grant_credits.amount, grant_credits.expires_at, grant_credits.external_id, grant_credits.description));
$$;

revoke execute on function public.grant_credits(uuid, public.credit_grant_kind, bigint, timestamptz, text, text) from public, anon, authenticated;

grant execute on function public.grant_credits(uuid, public.credit_grant_kind, bigint, timestamptz, text, text) to service_role;
