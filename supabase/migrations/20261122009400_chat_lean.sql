/**
 * Chat, part 5: the lean hot path (issue 8). The chat proxy's two calls keep every rule
 * and answer they had; they do less to get there.
 *
 * - **One WAL flush per request, not two.** begin_chat_request commits asynchronously: a
 *   Postgres crash can lose a reservation that was never settled, which only returns a
 *   hold (nothing is charged by a hold). finish_chat_request commits synchronously (the
 *   `metering_synchronous_commit` setting, 'on' by default), and its flush also makes
 *   durable everything its begin wrote before it (the WAL is one sequence). A finish
 *   whose reservation a crash took still charges: the proxy passes `reserved` (what its
 *   begin held), and the charge is posted as a late settlement, capped at the balance.
 * - **One update of the key per call.** begin folds the key's budget-period reset, its
 *   rate window and its counters into one update, and writes the reservation with the
 *   key's fields in its insert. finish records the tokens the call really used on the
 *   reservation as it closes it, and the one trigger that moves the key's budget gives
 *   back the unused tokens of its rate window in the same update (the usage_events
 *   trigger that did it in a second update is gone).
 * - **Fewer index entries per call.** meeting_id and project_id of usage_events are
 *   indexed only where set (most calls have neither); open reservations are found
 *   through their (org_id, expires_at) index alone.
 */

-- Section - Tables

alter table public.credit_reservations add column if not exists used_tokens bigint check (used_tokens >= 0);

comment on column public.credit_reservations.used_tokens is
  'Tokens the request really used, recorded when it closed (its key''s rate window gives back the rest).';

-- the cron's sweep of every open reservation reads credit_reservations_org_open_idx
drop index if exists public.credit_reservations_open_idx;

drop index if exists public.usage_events_meeting_id_idx;
create index usage_events_meeting_id_idx on public.usage_events (meeting_id) where meeting_id is not null;
drop index if exists public.usage_events_project_id_idx;
create index usage_events_project_id_idx on public.usage_events (project_id) where project_id is not null;

-- Section - Triggers

drop trigger if exists usage_events_correct_key_tokens on public.usage_events;
drop function if exists private.correct_key_tokens();

/**
 * Trigger: a reservation of a key closes. What it held leaves the key's
 * budget_reserved; what it charged joins budget_spent when it began in the key's
 * current period (a late settlement after a lapse counts too); and, while its rate
 * window is still current, the tokens it counted at its worst case but did not use
 * (`used_tokens`, recorded as it closes) go back to the window. One update of the key.
 * Runs inside close_reservation, which holds the account row, so keys are always
 * locked after it.
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
  update public.api_keys x
  set budget_reserved = case when old.status = 'open' then greatest(x.budget_reserved - old.amount, 0)
                             else x.budget_reserved end,
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

drop function if exists private.apply_metering_commit_mode();

/**
 * The metering transaction's settings: the lock timeout (`metering_lock_timeout`), and
 * its commit mode: `durable` waits for the WAL flush as `metering_synchronous_commit`
 * says ('on' by default); not durable (a reservation) never waits.
 */
create or replace function private.apply_metering_commit_mode(durable boolean default true)
returns void
language sql
security definer
set search_path = ''
as $$
  select set_config('synchronous_commit',
                    case when durable then coalesce(max(s.value) filter (where s.key = 'metering_synchronous_commit'), 'on')
                         else 'off' end, true),
         set_config('lock_timeout', coalesce(max(s.value) filter (where s.key = 'metering_lock_timeout'), '2s'), true)
  from private.app_settings s
  where s.key in ('metering_synchronous_commit', 'metering_lock_timeout');
$$;

drop function if exists private.hold_credits(uuid, text, bigint, integer);

