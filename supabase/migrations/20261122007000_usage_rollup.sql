/**
 * Usage rollup: usage_daily holds per UTC day and hour, organization, project, API key,
 * user, model, kind and status class the sums of usage_events, and every event is in it
 * exactly once, however and however often the job runs.
 *
 * How: each event carries the id of the transaction that inserted it (`txid`, a column
 * default, so the insert path is unchanged). A run takes the current snapshot S, adds
 * the events visible in S but not in the previous run's snapshot P, and stores S as the
 * new watermark, all in one transaction. So:
 * - an event whose transaction commits after S was taken is invisible in S and counted
 *   by the next run (a bare id or timestamp watermark would lose it);
 * - two runs never overlap: one holds an advisory lock, the other skips (or waits);
 * - an interrupted run rolls back its sums and its watermark together;
 * - a late event for a past day is found by its txid, whatever its created_at;
 * - usage_daily always equals the events visible in the stored watermark, so a reader
 *   adds the events invisible in it (usage_summary) and counts everything exactly once.
 * A rebuild for a date range first catches up, then recomputes those days from the
 * events visible in the same snapshot.
 */

-- Section - Tables

-- the inserting transaction's id (top-level, 64-bit: no wraparound, savepoints included);
-- existing rows get the migration's id
alter table public.usage_events add column txid xid8 not null default pg_current_xact_id();
create index usage_events_txid_idx on public.usage_events (txid);

/**
 * Per UTC day and hour (so any viewer's timezone converts exactly at whole-hour offsets).
 * Dimension ids are kept as the events recorded them (no foreign keys: a deleted key's
 * usage stays attributed to it).
 */
create table public.usage_daily (
  org_id uuid not null references public.organizations (id) on delete cascade,
  day date not null,
  hour smallint not null check (hour between 0 and 23),
  project_id uuid,
  api_key_id uuid,
  user_id uuid,
  model text,
  kind text not null,
  status_class text not null check (status_class in ('ok', 'error')),
  requests bigint not null default 0,
  prompt_tokens bigint not null default 0,
  cached_tokens bigint not null default 0,
  completion_tokens bigint not null default 0,
  reasoning_tokens bigint not null default 0,
  total_tokens bigint not null default 0,
  credits bigint not null default 0,
  cost_usd numeric(30, 12) not null default 0,
  updated_at timestamptz not null default now()
);
create unique index usage_daily_key_idx on public.usage_daily
  (org_id, day, hour, project_id, api_key_id, user_id, model, kind, status_class) nulls not distinct;
create index usage_daily_api_key_day_idx on public.usage_daily (api_key_id, day);
create index usage_daily_day_idx on public.usage_daily (day);

alter table public.usage_daily enable row level security;
revoke all on public.usage_daily from anon, authenticated;
grant select on public.usage_daily to authenticated;

comment on table public.usage_daily is
  'Usage per UTC day and hour, project, API key, user, model, kind and status class (members read).';

/**
 * The rollup's watermark: the snapshot whose visible events usage_daily holds.
 */
create table private.usage_rollup_state (
  id boolean primary key default true check (id),
  snapshot pg_snapshot,
  runs bigint not null default 0,
  last_run_at timestamptz,
  last_rebuild_at timestamptz
);
alter table private.usage_rollup_state enable row level security;
revoke all on private.usage_rollup_state from anon, authenticated;
insert into private.usage_rollup_state (id) values (true) on conflict do nothing;

-- Section - Private helpers

/**
 * Adds to usage_daily the events visible in `cur` and not in `prev` (null: none were),
 * optionally only those of UTC days `from_day`..`to_day`. Returns the events and the
 * usage_daily rows touched. Callers hold the rollup lock.
 */
