/**
 * Chat, part 12: one clock for a key's budget period (issue 8).
 *
 * begin_chat_request chose the key's budget period by clock_timestamp(), while the
 * reservation it writes is stamped with now(), the transaction's start, and
 * private.track_key_budget counts a settled charge against the key only when that
 * stamp lies in the key's current period. A call whose transaction began just before
 * the period turned and reached the key just after was reserved in the new period and
 * counted in neither: the organization paid it, the key's budget never saw it. begin
 * now chooses the period by now() too, so the stamp and the period always agree (the
 * rate window keeps the clock's minute: its reservations carry that window).
 */

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
      ps := private.key_period_start(k.credit_limit_period, k.created_at, now());
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

