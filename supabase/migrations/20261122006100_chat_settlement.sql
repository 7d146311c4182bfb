/**
 * Chat, part 2: the money path under faults (issue 8).
 *
 * - Zero-loss commits by default: a completed call's settlement (and the reservation it
 *   settles) waits for the WAL flush, so a Postgres crash loses no charge. Set
 *   `metering_synchronous_commit` to 'off' in private.app_settings to trade that for
 *   about one WAL flush of latency per commit.
 * - Hot-path SQL never waits long for a lock: begin and finish run under
 *   `lock_timeout` (private setting `metering_lock_timeout`, default 2 s; SQLSTATE 55P03,
 *   which the proxy answers 503 and retries settlement), so one organization's locked
 *   account row cannot pin the connection pool for everybody.
 * - A completion limit above the model's maximum is bad input (400), not 402.
 */

-- Section - Tables

-- the zero-loss default (issue 8): settlement commits wait for the WAL flush
update private.app_settings set value = 'on' where key = 'metering_synchronous_commit' and value = 'off';
insert into private.app_settings (key, value) values ('metering_lock_timeout', '2s') on conflict (key) do nothing;

-- Section - Private helpers

/**
 * Applies the metering commit mode and lock timeout to the current transaction.
 */
create or replace function private.apply_metering_commit_mode()
returns void
language sql
security definer
set search_path = ''
as $$
  select set_config('synchronous_commit', coalesce(private.setting('metering_synchronous_commit'), 'on'), true),
         set_config('lock_timeout', coalesce(private.setting('metering_lock_timeout'), '2s'), true);
$$;

-- Section - Public RPCs


/**
 * Service role (chat proxy): authenticates the caller (an API key's sha256, or a
 * signed-in user and optionally an organization), checks the model against the
 * price list and the plan, and reserves the worst case: `prompt_tokens_bound` at the
 * input price plus the completion limit at the output price for every choice. With
 * no limit, the limit becomes what the balance affords (at most the model's
 * maximum). Errors: 401 key unknown/revoked/expired, its creator banned/inactive/deleted,
 * or every owner of its organization banned;
 * 403 user banned/inactive or not a member; 400 unknown or disallowed model;
 * 402 not affordable. Runs under the metering lock timeout (55P03 when the account
 * row stays locked longer).
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
  if lim is not null and lim > price.max_output_tokens then
    raise exception 'max_tokens is too large: % is above the maximum of % completion tokens for model "%"',
      lim, price.max_output_tokens, price.model using errcode = 'PT400';
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