create or replace function private.usage_rollup_apply(
  prev pg_snapshot, cur pg_snapshot, from_day date default null, to_day date default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  lo xid8 := coalesce(pg_snapshot_xmin(prev), '0'::xid8);
  hi xid8 := pg_snapshot_xmax(cur);
  lo_at timestamptz := coalesce(from_day::timestamp at time zone 'UTC', '-infinity');
  hi_at timestamptz := coalesce((to_day + 1)::timestamp at time zone 'UTC', 'infinity');
  events bigint;
  touched bigint;
begin
  with fresh as (
    select e.org_id, (e.created_at at time zone 'UTC')::date as day,
           extract(hour from e.created_at at time zone 'UTC')::smallint as hour,
           e.project_id, e.api_key_id, e.user_id, e.model, e.kind,
           case when e.status = 'succeeded' then 'ok' else 'error' end as status_class,
           count(*) as requests, sum(e.prompt_tokens) as prompt_tokens, sum(e.cached_tokens) as cached_tokens,
           sum(e.completion_tokens) as completion_tokens, sum(e.reasoning_tokens) as reasoning_tokens,
           sum(e.total_tokens) as total_tokens, sum(e.credits) as credits, sum(e.cost_usd) as cost_usd
    from public.usage_events e
    where e.txid >= lo and e.txid < hi
      and e.created_at >= lo_at and e.created_at < hi_at
      and pg_visible_in_snapshot(e.txid, cur)
      and (prev is null or not pg_visible_in_snapshot(e.txid, prev))
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9
  ), written as (
    insert into public.usage_daily as d (
      org_id, day, hour, project_id, api_key_id, user_id, model, kind, status_class, requests,
      prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, total_tokens, credits, cost_usd)
    select f.org_id, f.day, f.hour, f.project_id, f.api_key_id, f.user_id, f.model, f.kind, f.status_class,
           f.requests, f.prompt_tokens, f.cached_tokens, f.completion_tokens, f.reasoning_tokens,
           f.total_tokens, f.credits, f.cost_usd
    from fresh f
    -- an organization deleted since: its events and rollups are gone with it
    where exists (select 1 from public.organizations o where o.id = f.org_id)
    on conflict (org_id, day, hour, project_id, api_key_id, user_id, model, kind, status_class)
    do update set requests = d.requests + excluded.requests,
                  prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
                  cached_tokens = d.cached_tokens + excluded.cached_tokens,
                  completion_tokens = d.completion_tokens + excluded.completion_tokens,
                  reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
                  total_tokens = d.total_tokens + excluded.total_tokens,
                  credits = d.credits + excluded.credits,
                  cost_usd = d.cost_usd + excluded.cost_usd,
                  updated_at = now()
    returning d.requests
  )
  select (select coalesce(sum(f.requests), 0) from fresh f), (select count(*) from written)
  into events, touched;
  return jsonb_build_object('events', events, 'rows', touched);
end;
$$;
revoke execute on function private.usage_rollup_apply(pg_snapshot, pg_snapshot, date, date) from public, anon, authenticated;

/**
 * Takes the rollup lock (waiting, or not: then false), runs the incremental step and
 * moves the watermark. Returns null when skipped.
 */
create or replace function private.usage_rollup_step(wait boolean)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  prev pg_snapshot;
  cur pg_snapshot;
  result jsonb;
begin
  if wait then
    perform pg_advisory_xact_lock(hashtext('public.usage_rollup'));
  elsif not pg_try_advisory_xact_lock(hashtext('public.usage_rollup')) then
    return null;
  end if;
  -- with the lock held, this statement sees the previous run's commit
  select s.snapshot into prev from private.usage_rollup_state s where s.id for update;
  cur := pg_current_snapshot();
  result := private.usage_rollup_apply(prev, cur);
  update private.usage_rollup_state s
  set snapshot = cur, runs = s.runs + 1, last_run_at = now()
  where s.id;
  return result || jsonb_build_object('watermark', cur::text);
end;
$$;
revoke execute on function private.usage_rollup_step(boolean) from public, anon, authenticated;

-- Section - Policies

/**
 * Members read their organization's rollups.
 */
create policy "Usage rollups are viewable by members" on public.usage_daily
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

-- Section - Public RPCs

/**
 * Service role (cron, `tollbooth rollup`): adds every event not yet counted to
 * usage_daily. A run that finds another one running skips (`wait` false, the cron) or
 * waits for it (`wait` true). Returns {skipped} or {events, rows, watermark}.
 */
create or replace function public.usage_rollup(wait boolean default false)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  result jsonb := private.usage_rollup_step(usage_rollup.wait);
begin
  if result is null then
    return jsonb_build_object('skipped', true, 'reason', 'another rollup is running');
  end if;
  return jsonb_build_object('skipped', false) || result;
end;
$$;
revoke execute on function public.usage_rollup(boolean) from public, anon, authenticated;
grant execute on function public.usage_rollup(boolean) to service_role;

/**
 * Service role (`tollbooth rollup --rebuild FROM TO`): recomputes UTC days
 * `from_day`..`to_day` from the raw events. It waits for a running rollup, catches up
 * first (so the watermark and the rebuilt days agree), then replaces those days' rows
 * with the sums of the events visible in the same snapshot. Refuses days whose raw
 * events are past retention (their rollups are all that is left).
 */
create or replace function public.usage_rollup_rebuild(from_day date, to_day date)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caught_up jsonb;
  cur pg_snapshot;
  oldest date;
  removed bigint;
  rebuilt jsonb;
begin
  if from_day is null or to_day is null or from_day > to_day then
    raise exception 'rebuild needs from_day <= to_day' using errcode = 'PT400';
  end if;
  select min(to_date(substr(c.relname, 14), 'YYYY_MM')) into oldest
  from pg_catalog.pg_inherits i
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  where i.inhparent = 'public.usage_events'::regclass and c.relname ~ '^usage_events_\d{4}_\d{2}$';
  if oldest is not null and from_day < oldest then
    raise exception 'raw usage events before % are past retention; their rollups cannot be rebuilt', oldest
      using errcode = 'PT400';
  end if;
  caught_up := private.usage_rollup_step(true);
  select s.snapshot into cur from private.usage_rollup_state s where s.id;
  delete from public.usage_daily d where d.day between from_day and to_day;
  get diagnostics removed = row_count;
  rebuilt := private.usage_rollup_apply(null, cur, from_day, to_day);
  update private.usage_rollup_state s set last_rebuild_at = now() where s.id;
  return jsonb_build_object('from_day', from_day, 'to_day', to_day, 'caught_up', caught_up,
                            'removed_rows', removed, 'events', rebuilt -> 'events', 'rows', rebuilt -> 'rows');
end;
$$;
revoke execute on function public.usage_rollup_rebuild(date, date) from public, anon, authenticated;
grant execute on function public.usage_rollup_rebuild(date, date) to service_role;
