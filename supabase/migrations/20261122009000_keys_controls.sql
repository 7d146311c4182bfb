/**
 * API keys as a product, part 1: per-key controls and rotation (issue 12).
 *
 * Every key may carry, set by its organization's owners and admins (null = unlimited):
 * - `models`: the models it may call (403 model_not_allowed otherwise);
 * - `credit_limit` per `credit_limit_period` ('monthly' = calendar month in UTC, or a
 *   day count 'Nd' counted from the key's creation): a budget reserved together with
 *   the organization's balance in begin_chat_request, so no concurrency overshoots it;
 *   it resets on its own when the period turns;
 * - `rpm` / `tpm`: requests and tokens per minute, counted in the key's row (the
 *   database is the only state shared by serverless processes), tokens counted at the
 *   worst case when a request begins and corrected to its real usage when it settles;
 * - `allowed_ips`: CIDRs the client must call from (403 outside);
 * - `expires_at` (the keys migration's).
 * `rotate_api_key` swaps the secret and keeps the old one working for a grace period.
 * Members read each key's spend and remaining budget through `api_key_budgets` (never the
 * hash). The chat_key_controls migration enforces all of it in begin_chat_request.
 */

-- Section - Tables

alter table public.api_keys
  add column models text[] check (models is null or cardinality(models) <= 200),
  add column credit_limit bigint check (credit_limit >= 0),
  add column credit_limit_period text not null default 'monthly'
    check (credit_limit_period = 'monthly' or credit_limit_period ~ '^[1-9][0-9]{0,3}d$'),
  add column rpm integer check (rpm > 0),
  add column tpm integer check (tpm > 0),
  add column allowed_ips cidr[] check (allowed_ips is null or cardinality(allowed_ips) between 1 and 100),
  -- the current budget period: its start, what settled in it, what open requests hold
  add column budget_period_start timestamptz,
  add column budget_spent bigint not null default 0,
  add column budget_reserved bigint not null default 0,
  -- the current rate window (one minute): its start, requests and tokens counted in it
  add column rate_window_start timestamptz,
  add column rate_requests integer not null default 0,
  add column rate_tokens bigint not null default 0,
  -- rotation: the previous secret keeps working until previous_key_expires_at
  add column previous_key_hash bytea unique,
  add column previous_key_expires_at timestamptz,
  add column rotated_at timestamptz;

-- the new columns but the previous key's hash
grant select (models, credit_limit, credit_limit_period, rpm, tpm, allowed_ips, budget_period_start, budget_spent,
              budget_reserved, rate_window_start, rate_requests, rate_tokens, previous_key_expires_at, rotated_at)
  on public.api_keys to authenticated;

