/**
 * Meetings: Daily.co rooms owned by an organization, the people who joined them, and the
 * room's session state. Members of the meeting's organization read; every write goes
 * through the SECURITY DEFINER functions below, called by the service role (the meetings
 * and room-state functions on behalf of a verified user, the Daily webhook, reconcile).
 * Daily's events are merged with commutative rules (earliest start, latest end, highest
 * status rank), so any delivery order ends in the same rows. The events and rooms RPCs
 * are in 20261122005010_meetings_events.sql and 20261122005020_meetings_rooms.sql.
 */

-- Section - Types

create type public.meeting_status as enum ('scheduled', 'in_progress', 'ended', 'cancelled');
create type public.participant_role as enum ('host', 'guest', 'bot');
create type public.daily_event_status as enum ('processed', 'ignored', 'failed');

-- Section - Tables

/**
 * One Daily room and its meeting. Status is derived from the stored times (see
 * private.refresh_meeting), never from the order events arrived in.
 */
create table public.meetings (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  created_by uuid references auth.users (id) on delete set null,
  room_name text not null unique check (room_name ~ '^[A-Za-z0-9_-]{1,128}$'),
  room_url public.https_url,
  daily_room_id text,
  -- Daily's meeting session id (meeting.* events, GET /meetings)
  daily_meeting_id text,
  status public.meeting_status not null default 'scheduled',
  privacy text not null default 'private' check (privacy in ('private', 'public')),
  scheduled_for timestamptz,
  expires_at timestamptz,
  max_participants integer check (max_participants > 0),
  enable_recording boolean not null default false,
  enable_transcription boolean not null default false,
  started_at timestamptz,
  ended_at timestamptz,
  duration_seconds integer check (duration_seconds >= 0),
  recording_id text,
  recording_status text check (recording_status in ('started', 'error', 'ready')),
  recording_url public.https_url,
  transcript_id text,
  transcript_status text check (transcript_status in ('started', 'error', 'ready')),
  transcript_url public.https_url,
  metadata jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  cancelled_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- the target of (org_id, meeting_id) keys: a row can only point at a meeting of its own org
  unique (org_id, id)
);
create index meetings_created_by_idx on public.meetings (created_by);
create index meetings_recording_id_idx on public.meetings (recording_id);
create index meetings_created_at_idx on public.meetings (created_at);

alter table public.meetings enable row level security;
revoke all on public.meetings from anon, authenticated;
grant select on public.meetings to authenticated;

comment on table public.meetings is
  'Daily.co rooms and their meetings: status, times, duration, recording and transcript; members read.';

/**
 * One row per meeting and Daily participant (Daily's session_id).
 */
create table public.participants (
  id uuid primary key default gen_random_uuid(),
  meeting_id uuid not null,
  org_id uuid not null,
  daily_participant_id text not null,
  -- Daily's user_id as sent (a meeting token's user_id); user_id when it is one of ours
  daily_user_id text,
  user_id uuid references auth.users (id) on delete set null,
  name text,
  email text,
  role public.participant_role not null default 'guest',
  joined_at timestamptz,
  left_at timestamptz,
  duration_seconds integer check (duration_seconds >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (meeting_id, daily_participant_id),
  foreign key (org_id, meeting_id) references public.meetings (org_id, id) on delete cascade
);
create index participants_org_meeting_idx on public.participants (org_id, meeting_id);
create index participants_user_id_idx on public.participants (user_id);

alter table public.participants enable row level security;
revoke all on public.participants from anon, authenticated;
grant select on public.participants to authenticated;

comment on table public.participants is
  'Who joined a meeting (one row per Daily participant session): times, duration, role; members read.';

/**
 * Every Daily event received, by Daily's event id: the idempotency record and the raw
 * envelope. Service role only.
 */
create table public.daily_events (
  id text primary key check (length(id) between 1 and 255),
  type text not null,
  event_ts timestamptz,
  received_at timestamptz not null default now(),
  status public.daily_event_status not null,
  meeting_id uuid references public.meetings (id) on delete set null,
  room_name text,
  recording_id text,
  error text,
  attempts integer not null default 1,
  payload jsonb not null
);
create index daily_events_meeting_id_idx on public.daily_events (meeting_id);
create index daily_events_recording_id_idx on public.daily_events (recording_id) where recording_id is not null;
create index daily_events_received_at_idx on public.daily_events (received_at);

