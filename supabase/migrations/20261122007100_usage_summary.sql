/**
 * The usage page: usage_summary (members, through PostgREST or `GET /api/usage`),
 * single requests a page at a time (`GET /api/usage/requests`) and an API key's own
 * usage (`GET /v1/usage`). Every number is usage_daily plus the events the rollup has
 * not counted yet (invisible in its watermark), so the page is current and counts each
 * event exactly once whenever the job last ran.
 */

-- Section - Private helpers

/**
 * The measures of one bucket or breakdown row as the API shows them (cost as an exact
 * decimal string).
 */
create or replace function private.usage_measures(
  requests numeric, ok numeric, prompt numeric, cached numeric, completion numeric, reasoning numeric,
  total numeric, credits numeric, cost numeric
)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'requests', coalesce(requests, 0), 'ok_requests', coalesce(ok, 0),
    'failed_requests', coalesce(requests, 0) - coalesce(ok, 0),
    'prompt_tokens', coalesce(prompt, 0), 'cached_tokens', coalesce(cached, 0),
    'completion_tokens', coalesce(completion, 0), 'reasoning_tokens', coalesce(reasoning, 0),
    'total_tokens', coalesce(total, 0), 'credits', coalesce(credits, 0),
    'cost_usd', trim_scale(coalesce(cost, 0))::text);
$$;
revoke execute on function private.usage_measures(numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric) from public, anon, authenticated;

/**
 * Usage of `org` over the last `n_days` days of timezone `tz` (today included), in
 * buckets of `grain` ('day' or 'hour', local time), with totals and breakdowns by
 * model, API key and project. Callers have checked membership.
 */
