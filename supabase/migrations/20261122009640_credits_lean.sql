/**
 * Credits, part 6: fewer statements per hold and per close (issue 8).
 *
 * Every metered call holds credits and closes the hold, and in Postgres each statement
 * of a function pays for an executor of its own (and each call of a SQL-language helper
 * for one more). The money rules are the same; the hot helpers now ask less:
 * - post_ledger and hold_credits insert their ledger row themselves instead of through
 *   append_ledger (a SQL function: an executor per call);
 * - hold_credits takes whether the hold joins the key's budget from its caller, which
 *   has the key's row locked already (`key_budgeted`; without it, it looks, as before);
 * - prepare_account locks the account first and looks at the plan period from that row,
 *   instead of reading the row once unlocked to check the period and again to lock it;
 * - close_reservation hands expire_leftovers the balance it has just written, and with
 *   `missing_ok` answers null for a request it has no reservation for, so a caller that
 *   can close a lost reservation need not look for it first;
 * - the ledger's index on grant_id leaves out the rows of no grant (every hold and
 *   settlement): two index entries fewer per call.
 */

-- Section - Tables

drop index if exists public.credit_ledger_grant_id_idx;
create index credit_ledger_grant_id_idx on public.credit_ledger (grant_id) where grant_id is not null;

-- Section - Private helpers

-- its two callers (post_ledger, hold_credits) now write their ledger row themselves
drop function if exists private.append_ledger(uuid, public.credit_entry_kind, bigint, bigint, bigint, text, text);

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
  insert into public.credit_ledger (org_id, kind, amount, balance_after, grant_id, request_id, description)
  values (org, kind, delta, new_balance, grant_id, request_id, description);
  return new_balance;
end;
$$;

/**
 * The first step of every reservation: the account row locked, the current plan
 * period (started when the locked row's period is over or missing), and, once the
 * earliest open hold may have lapsed, the holds of crashed requests released and the
 * bound moved to the earliest lease still open.
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
  acct := private.lock_account(org);
  if acct.period_end is null or acct.period_end <= now() then
    perform private.ensure_current_period(org);
    acct := private.lock_account(org);
  end if;
  if acct.holds_lapse_at is null or acct.holds_lapse_at <= now() then
    perform private.release_expired_reservations(org);
    update public.credit_accounts a
    set holds_lapse_at = coalesce((select min(r.expires_at) from public.credit_reservations r
                                   where r.org_id = prepare_account.org and r.status = 'open'), 'infinity')
    where a.org_id = prepare_account.org
    returning * into acct;
  end if;
  return acct;
end;
$$;

drop function if exists private.hold_credits(uuid, text, bigint, integer, uuid, bigint, timestamptz);

/**
 * Holds `amount` on a prepared (locked) account: the reservation (its request id once
 * only: PT409), one conditional update of the balance (never below zero: PT402; it also
 * moves the account's `holds_lapse_at` to this lease when sooner) and the ledger row. A
 * key's reservation carries the key, whether its hold joins the key's budget_reserved
 * (`key_budgeted`: the key, locked by the caller, has a credit limit; looked up when
 * not given) and the tokens it counted in which rate window (its close moves the key's
 * counters).
 */
