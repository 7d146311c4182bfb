/**
 * Meetings, part 2: Daily's webhook events and the reconcile job. The webhook stores the
 * raw event first (idempotent by Daily's event id), then applies it with the merge
 * helpers of 20261122005000_meetings.sql inside a subtransaction: an event that cannot
 * be applied is kept as failed and answered 200 all the same (Daily's circuit breaker
 * turns the webhook off after 3 failures). Reconcile feeds what Daily's REST API says
 * through the same helpers.
 */

-- Section - Private helpers

/**
 * The meeting a normalized event belongs to: by room name, else (recording.started has
 * no room) by recording id. Null for rooms we did not create.
 */
create or replace function private.daily_event_meeting(data jsonb)
returns uuid
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select m.id from public.meetings m where m.room_name = data ->> 'room'),
    (select m.id from public.meetings m where m.recording_id = data ->> 'recording_id' limit 1));
$$;

/**
 * Applies one normalized Daily event to meeting `meeting`. Daily's participant
 * `duration` is cross-checked: it is used only when joined_at + duration is not after
 * the event was sent (event_ts, with a minute of slack); otherwise the leave time is
 * when the event was sent. Returns false for types it does not handle.
 */
create or replace function private.daily_apply(meeting uuid, event_type text, sent timestamptz, data jsonb)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  joined timestamptz := private.epoch_ts(data, 'joined_at');
  dur double precision := case when (data ->> 'duration') ~ '^[0-9]+(\.[0-9]+)?$'
                               then (data ->> 'duration')::double precision end;
  left_at timestamptz;
  kind text := split_part(event_type, '.', 1);
  stage text := split_part(event_type, '.', 2);
  details jsonb := data - 'room' - 'recording_id' - 'transcript_id';
begin
  case event_type
  when 'meeting.started', 'meeting.ended' then
    perform private.merge_meeting_session(meeting, private.epoch_ts(data, 'start_ts'), private.epoch_ts(data, 'end_ts'),
                                          data ->> 'meeting_id');
  when 'participant.joined', 'participant.left' then
    if event_type = 'participant.left' then
      left_at := case when joined is not null and dur is not null
                           and (sent is null or joined + make_interval(secs => dur) <= sent + interval '60 seconds')
                      then joined + make_interval(secs => dur) else coalesce(sent, joined) end;
    end if;
    perform private.merge_participant(meeting, data ->> 'session_id', data ->> 'user_id', data ->> 'user_name',
                                      coalesce((data ->> 'owner')::boolean, false), joined, left_at);
  when 'recording.started', 'recording.ready-to-download', 'recording.error',
       'transcript.started', 'transcript.ready-to-download', 'transcript.error' then
    perform private.merge_artifact(meeting, kind, data ->> (kind || '_id'),
                                   case stage when 'ready-to-download' then 'ready' else stage end, null, details);
  else
    return false;
  end case;
  return true;
end;
$$;

-- Section - Public RPCs

/**
 * Service role (Daily webhook, after the signature is verified): records the event by
 * its id, then applies it (`data` is the payload normalized by lib.meetings.events;
 * `payload` the raw envelope). A duplicate changes nothing and answers duplicate; an
 * event for a room we do not know, or of a type we do not handle, is stored ignored;
 * one that fails (or that lib.meetings.events could not read: `invalid`) is stored
 * failed with its error, and applied again if Daily resends it.
 */