create or replace function private.usage_summary_json(org uuid, n_days integer, tz text, grain text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  today date;
  from_ts timestamptz;
  to_ts timestamptz;
  wm pg_snapshot;
begin
  if grain is null or grain not in ('day', 'hour') then
    raise exception 'group_by must be day or hour' using errcode = 'PT400';
  end if;
  if n_days is null or n_days not between 1 and 400 then
    raise exception 'days must be between 1 and 400' using errcode = 'PT400';
  end if;
  begin
    today := (now() at time zone tz)::date;
  exception when others then
    raise exception 'unknown time zone "%"', tz using errcode = 'PT400';
  end;
  from_ts := (today - (n_days - 1))::timestamp at time zone tz;
  to_ts := (today + 1)::timestamp at time zone tz;
  select s.snapshot into wm from private.usage_rollup_state s where s.id;

  return (
    with src as (
      select (d.day + make_interval(hours => d.hour::integer))::timestamp at time zone 'UTC' as at,
             d.model, d.api_key_id, d.project_id, d.requests,
             case when d.status_class = 'ok' then d.requests else 0 end as ok,
             d.prompt_tokens, d.cached_tokens, d.completion_tokens, d.reasoning_tokens, d.total_tokens,
             d.credits, d.cost_usd
      from public.usage_daily d
      where d.org_id = org
        and d.day between (from_ts at time zone 'UTC')::date and (to_ts at time zone 'UTC')::date
      union all
      -- not yet rolled up: invisible in the rollup's watermark
      select date_trunc('hour', e.created_at, 'UTC'), e.model, e.api_key_id, e.project_id, 1,
             case when e.status = 'succeeded' then 1 else 0 end,
             e.prompt_tokens, e.cached_tokens, e.completion_tokens, e.reasoning_tokens, e.total_tokens,
             e.credits, e.cost_usd
      from public.usage_events e
      where e.org_id = org and e.created_at >= from_ts and e.created_at < to_ts
        and e.txid >= coalesce(pg_snapshot_xmin(wm), '0'::xid8)
        and (wm is null or not pg_visible_in_snapshot(e.txid, wm))
    ), w as (
      select date_trunc(grain, s.at at time zone tz) as bucket, s.*
      from src s where s.at >= from_ts and s.at < to_ts
    ), buckets as (
      select g.bucket,
             private.usage_measures(sum(w.requests), sum(w.ok), sum(w.prompt_tokens), sum(w.cached_tokens),
                                    sum(w.completion_tokens), sum(w.reasoning_tokens), sum(w.total_tokens),
                                    sum(w.credits), sum(w.cost_usd)) as m
      from generate_series(date_trunc(grain, from_ts at time zone tz), date_trunc(grain, (to_ts - interval '1 microsecond') at time zone tz),
                           ('1 ' || grain)::interval) as g(bucket)
      left join w on w.bucket = g.bucket
      group by g.bucket
    ), models as (
      select w.model,
             private.usage_measures(sum(w.requests), sum(w.ok), sum(w.prompt_tokens), sum(w.cached_tokens),
                                    sum(w.completion_tokens), sum(w.reasoning_tokens), sum(w.total_tokens),
                                    sum(w.credits), sum(w.cost_usd)) as m, sum(w.credits) as credits
      from w group by w.model
    ), keys as (
      select w.api_key_id, k.name, k.prefix,
             private.usage_measures(sum(w.requests), sum(w.ok), sum(w.prompt_tokens), sum(w.cached_tokens),
                                    sum(w.completion_tokens), sum(w.reasoning_tokens), sum(w.total_tokens),
                                    sum(w.credits), sum(w.cost_usd)) as m, sum(w.credits) as credits
      from w left join public.api_keys k on k.id = w.api_key_id
      group by w.api_key_id, k.name, k.prefix
    ), projects as (
      select w.project_id, p.name,
             private.usage_measures(sum(w.requests), sum(w.ok), sum(w.prompt_tokens), sum(w.cached_tokens),
                                    sum(w.completion_tokens), sum(w.reasoning_tokens), sum(w.total_tokens),
                                    sum(w.credits), sum(w.cost_usd)) as m, sum(w.credits) as credits
      from w left join public.projects p on p.id = w.project_id
      group by w.project_id, p.name
    )
    select jsonb_build_object(
      'org_id', org, 'days', n_days, 'tz', tz, 'group_by', grain,
      'from', from_ts, 'to', to_ts,
      'totals', (select private.usage_measures(sum(w.requests), sum(w.ok), sum(w.prompt_tokens), sum(w.cached_tokens),
                                               sum(w.completion_tokens), sum(w.reasoning_tokens), sum(w.total_tokens),
                                               sum(w.credits), sum(w.cost_usd)) from w),
      'buckets', coalesce((select jsonb_agg(jsonb_build_object(
                             'bucket', case when grain = 'day' then to_char(b.bucket, 'YYYY-MM-DD')
                                            else to_char(b.bucket, 'YYYY-MM-DD"T"HH24:00') end) || b.m
                           order by b.bucket) from buckets b), '[]'::jsonb),
      'by_model', coalesce((select jsonb_agg(jsonb_build_object('model', x.model) || x.m
                            order by x.credits desc, x.model) from models x), '[]'::jsonb),
      'by_api_key', coalesce((select jsonb_agg(jsonb_build_object('api_key_id', x.api_key_id, 'name', x.name,
                                                                  'prefix', x.prefix) || x.m
                              order by x.credits desc, x.api_key_id) from keys x), '[]'::jsonb),
      'by_project', coalesce((select jsonb_agg(jsonb_build_object('project_id', x.project_id, 'name', x.name) || x.m
                              order by x.credits desc, x.project_id) from projects x), '[]'::jsonb))
  );
end;
$$;
revoke execute on function private.usage_summary_json(uuid, integer, text, text) from public, anon, authenticated;

/**
 * One page of `org`'s single requests, newest first, strictly before the cursor
 * (created_at, id), with optional filters. Callers have checked membership.
 */
create or replace function private.usage_requests_json(
  org uuid, before_at timestamptz, before_id uuid, page_size integer, key uuid, model_name text,
  status_filter text, since timestamptz, until timestamptz
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  n integer := coalesce(page_size, 50);
  page jsonb;
  last jsonb;
begin
  if n not between 1 and 500 then
    raise exception 'limit must be between 1 and 500' using errcode = 'PT400';
  end if;
  if status_filter is not null and status_filter not in ('ok', 'error')
     and not status_filter = any (enum_range(null::public.usage_status)::text[]) then
    raise exception 'unknown status "%"', status_filter using errcode = 'PT400';
  end if;
  if (before_at is null) <> (before_id is null) then
    raise exception 'a cursor needs both its time and its id' using errcode = 'PT400';
  end if;
  select coalesce(jsonb_agg(to_jsonb(r) order by r.created_at desc, r.id desc), '[]'::jsonb) into page
  from (
    select e.id, e.created_at, e.request_id, e.model, e.kind, e.status, e.api_key_id, k.name as api_key_name,
           e.project_id, e.user_id, e.prompt_tokens, e.cached_tokens, e.completion_tokens, e.reasoning_tokens,
           e.total_tokens, e.credits, trim_scale(e.cost_usd)::text as cost_usd, e.latency_ms, e.stream, e.estimated
    from public.usage_events e
    left join public.api_keys k on k.id = e.api_key_id
    where e.org_id = org
      and (before_at is null or (e.created_at, e.id) < (before_at, before_id))
      and (key is null or e.api_key_id = key)
      and (model_name is null or e.model = model_name)
      and (status_filter is null
           or (status_filter = 'ok' and e.status = 'succeeded')
           or (status_filter = 'error' and e.status <> 'succeeded')
           or e.status::text = status_filter)
      and (since is null or e.created_at >= since)
      and (until is null or e.created_at < until)
    order by e.created_at desc, e.id desc
    limit n
  ) r;
  last := case when jsonb_array_length(page) = n then page -> (n - 1) end;
  return jsonb_build_object('data', page, 'has_more', last is not null,
                            'next_cursor', case when last is null then null
                                                else jsonb_build_object('created_at', last -> 'created_at',
                                                                        'id', last -> 'id') end);
end;
$$;
revoke execute on function private.usage_requests_json(uuid, timestamptz, uuid, integer, uuid, text, text, timestamptz, timestamptz) from public, anon, authenticated;

/**
 * One API key's sums (credits, requests, tokens, cost) since `since`, from usage_daily
 * plus the events not yet rolled up.
 */
create or replace function private.key_usage_since(key uuid, since timestamptz)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  with wm as (select s.snapshot from private.usage_rollup_state s where s.id),
  src as (
    select d.requests, case when d.status_class = 'ok' then d.requests else 0 end as ok,
           d.prompt_tokens, d.cached_tokens, d.completion_tokens, d.reasoning_tokens, d.total_tokens,
           d.credits, d.cost_usd
    from public.usage_daily d
    where d.api_key_id = key and d.day >= (since at time zone 'UTC')::date
      and (d.day + make_interval(hours => d.hour::integer))::timestamp at time zone 'UTC' >= since
    union all
    select 1, case when e.status = 'succeeded' then 1 else 0 end, e.prompt_tokens, e.cached_tokens,
           e.completion_tokens, e.reasoning_tokens, e.total_tokens, e.credits, e.cost_usd
    from public.usage_events e, wm
    where e.api_key_id = key and e.created_at >= date_trunc('hour', since, 'UTC')
      and e.txid >= coalesce(pg_snapshot_xmin(wm.snapshot), '0'::xid8)
      and (wm.snapshot is null or not pg_visible_in_snapshot(e.txid, wm.snapshot))
  )
  select private.usage_measures(sum(requests), sum(ok), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens),
                                sum(reasoning_tokens), sum(total_tokens), sum(credits), sum(cost_usd))
  from src;
$$;
revoke execute on function private.key_usage_since(uuid, timestamptz) from public, anon, authenticated;

-- Section - Public RPCs

/**
 * Members of `org_id` (PostgREST, named arguments): the usage page's numbers. 401 not
 * signed in, 403 not a member (or banned), 404 no such organization, 400 bad
 * arguments. Runs as definer because it reads the rollup watermark.
 */
create or replace function public.usage_summary(
  org_id uuid, days integer default 30, tz text default 'UTC', group_by text default 'day'
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform private.require_member_role(usage_summary.org_id, 'member');
  return private.usage_summary_json(usage_summary.org_id, usage_summary.days, usage_summary.tz,
                                    usage_summary.group_by);
end;
$$;
revoke execute on function public.usage_summary(uuid, integer, text, text) from public, anon;
grant execute on function public.usage_summary(uuid, integer, text, text) to authenticated;

/**
 * Service role (`GET /api/usage`, which verified the user's JWT): usage_summary for
 * user `user_id`, with the same membership rule.
 */
create or replace function public.usage_summary_for_user(
  user_id uuid, org_id uuid, days integer default 30, tz text default 'UTC', group_by text default 'day'
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform private.require_role_of(usage_summary_for_user.org_id, usage_summary_for_user.user_id, 'member');
  return private.usage_summary_json(usage_summary_for_user.org_id, usage_summary_for_user.days,
                                    usage_summary_for_user.tz, usage_summary_for_user.group_by);
end;
$$;
revoke execute on function public.usage_summary_for_user(uuid, uuid, integer, text, text) from public, anon, authenticated;
grant execute on function public.usage_summary_for_user(uuid, uuid, integer, text, text) to service_role;

/**
 * Service role (`GET /api/usage/requests`, which verified the user's JWT): one page of
 * the organization's single requests for a member, newest first.
 */
create or replace function public.usage_requests_for_user(
  user_id uuid, org_id uuid, before_at timestamptz default null, before_id uuid default null,
  page_size integer default 50, api_key_id uuid default null, model text default null,
  status text default null, since timestamptz default null, until timestamptz default null
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform private.require_role_of(usage_requests_for_user.org_id, usage_requests_for_user.user_id, 'member');
  return private.usage_requests_json(usage_requests_for_user.org_id, usage_requests_for_user.before_at,
    usage_requests_for_user.before_id, usage_requests_for_user.page_size, usage_requests_for_user.api_key_id,
    usage_requests_for_user.model, usage_requests_for_user.status, usage_requests_for_user.since,
    usage_requests_for_user.until);
end;
$$;
revoke execute on function public.usage_requests_for_user(uuid, uuid, timestamptz, uuid, integer, uuid, text, text, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.usage_requests_for_user(uuid, uuid, timestamptz, uuid, integer, uuid, text, text, timestamptz, timestamptz) to service_role;

/**
 * Service role (`GET /v1/usage`): the calling key's own usage (today and this month,
 * UTC, and all time) and what its organization has left. The key is its sha256; an
 * unknown, revoked or expired key is a 401, as for chat. Never another key's numbers.
 */
create or replace function public.usage_for_key(key_hash bytea)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  org uuid := private.caller_org(usage_for_key.key_hash, null, null);
  k public.api_keys;
  remaining bigint;
  day_start timestamptz := date_trunc('day', now(), 'UTC');
begin
  select * into k from public.api_keys x where x.key_hash = usage_for_key.key_hash and x.org_id = org;
  select a.balance into remaining from public.credit_accounts a where a.org_id = org;
  return jsonb_build_object(
    'id', k.id, 'name', k.name, 'prefix', k.prefix, 'org_id', org, 'project_id', k.project_id,
    'expires_at', k.expires_at,
    'usage', private.key_usage_since(k.id, '-infinity'),
    'usage_daily', private.key_usage_since(k.id, day_start),
    'usage_monthly', private.key_usage_since(k.id, date_trunc('month', now(), 'UTC')),
    -- keys have no credit limit of their own yet: the organization's balance is the limit
    'limit', null,
    'limit_remaining', coalesce(remaining, 0));
end;
$$;
revoke execute on function public.usage_for_key(bytea) from public, anon, authenticated;
grant execute on function public.usage_for_key(bytea) to service_role;
