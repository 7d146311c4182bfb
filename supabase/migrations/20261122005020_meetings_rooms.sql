/**
 * Meetings, part 3: a room's session state. The functions (lib.meetings.room_state)
 * seal sensitive fields with AES-GCM before they reach the database, which refuses
 * anything in `secrets` that is not a sealed value, and unseal them after. Key rotation
 * (`tollbooth rooms rotate-key`) re-seals rows one at a time, each only if it did not
 * change meanwhile, so it can stop and resume anywhere.
 */

-- Section - Private helpers

/**
 * True when every field of `secrets` is a sealed value {kid, nonce, ct} of base64 text
 * sealed with key `kid` (never plaintext).
 */
create or replace function private.all_sealed(secrets jsonb, kid text)
returns boolean
language sql immutable
set search_path = ''
as $$
  select jsonb_typeof(secrets) = 'object' and not exists (
    select 1 from jsonb_each(secrets) f
    where jsonb_typeof(f.value) <> 'object'
       or f.value ->> 'kid' is distinct from kid
       or coalesce(f.value ->> 'nonce', '') !~ '^[A-Za-z0-9+/]{16}$'
       or coalesce(f.value ->> 'ct', '') !~ '^[A-Za-z0-9+/]+={0,2}$'
       or (select count(*) from jsonb_object_keys(f.value)) <> 3);
$$;

/**
 * The room state answer: plain state, sealed secrets, key id and version (an empty
 * state, version 0, before the first write).
 */
create or replace function private.room_answer(meeting uuid)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select jsonb_build_object('meeting_id', m.id, 'org_id', m.org_id, 'state', coalesce(r.state, '{}'::jsonb),
                            'secrets', coalesce(r.secrets, '{}'::jsonb), 'key_id', r.key_id,
                            'version', coalesce(r.version, 0), 'updated_at', r.updated_at)
  from public.meetings m left join public.rooms r on r.meeting_id = m.id
  where m.id = meeting;
$$;

/**
 * 404 unless the meeting exists and `uid` is an active member of its organization
 * (403 when banned or inactive); returns the meeting's org.
 */
create or replace function private.require_room_member(meeting uuid, uid uuid)
returns uuid
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  org uuid := (select m.org_id from public.meetings m where m.id = meeting);
begin
  if org is null or not exists (select 1 from public.organization_members om
                                where om.org_id = org and om.user_id = uid) then
    raise exception 'meeting % not found', meeting using errcode = 'PT404';
  end if;
  perform private.require_role_of(org, uid, 'member');
  return org;
end;
$$;

-- Section - Public RPCs

/**
 * Service role (GET /api/rooms/{meeting_id}/state for a verified user who is a member):
 * the room's state with its secrets still sealed.
 */
create or replace function public.room_state_get(meeting_id uuid, user_id uuid)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  perform private.require_room_member(room_state_get.meeting_id, room_state_get.user_id);
  return private.room_answer(room_state_get.meeting_id);
end;
$$;
revoke execute on function public.room_state_get(uuid, uuid) from public, anon, authenticated;
grant execute on function public.room_state_get(uuid, uuid) to service_role;

/**
 * Service role (PUT /api/rooms/{meeting_id}/state for a member): replaces the state and
 * the sealed secrets (all sealed with `key_id`; 400 otherwise). With
 * `expected_version`, 409 unless the stored version is that one.
 */
create or replace function public.room_state_put(
  meeting_id uuid, user_id uuid, state jsonb, secrets jsonb, key_id text, expected_version integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  org uuid := private.require_room_member(room_state_put.meeting_id, room_state_put.user_id);
  current_version integer;
begin
  if jsonb_typeof(coalesce(state, 'null'::jsonb)) <> 'object' then
    raise exception 'state must be a JSON object' using errcode = 'PT400';
  end if;
  if not private.all_sealed(coalesce(secrets, '{}'::jsonb), room_state_put.key_id) then
    raise exception 'secrets must be sealed values {kid, nonce, ct} with key %', room_state_put.key_id
      using errcode = 'PT400';
  end if;
  insert into public.rooms (meeting_id, org_id) values (room_state_put.meeting_id, org) on conflict do nothing;
  select r.version into current_version from public.rooms r where r.meeting_id = room_state_put.meeting_id for update;
  if expected_version is not null and expected_version <> current_version then
    raise exception 'room state is at version %, not %', current_version, expected_version using errcode = 'PT409';
  end if;
  update public.rooms r
  set state = room_state_put.state, secrets = coalesce(room_state_put.secrets, '{}'::jsonb),
      key_id = case when coalesce(room_state_put.secrets, '{}'::jsonb) = '{}'::jsonb then null
                    else room_state_put.key_id end,
      version = r.version + 1, updated_by = room_state_put.user_id
  where r.meeting_id = room_state_put.meeting_id;
  return private.room_answer(room_state_put.meeting_id);
end;
$$;
revoke execute on function public.room_state_put(uuid, uuid, jsonb, jsonb, text, integer) from public, anon, authenticated;
grant execute on function public.room_state_put(uuid, uuid, jsonb, jsonb, text, integer) to service_role;

/**
 * Service role (tollbooth rooms rotate-key): up to `batch` rooms whose secrets are not
 * sealed with `key_id`, oldest first.
 */
create or replace function public.rooms_to_rotate(key_id text, batch integer default 100)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object('meeting_id', r.meeting_id, 'key_id', r.key_id,
                                               'secrets', r.secrets) order by r.updated_at), '[]'::jsonb)
  from (select * from public.rooms x
        where x.key_id is not null and x.key_id <> rooms_to_rotate.key_id
        order by x.updated_at limit greatest(batch, 1)) r;
$$;
revoke execute on function public.rooms_to_rotate(text, integer) from public, anon, authenticated;
grant execute on function public.rooms_to_rotate(text, integer) to service_role;

/**
 * Service role (rotate-key): stores secrets re-sealed with `key_id`, only if the row
 * still holds `previous` (a concurrent write wins; the next pass picks it up if needed).
 */
create or replace function public.room_state_rotate(meeting_id uuid, key_id text, secrets jsonb, previous jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  done boolean;
begin
  if not private.all_sealed(secrets, room_state_rotate.key_id) then
    raise exception 'secrets must be sealed values {kid, nonce, ct} with key %', room_state_rotate.key_id
      using errcode = 'PT400';
  end if;
  update public.rooms r set secrets = room_state_rotate.secrets, key_id = room_state_rotate.key_id
  where r.meeting_id = room_state_rotate.meeting_id and r.secrets = room_state_rotate.previous
  returning true into done;
  return jsonb_build_object('meeting_id', meeting_id, 'rotated', coalesce(done, false));
end;
$$;
revoke execute on function public.room_state_rotate(uuid, text, jsonb, jsonb) from public, anon, authenticated;
grant execute on function public.room_state_rotate(uuid, text, jsonb, jsonb) to service_role;