alter table public.daily_events enable row level security;
revoke all on public.daily_events from anon, authenticated;

/**
 * The session state of a meeting's room: `state` is plain jsonb; `secrets` holds the
 * sensitive fields sealed with AES-GCM by the functions ({field: {kid, nonce, ct}}),
 * never plaintext (checked), and is not selectable by API roles.
 */
create table public.rooms (
  meeting_id uuid primary key,
  org_id uuid not null,
  state jsonb not null default '{}'::jsonb check (jsonb_typeof(state) = 'object'),
  secrets jsonb not null default '{}'::jsonb,
  -- the key every field of `secrets` is sealed with (null while there are none)
  key_id text,
  version integer not null default 0,
  updated_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (org_id, meeting_id) references public.meetings (org_id, id) on delete cascade
);
create index rooms_org_meeting_idx on public.rooms (org_id, meeting_id);
create index rooms_key_id_idx on public.rooms (key_id);
create index rooms_updated_by_idx on public.rooms (updated_by);

alter table public.rooms enable row level security;
revoke all on public.rooms from anon, authenticated;
grant select (meeting_id, org_id, state, key_id, version, updated_by, created_at, updated_at)
  on public.rooms to authenticated;

comment on table public.rooms is
  'Session state of a meeting''s room: plain state for members; sensitive fields sealed, not selectable.';

-- the chat proxy's X-Meeting-Id: a usage event can only name a meeting of its own org
update public.usage_events e
set metadata = e.metadata || jsonb_build_object('unknown_meeting_id', e.meeting_id), meeting_id = null
where e.meeting_id is not null
  and not exists (select 1 from public.meetings m where m.id = e.meeting_id and m.org_id = e.org_id);
alter table public.usage_events
  add constraint usage_events_meeting_fkey foreign key (org_id, meeting_id)
  references public.meetings (org_id, id) on delete set null (meeting_id);

-- meeting limits by plan (absent keys mean no limit)
update public.plans
set features = features || '{"meeting_max_participants": 10, "meeting_recording": false, "meeting_max_minutes": 60}'
where id = 'free';

-- Section - Triggers

create trigger meetings_set_updated_at before update on public.meetings
  for each row execute function private.set_updated_at();
create trigger participants_set_updated_at before update on public.participants
  for each row execute function private.set_updated_at();
create trigger rooms_set_updated_at before update on public.rooms
  for each row execute function private.set_updated_at();

-- Section - Private helpers

/**
 * Epoch seconds (as jsonb number or numeric string) as a timestamp; null when absent.
 */
create or replace function private.epoch_ts(data jsonb, field text)
returns timestamptz
language sql immutable
set search_path = ''
as $$
  select case when jsonb_typeof(data -> field) in ('number', 'string') and (data ->> field) ~ '^[0-9]+(\.[0-9]+)?$'
              then to_timestamp((data ->> field)::double precision) end;
$$;

/**
 * Recomputes what is derived from a meeting's stored times: duration and status
 * (cancelled stays cancelled; an end makes it ended; a start or a joined participant
 * makes it in progress).
 */
