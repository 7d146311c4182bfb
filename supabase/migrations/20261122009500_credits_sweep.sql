/**
 * Credits, part 4: lapsed holds are looked for only when one may have lapsed (issue 8).
 *
 * Every reservation used to scan its organization's open reservations for lapsed leases
 * while it held the account row. On a busy organization that scan walks the index
 * entries of every reservation closed since the last vacuum, and it ran inside the
 * section that serializes the organization's requests: about 0.07 ms per request on a
 * quiet organization and 0.2 ms on a busy one. The account now keeps a lower bound of
 * when its earliest open hold can lapse (`holds_lapse_at`): a reservation sweeps only
 * once that moment has passed, then sets the bound to the earliest open lease. A lease
 * that is renewed only moves later, so the bound stays a lower bound without touching
 * the account row; one shortened by hand (an operator, a test) lowers it through a
 * trigger. The cron job (`release_stale_reservations`) is unchanged.
 */

-- Section - Tables

alter table public.credit_accounts add column if not exists holds_lapse_at timestamptz;

comment on column public.credit_accounts.holds_lapse_at is
  'No open hold of the organization lapses before this moment (null: not known; the next reservation looks).';

-- Section - Triggers

/**
 * Trigger: an open reservation's lease was shortened (never by the proxy, which only
 * extends leases; an operator or a test may): the account's bound moves to it, so the
 * next reservation looks for lapsed holds.
 */
create or replace function private.lower_holds_lapse_at()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.credit_accounts a
  set holds_lapse_at = least(a.holds_lapse_at, new.expires_at)
  where a.org_id = new.org_id and a.holds_lapse_at is not null;
  return null;
end;
$$;

drop trigger if exists credit_reservations_lower_holds_lapse_at on public.credit_reservations;
create trigger credit_reservations_lower_holds_lapse_at after update of expires_at on public.credit_reservations
  for each row when (new.status = 'open' and new.expires_at < old.expires_at)
  execute function private.lower_holds_lapse_at();

-- Section - Private helpers

/**
 * The first step of every reservation: the current plan period, the account row
 * locked, and, once the earliest open hold may have lapsed, the holds of crashed
 * requests released and the bound moved to the earliest lease still open.
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

/**
 * Holds `amount` on a prepared (locked) account: the reservation (its request id once
 * only: PT409), one conditional update of the balance (never below zero: PT402; it also
 * moves the account's `holds_lapse_at` to this lease when sooner) and the ledger row. A
 * key's reservation carries the key and the tokens it counted in which rate window
 * (its close moves the key's counters).
 */
create or replace function private.hold_credits(
  org uuid, request_id text, amount bigint, ttl_seconds integer,
  api_key_id uuid default null, key_tokens bigint default null, rate_window_start timestamptz default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_balance bigint;
  lapse_at timestamptz := now() + make_interval(secs => ttl_seconds);
begin
  insert into public.credit_reservations (request_id, org_id, amount, expires_at, api_key_id, key_tokens, rate_window_start)
  values (request_id, org, amount, lapse_at, api_key_id, key_tokens, rate_window_start)
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
  perform private.append_ledger(org, 'reservation', -amount, new_balance, null, request_id, null);
  return new_balance;
end;
$$;
