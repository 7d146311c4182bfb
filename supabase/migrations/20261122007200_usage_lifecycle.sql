/**
 * The lifecycle job (cron, `tollbooth lifecycle`), each step counted: release
 * reservations whose process died and expire grants past their expiry (the credits
 * migration's release_stale_reservations), start the next credit period of
 * organizations no Stripe subscription drives (free plan: calendar months, UTC),
 * delete api_requests past retention, create the coming months' usage_events
 * partitions and drop those past the raw events' retention once they are rolled up.
 *
 * And Stripe usage-based billing: for subscriptions whose price is metered, what each
 * closed UTC day's credits were reported to Stripe Billing Meters, one row per report
 * (`stripe_meter_reports`), so a repeated run reports nothing twice, a failed report is
 * retried with the same identifier (Stripe deduplicates it), usage added to a reported
 * day later goes as a new report of the difference, and a window older than Stripe's
 * 35 days is marked expired instead of sent. Python sends; SQL decides what and records.
 */

-- Section - Tables

insert into private.app_settings (key, value) values
  ('api_requests_retention_days', '30'),
  ('usage_events_retention_months', '13'),
  -- the event_name of the Stripe meter, unless the price's metadata names one (meter_event_name)
  ('stripe_meter_event_name', 'tollbooth_credits')
on conflict (key) do nothing;

/**
 * One report of one customer's usage for one window (a UTC day) to Stripe Billing
 * Meters. `identifier` is deterministic (customer, day, sequence) and sent to Stripe,
 * which deduplicates by it; `seq` > 0 rows carry usage that arrived after the day was
 * first reported.
 */
create table public.stripe_meter_reports (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  customer_id text not null,
  subscription_id text,
  event_name text not null,
  window_start timestamptz not null,
  window_end timestamptz not null,
  seq integer not null default 0,
  value bigint not null check (value > 0),
  identifier text not null unique,
  status text not null default 'pending' check (status in ('pending', 'sent', 'failed', 'rejected', 'expired')),
  attempts integer not null default 0,
  http_status integer,
  answer jsonb,
  error text,
  claimed_at timestamptz,
  reported_at timestamptz,
  created_at timestamptz not null default now(),
  unique (customer_id, window_start, seq)
);
create index stripe_meter_reports_org_id_idx on public.stripe_meter_reports (org_id, window_start);
create index stripe_meter_reports_open_idx on public.stripe_meter_reports (status) where status in ('pending', 'failed');

alter table public.stripe_meter_reports enable row level security;
revoke all on public.stripe_meter_reports from anon, authenticated;
grant select (id, org_id, customer_id, subscription_id, event_name, window_start, window_end, seq, value, identifier,
              status, attempts, http_status, error, reported_at, created_at)
  on public.stripe_meter_reports to authenticated;

comment on table public.stripe_meter_reports is
  'What usage was reported to Stripe Billing Meters, per customer and UTC day, with Stripe''s answer (organization admins).';

-- Section - Private helpers

/**
 * Starts the next credit period of `org` when its period has ended by `at`: at the
 * calendar-month boundary (UTC), or at the previous period's end when that fell inside
 * this month (a period a Stripe plan left mid-month runs to the next boundary), never
 * before it. Month arithmetic on UTC timestamps, so the 31st, February and leap years
 * land on the 1st. Idempotent per period (start_plan_period's grant id). True when a
 * period started.
 */
create or replace function private.roll_credit_period(org uuid, at timestamptz)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
  plan text;
  month_start timestamptz := date_trunc('month', at at time zone 'UTC') at time zone 'UTC';
  starts timestamptz;
  ends timestamptz;
begin
  select * into acct from public.credit_accounts a where a.org_id = org;
  if acct.org_id is null or (acct.period_end is not null and acct.period_end > at) then
    return false;
  end if;
  select o.plan_id into plan from public.organizations o where o.id = org;
  if plan is null then
    return false;
  end if;
  starts := greatest(coalesce(acct.period_end, month_start), month_start);
  ends := (date_trunc('month', starts at time zone 'UTC') + interval '1 month') at time zone 'UTC';
  perform private.start_plan_period(org, plan, starts, ends, plan || ' plan allowance');
  return true;
end;
$$;
revoke execute on function private.roll_credit_period(uuid, timestamptz) from public, anon, authenticated;

/**
 * Drops usage_events month partitions wholly older than the raw events' retention,
 * only when every event in them is rolled up (else skipped, and named).
 */
