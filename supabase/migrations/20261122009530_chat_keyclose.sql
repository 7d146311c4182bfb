/**
 * Chat, part 8: closing the reservation of a key without limits writes nothing to the key.
 *
 * track_key_budget updated the key's row on every close. For a key with neither a credit
 * limit nor a token limit that update changed nothing anyone reads: its hold never
 * joined budget_reserved, budget_spent only counts inside a budget period (which starts
 * with the first call under a limit, from nothing spent), and it has no token window to
 * correct. It still cost a write of the key's row on every call (and a re-read of its nine
 * check constraints). A reservation now records whether its hold joined the key's
 * budget_reserved (`key_budgeted`), and the close updates the key only when that hold
 * must leave it, the key counts tokens, or the key has a credit limit by now (a limit set
 * while the request ran still counts what it charged). A hold that never joined
 * budget_reserved is no longer taken out of it either.
 */

-- Section - Tables

alter table public.credit_reservations add column if not exists key_budgeted boolean not null default true;
comment on column public.credit_reservations.key_budgeted is
  'whether this hold joined its key''s budget_reserved (the key had a credit limit when it began); '
  'reservations from before this column keep the old rule';

-- Section - Triggers

/**
 * Trigger: a reservation of a key closes. What it held leaves the key's budget_reserved
 * (when it joined it); what it charged joins budget_spent when it began in the key's
 * current period (a late settlement after a lapse counts too); and, while its rate
 * window is still current, the tokens it counted at its worst case but did not use go
 * back to the window. One update of the key, none when none of that applies. Runs inside
 * close_reservation, which holds the account row, so keys are always locked after it.
 */
create or replace function private.track_key_budget()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.api_key_id is null or new.status = old.status then
    return null;
  end if;
  if not old.key_budgeted and new.key_tokens is null
     and not exists (select 1 from public.api_keys x where x.id = new.api_key_id and x.credit_limit is not null) then
    return null;
  end if;
  update public.api_keys x
  set budget_reserved = case when old.status = 'open' and old.key_budgeted
                             then greatest(x.budget_reserved - old.amount, 0) else x.budget_reserved end,
      budget_spent = x.budget_spent + case
        when new.status = 'settled' and new.created_at >= coalesce(x.budget_period_start, '-infinity')
        then coalesce(new.charged, 0) else 0 end,
      rate_tokens = case
        when new.used_tokens is not null and new.key_tokens is not null
             and x.rate_window_start is not distinct from new.rate_window_start
        then greatest(x.rate_tokens - greatest(new.key_tokens - new.used_tokens, 0), 0)
        else x.rate_tokens end
  where x.id = new.api_key_id;
  return null;
end;
$$;

-- Section - Private helpers

/**
 * Holds `amount` on a prepared (locked) account: the reservation (its request id once
 * only: PT409), one conditional update of the balance (never below zero: PT402; it also
 * moves the account's `holds_lapse_at` to this lease when sooner) and the ledger row. A
 * key's reservation carries the key, whether its hold joins the key's budget_reserved
 * (the key, locked by the caller, has a credit limit) and the tokens it counted in which
 * rate window (its close moves the key's counters).
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
  budgeted boolean := hold_credits.api_key_id is not null and exists (
    select 1 from public.api_keys x where x.id = hold_credits.api_key_id and x.credit_limit is not null);
begin
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
  perform private.append_ledger(org, 'reservation', -amount, new_balance, null, request_id, null);
  return new_balance;
end;
$$;
