/**
 * Chat: model prices and the two SQL functions the chat proxy calls per request:
 * begin_chat_request (authenticate, authorize the model, reserve the worst case: one
 * round trip) and finish_chat_request (price the real usage, settle or release, record
 * the usage event and the request: one transaction).
 */

-- Section - Tables

create table public.model_prices (
  model text primary key,
  input_usd_per_1m numeric(12, 6) not null check (input_usd_per_1m >= 0),
  cached_input_usd_per_1m numeric(12, 6) not null check (cached_input_usd_per_1m >= 0),
  output_usd_per_1m numeric(12, 6) not null check (output_usd_per_1m >= 0),
  -- credits charged = ceil(cost_usd * credits_per_usd * credit_multiplier)
  credit_multiplier numeric(8, 4) not null default 1 check (credit_multiplier > 0),
  max_output_tokens integer not null default 16384 check (max_output_tokens > 0),
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.model_prices enable row level security;
revoke all on public.model_prices from anon, authenticated;
grant select on public.model_prices to anon, authenticated;

comment on table public.model_prices is
  'USD per 1M input, cached input and output tokens per model, and its credit multiplier; public.';

insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, output_usd_per_1m, max_output_tokens) values
  ('gpt-4o-mini', 0.15, 0.075, 0.60, 16384),
  ('gpt-4o', 2.50, 1.25, 10.00, 16384),
  ('gpt-4.1', 2.00, 0.50, 8.00, 32768),
  ('gpt-4.1-mini', 0.40, 0.10, 1.60, 32768),
  ('gpt-4.1-nano', 0.10, 0.025, 0.40, 32768),
  ('o3-mini', 1.10, 0.55, 4.40, 100000),
  ('o4-mini', 1.10, 0.275, 4.40, 100000)
on conflict (model) do nothing;

-- Section - Triggers

create trigger model_prices_set_updated_at before update on public.model_prices
  for each row execute function private.set_updated_at();

-- Section - Private helpers

/**
 * Exact USD cost of a call: uncached input, cached input and output (reasoning tokens
 * are part of completion tokens and billed as output).
 */
create or replace function private.usage_cost_usd(
  price public.model_prices, prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint
)
returns numeric
language sql immutable
set search_path = ''
as $$
  select ((greatest(prompt_tokens - least(cached_tokens, prompt_tokens), 0) * price.input_usd_per_1m)
        + (least(cached_tokens, prompt_tokens) * price.cached_input_usd_per_1m)
        + (completion_tokens * price.output_usd_per_1m)) / 1000000;
$$;

/**
 * Credits for a USD cost at a model's multiplier (rounded up: a call is never free).
 */
create or replace function private.usd_to_credits(cost_usd numeric, multiplier numeric)
returns bigint
language sql stable
security definer
set search_path = ''
as $$
  select ceil(cost_usd * private.setting('credits_per_usd')::numeric * multiplier)::bigint;
$$;

/**
 * Applies the metering commit mode to the current transaction.
 */
create or replace function private.apply_metering_commit_mode()
returns void
language sql
security definer
set search_path = ''
as $$
  select set_config('synchronous_commit', coalesce(private.setting('metering_synchronous_commit'), 'on'), true);
$$;

-- Section - Policies

/**
 * Model prices are public: anyone may read them.
 */
create policy "Model prices are viewable by everyone" on public.model_prices
  for select to anon, authenticated
  using (true);

-- Section - Public RPCs

/**
 * Service role (chat proxy): authenticates the caller (an API key's sha256, or a
 * signed-in user and optionally an organization), checks the model against the
 * price list and the plan, and reserves the worst case: `prompt_tokens_bound` at the
 * input price plus the completion limit at the output price for every choice. With
 * no limit, the limit becomes what the balance affords (at most the model's
 * maximum). Errors: 401 key unknown/revoked/expired or organization owner banned;
 * 403 user banned/inactive or not a member; 400 unknown or disallowed model;
 * 402 not affordable.
 */
