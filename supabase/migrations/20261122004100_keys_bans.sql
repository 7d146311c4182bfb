/**
 * Bans reach API keys, and keys are limited (issue 11). Forward-only replacements of
 * begin_chat_request (chat migration) and create_api_key (keys migration):
 * - a key works only while the user who created it is active (not banned, not
 *   inactive, not deleted) and at least one owner of its organization is active;
 * - an organization has at most max_active_keys_per_org active keys (PT429).
 */

-- Section - Public RPCs

/**
 * Service role (chat proxy; replaces the chat migration's): authenticates the caller
 * (an API key's sha256, or a signed-in user and optionally an organization), checks the model against the
 * price list and the plan, and reserves the worst case: `prompt_tokens_bound` at the
 * input price plus the completion limit at the output price for every choice. With
 * no limit, the limit becomes what the balance affords (at most the model's
 * maximum). Errors: 401 key unknown/revoked/expired, its creator banned, inactive or
 * deleted, or every owner of its organization banned or inactive;
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
 * Owners and admins create a key; the plaintext is in the result and nowhere else.
 * A project must belong to the organization; an expiry must be in the future. At most
 * max_active_keys_per_org active keys per organization: 429 (replaces the keys migration's).
 */
create or replace function public.create_api_key(
  org_id uuid, name text, description text default null, project_id uuid default null,
  expires_at timestamptz default null
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
  perform 1 from public.organizations o where o.id = create_api_key.org_id for no key update;
  perform private.check_limit('max_active_keys_per_org', 50,
    (select count(*) from public.api_keys x
     where x.org_id = create_api_key.org_id and x.status = 'active'
       and (x.expires_at is null or x.expires_at > now())),
    'an organization may have at most % active API keys');

  insert into public.api_keys (org_id, project_id, created_by, name, description, prefix, key_hash, expires_at)
  values (create_api_key.org_id, create_api_key.project_id, auth.uid(), btrim(create_api_key.name),
          create_api_key.description, prefix || left(secret, 8),
          pg_catalog.sha256(convert_to(plaintext, 'UTF8')), create_api_key.expires_at)
  returning * into k;
  return jsonb_build_object('id', k.id, 'key', plaintext, 'prefix', k.prefix, 'name', k.name,
                            'org_id', k.org_id, 'project_id', k.project_id, 'expires_at', k.expires_at,
                            'created_at', k.created_at);
end;
$$;
grant execute on function public.create_api_key(uuid, text, text, uuid, timestamptz) to authenticated, service_role;