comment on column public.api_keys.models is 'Models this key may call; null = every model of the plan.';
comment on column public.api_keys.credit_limit is 'Credits this key may spend per credit_limit_period; null = unlimited.';
comment on column public.api_keys.credit_limit_period is '''monthly'' (calendar month, UTC) or ''<N>d'' (N days from creation).';
comment on column public.api_keys.allowed_ips is 'CIDRs the key may be used from; null = anywhere.';

-- which key a reservation counts against, and the tokens it counted in which rate window
alter table public.credit_reservations
  add column api_key_id uuid references public.api_keys (id) on delete set null,
  add column key_tokens bigint,
  add column rate_window_start timestamptz;
create index credit_reservations_api_key_id_idx on public.credit_reservations (api_key_id);

comment on column public.credit_reservations.api_key_id is
  'The API key whose budget this reservation holds (its close moves the key''s budget counters).';

-- Section - Triggers

/**
 * Trigger: a reservation of a key closes. What it held leaves the key's
 * budget_reserved; what it charged joins budget_spent when it began in the key's
 * current period (a late settlement after a lapse counts too). Runs inside
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
  update public.api_keys x
  set budget_reserved = case when old.status = 'open' then greatest(x.budget_reserved - old.amount, 0)
                             else x.budget_reserved end,
      budget_spent = x.budget_spent + case
        when new.status = 'settled' and new.created_at >= coalesce(x.budget_period_start, '-infinity')
        then coalesce(new.charged, 0) else 0 end
  where x.id = new.api_key_id;
  return null;
end;
$$;

create trigger credit_reservations_track_key_budget after update of status on public.credit_reservations
  for each row execute function private.track_key_budget();

/**
 * Trigger: a key's request recorded its real usage. The tokens per minute it counted at
 * its worst case give back what it did not use, while its rate window is still current.
 */
create or replace function private.correct_key_tokens()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  r public.credit_reservations;
begin
  if new.api_key_id is null then
    return null;
  end if;
  select * into r from public.credit_reservations x where x.request_id = new.request_id;
  if r.key_tokens is null or r.rate_window_start is null then
    return null;
  end if;
  update public.api_keys x
  set rate_tokens = greatest(x.rate_tokens - greatest(r.key_tokens - coalesce(new.total_tokens, 0), 0), 0)
  where x.id = new.api_key_id and x.rate_window_start = r.rate_window_start;
  return null;
end;
$$;

create trigger usage_events_correct_key_tokens after insert on public.usage_events
  for each row execute function private.correct_key_tokens();

-- Section - Private helpers

/**
 * The organization's gate for API calls: nothing by default; the keys_trials migration
 * replaces it (a trial past its end or cancelled answers 401 trial_expired).
 */
create or replace function private.org_gate(org uuid)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return;
end;
$$;

/**
 * A budget period as stored: 'monthly', or '<N>d' for 'N', 'Nd', 'daily' (1d) and
 * 'weekly' (7d). Anything else: 400.
 */
create or replace function private.key_period(period text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  p text := lower(btrim(coalesce(period, 'monthly')));
begin
  if p = 'monthly' then
    return 'monthly';
  elsif p = 'daily' then
    return '1d';
  elsif p = 'weekly' then
    return '7d';
  elsif p ~ '^[1-9][0-9]{0,3}d?$' then
    return rtrim(p, 'd') || 'd';
  end if;
  raise exception 'credit_limit_period must be ''monthly'' or a day count such as ''30d'', not "%"', period
    using errcode = 'PT400';
end;
$$;

/**
 * The start of the budget period containing `at`: the calendar month (UTC), or the
 * N-day slice counted from `anchor` (the key's creation).
 */
create or replace function private.key_period_start(period text, anchor timestamptz, at timestamptz)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select case when period = 'monthly' then date_trunc('month', at, 'UTC')
              else anchor + floor(extract(epoch from (at - anchor)) / (rtrim(period, 'd')::numeric * 86400))
                            * make_interval(days => rtrim(period, 'd')::integer) end;
$$;

/**
 * The end of the budget period starting at `start` (when the budget resets).
 */
create or replace function private.key_period_end(period text, start timestamptz)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select case when period = 'monthly' then (date_trunc('month', start, 'UTC') + interval '1 month')
              else start + make_interval(days => rtrim(period, 'd')::integer) end;
$$;

/**
 * The key with this sha256: its current secret, or its previous one within the
 * rotation grace period. 401 unknown, revoked, expired, or rotated past its grace.
 */
create or replace function private.key_by_hash(hash bytea)
returns public.api_keys
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  select * into k from public.api_keys x where x.key_hash = key_by_hash.hash;
  if k.id is null then
    select * into k from public.api_keys x where x.previous_key_hash = key_by_hash.hash;
    if k.id is null then
      raise exception 'invalid API key' using errcode = 'PT401';
    elsif k.previous_key_expires_at is null or k.previous_key_expires_at <= now() then
      raise exception 'API key was rotated; use its new secret' using errcode = 'PT401';
    end if;
  end if;
  if k.status = 'revoked' then
    raise exception 'API key has been revoked' using errcode = 'PT401';
  elsif k.status = 'expired' or (k.expires_at is not null and k.expires_at <= now()) then
    raise exception 'API key has expired' using errcode = 'PT401';
  end if;
  return k;
end;
$$;

/**
 * Validates the controls given to create_api_key / update_api_key; 400 naming the bad one.
 */
create or replace function private.check_key_controls(
  models text[], credit_limit bigint, rpm integer, tpm integer, allowed_ips cidr[]
)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  unknown text;
begin
  if models is not null then
    if cardinality(models) = 0 or cardinality(models) > 200 then
      raise exception 'models must list 1 to 200 models (null = every model)' using errcode = 'PT400';
    end if;
    select m into unknown from unnest(models) m
    where not exists (select 1 from public.model_prices p where p.model = m) limit 1;
    if unknown is not null or array_position(models, null) is not null then
      raise exception 'unknown model "%" in models', coalesce(unknown, 'null') using errcode = 'PT400';
    end if;
  end if;
  if credit_limit is not null and credit_limit < 0 then
    raise exception 'credit_limit must be zero or more (null = unlimited)' using errcode = 'PT400';
  end if;
  if rpm is not null and rpm < 1 or tpm is not null and tpm < 1 then
    raise exception 'rpm and tpm must be at least 1 (null = unlimited)' using errcode = 'PT400';
  end if;
  if allowed_ips is not null and (cardinality(allowed_ips) not between 1 and 100
                                  or array_position(allowed_ips, null) is not null) then
    raise exception 'allowed_ips must list 1 to 100 CIDRs (null = anywhere)' using errcode = 'PT400';
  end if;
end;
$$;

/**
 * A key as its organization's members see it (never a hash); `key` only when given.
 */
create or replace function private.key_json(k public.api_keys, plaintext text default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_strip_nulls(jsonb_build_object('key', plaintext))
    || jsonb_build_object('id', k.id, 'prefix', k.prefix, 'name', k.name, 'description', k.description,
       'org_id', k.org_id, 'project_id', k.project_id, 'status', k.status, 'expires_at', k.expires_at,
       'models', k.models, 'credit_limit', k.credit_limit, 'credit_limit_period', k.credit_limit_period,
       'rpm', k.rpm, 'tpm', k.tpm, 'allowed_ips', k.allowed_ips, 'unkey_key_id', k.unkey_key_id,
       'previous_key_expires_at', k.previous_key_expires_at, 'created_at', k.created_at);
$$;

/**
 * The key `key_id` for an owner or admin of its organization: 404 when unknown or not
 * the caller's organization's, 403 for a plain member. Locks the row.
 */
create or replace function private.admin_key(key_id uuid)
returns public.api_keys
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  perform private.require_active_user();
  select * into k from public.api_keys x where x.id = admin_key.key_id for update;
  if k.id is null or not private.is_member(k.org_id, 'member') then
    raise exception 'API key not found' using errcode = 'PT404';
  end if;
  perform private.require_member_role(k.org_id, 'admin');
  return k;
end;
$$;

/**
 * Service role only (through public.list_models_for_caller; replaces the chat_models
 * migration's): the organization an API key or a signed-in user acts for, with
 * begin_chat_request's errors. Knows rotated keys (private.key_by_hash).
 */
create or replace function private.caller_org(key_hash bytea, user_id uuid, org_id uuid)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
  org uuid;
begin
  if caller_org.key_hash is not null then
    k := private.key_by_hash(caller_org.key_hash);
    if not exists (
      select 1 from public.organization_members m
      where m.org_id = k.org_id and m.role = 'owner' and private.is_user_active(m.user_id)
    ) then
      raise exception 'API key belongs to an organization whose owner is banned or inactive' using errcode = 'PT401';
    end if;
    return k.org_id;
  elsif caller_org.user_id is not null then
    if not private.is_user_active(caller_org.user_id) then
      raise exception 'this account is banned or inactive' using errcode = '42501';
    end if;
    if caller_org.org_id is null then
      select o.id into org from public.organizations o where o.personal_owner_id = caller_org.user_id;
    elsif exists (select 1 from public.organization_members m
                  where m.org_id = caller_org.org_id and m.user_id = caller_org.user_id) then
      org := caller_org.org_id;
    else
      raise exception 'not a member of organization %', caller_org.org_id using errcode = '42501';
    end if;
    if org is null then
      raise exception 'no organization to bill' using errcode = '42501';
    end if;
    return org;
  end if;
  raise exception 'an API key or a signed-in user is required' using errcode = 'PT401';
end;
$$;
revoke execute on function private.caller_org(bytea, uuid, uuid) from public, anon, authenticated;
grant execute on function private.caller_org(bytea, uuid, uuid) to service_role;

-- Section - Public RPCs

drop function public.create_api_key(uuid, text, text, uuid, timestamptz);

/**
 * Owners and admins create a key with its controls (null = unlimited); the plaintext is
 * in the result and nowhere else. A project must belong to the organization; an expiry
 * must be in the future; models must have prices. At most max_active_keys_per_org active
 * keys per organization: 429 (replaces the keys_bans migration's).
 */
create or replace function public.create_api_key(
  org_id uuid, name text, description text default null, project_id uuid default null,
  expires_at timestamptz default null, models text[] default null, credit_limit bigint default null,
  credit_limit_period text default 'monthly', rpm integer default null, tpm integer default null,
  allowed_ips cidr[] default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(create_api_key.org_id, 'admin');
  prefix text := private.setting('api_key_prefix');
  secret text := private.random_hex64();
  plaintext text := prefix || secret;
  period text := private.key_period(create_api_key.credit_limit_period);
  k public.api_keys;
begin
  if create_api_key.name is null or char_length(btrim(create_api_key.name)) not between 1 and 100 then
    raise exception 'name must be 1 to 100 characters' using errcode = 'PT400';
  end if;
  if create_api_key.project_id is not null and not exists (
    select 1 from public.projects p where p.id = create_api_key.project_id and p.org_id = create_api_key.org_id
  ) then
    raise exception 'project % is not in this organization', create_api_key.project_id using errcode = 'PT400';
  end if;
  if create_api_key.expires_at is not null and create_api_key.expires_at <= now() then
    raise exception 'expires_at must be in the future' using errcode = 'PT400';
  end if;
  perform private.check_key_controls(create_api_key.models, create_api_key.credit_limit, create_api_key.rpm,
                                     create_api_key.tpm, create_api_key.allowed_ips);
  perform 1 from public.organizations o where o.id = create_api_key.org_id for no key update;
  perform private.check_limit('max_active_keys_per_org', 50,
    (select count(*) from public.api_keys x
     where x.org_id = create_api_key.org_id and x.status = 'active'
       and (x.expires_at is null or x.expires_at > now())),
    'an organization may have at most % active API keys');

  insert into public.api_keys (org_id, project_id, created_by, name, description, prefix, key_hash, expires_at,
                               models, credit_limit, credit_limit_period, rpm, tpm, allowed_ips)
  values (create_api_key.org_id, create_api_key.project_id, auth.uid(), btrim(create_api_key.name),
          create_api_key.description, prefix || left(secret, 8),
          pg_catalog.sha256(convert_to(plaintext, 'UTF8')), create_api_key.expires_at,
          create_api_key.models, create_api_key.credit_limit, period, create_api_key.rpm, create_api_key.tpm,
          create_api_key.allowed_ips)
  returning * into k;
  return private.key_json(k, plaintext);
end;
$$;
grant execute on function public.create_api_key(uuid, text, text, uuid, timestamptz, text[], bigint, text, integer,
                                                integer, cidr[]) to authenticated, service_role;

/**
 * Owners and admins change a key's controls. The controls given replace the key's
 * (models, credit_limit, credit_limit_period, rpm, tpm, allowed_ips, expires_at: null =
 * unlimited), so a call states the key's whole set; name and description stay when
 * null. A changed period starts a new budget period. 404 unknown key, 403 a member,
 * 400 bad control or a revoked key.
 */
create or replace function public.update_api_key(
  key_id uuid, name text default null, description text default null, expires_at timestamptz default null,
  models text[] default null, credit_limit bigint default null, credit_limit_period text default 'monthly',
  rpm integer default null, tpm integer default null, allowed_ips cidr[] default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys := private.admin_key(update_api_key.key_id);
  period text := private.key_period(update_api_key.credit_limit_period);
begin
  if k.status = 'revoked' then
    raise exception 'a revoked key cannot be changed' using errcode = 'PT400';
  end if;
  if update_api_key.name is not null and char_length(btrim(update_api_key.name)) not between 1 and 100 then
    raise exception 'name must be 1 to 100 characters' using errcode = 'PT400';
  end if;
  if update_api_key.expires_at is not null and update_api_key.expires_at <= now() then
    raise exception 'expires_at must be in the future' using errcode = 'PT400';
  end if;
  perform private.check_key_controls(update_api_key.models, update_api_key.credit_limit, update_api_key.rpm,
                                     update_api_key.tpm, update_api_key.allowed_ips);
  update public.api_keys x
  set name = coalesce(btrim(update_api_key.name), x.name),
      description = coalesce(update_api_key.description, x.description),
      expires_at = update_api_key.expires_at,
      models = update_api_key.models,
      credit_limit = update_api_key.credit_limit,
      credit_limit_period = period,
      budget_period_start = case when period = x.credit_limit_period then x.budget_period_start end,
      budget_spent = case when period = x.credit_limit_period then x.budget_spent else 0 end,
      rpm = update_api_key.rpm,
      tpm = update_api_key.tpm,
      allowed_ips = update_api_key.allowed_ips
  where x.id = k.id
  returning * into k;
  return private.key_json(k);
end;
$$;
revoke execute on function public.update_api_key(uuid, text, text, timestamptz, text[], bigint, text, integer, integer,
                                                 cidr[]) from public, anon;
grant execute on function public.update_api_key(uuid, text, text, timestamptz, text[], bigint, text, integer, integer,
                                                cidr[]) to authenticated, service_role;

/**
 * Owners and admins rotate a key: a new secret, returned once; the old one keeps
 * working for `grace_seconds` (0 to 30 days), then 401. Rotating again ends an earlier
 * grace at once (only one previous secret is kept). 404 unknown, 403 a member, 400 a
 * revoked key or a bad grace.
 */
create or replace function public.rotate_api_key(key_id uuid, grace_seconds integer default 0)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys := private.admin_key(rotate_api_key.key_id);
  key_prefix text := private.setting('api_key_prefix');
  secret text := private.random_hex64();
  plaintext text := key_prefix || secret;
begin
  if k.status <> 'active' or (k.expires_at is not null and k.expires_at <= now()) then
    raise exception 'only an active key can be rotated' using errcode = 'PT400';
  end if;
  if rotate_api_key.grace_seconds is null or rotate_api_key.grace_seconds not between 0 and 2592000 then
    raise exception 'grace_seconds must be between 0 and 2592000 (30 days)' using errcode = 'PT400';
  end if;
  update public.api_keys x
  set previous_key_hash = x.key_hash,
      previous_key_expires_at = now() + make_interval(secs => rotate_api_key.grace_seconds),
      key_hash = pg_catalog.sha256(convert_to(plaintext, 'UTF8')),
      prefix = key_prefix || left(secret, 8),
      rotated_at = now()
  where x.id = k.id
  returning * into k;
  return private.key_json(k, plaintext);
end;
$$;
revoke execute on function public.rotate_api_key(uuid, integer) from public, anon;
grant execute on function public.rotate_api_key(uuid, integer) to authenticated, service_role;

/**
 * Members: each key of the organization with its budget now: the current period (it
 * turns on its own; a period nobody used yet shows zero spent), spent, reserved by open
 * requests, and remaining (null = unlimited). 404 for a non-member.
 */
create or replace function public.api_key_budgets(org_id uuid)
returns table (api_key_id uuid, name text, credit_limit bigint, credit_limit_period text,
               period_start timestamptz, resets_at timestamptz, spent bigint, reserved bigint, remaining bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if not private.is_member(api_key_budgets.org_id, 'member') then
    raise exception 'organization not found' using errcode = 'PT404';
  end if;
  return query
  with cur as (
    select x.*, private.key_period_start(x.credit_limit_period, x.created_at, now()) as ps
    from public.api_keys x where x.org_id = api_key_budgets.org_id
  )
  select c.id, c.name, c.credit_limit, c.credit_limit_period, c.ps,
         private.key_period_end(c.credit_limit_period, c.ps),
         case when c.budget_period_start >= c.ps then c.budget_spent else 0 end,
         c.budget_reserved,
         case when c.credit_limit is null then null
              else greatest(c.credit_limit - c.budget_reserved
                            - case when c.budget_period_start >= c.ps then c.budget_spent else 0 end, 0) end
  from cur c
  order by c.created_at;
end;
$$;
revoke execute on function public.api_key_budgets(uuid) from public, anon;
grant execute on function public.api_key_budgets(uuid) to authenticated, service_role;

/**
 * Service role (`GET /v1/models`; replaces the chat_models migration's): the active
 * models the caller may call: on its organization's plan, and for an API key with an
 * allow-list, only those. OpenAI's model object shape plus our prices. Errors as
 * private.caller_org.
 */
create or replace function public.list_models_for_caller(
  key_hash bytea default null, user_id uuid default null, org_id uuid default null
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  org uuid := private.caller_org(list_models_for_caller.key_hash, list_models_for_caller.user_id,
                                 list_models_for_caller.org_id);
  allowed text[];
  plan public.plans;
begin
  perform private.org_gate(org);
  if list_models_for_caller.key_hash is not null then
    allowed := (private.key_by_hash(list_models_for_caller.key_hash)).models;
  end if;
  select p.* into plan from public.plans p join public.organizations o on o.plan_id = p.id where o.id = org;
  return coalesce((
    select jsonb_agg(jsonb_build_object(
             'id', m.model,
             'object', 'model',
             'created', extract(epoch from m.created_at)::bigint,
             'owned_by', 'openai',
             'plan', plan.id,
             'pricing', jsonb_build_object(
               'input_usd_per_1m', trim_scale(m.input_usd_per_1m)::text,
               'cached_input_usd_per_1m', trim_scale(m.cached_input_usd_per_1m)::text,
               'output_usd_per_1m', trim_scale(m.output_usd_per_1m)::text,
               'credit_multiplier', trim_scale(m.credit_multiplier)::text),
             'max_output_tokens', m.max_output_tokens)
           order by m.model)
    from public.model_prices m
    where m.active and (not (plan.features ? 'models') or (plan.features -> 'models') ? m.model)
      and (allowed is null or m.model = any (allowed))
  ), '[]'::jsonb);
end;
$$;
revoke execute on function public.list_models_for_caller(bytea, uuid, uuid) from public, anon, authenticated;
grant execute on function public.list_models_for_caller(bytea, uuid, uuid) to service_role;
