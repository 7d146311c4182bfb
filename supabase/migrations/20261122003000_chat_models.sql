/**
 * Chat models: which models a caller of the OpenAI-compatible API may call, for
 * `GET /v1/models`. The caller is resolved exactly as begin_chat_request resolves it
 * (an API key's sha256, or a signed-in user and optionally an organization), but
 * nothing is reserved or counted.
 */

-- Section - Private helpers

/**
 * Service role only (through public.list_models_for_caller): the organization an API
 * key or a signed-in user acts for, with begin_chat_request's errors: 401 key
 * unknown/revoked/expired or organization owner banned; 403 user banned/inactive or
 * not a member.
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
    select * into k from public.api_keys x where x.key_hash = caller_org.key_hash;
    if k.id is null then
      raise exception 'invalid API key' using errcode = 'PT401';
    elsif k.status = 'revoked' then
      raise exception 'API key has been revoked' using errcode = 'PT401';
    elsif k.status = 'expired' or (k.expires_at is not null and k.expires_at <= now()) then
      raise exception 'API key has expired' using errcode = 'PT401';
    end if;
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

/**
 * Service role (`GET /v1/models`): the active models the caller's organization may call
 * on its plan (plans.features.models; absent means every active model), in OpenAI's
 * model object shape plus our prices (USD per 1M tokens as exact decimal strings, the
 * credit multiplier and the output cap). Errors as private.caller_org.
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
  plan public.plans;
begin
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
  ), '[]'::jsonb);
end;
$$;
revoke execute on function public.list_models_for_caller(bytea, uuid, uuid) from public, anon, authenticated;
grant execute on function public.list_models_for_caller(bytea, uuid, uuid) to service_role;
