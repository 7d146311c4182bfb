/**
 * Chat, part 7: settlements made durable in batches, from the proxy's settlement journal.
 *
 * The async proxy appends each settlement's arguments to a local journal segment before
 * it calls finish_chat_request with `flush_follows` (its commit does not wait for the WAL
 * flush), and answers the client without a flush of its own. Every few milliseconds it
 * closes the segment and, once each settlement in it has returned, calls
 * confirm_settlements with the segment's request ids: one synchronous commit makes every
 * earlier commit durable (the WAL is one sequence), and the answer names the requests
 * whose settlement is not in the database, because Postgres crashed before the flush.
 * The proxy replays those from the segment (finish_chat_request is idempotent by request
 * id) and only then deletes it. So a Postgres crash loses no completed call's charge,
 * and one fsync serves every settlement of the interval instead of one each.
 */

-- Section - Public RPCs

/**
 * Service role (chat proxy): returns once the WAL is flushed past everything committed
 * before it (as `metering_synchronous_commit` says), with the ids among `request_ids`
 * (a JSON array) whose settlement may still be owed: no reservation, one still open, or
 * one released because its lease lapsed (a late settlement charges it). Replaying any of
 * them is harmless: finish_chat_request answers a settled request as a replay.
 */
create or replace function public.confirm_settlements(request_ids jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  unsettled jsonb;
begin
  if jsonb_typeof(confirm_settlements.request_ids) is distinct from 'array' then
    raise exception 'request_ids must be a JSON array of request ids' using errcode = 'PT400';
  end if;
  perform private.apply_metering_commit_mode(true);
  perform pg_catalog.pg_logical_emit_message(true, 'tollbooth', 'confirmed');
  select coalesce(jsonb_agg(i.id order by i.id), '[]'::jsonb) into unsettled
  from jsonb_array_elements_text(confirm_settlements.request_ids) as i(id)
  where not exists (select 1 from public.credit_reservations r
                    where r.request_id = i.id and r.status <> 'open' and not (r.status = 'released' and r.lapsed));
  return unsettled;
end;
$$;
revoke execute on function public.confirm_settlements(jsonb) from public, anon, authenticated;
grant execute on function public.confirm_settlements(jsonb) to service_role;