/**
 * Holds `amount` on a prepared (locked) account: the reservation (its request id once
 * only: PT409), one conditional update of the balance (never below zero: PT402) and
 * the ledger row. A key's reservation carries the key and the tokens it counted in
 * which rate window (its close moves the key's counters).
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
begin
  insert into public.credit_reservations (request_id, org_id, amount, expires_at, api_key_id, key_tokens, rate_window_start)
  values (request_id, org, amount, now() + make_interval(secs => ttl_seconds), api_key_id, key_tokens, rate_window_start)
  on conflict on constraint credit_reservations_pkey do nothing;
  if not found then
    raise exception 'request id % was already used', request_id using errcode = 'PT409';
  end if;
  update public.credit_accounts a
  set balance = a.balance - hold_credits.amount, reserved = a.reserved + hold_credits.amount, updated_at = now()
  where a.org_id = hold_credits.org and a.balance >= hold_credits.amount
  returning a.balance into new_balance;
  if new_balance is null then
    raise exception 'insufficient credits: this request may cost up to % credits', amount using errcode = 'PT402';
  end if;
  perform private.append_ledger(org, 'reservation', -amount, new_balance, null, request_id, null);
  return new_balance;
end;
$$;

drop function if exists private.close_reservation(text, bigint, text);

/**
 * Closes a reservation exactly once: with a charge (settle) the unused part returns
 * to the balance, and a charge above the hold takes what the balance has and no more
 * (never below zero); without one (release) the whole hold returns. Closing a closed
 * reservation changes nothing and returns what it recorded (`replayed`), except
 * settling one released because its lease lapsed: that charges once, late. `org`, when
 * the caller knows it, saves a lookup and must match (PT409 otherwise); `used_tokens`
 * is recorded on the reservation (its key's rate window gives back the rest).
 */