create or replace function private.drop_old_usage_partitions(at timestamptz)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  months integer := coalesce(private.setting('usage_events_retention_months'), '13')::integer;
  keep_from date := (date_trunc('month', at at time zone 'UTC') - make_interval(months => months))::date;
  wm pg_snapshot;
  part record;
  unrolled boolean;
  dropped text[] := '{}';
  skipped text[] := '{}';
begin
  select s.snapshot into wm from private.usage_rollup_state s where s.id;
  for part in
    select c.relname, to_date(substr(c.relname, 14), 'YYYY_MM') as month
    from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'public.usage_events'::regclass and c.relname ~ '^usage_events_\d{4}_\d{2}$'
      and (to_date(substr(c.relname, 14), 'YYYY_MM') + interval '1 month')::date <= keep_from
    order by 2
  loop
    execute format('select exists (select 1 from private.%I e where $1 is null or not pg_visible_in_snapshot(e.txid, $1))',
                   part.relname) into unrolled using wm;
    if unrolled then
      skipped := skipped || part.relname::text;
    else
      execute format('drop table private.%I', part.relname);
      dropped := dropped || part.relname::text;
    end if;
  end loop;
  return jsonb_build_object('dropped', to_jsonb(dropped), 'skipped_not_rolled_up', to_jsonb(skipped));
end;
$$;
revoke execute on function private.drop_old_usage_partitions(timestamptz) from public, anon, authenticated;

-- Section - Policies

/**
 * Organization admins see what was reported to Stripe for them.
 */
create policy "Meter reports are viewable by organization admins" on public.stripe_meter_reports
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

-- Section - Public RPCs

/**
 * Service role (cron, `tollbooth lifecycle`): every lifecycle step but the Stripe
 * reports, with counts. `at` is the job's clock (tests move it; periods and
 * retention use it). One run at a time (an advisory lock; a second run skips).
 */
create or replace function public.usage_lifecycle(at timestamptz default now(), stale_after_seconds integer default 0)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  reservations jsonb;
  periods integer := 0;
  org uuid;
  old_requests bigint;
  ahead jsonb;
  old_parts jsonb;
  retention_days integer := coalesce(private.setting('api_requests_retention_days'), '30')::integer;
begin
  if not pg_try_advisory_xact_lock(hashtext('public.usage_lifecycle')) then
    return jsonb_build_object('skipped', true, 'reason', 'another lifecycle run is running');
  end if;
  reservations := public.release_stale_reservations(usage_lifecycle.stale_after_seconds);
  for org in
    select a.org_id from public.credit_accounts a
    where (a.period_end is null or a.period_end <= usage_lifecycle.at)
      and not exists (select 1 from public.subscriptions s
                      where s.org_id = a.org_id and s.status in ('active', 'trialing', 'past_due'))
    order by a.org_id
  loop
    if private.roll_credit_period(org, usage_lifecycle.at) then
      periods := periods + 1;
    end if;
  end loop;
  delete from public.api_requests r where r.created_at < usage_lifecycle.at - make_interval(days => retention_days);
  get diagnostics old_requests = row_count;
  ahead := public.ensure_usage_partitions(3);
  old_parts := private.drop_old_usage_partitions(usage_lifecycle.at);
  return jsonb_build_object(
    'skipped', false,
    'released_reservations', reservations -> 'released_reservations',
    'expired_grants', reservations -> 'expired_grants',
    'periods_started', periods,
    'api_requests_deleted', old_requests,
    'partitions_ahead', ahead -> 'partitions',
    'partitions_dropped', old_parts -> 'dropped',
    'partitions_kept_not_rolled_up', old_parts -> 'skipped_not_rolled_up');
end;
$$;
revoke execute on function public.usage_lifecycle(timestamptz, integer) from public, anon, authenticated;
grant execute on function public.usage_lifecycle(timestamptz, integer) to service_role;

/**
 * Service role (the lifecycle job's Stripe step): records what each metered
 * subscription's closed UTC days still owe Stripe (credits in usage_daily minus what
 * reports already carry) as new reports, marks unsent reports of windows older than
 * `max_age_days` expired (Stripe refuses them), and claims the reports to send now:
 * pending or failed ones not claimed in the last 5 minutes. Run the rollup first.
 */