create or replace function public.daily_apply_event(
  event_id text, event_type text, event_ts double precision, data jsonb, payload jsonb, invalid text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  sent timestamptz := case when event_ts is not null then to_timestamp(event_ts) end;
  previous public.daily_event_status;
  meeting uuid;
  outcome public.daily_event_status;
  problem text;
begin
  insert into public.daily_events as e (id, type, event_ts, status, room_name, recording_id, payload)
  values (event_id, event_type, sent, 'ignored', data ->> 'room', data ->> 'recording_id', payload)
  on conflict (id) do update set attempts = e.attempts + 1
  returning (case when e.attempts = 1 then null else e.status end) into previous;
  if previous is not null and previous <> 'failed' then
    return jsonb_build_object('event_id', event_id, 'status', previous, 'duplicate', true);
  end if;

  meeting := private.daily_event_meeting(data);
  if invalid is not null then
    outcome := 'failed';
    problem := invalid;
  elsif meeting is null then
    outcome := 'ignored';
    problem := case when data ->> 'room' is null then 'no room in the event and no known recording'
                    else format('unknown room %s', data ->> 'room') end;
  else
    begin
      if private.daily_apply(meeting, event_type, sent, data) then
        outcome := 'processed';
      else
        outcome := 'ignored';
        problem := format('event type %s is not handled', event_type);
      end if;
    exception when others then
      outcome := 'failed';
      problem := sqlerrm;
    end;
  end if;

  update public.daily_events e
  set status = outcome, error = problem, meeting_id = meeting
  where e.id = event_id;
  -- a recording.started that arrived before its room was known is linked now
  if outcome = 'processed' and data ->> 'recording_id' is not null then
    update public.daily_events e set status = 'processed', meeting_id = meeting, error = null
    where e.recording_id = data ->> 'recording_id' and e.status = 'ignored' and e.id <> event_id;
  end if;
  return jsonb_build_object('event_id', event_id, 'status', outcome, 'duplicate', false, 'meeting_id', meeting,
                            'error', problem);
end;
$$;
revoke execute on function public.daily_apply_event(text, text, double precision, jsonb, jsonb, text)
  from public, anon, authenticated;
grant execute on function public.daily_apply_event(text, text, double precision, jsonb, jsonb, text) to service_role;

/**
 * Service role (tollbooth meetings reconcile): the meetings to re-read from Daily,
 * created since `since`, not cancelled, and not complete (no end, or a recording or
 * transcript without its URL).
 */
create or replace function public.meetings_to_reconcile(since timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', m.id, 'room_name', m.room_name, 'daily_room_id', m.daily_room_id, 'status', m.status,
           'recording_id', m.recording_id, 'transcript_id', m.transcript_id) order by m.created_at), '[]'::jsonb)
  from public.meetings m
  where m.status <> 'cancelled'
    and (since is null or m.created_at >= since)
    and (m.ended_at is null
         or (m.recording_id is not null and m.recording_url is null)
         or (m.transcript_id is not null and m.transcript_url is null)
         or (m.enable_recording and m.recording_id is null));
$$;
revoke execute on function public.meetings_to_reconcile(timestamptz) from public, anon, authenticated;
grant execute on function public.meetings_to_reconcile(timestamptz) to service_role;

/**
 * Service role (reconcile): merges what Daily's REST API says about one meeting, with
 * the webhook's rules, in one transaction. `sessions`: [{meeting_id, start_ts, end_ts,
 * participants: [{session_id, user_id, user_name, joined_at, left_at}]}]; `recordings`
 * and `transcripts`: [{id, status, url, details}] (epoch seconds throughout).
 */
create or replace function public.reconcile_meeting(
  meeting_id uuid, sessions jsonb default '[]'::jsonb, recordings jsonb default '[]'::jsonb,
  transcripts jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  s jsonb;
  p jsonb;
  a jsonb;
  n_participants integer := 0;
begin
  if not exists (select 1 from public.meetings m where m.id = reconcile_meeting.meeting_id) then
    raise exception 'meeting % not found', reconcile_meeting.meeting_id using errcode = 'PT404';
  end if;
  for s in select * from jsonb_array_elements(coalesce(sessions, '[]'::jsonb)) loop
    perform private.merge_meeting_session(reconcile_meeting.meeting_id, private.epoch_ts(s, 'start_ts'),
                                          private.epoch_ts(s, 'end_ts'), s ->> 'meeting_id');
    for p in select * from jsonb_array_elements(coalesce(s -> 'participants', '[]'::jsonb)) loop
      perform private.merge_participant(reconcile_meeting.meeting_id, p ->> 'session_id', p ->> 'user_id',
                                        p ->> 'user_name', false, private.epoch_ts(p, 'joined_at'),
                                        private.epoch_ts(p, 'left_at'));
      n_participants := n_participants + 1;
    end loop;
  end loop;
  for a in select * from jsonb_array_elements(coalesce(recordings, '[]'::jsonb)) loop
    perform private.merge_artifact(reconcile_meeting.meeting_id, 'recording', a ->> 'id', a ->> 'status',
                                   a ->> 'url', coalesce(a -> 'details', '{}'::jsonb));
  end loop;
  for a in select * from jsonb_array_elements(coalesce(transcripts, '[]'::jsonb)) loop
    perform private.merge_artifact(reconcile_meeting.meeting_id, 'transcript', a ->> 'id', a ->> 'status',
                                   a ->> 'url', coalesce(a -> 'details', '{}'::jsonb));
  end loop;
  return jsonb_build_object('meeting_id', reconcile_meeting.meeting_id,
                            'sessions', jsonb_array_length(coalesce(sessions, '[]'::jsonb)),
                            'participants', n_participants,
                            'recordings', jsonb_array_length(coalesce(recordings, '[]'::jsonb)),
                            'transcripts', jsonb_array_length(coalesce(transcripts, '[]'::jsonb)));
end;
$$;
revoke execute on function public.reconcile_meeting(uuid, jsonb, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.reconcile_meeting(uuid, jsonb, jsonb, jsonb) to service_role;
