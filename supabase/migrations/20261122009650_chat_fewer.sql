/**
 * Chat, part 11: a metered call in fewer statements (issue 8).
 *
 * Postgres runs each statement of a function through an executor of its own, and each
 * call of a SQL-language helper through one more; a metered call ran about 40
 * statements and a dozen such helpers between its begin and its finish. The rules are
 * the same; begin and finish now ask less:
 * - the metering settings (commit mode, lock timeout) and the credit rate are read as
 *   one row (private.metering_start, from private.metering_settings, which a trigger
 *   keeps equal to private.app_settings), where begin read them twice and finish three
 *   times through helpers;
 * - begin reads the organization's plan, its trial, the model's price and whether an
 *   owner and the key's creator may still use the product in one query (through the
 *   view private.active_users), where it ran five, one helper per owner among them;
 * - the key's budget flag goes to hold_credits, which no longer looks it up, and a
 *   closing reservation's trigger looks at the key only when the reservation cannot
 *   tell (a condition with a subquery ran its executor even when decided without it);
 * - finish closes the reservation first and closes it as lost only when it is missing,
 *   instead of looking for it before closing it;
 * - the pure helpers (the usage's price, the credits for a price, the rate-limit
 *   headers) are PL/pgSQL: an expression evaluated in place, not an executor per call.
 * Every refusal keeps its SQLSTATE, message and order.
 */

-- Section - Tables

/**
 * The metering settings of private.app_settings in one row, kept by a trigger on it
 * (private.app_settings stays the one place they are set): reading three keys there
 * takes an aggregate over an index scan, about twice a one-row read, twice per call.
 * Read only by functions that run with their owner's rights.
 */
create table if not exists private.metering_settings (
  only_row boolean primary key default true constraint metering_settings_one_row check (only_row),
  synchronous_commit text not null,
  lock_timeout text not null,
  credits_per_usd numeric
);
alter table private.metering_settings enable row level security;
comment on table private.metering_settings is
  'metering_synchronous_commit, metering_lock_timeout and credits_per_usd of private.app_settings, in one row kept by its trigger';

-- Section - Triggers

/**
 * Trigger: any change to private.app_settings rewrites the metering settings row from
 * it (defaults: synchronous commit 'on', lock timeout 2s). A credit rate that is not a
 * number refuses the change.
 */
create or replace function private.refresh_metering_settings()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.metering_settings (only_row, synchronous_commit, lock_timeout, credits_per_usd)
  select true,
         coalesce(max(s.value) filter (where s.key = 'metering_synchronous_commit'), 'on'),
         coalesce(max(s.value) filter (where s.key = 'metering_lock_timeout'), '2s'),
         (max(s.value) filter (where s.key = 'credits_per_usd'))::numeric
  from private.app_settings s
  where s.key in ('metering_synchronous_commit', 'metering_lock_timeout', 'credits_per_usd')
  on conflict (only_row) do update
  set synchronous_commit = excluded.synchronous_commit, lock_timeout = excluded.lock_timeout,
      credits_per_usd = excluded.credits_per_usd;
  return null;
end;
$$;

create or replace trigger app_settings_refresh_metering_settings
  after insert or update or delete or truncate on private.app_settings
  for each statement execute function private.refresh_metering_settings();

-- a no-op write fills the row from the settings as they are
update private.app_settings set value = value where false;

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
  -- the lookup in its own `if`: a condition with a subquery runs an executor even when
  -- its first operands already decide it
  if not old.key_budgeted and new.key_tokens is null then
    if not exists (select 1 from public.api_keys x where x.id = new.api_key_id and x.credit_limit is not null) then
      return null;
    end if;
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
 * The metering transaction's settings, for this transaction: the lock timeout
 * (`metering_lock_timeout`, 2s by default) and the commit mode (`durable` waits for the
 * WAL flush as `metering_synchronous_commit` says, 'on' by default; not durable never
 * waits). Answers `credits_per_usd`, read with them (one row: private.metering_settings).
 * For the metering RPCs only.
 */