create or replace function public.begin_chat_request(
  request_id text, model text, prompt_tokens_bound bigint,
  completion_tokens_limit bigint default null, choices integer default 1,
  key_hash bytea default null, user_id uuid default null, org_id uuid default null,
  ttl_seconds integer default 900
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
begin
  perform private.apply_metering_commit_mode();
  if begin_chat_request.key_hash is not null then
    select * into k from public.api_keys x where x.key_hash = begin_chat_request.key_hash;
    if k.id is null then
      raise exception 'invalid API key' using errcode = 'PT401';
    elsif k.status = 'revoked' then
      raise exception 'API key has been revoked' using errcode = 'PT401';
    elsif k.status = 'expired' or (k.expires_at is not null and k.expires_at <= now()) then
      raise exception 'API key has expired' using errcode = 'PT401';
    end if;
    org := k.org_id;
    if not exists (
      select 1 from public.organization_members m
      where m.org_id = org and m.role = 'owner' and private.is_user_active(m.user_id)
    ) then
      raise exception 'API key belongs to an organization whose owner is banned or inactive' using errcode = 'PT401';
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

  select p.* into plan from public.plans p join public.organizations o on o.plan_id = p.id where o.id = org;
  select * into price from public.model_prices m where m.model = begin_chat_request.model and m.active;
  if price.model is null then
    raise exception 'model "%" does not exist or is not available', begin_chat_request.model using errcode = 'PT400';
  end if;
  if plan.features ? 'models' and not (plan.features -> 'models') ? price.model then
    raise exception 'model "%" is not available on the % plan', price.model, plan.name using errcode = 'PT400';
  end if;
  if lim is not null and lim < 1 then
    raise exception 'max_tokens must be at least 1' using errcode = 'PT400';
  end if;

  acct := private.prepare_account(org);
  prompt_credits := greatest(prompt_tokens_bound, 0) * price.input_usd_per_1m / 1000000 * per_usd * price.credit_multiplier;
  per_token_credits := price.output_usd_per_1m / 1000000 * per_usd * price.credit_multiplier * n;
  if lim is null then
    capped := true;
    lim := case when per_token_credits = 0 then price.max_output_tokens
                else least(floor((acct.balance - ceil(prompt_credits)) / per_token_credits), price.max_output_tokens)::bigint end;
    if lim < 1 then
      raise exception 'insufficient credits: % remaining', acct.balance using errcode = 'PT402';
    end if;
  end if;
  hold := ceil(prompt_credits + lim * per_token_credits)::bigint;
  remaining := private.hold_credits(org, begin_chat_request.request_id, hold, ttl_seconds);

  if k.id is not null then
    update public.api_keys x
    set usage_count = x.usage_count + 1,
        last_used_at = case when x.last_used_at is null or x.last_used_at < now() - interval '1 minute'
                            then now() else x.last_used_at end
    where x.id = k.id;
  end if;

  return jsonb_build_object(
    'org_id', org, 'api_key_id', k.id, 'project_id', k.project_id, 'user_id', coalesce(caller, k.created_by),
    'plan_id', plan.id, 'model', price.model, 'reserved', hold, 'remaining', remaining,
    'completion_tokens_limit', lim, 'limit_capped', capped);
end;
$$;
revoke execute on function public.begin_chat_request(text, text, bigint, bigint, integer, bytea, uuid, uuid, integer)
  from public, anon, authenticated;
grant execute on function public.begin_chat_request(text, text, bigint, bigint, integer, bytea, uuid, uuid, integer)
  to service_role;

/**
 * Service role (chat proxy): closes a request in one transaction. With usage, prices
 * it exactly, settles the reservation and records the usage event; without (upstream
 * error before any output), releases it. Always records the api_requests row.
 * Idempotent by request id: a replay returns the first result and writes nothing.
 * `status` must be a public.usage_status (400 otherwise, before anything moves).
 */
create or replace function public.finish_chat_request(
  request_id text, status text, http_status integer, endpoint text,
  org_id uuid, model text, api_key_id uuid default null, user_id uuid default null,
  project_id uuid default null, meeting_id uuid default null,
  prompt_tokens bigint default null, completion_tokens bigint default null,
  cached_tokens bigint default 0, reasoning_tokens bigint default 0,
  estimated boolean default false, stream boolean default false,
  upstream_id text default null, latency_ms integer default null, error text default null,
  method text default 'POST'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  price public.model_prices;
  cost numeric := 0;
  credits bigint := 0;
  result jsonb;
  charged bigint := 0;
begin
  perform private.apply_metering_commit_mode();
  if finish_chat_request.status is null
     or not finish_chat_request.status = any (enum_range(null::public.usage_status)::text[]) then
    raise exception 'unknown usage status "%"', finish_chat_request.status using errcode = 'PT400';
  end if;
  if exists (select 1 from public.credit_reservations r
             where r.request_id = finish_chat_request.request_id and r.org_id <> finish_chat_request.org_id) then
    raise exception 'request % was reserved for another organization', finish_chat_request.request_id
      using errcode = 'PT409';
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
    result := private.settle_credits(finish_chat_request.request_id, credits);
    charged := (result ->> 'charged')::bigint;
  else
    result := private.release_credits(finish_chat_request.request_id, coalesce(finish_chat_request.error, finish_chat_request.status));
  end if;

  if (result ->> 'replayed')::boolean then
    return result;
  end if;

  insert into public.usage_events (
    org_id, user_id, api_key_id, project_id, meeting_id, kind, model,
    prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
    cost_usd, credits, request_id, upstream_id, status, estimated, stream, latency_ms, metadata)
  values (
    (result ->> 'org_id')::uuid, finish_chat_request.user_id, finish_chat_request.api_key_id,
    finish_chat_request.project_id, finish_chat_request.meeting_id, 'chat', finish_chat_request.model,
    coalesce(finish_chat_request.prompt_tokens, 0), coalesce(finish_chat_request.completion_tokens, 0),
    coalesce(finish_chat_request.prompt_tokens, 0) + coalesce(finish_chat_request.completion_tokens, 0),
    coalesce(finish_chat_request.cached_tokens, 0), coalesce(finish_chat_request.reasoning_tokens, 0),
    cost, charged, finish_chat_request.request_id, finish_chat_request.upstream_id,
    finish_chat_request.status::public.usage_status, finish_chat_request.estimated, finish_chat_request.stream,
    finish_chat_request.latency_ms,
    case when finish_chat_request.error is null then '{}'::jsonb
         else jsonb_build_object('error', left(finish_chat_request.error, 1000)) end
      || case when (result ->> 'uncollected')::bigint > 0
              then jsonb_build_object('uncollected_credits', (result ->> 'uncollected')::bigint) else '{}'::jsonb end);

  insert into public.api_requests (org_id, api_key_id, user_id, request_id, endpoint, method, status_code, latency_ms)
  values ((result ->> 'org_id')::uuid, finish_chat_request.api_key_id, finish_chat_request.user_id,
          finish_chat_request.request_id, finish_chat_request.endpoint, finish_chat_request.method,
          finish_chat_request.http_status, finish_chat_request.latency_ms);

  return result || jsonb_build_object('cost_usd', cost::text, 'credits', charged);
end;
$$;
revoke execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid, bigint, bigint, bigint, bigint, boolean, boolean, text, integer, text, text)
  from public, anon, authenticated;
grant execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid, bigint, bigint, bigint, bigint, boolean, boolean, text, integer, text, text)
  to service_role;