create or replace function private.close_reservation(
  request_id text, charge bigint, reason text default null, org uuid default null, used_tokens bigint default null
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
  result jsonb;
begin
  if org is null then
    select x.org_id into org from public.credit_reservations x where x.request_id = close_reservation.request_id;
  end if;
  -- the account row first, then the reservation's: the order every writer keeps
  select * into acct from public.credit_accounts a where a.org_id = close_reservation.org for update;
  select * into r from public.credit_reservations x where x.request_id = close_reservation.request_id for update;
  if r.request_id is null or acct.org_id is null then
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
  if late then
    if final_charge > 0 then
      perform private.post_ledger(r.org_id, 'late_settlement', -final_charge, null, r.request_id,
        'settled after its lease lapsed' || case when final_charge < charge
          then '; charge capped at the available balance; uncollected ' || (charge - final_charge) else '' end);
    end if;
  else
    perform private.post_ledger(r.org_id, case when settling then 'settlement' else 'release' end::public.credit_entry_kind,
      r.amount - final_charge, null, r.request_id,
      case when not settling then reason
           when final_charge < charge then 'charge capped at the available balance; uncollected ' || (charge - final_charge) end,
      -r.amount);
  end if;
  if final_charge > 0 then
    perform private.consume_grants(r.org_id, final_charge);
  end if;
  result := jsonb_build_object('org_id', r.org_id, 'status', case when settling then 'settled' else 'released' end,
                               'remaining', private.expire_leftovers(r.org_id), 'replayed', false);
  if late then
    result := result || jsonb_build_object('late', true);
  end if;
  return case when settling
              then result || jsonb_build_object('charged', final_charge, 'uncollected', charge - final_charge)
              else result end;
end;
$$;

/**
 * A request whose reservation a Postgres crash took (begin commits asynchronously)
 * closes as if it had been reserved: its charge is posted as a late settlement, capped
 * at the balance, and a closed reservation row keeps it idempotent.
 */
create or replace function private.close_lost_reservation(
  request_id text, org uuid, charge bigint, api_key_id uuid, used_tokens bigint
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
  final_charge bigint := 0;
  result jsonb;
begin
  acct := private.lock_account(org);
  if charge is not null then
    final_charge := least(greatest(charge, 0), acct.balance);
  end if;
  insert into public.credit_reservations (request_id, org_id, amount, status, charged, expires_at, closed_at,
                                          api_key_id, used_tokens)
  values (request_id, org, 0, case when charge is null then 'released' else 'settled' end, final_charge, now(), now(),
          api_key_id, used_tokens);
  if final_charge > 0 then
    perform private.post_ledger(org, 'late_settlement', -final_charge, null, request_id,
      'settled after its reservation was lost' || case when final_charge < charge
        then '; charge capped at the available balance; uncollected ' || (charge - final_charge) else '' end);
    perform private.consume_grants(org, final_charge);
    update public.api_keys x set budget_spent = x.budget_spent + final_charge
    where x.id = close_lost_reservation.api_key_id and x.credit_limit is not null;
  end if;
  result := jsonb_build_object('org_id', org, 'status', case when charge is null then 'released' else 'settled' end,
                               'remaining', private.expire_leftovers(org), 'replayed', false, 'late', true);
  return case when charge is null then result
              else result || jsonb_build_object('charged', final_charge, 'uncollected', charge - final_charge) end;
end;
$$;

-- Section - Public RPCs

/**
 * Service role (chat proxy): authenticates the caller (an API key's sha256, or a
 * signed-in user and optionally an organization), checks the model against the price
 * list, the plan and the key's allow-list, the key's address list, rate window and
 * budget, and reserves the worst case: `prompt_tokens_bound` at the input price plus the
 * completion limit at the output price for every choice. With no limit, the limit
 * becomes what the balance, the key's budget and its token window afford (at most the
 * model's maximum). `client_ip` is the caller's address as the proxy trusts it.
 * `kind` 'embeddings' reserves input only. Errors: 401 key unknown/revoked/expired/
 * rotated, its creator banned/inactive/deleted, every owner of its organization banned,
 * trial over (trial_expired); 403 user banned/inactive or not a member, address not
 * allowed (ip_not_allowed), model not on the key's list (model_not_allowed); 400 unknown
 * or disallowed model, or a limit above the model's maximum; 402 not affordable (the
 * org's balance or the key's budget); 409 a request id used before; 429 the key's
 * rpm/tpm. Runs under the metering lock timeout (55P03) and commits asynchronously
 * (see the migration's header: a crash can only return a hold).
 */
create or replace function public.begin_chat_request(
  request_id text, model text, prompt_tokens_bound bigint,
  completion_tokens_limit bigint default null, choices integer default 1,
  key_hash bytea default null, user_id uuid default null, org_id uuid default null,
  ttl_seconds integer default 900, client_ip inet default null, kind text default 'chat'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
  org uuid;
  caller uuid := begin_chat_request.user_id;
  plan public.plans;
  price public.model_prices;
  acct public.credit_accounts;
  per_usd numeric := private.setting('credits_per_usd')::numeric;
  prompt_credits numeric;
  per_token_credits numeric;
  lim bigint := completion_tokens_limit;
  capped boolean := false;
  hold bigint;
  remaining bigint;
  n integer := greatest(coalesce(choices, 1), 1);
  input_only boolean := begin_chat_request.kind = 'embeddings';
  afford bigint;
  budget_left bigint;
  ps timestamptz;
  spent bigint;
  ws timestamptz;
  used_requests integer := 0;
  used_tokens bigint := 0;
  tokens bigint;
begin
  perform private.apply_metering_commit_mode(false);
  if begin_chat_request.kind is null or begin_chat_request.kind not in ('chat', 'responses', 'embeddings') then
    raise exception 'unknown request kind "%"', begin_chat_request.kind using errcode = 'PT400';
  end if;
  if begin_chat_request.key_hash is not null then
    k := private.key_by_hash(begin_chat_request.key_hash);
    org := k.org_id;
    if not exists (
      select 1 from public.organization_members m
      where m.org_id = org and m.role = 'owner' and private.is_user_active(m.user_id)
    ) then
      raise exception 'API key belongs to an organization whose every owner is banned or inactive' using errcode = 'PT401';
    end if;
    if not private.is_user_active(k.created_by) then
      raise exception 'API key belongs to a user who is banned, inactive or deleted' using errcode = 'PT401';
    end if;
  elsif caller is not null then
    if not private.is_user_active(caller) then
      raise exception 'this account is banned or inactive' using errcode = '42501';
    end if;
    if begin_chat_request.org_id is null then
      select o.id into org from public.organizations o where o.personal_owner_id = caller;
    elsif exists (select 1 from public.organization_members m
                  where m.org_id = begin_chat_request.org_id and m.user_id = caller) then
      org := begin_chat_request.org_id;
    else
      raise exception 'not a member of organization %', begin_chat_request.org_id using errcode = '42501';
    end if;
    if org is null then
      raise exception 'no organization to bill' using errcode = '42501';
    end if;
  else
    raise exception 'an API key or a signed-in user is required' using errcode = 'PT401';
  end if;
  perform private.org_gate(org);
  if k.allowed_ips is not null
     and (begin_chat_request.client_ip is null or not begin_chat_request.client_ip <<= any (k.allowed_ips)) then
    raise exception 'this API key may not be used from %', coalesce(host(begin_chat_request.client_ip), 'an unknown address')
      using errcode = 'PT403', detail = '{"type": "ip_not_allowed"}';
  end if;

  select p.* into plan from public.plans p join public.organizations o on o.plan_id = p.id where o.id = org;
  select * into price from public.model_prices m where m.model = begin_chat_request.model and m.active;
  if price.model is null then
    raise exception 'model "%" does not exist or is not available', begin_chat_request.model using errcode = 'PT400';
  end if;
  if plan.features ? 'models' and not (plan.features -> 'models') ? price.model then
    raise exception 'model "%" is not available on the % plan', price.model, plan.name using errcode = 'PT400';
  end if;
  if k.models is not null and not price.model = any (k.models) then
    raise exception 'this API key may not call model "%"', price.model
      using errcode = 'PT403', detail = '{"type": "model_not_allowed"}';
  end if;
  if input_only then
    lim := 0;
  end if;
  if lim is not null and lim < 1 and not input_only then
    raise exception 'max_tokens must be at least 1' using errcode = 'PT400';
  end if;
  if lim is not null and lim > price.max_output_tokens then
    raise exception 'max_tokens is too large: % is above the maximum of % completion tokens for model "%"',
      lim, price.max_output_tokens, price.model using errcode = 'PT400';
  end if;

  acct := private.prepare_account(org);
  afford := acct.balance;
  if k.id is not null then
    -- the key's row after the account's: the order close_reservation keeps too
    select * into k from public.api_keys x where x.id = k.id for update;
    ws := date_trunc('minute', clock_timestamp());
    if k.rate_window_start is not null and k.rate_window_start >= ws then
      ws := k.rate_window_start;
      used_requests := k.rate_requests;
      used_tokens := k.rate_tokens;
    end if;
    if k.rpm is not null and used_requests + 1 > k.rpm then
      raise exception 'rate limit reached for requests: % per minute for this API key', k.rpm
        using errcode = 'PT429', detail = jsonb_build_object('type', 'rate_limit_exceeded',
          'headers', private.rate_headers(k, ws, used_requests, used_tokens, true))::text;
    end if;
    if k.credit_limit is not null then
      ps := private.key_period_start(k.credit_limit_period, k.created_at, clock_timestamp());
      -- a new budget period starts from nothing spent (written with the key's one update below)
      spent := case when k.budget_period_start is null or k.budget_period_start < ps then 0 else k.budget_spent end;
      budget_left := greatest(k.credit_limit - spent - k.budget_reserved, 0);
      afford := least(afford, budget_left);
    end if;
  end if;

  prompt_credits := greatest(prompt_tokens_bound, 0) * price.input_usd_per_1m / 1000000 * per_usd * price.credit_multiplier;
  per_token_credits := price.output_usd_per_1m / 1000000 * per_usd * price.credit_multiplier * n;
  if lim is null then
    capped := true;
    lim := case when per_token_credits = 0 then price.max_output_tokens
                else least(floor((afford - ceil(prompt_credits)) / per_token_credits), price.max_output_tokens)::bigint end;
    if k.tpm is not null then
      lim := least(lim, floor((k.tpm - used_tokens - greatest(prompt_tokens_bound, 0))::numeric / n)::bigint);
    end if;
    if lim < 1 and budget_left is not null and budget_left < acct.balance then
      raise exception 'API key budget exhausted: % of % credits left this period (%), resets at %',
        budget_left, k.credit_limit, k.credit_limit_period, private.key_period_end(k.credit_limit_period, ps)
        using errcode = 'PT402', detail = '{"type": "key_budget_exceeded"}';
    elsif lim < 1 and k.tpm is not null
          and (afford - ceil(prompt_credits)) >= per_token_credits then
      lim := 1;  -- the token window is what is short: refused below with its headers
    elsif lim < 1 then
      raise exception 'insufficient credits: % remaining', acct.balance using errcode = 'PT402';
    end if;
  end if;
  if k.tpm is not null then
    tokens := greatest(prompt_tokens_bound, 0) + lim * n;
    if used_tokens + tokens > k.tpm then
      raise exception 'rate limit reached for tokens: % per minute for this API key; this request may use %', k.tpm, tokens
        using errcode = 'PT429', detail = jsonb_build_object('type', 'rate_limit_exceeded',
          'headers', private.rate_headers(k, ws, used_requests, used_tokens, true))::text;
    end if;
  end if;
  hold := ceil(prompt_credits + lim * per_token_credits)::bigint;
  if budget_left is not null and hold > budget_left then
    raise exception 'API key budget exhausted: this request may cost up to % credits and % of % are left this period (%), resets at %',
      hold, budget_left, k.credit_limit, k.credit_limit_period, private.key_period_end(k.credit_limit_period, ps)
      using errcode = 'PT402', detail = '{"type": "key_budget_exceeded"}';
  end if;

  remaining := private.hold_credits(org, begin_chat_request.request_id, hold, ttl_seconds, k.id, tokens,
                                    case when k.tpm is not null then ws end);

  if k.id is not null then
    update public.api_keys x
    set usage_count = x.usage_count + 1,
        last_used_at = case when x.last_used_at is null or x.last_used_at < now() - interval '1 minute'
                            then now() else x.last_used_at end,
        budget_period_start = case when spent = 0 and (x.budget_period_start is null or x.budget_period_start < ps)
                                   then ps else x.budget_period_start end,
        budget_spent = coalesce(spent, x.budget_spent),
        budget_reserved = x.budget_reserved + case when x.credit_limit is not null then hold else 0 end,
        rate_window_start = ws,
        rate_requests = used_requests + 1,
        rate_tokens = used_tokens + coalesce(tokens, greatest(prompt_tokens_bound, 0) + lim * n)
    where x.id = k.id;
  end if;

  return jsonb_build_object(
    'org_id', org, 'api_key_id', k.id, 'project_id', k.project_id, 'user_id', coalesce(caller, k.created_by),
    'plan_id', plan.id, 'model', price.model, 'reserved', hold, 'remaining', remaining,
    'completion_tokens_limit', lim, 'limit_capped', capped,
    -- the x-ratelimit-* headers of a key with rpm or tpm (OpenAI sends them on every answer)
    'ratelimit', case when k.rpm is not null or k.tpm is not null
                      then private.rate_headers(k, ws, used_requests + 1, used_tokens + coalesce(tokens, 0), false) end);
end;
$$;
revoke execute on function public.begin_chat_request(text, text, bigint, bigint, integer, bytea, uuid, uuid, integer,
                                                     inet, text)
  from public, anon, authenticated;
grant execute on function public.begin_chat_request(text, text, bigint, bigint, integer, bytea, uuid, uuid, integer,
                                                    inet, text)
  to service_role;

drop function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid, bigint, bigint,
                                         bigint, bigint, boolean, boolean, text, integer, text, text);

/**
 * Service role (chat proxy): closes a request in one transaction. With usage, prices
 * it exactly, settles the reservation and records the usage event; without (upstream
 * error before any output), releases it. Always records the api_requests row.
 * Idempotent by request id: a replay returns the first result and writes nothing.
 * `reserved` is what the request's begin held: given, a reservation a crash took is
 * still charged (see the migration's header); without it an unknown request is 404.
 * `status` must be a public.usage_status (400 otherwise, before anything moves).
 * Commits as `metering_synchronous_commit` says (on: a crash loses no charge).
 */
create or replace function public.finish_chat_request(
  request_id text, status text, http_status integer, endpoint text,
  org_id uuid, model text, api_key_id uuid default null, user_id uuid default null,
  project_id uuid default null, meeting_id uuid default null,
  prompt_tokens bigint default null, completion_tokens bigint default null,
  cached_tokens bigint default 0, reasoning_tokens bigint default 0,
  estimated boolean default false, stream boolean default false,
  upstream_id text default null, latency_ms integer default null, error text default null,
  method text default 'POST', reserved bigint default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  price public.model_prices;
  cost numeric := 0;
  credits bigint;
  used bigint := coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0);
  result jsonb;
  charged bigint := 0;
begin
  perform private.apply_metering_commit_mode(true);
  if finish_chat_request.status is null
     or not finish_chat_request.status = any (enum_range(null::public.usage_status)::text[]) then
    raise exception 'unknown usage status "%"', finish_chat_request.status using errcode = 'PT400';
  end if;
  if finish_chat_request.prompt_tokens is not null then
    select * into price from public.model_prices m where m.model = finish_chat_request.model;
    if price.model is null then
      raise exception 'model "%" has no price', finish_chat_request.model using errcode = 'PT400';
    end if;
    cost := private.usage_cost_usd(price, finish_chat_request.prompt_tokens,
                                   coalesce(finish_chat_request.completion_tokens, 0),
                                   coalesce(finish_chat_request.cached_tokens, 0));
    credits := private.usd_to_credits(cost, price.credit_multiplier);
  end if;

  if reserved is not null and not exists (select 1 from public.credit_reservations r
                                          where r.request_id = finish_chat_request.request_id) then
    result := private.close_lost_reservation(finish_chat_request.request_id, finish_chat_request.org_id, credits,
                                             finish_chat_request.api_key_id, used);
  else
    result := private.close_reservation(finish_chat_request.request_id, credits,
                                        coalesce(finish_chat_request.error, finish_chat_request.status),
                                        finish_chat_request.org_id, used);
  end if;
  if (result ->> 'replayed')::boolean then
    return result;
  end if;
  charged := coalesce((result ->> 'charged')::bigint, 0);

  insert into public.usage_events (
    org_id, user_id, api_key_id, project_id, meeting_id, kind, model,
    prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
    cost_usd, credits, request_id, upstream_id, status, estimated, stream, latency_ms, metadata)
  values (
    finish_chat_request.org_id, finish_chat_request.user_id, finish_chat_request.api_key_id,
    finish_chat_request.project_id, finish_chat_request.meeting_id, 'chat', finish_chat_request.model,
    coalesce(finish_chat_request.prompt_tokens, 0), coalesce(finish_chat_request.completion_tokens, 0), used,
    coalesce(finish_chat_request.cached_tokens, 0), coalesce(finish_chat_request.reasoning_tokens, 0),
    cost, charged, finish_chat_request.request_id, finish_chat_request.upstream_id,
    finish_chat_request.status::public.usage_status, finish_chat_request.estimated, finish_chat_request.stream,
    finish_chat_request.latency_ms,
    case when finish_chat_request.error is null then '{}'::jsonb
         else jsonb_build_object('error', left(finish_chat_request.error, 1000)) end
      || case when (result ->> 'uncollected')::bigint > 0
              then jsonb_build_object('uncollected_credits', (result ->> 'uncollected')::bigint) else '{}'::jsonb end);

  insert into public.api_requests (org_id, api_key_id, user_id, request_id, endpoint, method, status_code, latency_ms)
  values (finish_chat_request.org_id, finish_chat_request.api_key_id, finish_chat_request.user_id,
          finish_chat_request.request_id, finish_chat_request.endpoint, finish_chat_request.method,
          finish_chat_request.http_status, finish_chat_request.latency_ms);

  return result || jsonb_build_object('cost_usd', cost::text, 'credits', charged);
end;
$$;
revoke execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid,
                                                      bigint, bigint, bigint, bigint, boolean, boolean, text, integer,
                                                      text, text, bigint)
  from public, anon, authenticated;
grant execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid,
                                                     bigint, bigint, bigint, bigint, boolean, boolean, text, integer,
                                                     text, text, bigint)
  to service_role;