create or replace function private.hold_credits(
  org uuid, request_id text, amount bigint, ttl_seconds integer,
  api_key_id uuid default null, key_tokens bigint default null, rate_window_start timestamptz default null,
  key_budgeted boolean default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_balance bigint;
  lapse_at timestamptz := now() + make_interval(secs => ttl_seconds);
  budgeted boolean := hold_credits.api_key_id is not null and hold_credits.key_budgeted;
begin
  if hold_credits.api_key_id is not null and hold_credits.key_budgeted is null then
    budgeted := exists (select 1 from public.api_keys x where x.id = hold_credits.api_key_id and x.credit_limit is not null);
  end if;
  insert into public.credit_reservations (request_id, org_id, amount, expires_at, api_key_id, key_tokens,
                                          rate_window_start, key_budgeted)
  values (request_id, org, amount, lapse_at, api_key_id, key_tokens, rate_window_start, budgeted)
  on conflict on constraint credit_reservations_pkey do nothing;
  if not found then
    raise exception 'request id % was already used', request_id using errcode = 'PT409';
  end if;
  update public.credit_accounts a
  set balance = a.balance - hold_credits.amount, reserved = a.reserved + hold_credits.amount, updated_at = now(),
      holds_lapse_at = case when a.holds_lapse_at is not null then least(a.holds_lapse_at, lapse_at) end
  where a.org_id = hold_credits.org and a.balance >= hold_credits.amount
  returning a.balance into new_balance;
  if new_balance is null then
    raise exception 'insufficient credits: this request may cost up to % credits', amount using errcode = 'PT402';
  end if;
  insert into public.credit_ledger (org_id, kind, amount, balance_after, request_id)
  values (org, 'reservation', -amount, new_balance, request_id);
  return new_balance;
end;
$$;

drop function if exists private.expire_leftovers(uuid);

/**
 * A grant that expired while part of it was held by reservations keeps that part until
 * the holds close; then whatever of it came back to the balance expires too. Returns
 * the balance after. `available` is the account's balance when the caller has just
 * written it (read here otherwise).
 */
create or replace function private.expire_leftovers(org uuid, available bigint default null)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  g record;
  gone bigint;
begin
  if available is null then
    select a.balance into available from public.credit_accounts a where a.org_id = org;
  end if;
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

drop function if exists private.close_reservation(text, bigint, text, uuid, bigint);

/**
 * Closes a reservation exactly once: with a charge (settle) the unused part returns
 * to the balance, and a charge above the hold takes what the balance has and no more
 * (never below zero); without one (release) the whole hold returns. Closing a closed
 * reservation changes nothing and returns what it recorded (`replayed`), except
 * settling one released because its lease lapsed: that charges once, late. `org`, when
 * the caller knows it, saves a lookup and must match (PT409 otherwise); `used_tokens`
 * is recorded on the reservation (its key's rate window gives back the rest). A request
 * with no reservation is PT404, or null with `missing_ok` (the account row stays locked
 * for the caller, which closes it another way).
 */
create or replace function private.close_reservation(
  request_id text, charge bigint, reason text default null, org uuid default null, used_tokens bigint default null,
  missing_ok boolean default false
)
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
  late boolean;
  balance bigint;
  result jsonb;
begin
  if org is null then
    select x.org_id into org from public.credit_reservations x where x.request_id = close_reservation.request_id;
  end if;
  -- the account row first, then the reservation's: the order every writer keeps
  select * into acct from public.credit_accounts a where a.org_id = close_reservation.org for update;
  select * into r from public.credit_reservations x where x.request_id = close_reservation.request_id for update;
  if r.request_id is null and missing_ok then
    return null;
  elsif r.request_id is null or acct.org_id is null then
    raise exception 'no reservation for request %', request_id using errcode = 'PT404';
  elsif r.org_id <> org then
    raise exception 'request % was reserved for another organization', request_id using errcode = 'PT409';
  end if;
  late := r.status = 'released' and r.lapsed and settling;
  if r.status <> 'open' and not late then
    result := jsonb_build_object('org_id', r.org_id, 'status', r.status, 'remaining', acct.balance, 'replayed', true);
    return case when settling then result || jsonb_build_object('charged', coalesce(r.charged, 0)) else result end;
  end if;

  if late then
    -- the request completed after its lease lapsed and its hold was released: charge it now
    final_charge := least(greatest(charge, 0), acct.balance);
  elsif settling then
    final_charge := least(greatest(charge, 0), r.amount + acct.balance);
  end if;
  update public.credit_reservations x
  set status = case when settling then 'settled' else 'released' end, charged = final_charge, closed_at = now(),
      used_tokens = coalesce(close_reservation.used_tokens, x.used_tokens)
  where x.request_id = r.request_id;
  balance := acct.balance;
  if late then
    if final_charge > 0 then
      balance := private.post_ledger(r.org_id, 'late_settlement', -final_charge, null, r.request_id,
        'settled after its lease lapsed' || case when final_charge < charge
          then '; charge capped at the available balance; uncollected ' || (charge - final_charge) else '' end);
    end if;
  else
    balance := private.post_ledger(r.org_id,
      case when settling then 'settlement' else 'release' end::public.credit_entry_kind,
      r.amount - final_charge, null, r.request_id,
      case when not settling then reason
           when final_charge < charge then 'charge capped at the available balance; uncollected ' || (charge - final_charge) end,
      -r.amount);
  end if;
  if final_charge > 0 then
    perform private.consume_grants(r.org_id, final_charge);
  end if;
  result := jsonb_build_object('org_id', r.org_id, 'status', case when settling then 'settled' else 'released' end,
                               'remaining', private.expire_leftovers(r.org_id, balance), 'replayed', false);
  if late then
    result := result || jsonb_build_object('late', true);
  end if;
  return case when settling
              then result || jsonb_build_object('charged', final_charge, 'uncollected', charge - final_charge)
              else result end;
end;
$$;