create or replace function private.refresh_meeting(meeting uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.meetings m
  set duration_seconds = case when m.started_at is not null and m.ended_at is not null
                              then greatest(round(extract(epoch from m.ended_at - m.started_at)), 0)::integer end,
      status = case when m.status = 'cancelled' then 'cancelled'::public.meeting_status
                    when m.ended_at is not null then 'ended'
                    when m.started_at is not null
                         or exists (select 1 from public.participants p where p.meeting_id = m.id) then 'in_progress'
                    else 'scheduled' end
  where m.id = refresh_meeting.meeting;
$$;

/**
 * Merges a meeting session's times: earliest start, latest end (order-independent).
 */
create or replace function private.merge_meeting_session(
  meeting uuid, started timestamptz, ended timestamptz, daily_meeting_id text
)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.meetings m
  set started_at = least(m.started_at, merge_meeting_session.started),
      ended_at = greatest(m.ended_at, merge_meeting_session.ended),
      daily_meeting_id = least(m.daily_meeting_id, merge_meeting_session.daily_meeting_id)
  where m.id = merge_meeting_session.meeting;
  select private.refresh_meeting(merge_meeting_session.meeting);
$$;

/**
 * Merges one participant session: earliest join, latest leave; the duration is computed
 * from the stored times. Daily's user_id names one of our users when it is the id of a
 * member of the meeting's organization; a user_id starting with "bot" marks a bot.
 */
create or replace function private.merge_participant(
  meeting uuid, session_id text, daily_user_id text, user_name text, is_owner boolean,
  joined timestamptz, left_at timestamptz
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  org uuid := (select m.org_id from public.meetings m where m.id = merge_participant.meeting);
  ours uuid;
  mail text;
begin
  if daily_user_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select u.id, u.email into ours, mail
    from auth.users u join public.organization_members om on om.user_id = u.id and om.org_id = org
    where u.id = daily_user_id::uuid;
  end if;
  insert into public.participants as p (meeting_id, org_id, daily_participant_id, daily_user_id, user_id, name, email,
                                        role, joined_at, left_at)
  values (meeting, org, session_id, daily_user_id, ours, user_name, mail,
          case when daily_user_id ilike 'bot%' then 'bot'::public.participant_role
               when is_owner then 'host' else 'guest' end,
          joined, greatest(merge_participant.left_at, joined))
  on conflict (meeting_id, daily_participant_id) do update
  set joined_at = least(p.joined_at, excluded.joined_at),
      left_at = greatest(p.left_at, excluded.left_at),
      daily_user_id = coalesce(p.daily_user_id, excluded.daily_user_id),
      user_id = coalesce(p.user_id, excluded.user_id),
      email = coalesce(p.email, excluded.email),
      name = greatest(p.name, excluded.name),
      role = greatest(p.role, excluded.role);
  update public.participants p
  set duration_seconds = case when p.joined_at is not null and p.left_at is not null
                              then greatest(round(extract(epoch from p.left_at - p.joined_at)), 0)::integer end
  where p.meeting_id = merge_participant.meeting and p.daily_participant_id = merge_participant.session_id;
  perform private.refresh_meeting(meeting);
end;
$$;

/**
 * The rank of an artifact status: a later stage never goes back (ready > error > started).
 */
create or replace function private.artifact_rank(status text)
returns integer
language sql immutable
set search_path = ''
as $$
  select case status when 'started' then 1 when 'error' then 2 when 'ready' then 3 else 0 end;
$$;

/**
 * Merges what is known of a meeting's recording or transcript (`kind`): the id, the
 * highest-ranked status, the URL, and details under metadata -> kind -> <status>.
 */
create or replace function private.merge_artifact(
  meeting uuid, kind text, artifact_id text, status text, url text, details jsonb default '{}'::jsonb
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if kind = 'recording' then
    update public.meetings m
    set recording_id = coalesce(m.recording_id, artifact_id),
        recording_status = case when private.artifact_rank(merge_artifact.status) > private.artifact_rank(m.recording_status)
                                then merge_artifact.status else m.recording_status end,
        recording_url = coalesce(merge_artifact.url, m.recording_url),
        metadata = jsonb_set(m.metadata, '{recording}', coalesce(m.metadata -> 'recording', '{}'::jsonb)
                             || jsonb_build_object(merge_artifact.status, coalesce(details, '{}'::jsonb)))
    where m.id = meeting;
  elsif kind = 'transcript' then
    update public.meetings m
    set transcript_id = coalesce(m.transcript_id, artifact_id),
        transcript_status = case when private.artifact_rank(merge_artifact.status) > private.artifact_rank(m.transcript_status)
                                 then merge_artifact.status else m.transcript_status end,
        transcript_url = coalesce(merge_artifact.url, m.transcript_url),
        metadata = jsonb_set(m.metadata, '{transcript}', coalesce(m.metadata -> 'transcript', '{}'::jsonb)
                             || jsonb_build_object(merge_artifact.status, coalesce(details, '{}'::jsonb)))
    where m.id = meeting;
  else
    raise exception 'unknown artifact kind %', kind using errcode = 'PT400';
  end if;
end;
$$;

/**
 * The meeting `uid` may cancel: its creator (still a member) or an admin of its org.
 * 404 when there is no such meeting or the user cannot see it, 403 otherwise.
 */
create or replace function private.require_meeting_manager(meeting uuid, uid uuid)
returns public.meetings
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  m public.meetings;
begin
  select * into m from public.meetings x where x.id = meeting;
  if m.id is null or not exists (select 1 from public.organization_members om
                                 where om.org_id = m.org_id and om.user_id = uid) then
    raise exception 'meeting % not found', meeting using errcode = 'PT404';
  end if;
  perform private.require_role_of(m.org_id, uid, case when m.created_by = uid then 'member'::public.member_role
                                                      else 'admin' end);
  return m;
end;
$$;

/**
 * Raises 403 naming the plan's limit when a meeting asks for more than the plan of
 * `org` allows (features meeting_max_participants, meeting_recording,
 * meeting_max_minutes; absent keys mean no limit).
 */
create or replace function private.check_meeting_limits(
  org uuid, max_participants integer, enable_recording boolean, expires_at timestamptz
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  plan public.plans;
  f jsonb;
begin
  select p.* into plan from public.plans p join public.organizations o on o.plan_id = p.id where o.id = org;
  f := coalesce(plan.features, '{}'::jsonb);
  if f ? 'meeting_max_participants' and max_participants > (f ->> 'meeting_max_participants')::integer then
    raise exception 'the % plan allows at most % participants per meeting', plan.name,
      f ->> 'meeting_max_participants' using errcode = 'PT403';
  end if;
  if enable_recording and f ? 'meeting_recording' and not (f ->> 'meeting_recording')::boolean then
    raise exception 'the % plan does not include recording', plan.name using errcode = 'PT403';
  end if;
  if f ? 'meeting_max_minutes' and (expires_at is null
                                    or expires_at > now() + make_interval(mins => (f ->> 'meeting_max_minutes')::integer + 1)) then
    raise exception 'the % plan allows rooms of at most % minutes', plan.name, f ->> 'meeting_max_minutes'
      using errcode = 'PT403';
  end if;
  return jsonb_build_object('plan_id', plan.id,
                            'max_participants', (f ->> 'meeting_max_participants')::integer,
                            'recording', coalesce((f ->> 'meeting_recording')::boolean, true),
                            'max_minutes', (f ->> 'meeting_max_minutes')::integer);
end;
$$;

-- Section - Policies

/**
 * Members of the meeting's organization read its meeting row.
 */
create policy "Meetings are viewable by members" on public.meetings
  for select to authenticated
  using (org_id in (select private.member_org_ids()));

/**
 * Members of the meeting's organization read who joined it.
 */
create policy "Participants are viewable by members" on public.participants
  for select to authenticated
  using (org_id in (select private.member_org_ids()));

/**
 * Members of the meeting's organization read its room's plain state (never `secrets`:
 * no column grant).
 */
create policy "Room state is viewable by members" on public.rooms
  for select to authenticated
  using (org_id in (select private.member_org_ids()));

-- Section - Public RPCs

/**
 * Service role (POST /api/meetings, before Daily is called): 403 unless `user_id` is an
 * active member of `org_id` and the request is within the plan's meeting limits;
 * answers the limits.
 */
create or replace function public.meeting_check(
  org_id uuid, user_id uuid, max_participants integer default null, enable_recording boolean default false,
  expires_at timestamptz default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  perform private.require_role_of(meeting_check.org_id, meeting_check.user_id, 'member');
  return private.check_meeting_limits(meeting_check.org_id, meeting_check.max_participants,
                                      meeting_check.enable_recording, meeting_check.expires_at);
end;
$$;
revoke execute on function public.meeting_check(uuid, uuid, integer, boolean, timestamptz) from public, anon, authenticated;
grant execute on function public.meeting_check(uuid, uuid, integer, boolean, timestamptz) to service_role;

/**
 * Service role (POST /api/meetings, after Daily created the room): stores the meeting,
 * scheduled, with the same membership and plan checks as meeting_check.
 */
create or replace function public.create_meeting(
  org_id uuid, user_id uuid, room_name text, daily_room jsonb, privacy text default 'private',
  scheduled_for timestamptz default null, expires_at timestamptz default null,
  max_participants integer default null, enable_recording boolean default false,
  enable_transcription boolean default false, metadata jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  m public.meetings;
begin
  perform public.meeting_check(create_meeting.org_id, create_meeting.user_id, create_meeting.max_participants,
                               create_meeting.enable_recording, create_meeting.expires_at);
  insert into public.meetings (org_id, created_by, room_name, room_url, daily_room_id, privacy, scheduled_for,
                               expires_at, max_participants, enable_recording, enable_transcription, metadata)
  values (create_meeting.org_id, create_meeting.user_id, create_meeting.room_name, daily_room ->> 'url',
          daily_room ->> 'id', create_meeting.privacy, create_meeting.scheduled_for, create_meeting.expires_at,
          create_meeting.max_participants, create_meeting.enable_recording, create_meeting.enable_transcription,
          coalesce(create_meeting.metadata, '{}'::jsonb))
  returning * into m;
  return to_jsonb(m);
end;
$$;
revoke execute on function public.create_meeting(uuid, uuid, text, jsonb, text, timestamptz, timestamptz, integer, boolean, boolean, jsonb)
  from public, anon, authenticated;
grant execute on function public.create_meeting(uuid, uuid, text, jsonb, text, timestamptz, timestamptz, integer, boolean, boolean, jsonb)
  to service_role;

/**
 * Service role (POST /api/meetings/{id}/cancel): the meeting `user_id` may cancel (its
 * creator or an org admin; 404/403 otherwise), before the room is deleted at Daily.
 * 409 when it already ended.
 */
create or replace function public.meeting_cancel_check(meeting_id uuid, user_id uuid)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  m public.meetings := private.require_meeting_manager(meeting_cancel_check.meeting_id, meeting_cancel_check.user_id);
begin
  if m.status = 'ended' then
    raise exception 'meeting % has already ended', m.id using errcode = 'PT409';
  end if;
  return jsonb_build_object('id', m.id, 'room_name', m.room_name, 'status', m.status);
end;
$$;
revoke execute on function public.meeting_cancel_check(uuid, uuid) from public, anon, authenticated;
grant execute on function public.meeting_cancel_check(uuid, uuid) to service_role;

/**
 * Service role (after Daily deleted the room): marks the meeting cancelled (same
 * permission rule as meeting_cancel_check). Idempotent.
 */
create or replace function public.cancel_meeting(meeting_id uuid, user_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  m public.meetings := private.require_meeting_manager(cancel_meeting.meeting_id, cancel_meeting.user_id);
begin
  update public.meetings x set status = 'cancelled', cancelled_at = coalesce(x.cancelled_at, now())
  where x.id = m.id returning * into m;
  return to_jsonb(m);
end;
$$;
revoke execute on function public.cancel_meeting(uuid, uuid) from public, anon, authenticated;
grant execute on function public.cancel_meeting(uuid, uuid) to service_role;

/**
 * Members (runs as the caller, so RLS decides): each meeting of `org_id` (or of those
 * listed) with its duration, participant count, and the AI usage attributed to it
 * through X-Meeting-Id: requests, tokens, USD cost and credits.
 */
create or replace function public.meeting_costs(org_id uuid, meeting_ids uuid[] default null)
returns table (
  meeting_id uuid, room_name text, status public.meeting_status, started_at timestamptz, ended_at timestamptz,
  duration_seconds integer, participant_count bigint, requests bigint, prompt_tokens bigint,
  completion_tokens bigint, total_tokens bigint, cost_usd numeric, credits bigint
)
language sql stable
security invoker
set search_path = ''
as $$
  select m.id, m.room_name, m.status, m.started_at, m.ended_at, m.duration_seconds,
         (select count(*) from public.participants p where p.meeting_id = m.id),
         coalesce(u.requests, 0), coalesce(u.prompt_tokens, 0), coalesce(u.completion_tokens, 0),
         coalesce(u.total_tokens, 0), coalesce(u.cost_usd, 0), coalesce(u.credits, 0)
  from public.meetings m
  left join lateral (
    select count(*) as requests, sum(e.prompt_tokens)::bigint as prompt_tokens,
           sum(e.completion_tokens)::bigint as completion_tokens, sum(e.total_tokens)::bigint as total_tokens,
           sum(e.cost_usd) as cost_usd, sum(e.credits)::bigint as credits
    from public.usage_events e where e.org_id = m.org_id and e.meeting_id = m.id
  ) u on true
  where m.org_id = meeting_costs.org_id
    and (meeting_costs.meeting_ids is null or m.id = any (meeting_costs.meeting_ids))
  order by m.created_at desc, m.id;
$$;
revoke execute on function public.meeting_costs(uuid, uuid[]) from public, anon;
grant execute on function public.meeting_costs(uuid, uuid[]) to authenticated, service_role;