create or replace function private.metering_start(durable boolean default true)
returns numeric
language plpgsql
security definer
set search_path = ''
as $$
declare
  m private.metering_settings;
begin
  select * into m from private.metering_settings;
  perform set_config('synchronous_commit', case when durable then m.synchronous_commit else 'off' end, true);
  perform set_config('lock_timeout', m.lock_timeout, true);
  return m.credits_per_usd;
end;
$$;

/**
 * The metering transaction's settings (private.metering_start, for callers that do not
 * need the credit rate).
 */
create or replace function private.apply_metering_commit_mode(durable boolean default true)
returns void
language sql
security definer
set search_path = ''
as $$
  select private.metering_start(durable);
$$;

/**
 * Exact USD cost of a call: uncached input, cached input and output (reasoning tokens
 * are part of completion tokens and billed as output).
 */
create or replace function private.usage_cost_usd(
  price public.model_prices, prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint
)
returns numeric
language plpgsql immutable
set search_path = ''
as $$
begin
  return ((greatest(prompt_tokens - least(cached_tokens, prompt_tokens), 0) * price.input_usd_per_1m)
        + (least(cached_tokens, prompt_tokens) * price.cached_input_usd_per_1m)
        + (completion_tokens * price.output_usd_per_1m)) / 1000000;
end;
$$;

/**
 * Credits for a USD cost at a model's multiplier and a credit rate (rounded up: a call
 * is never free).
 */
create or replace function private.credits_for_usd(cost_usd numeric, multiplier numeric, credits_per_usd numeric)
returns bigint
language plpgsql immutable
set search_path = ''
as $$
begin
  return ceil(cost_usd * credits_per_usd * multiplier)::bigint;
end;
$$;

/**
 * Credits for a USD cost at a model's multiplier, at the configured credit rate.
 */
create or replace function private.usd_to_credits(cost_usd numeric, multiplier numeric)
returns bigint
language sql stable
security definer
set search_path = ''
as $$
  select private.credits_for_usd(cost_usd, multiplier, private.setting('credits_per_usd')::numeric);
$$;

/**
 * The x-ratelimit-* headers OpenAI sends, for a key's rate window starting at `ws` with
 * `used_requests` and `used_tokens` counted; plus retry-after when `refused`.
 */
create or replace function private.rate_headers(k public.api_keys, ws timestamptz, used_requests integer,
                                                used_tokens bigint, refused boolean)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  s bigint := greatest(ceil(extract(epoch from (ws + interval '1 minute' - clock_timestamp()))), 1)::bigint;
