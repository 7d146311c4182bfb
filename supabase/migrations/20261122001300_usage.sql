/**
 * Usage: one usage_events row per metered call (partitioned by month so retention drops
 * partitions) and a per-key api_requests log. The chat migration's finish_chat_request
 * writes both; members read usage, admins the request log.
 */

-- Section - Types

-- how a metered call ended (lib.chat.metering.USAGE_STATUSES mirrors it; a test compares)
create type public.usage_status as enum (
  'succeeded', 'upstream_error', 'upstream_timeout', 'upstream_unreachable', 'upstream_interrupted',
  'client_disconnected'
);

-- Section - Tables

create table public.usage_events (
  id uuid not null default gen_random_uuid(),
  created_at timestamptz not null default now(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid references auth.users (id) on delete set null,
  api_key_id uuid references public.api_keys (id) on delete set null,
  project_id uuid references public.projects (id) on delete set null,
  -- the Daily meeting this call belongs to (X-Meeting-Id); the meetings migration adds its key
  meeting_id uuid,
  kind text not null default 'chat' check (kind in ('chat', 'api', 'automation')),
  model text,
  prompt_tokens bigint not null default 0 check (prompt_tokens >= 0),
  completion_tokens bigint not null default 0 check (completion_tokens >= 0),
  total_tokens bigint not null default 0 check (total_tokens >= 0),
  cached_tokens bigint not null default 0 check (cached_tokens >= 0),
  reasoning_tokens bigint not null default 0 check (reasoning_tokens >= 0),
  cost_usd numeric(24, 12) not null default 0,
  credits bigint not null default 0 check (credits >= 0),
  request_id text not null,
  upstream_id text,
  status public.usage_status not null,
  -- true when the upstream never reported usage and the charge is an estimate
  estimated boolean not null default false,
  stream boolean not null default false,
  latency_ms integer,
  metadata jsonb not null default '{}'::jsonb,
  primary key (id, created_at)
) partition by range (created_at);
create index usage_events_org_created_idx on public.usage_events (org_id, created_at);
create index usage_events_user_id_idx on public.usage_events (user_id);
create index usage_events_api_key_id_idx on public.usage_events (api_key_id);
create index usage_events_project_id_idx on public.usage_events (project_id);
create index usage_events_meeting_id_idx on public.usage_events (meeting_id);
create index usage_events_request_id_idx on public.usage_events (request_id);

alter table public.usage_events enable row level security;
revoke all on public.usage_events from anon, authenticated;
grant select on public.usage_events to authenticated;

comment on table public.usage_events is
  'One row per metered call: tokens, cost, credits and outcome (partitioned by month).';

-- rows outside every month partition (clock skew, a missed cron) still land somewhere
create table private.usage_events_default partition of public.usage_events default;
alter table private.usage_events_default enable row level security;
revoke all on private.usage_events_default from anon, authenticated;

create table public.api_requests (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.organizations (id) on delete cascade,
  api_key_id uuid references public.api_keys (id) on delete set null,
  user_id uuid references auth.users (id) on delete set null,
  request_id text not null,
  endpoint text not null,
  method text not null,
  status_code integer not null,
  latency_ms integer,
  -- only when body logging is switched on for the key or organization
  request_body jsonb,
  response_body jsonb,
  created_at timestamptz not null default now()
);
create index api_requests_org_created_idx on public.api_requests (org_id, created_at);
create index api_requests_api_key_id_idx on public.api_requests (api_key_id, created_at);
create index api_requests_user_id_idx on public.api_requests (user_id);
create index api_requests_request_id_idx on public.api_requests (request_id);

alter table public.api_requests enable row level security;
revoke all on public.api_requests from anon, authenticated;
grant select on public.api_requests to authenticated;

comment on table public.api_requests is
  'Per-key request log: endpoint, status code and latency (organization admins only).';

-- Section - Private helpers

/**
 * Creates the month partition holding `month` (in the non-exposed private schema,
 * with RLS on so it is never readable by itself). Idempotent.
 */
create or replace function private.create_usage_partition(month date)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  start_at date := date_trunc('month', month)::date;
  part text := 'usage_events_' || to_char(start_at, 'YYYY_MM');
begin
  if to_regclass('private.' || part) is null then
    execute format(
      'create table private.%I partition of public.usage_events for values from (%L) to (%L)',
      part, start_at::timestamptz, (start_at + interval '1 month')::date::timestamptz);
    execute format('alter table private.%I enable row level security', part);
    execute format('revoke all on private.%I from anon, authenticated', part);
  end if;
  return part;
end;
$$;

select private.create_usage_partition((date '2026-01-01' + make_interval(months => i))::date)
from generate_series(0, 23) as i;

-- Section - Policies

/**
 * Members see their organization's usage.
 */
create policy "Usage events are viewable by members" on public.usage_events
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Organization admins and owners read the request log (bodies may hold customer data).
 */
create policy "API requests are viewable by organization admins" on public.api_requests
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

-- Section - Public RPCs

/**
 * Service role (cron): makes sure the next `months_ahead` months have partitions.
 */
create or replace function public.ensure_usage_partitions(months_ahead integer default 3)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  i integer;
  made text[] := '{}';
begin
  for i in 0..greatest(months_ahead, 0) loop
    made := made || private.create_usage_partition((date_trunc('month', now()) + make_interval(months => i))::date);
  end loop;
  return jsonb_build_object('partitions', to_jsonb(made));
end;
$$;
revoke execute on function public.ensure_usage_partitions(integer) from public, anon, authenticated;
grant execute on function public.ensure_usage_partitions(integer) to service_role;

select public.ensure_usage_partitions(3);
