/**
 * Chat x meetings: the chat proxy's `X-Meeting-Id` must name a meeting of the
 * organization the call is billed to. The proxy asks before it reserves anything
 * (public.chat_meeting_check); usage_events' (org_id, meeting_id) foreign key
 * (20261122005000_meetings.sql) holds the rule for every other writer.
 */

-- Section - Public RPCs

/**
 * Service role (chat proxy, before begin_chat_request): 403 unless `meeting_id` is a
 * meeting of the organization the caller would be billed to (the API key's, or the
 * signed-in user's `org_id`, else their personal organization). A caller that does not
 * resolve to an organization passes: begin_chat_request then refuses it with its own
 * error, so this check never tells an unknown caller whether a meeting exists.
 */
create or replace function public.chat_meeting_check(
  meeting_id uuid, key_hash bytea default null, user_id uuid default null, org_id uuid default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  org uuid;
begin
  if chat_meeting_check.key_hash is not null then
    select k.org_id into org from public.api_keys k where k.key_hash = chat_meeting_check.key_hash;
  elsif chat_meeting_check.user_id is not null then
    org := coalesce(chat_meeting_check.org_id,
                    (select o.id from public.organizations o where o.personal_owner_id = chat_meeting_check.user_id));
  end if;
  if org is null then
    return jsonb_build_object('checked', false);
  end if;
  if not exists (select 1 from public.meetings m where m.id = chat_meeting_check.meeting_id and m.org_id = org) then
    raise exception 'X-Meeting-Id % is not a meeting of the organization this call is billed to',
      chat_meeting_check.meeting_id using errcode = 'PT403';
  end if;
  return jsonb_build_object('checked', true, 'org_id', org);
end;
$$;
revoke execute on function public.chat_meeting_check(uuid, bytea, uuid, uuid) from public, anon, authenticated;
grant execute on function public.chat_meeting_check(uuid, bytea, uuid, uuid) to service_role;