begin
  return jsonb_strip_nulls(jsonb_build_object(
    'x-ratelimit-limit-requests', k.rpm::text,
    'x-ratelimit-remaining-requests', case when k.rpm is not null then greatest(k.rpm - used_requests, 0)::text end,
    'x-ratelimit-reset-requests', case when k.rpm is not null then s || 's' end,
    'x-ratelimit-limit-tokens', k.tpm::text,
    'x-ratelimit-remaining-tokens', case when k.tpm is not null then greatest(k.tpm - used_tokens, 0)::text end,
    'x-ratelimit-reset-tokens', case when k.tpm is not null then s || 's' end,
    'retry-after', case when refused then s::text end));
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
 * (a crash can only return a hold). Answers, with the reservation, the model's price
 * (`price`: what finish_chat_request charges from).
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
  per_usd numeric;
  found_org record;
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
  per_usd := private.metering_start(false);
  if begin_chat_request.kind is null or begin_chat_request.kind not in ('chat', 'responses', 'embeddings') then
    raise exception 'unknown request kind "%"', begin_chat_request.kind using errcode = 'PT400';
  end if;
  if begin_chat_request.key_hash is not null then
    k := private.key_by_hash(begin_chat_request.key_hash);
    org := k.org_id;
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
  -- one read of the organization: its plan and trial, the model's price and, for a key,
  -- whether an owner of its organization and its creator may still use the product
  select p as plan, t as trial, m as price,
         k.id is null or exists (select 1 from public.organization_members om
                                 join private.active_users au on au.id = om.user_id
                                 where om.org_id = o.id and om.role = 'owner') as owner_active,
         k.id is null or exists (select 1 from private.active_users au where au.id = k.created_by) as creator_active
    into found_org
  from public.organizations o
  left join public.plans p on p.id = o.plan_id
  left join public.trials t on t.org_id = o.id
  left join public.model_prices m on m.model = begin_chat_request.model and m.active
  where o.id = org;
  plan := found_org.plan;
  price := found_org.price;
  if not coalesce(found_org.owner_active, false) then
    raise exception 'API key belongs to an organization whose every owner is banned or inactive' using errcode = 'PT401';
  elsif not found_org.creator_active then
    raise exception 'API key belongs to a user who is banned, inactive or deleted' using errcode = 'PT401';
  end if;
  perform private.trial_gate(found_org.trial);
  if k.allowed_ips is not null
     and (begin_chat_request.client_ip is null or not begin_chat_request.client_ip <<= any (k.allowed_ips)) then
    raise exception 'this API key may not be used from %', coalesce(host(begin_chat_request.client_ip), 'an unknown address')
      using errcode = 'PT403', detail = '{"type": "ip_not_allowed"}';
  end if;

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
                                    case when k.tpm is not null then ws end, k.credit_limit is not null);

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
    -- what finish will price the usage at, as exact decimal strings: the proxy tells the
    -- client its balance after settlement without waiting for the settlement
    'price', jsonb_build_object('input_usd_per_1m', price.input_usd_per_1m::text,
                                'cached_input_usd_per_1m', price.cached_input_usd_per_1m::text,
                                'output_usd_per_1m', price.output_usd_per_1m::text,
                                'credit_multiplier', price.credit_multiplier::text,
                                'credits_per_usd', per_usd::text),
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

/**
 * Service role (chat proxy): closes a request in one transaction. With usage, prices
 * it exactly, settles the reservation and records the usage event; without (upstream
 * error before any output), releases it. Always records the api_requests row.
 * Idempotent by request id: a replay returns the first result and writes nothing.
 * `reserved` is what the request's begin held: given, a reservation a crash took is
 * still charged (migration chat_lean); without it an unknown request is 404.
 * `status` must be a public.usage_status (400 otherwise, before anything moves).
 * Commits as `metering_synchronous_commit` says (on: a crash loses no charge), unless
 * `flush_follows`: then it commits without waiting for the WAL flush, which releases
 * the organization's account row at once, and the caller must call flush_metering
 * (in the same pipeline) before it answers anyone (migration chat_flush).
 */
create or replace function public.finish_chat_request(
  request_id text, status text, http_status integer, endpoint text,
  org_id uuid, model text, api_key_id uuid default null, user_id uuid default null,
  project_id uuid default null, meeting_id uuid default null,
  prompt_tokens bigint default null, completion_tokens bigint default null,
  cached_tokens bigint default 0, reasoning_tokens bigint default 0,
  estimated boolean default false, stream boolean default false,
  upstream_id text default null, latency_ms integer default null, error text default null,
  method text default 'POST', reserved bigint default null, flush_follows boolean default false
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
  per_usd numeric;
begin
  per_usd := private.metering_start(not flush_follows);
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
    credits := private.credits_for_usd(cost, price.credit_multiplier, per_usd);
  end if;

  result := private.close_reservation(finish_chat_request.request_id, credits,
                                      coalesce(finish_chat_request.error, finish_chat_request.status),
                                      finish_chat_request.org_id, used, missing_ok => reserved is not null);
  if result is null then  -- given what begin held, and its reservation is gone: a crash took it
    result := private.close_lost_reservation(finish_chat_request.request_id, finish_chat_request.org_id, credits,
                                             finish_chat_request.api_key_id, used);
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
                                                      text, text, bigint, boolean)
  from public, anon, authenticated;
grant execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid,
                                                     bigint, bigint, bigint, bigint, boolean, boolean, text, integer,
                                                     text, text, bigint, boolean)
  to service_role;
