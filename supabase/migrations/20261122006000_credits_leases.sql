/**
 * Credits, part 3: leases and late settlement (issue 8).
 *
 * A reservation is a lease: the proxy takes it for a short time (60 s) and renews it
 * while the request lives (`public.renew_chat_leases`), so a request whose process died
 * stops holding credits within a lease, not after 15 minutes. A reservation released
 * because its lease lapsed is marked `lapsed`: if its request did complete after all
 * (its settlement was delayed by a database outage and replayed from the proxy's
 * outbox), settling it charges what it cost then (a `late_settlement` ledger row,
 * capped at the balance: never below zero) instead of being ignored as a replay.
 * Charges stay exactly once per request id.
 */

-- Section - Types

alter type public.credit_entry_kind add value if not exists 'late_settlement';

-- Section - Tables

alter table public.credit_reservations add column if not exists lapsed boolean not null default false;

comment on column public.credit_reservations.lapsed is
  'Released because its lease lapsed (the request stopped renewing it); a later settlement still charges.';

-- Section - Private helpers

/**
 * Closes a reservation exactly once: with a charge (settle) the unused part returns
 * to the balance, and a charge above the hold takes what the balance has and no more
 * (never below zero); without one (release) the whole hold returns. Closing a closed
 * reservation changes nothing and returns what it recorded (`replayed`), except
 * settling one released because its lease lapsed: that charges once, late.
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
  if r.status = 'released' and r.lapsed and settling then
    -- the request completed after its lease lapsed and its hold was released: charge it now
    final_charge := least(greatest(charge, 0), acct.balance);
    update public.credit_reservations x
    set status = 'settled', charged = final_charge, closed_at = now()
    where x.request_id = r.request_id;
    if final_charge > 0 then
      perform private.post_ledger(r.org_id, 'late_settlement', -final_charge, null, r.request_id,
        'settled after its lease lapsed' || case when final_charge < charge
          then '; charge capped at the available balance; uncollected ' || (charge - final_charge) else '' end);
      perform private.consume_grants(r.org_id, final_charge);
    end if;
    return jsonb_build_object('org_id', r.org_id, 'status', 'settled', 'remaining', private.expire_leftovers(r.org_id),
                              'replayed', false, 'late', true,
                              'charged', final_charge, 'uncollected', charge - final_charge);
  end if;
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
 * Releases reservations whose lease lapsed `grace` ago (the request's process died or
 * stopped renewing): one organization's (every reservation calls it with the account
 * locked, so a crash never strands credits even when no cron runs), or, with `org`
 * null, everybody's (the cron job, under its advisory lock). Marks them `lapsed`, so
 * a settlement that arrives later still charges.
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
    update public.credit_reservations x set lapsed = true where x.request_id = rid and x.status = 'released';
    released := released + 1;
  end loop;
  return released;
end;
$$;

-- Section - Public RPCs

/**
 * Service role (chat proxy): extends the leases of the proxy's live requests (a JSON
 * array of request ids) to
 * `lease_seconds` from now (never shortens one). Skips reservations being closed at
 * this moment (their rows are locked) and touches no account row, so it never waits
 * on a busy organization. Returns how many leases it renewed.
 */
create or replace function public.renew_chat_leases(request_ids jsonb, lease_seconds integer default 60)
returns jsonb
language plpgsql
security definer
set search_path = ''
set lock_timeout = '1s'
as $$
declare
  renewed integer;
begin
  if jsonb_typeof(request_ids) is distinct from 'array' then
    raise exception 'request_ids must be a JSON array of request ids' using errcode = 'PT400';
  end if;
  if lease_seconds is null or lease_seconds < 1 or lease_seconds > 3600 then
    raise exception 'lease_seconds must be between 1 and 3600' using errcode = 'PT400';
  end if;
  with live as (
    select r.request_id from public.credit_reservations r
    where r.request_id in (select jsonb_array_elements_text(renew_chat_leases.request_ids)) and r.status = 'open'
    order by r.request_id
    for update skip locked
  )
  update public.credit_reservations x
  set expires_at = greatest(x.expires_at, now() + make_interval(secs => lease_seconds))
  from live where x.request_id = live.request_id;
  get diagnostics renewed = row_count;
  return jsonb_build_object('renewed', renewed);
end;
$$;

revoke execute on function public.renew_chat_leases(jsonb, integer) from public, anon, authenticated;

grant execute on function public.renew_chat_leases(jsonb, integer) to service_role;