create or replace function public.usage_meter_claim(
  at timestamptz default now(), max_age_days integer default 35, lookback_days integer default 40
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  today date := (usage_meter_claim.at at time zone 'UTC')::date;
  oldest timestamptz := usage_meter_claim.at - make_interval(days => max_age_days);
  created bigint;
  expired bigint;
  claimed jsonb;
begin
  with metered as (
    select distinct on (s.customer_id) s.org_id, s.customer_id, s.id as subscription_id,
           coalesce(p.metadata ->> 'meter_event_name', private.setting('stripe_meter_event_name')) as event_name,
           greatest((coalesce(s.created_at, s.current_period_start, usage_meter_claim.at) at time zone 'UTC')::date,
                    today - lookback_days) as first_day
    from public.subscriptions s
    join public.stripe_prices p on p.id = s.price_id
    where s.org_id is not null and s.status in ('active', 'trialing', 'past_due')
      and p.stripe_data -> 'recurring' ->> 'meter' is not null
    order by s.customer_id, s.created_at desc nulls last
  ), used as (
    select m.*, d.day, sum(d.credits)::bigint as credits
    from metered m join public.usage_daily d on d.org_id = m.org_id and d.day >= m.first_day and d.day < today
    group by m.org_id, m.customer_id, m.subscription_id, m.event_name, m.first_day, d.day
  ), due as (
    select u.*, u.credits - coalesce(r.reported, 0) as value, coalesce(r.n, 0) as seq
    from used u
    left join lateral (
      select sum(x.value) as reported, count(*)::integer as n from public.stripe_meter_reports x
      where x.customer_id = u.customer_id and x.window_start = u.day::timestamp at time zone 'UTC'
    ) r on true
  ), inserted as (
    insert into public.stripe_meter_reports (org_id, customer_id, subscription_id, event_name, window_start,
                                             window_end, seq, value, identifier)
    select d.org_id, d.customer_id, d.subscription_id, d.event_name, d.day::timestamp at time zone 'UTC',
           (d.day + 1)::timestamp at time zone 'UTC', d.seq, d.value,
           'tollbooth:' || d.customer_id || ':' || to_char(d.day, 'YYYY-MM-DD') || ':' || d.seq
    from due d where d.value > 0
    on conflict do nothing
    returning 1
  )
  select count(*) into created from inserted;

  update public.stripe_meter_reports r
  set status = 'expired', error = 'window older than ' || max_age_days || ' days: Stripe accepts meter events '
                                  'from the past 35 days only, so it was not sent'
  where r.status in ('pending', 'failed') and r.window_start < oldest;
  get diagnostics expired = row_count;

  with picked as (
    select r.id from public.stripe_meter_reports r
    where r.status in ('pending', 'failed')
      and (r.claimed_at is null or r.claimed_at < usage_meter_claim.at - interval '5 minutes')
    order by r.window_start, r.seq
    for update skip locked
  ), done as (
    update public.stripe_meter_reports r
    set claimed_at = usage_meter_claim.at, attempts = r.attempts + 1
    from picked where r.id = picked.id
    returning r.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'identifier', d.identifier, 'customer_id', d.customer_id, 'event_name', d.event_name,
           'value', d.value, 'timestamp', extract(epoch from d.window_end)::bigint - 1, 'attempts', d.attempts)
         order by d.window_start, d.seq), '[]'::jsonb)
  into claimed from done d;
  return jsonb_build_object('created', created, 'expired', expired, 'reports', claimed);
end;
$$;
revoke execute on function public.usage_meter_claim(timestamptz, integer, integer) from public, anon, authenticated;
grant execute on function public.usage_meter_claim(timestamptz, integer, integer) to service_role;

/**
 * Service role: Stripe's answer to one report. `outcome` is 'sent', 'failed' (retried
 * next run: network, 429, 5xx) or 'rejected' (another 4xx: kept with the answer for a
 * person to look at, never resent). A sent report stays sent.
 */
create or replace function public.usage_meter_record(
  identifier text, outcome text, http_status integer default null, answer jsonb default null, error text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  result text;
begin
  if outcome is null or outcome not in ('sent', 'failed', 'rejected') then
    raise exception 'outcome must be sent, failed or rejected' using errcode = 'PT400';
  end if;
  update public.stripe_meter_reports r
  set status = case when r.status = 'sent' then 'sent' else usage_meter_record.outcome end,
      http_status = usage_meter_record.http_status, answer = usage_meter_record.answer,
      error = left(usage_meter_record.error, 1000),
      reported_at = case when usage_meter_record.outcome = 'sent' then now() else r.reported_at end
  where r.identifier = usage_meter_record.identifier
  returning r.status into result;
  if result is null then
    raise exception 'no meter report %', identifier using errcode = 'PT404';
  end if;
  return jsonb_build_object('identifier', identifier, 'status', result);
end;
$$;
revoke execute on function public.usage_meter_record(text, text, integer, jsonb, text) from public, anon, authenticated;
grant execute on function public.usage_meter_record(text, text, integer, jsonb, text) to service_role;
