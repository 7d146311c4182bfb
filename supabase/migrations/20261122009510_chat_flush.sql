/**
 * Chat, part 6: a settlement's WAL flush no longer holds its organization's account row.
 *
 * A synchronous commit releases its row locks only after the WAL flush, so every
 * settlement held the organization's account row through an fsync, and all of that
 * organization's requests (their reservations and settlements both lock that row) queued
 * behind it. With `flush_follows`, finish_chat_request commits without waiting, which
 * releases the row at once, and the caller sends flush_metering right behind it on the
 * same connection (one round trip: a pipeline). flush_metering commits a transaction
 * that writes a WAL record, synchronously as `metering_synchronous_commit` says, so it
 * returns only once the WAL is flushed past the settlement's commit (the WAL is one
 * sequence): the proxy still answers only after the charge is durable. Flushes of
 * concurrent settlements are shared by one fsync (group commit), where the row lock had
 * made them one after another. Any transaction that saw the settlement (a later
 * reservation of the same organization) commits after it in the WAL, so a crash that
 * takes the settlement also takes whatever relied on it. Callers that cannot pipeline
 * (the PostgREST transport, the outbox) keep the synchronous commit.
 */

-- Section - Public RPCs

/**
 * Service role (chat proxy): returns once the WAL is flushed past everything this
 * connection committed before (a settlement committed with `flush_follows`), as
 * `metering_synchronous_commit` says ('off': returns at once). A transactional WAL
 * message gives the commit a record to wait for.
 */
create or replace function public.flush_metering()
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.apply_metering_commit_mode(true);
  perform pg_catalog.pg_logical_emit_message(true, 'tollbooth', 'settled');
end;
$$;
revoke execute on function public.flush_metering() from public, anon, authenticated;
grant execute on function public.flush_metering() to service_role;

drop function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid, bigint, bigint,
                                         bigint, bigint, boolean, boolean, text, integer, text, text, bigint);

/**
 * Service role (chat proxy): closes a request in one transaction. With usage, prices
 * it exactly, settles the reservation and records the usage event; without (upstream
 * error before any output), releases it. Always records the api_requests row.
 * Idempotent by request id: a replay returns the first result and writes nothing.
 * `reserved` is what the request's begin held: given, a reservation a crash took is
 * still charged (see the migration's header); without it an unknown request is 404.
 * `status` must be a public.usage_status (400 otherwise, before anything moves).
 * Commits as `metering_synchronous_commit` says (on: a crash loses no charge), unless
 * `flush_follows`: then it commits without waiting for the WAL flush, which releases
 * the organization's account row at once, and the caller must call flush_metering
 * (in the same pipeline) before it answers anyone (see the migration's header).
 */
create or replace function public.finish_chat_request(
  request_id text, status text, http_status integer, endpoint text,
  org_id uuid, model text, api_key_id uuid default null, user_id uuid default null,
  project_id uuid default null, meeting_id uuid default null,
  prompt_tokens bigint default null, completion_tokens bigint default null,
  cached_tokens bigint default 0, reasoning_tokens bigint default 0,
  estimated boolean default false, stream boolean default false,
  upstream_id text default null, latency_ms integer default null, error text default null,
  method text default 'POST', reserved bigint default null, flush_follows boolean default false
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  price public.model_prices;
  cost numeric := 0;
  credits bigint;
  used bigint := coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0);
  result jsonb;
  charged bigint := 0;
begin
  perform private.apply_metering_commit_mode(not flush_follows);
  if finish_chat_request.status is null
     or not finish_chat_request.status = any (enum_range(null::public.usage_status)::text[]) then
    raise exception 'unknown usage status "%"', finish_chat_request.status using errcode = 'PT400';
  end if;
  if finish_chat_request.prompt_tokens is not null then
    select * into price from public.model_prices m where m.model = finish_chat_request.model;
    if price.model is null then
      raise exception 'model "%" has no price', finish_chat_request.model using errcode = 'PT400';
    end if;
    cost := private.usage_cost_usd(price, finish_chat_request.prompt_tokens,
                                   coalesce(finish_chat_request.completion_tokens, 0),
                                   coalesce(finish_chat_request.cached_tokens, 0));
    credits := private.usd_to_credits(cost, price.credit_multiplier);
  end if;

  if reserved is not null and not exists (select 1 from public.credit_reservations r
                                          where r.request_id = finish_chat_request.request_id) then
    result := private.close_lost_reservation(finish_chat_request.request_id, finish_chat_request.org_id, credits,
                                             finish_chat_request.api_key_id, used);
  else
    result := private.close_reservation(finish_chat_request.request_id, credits,
                                        coalesce(finish_chat_request.error, finish_chat_request.status),
                                        finish_chat_request.org_id, used);
  end if;
  if (result ->> 'replayed')::boolean then
    return result;
  end if;
  charged := coalesce((result ->> 'charged')::bigint, 0);

  insert into public.usage_events (
    org_id, user_id, api_key_id, project_id, meeting_id, kind, model,
    prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
    cost_usd, credits, request_id, upstream_id, status, estimated, stream, latency_ms, metadata)
  values (
    finish_chat_request.org_id, finish_chat_request.user_id, finish_chat_request.api_key_id,
    finish_chat_request.project_id, finish_chat_request.meeting_id, 'chat', finish_chat_request.model,
    coalesce(finish_chat_request.prompt_tokens, 0), coalesce(finish_chat_request.completion_tokens, 0), used,
    coalesce(finish_chat_request.cached_tokens, 0), coalesce(finish_chat_request.reasoning_tokens, 0),
    cost, charged, finish_chat_request.request_id, finish_chat_request.upstream_id,
    finish_chat_request.status::public.usage_status, finish_chat_request.estimated, finish_chat_request.stream,
    finish_chat_request.latency_ms,
    case when finish_chat_request.error is null then '{}'::jsonb
         else jsonb_build_object('error', left(finish_chat_request.error, 1000)) end
      || case when (result ->> 'uncollected')::bigint > 0
              then jsonb_build_object('uncollected_credits', (result ->> 'uncollected')::bigint) else '{}'::jsonb end);

  insert into public.api_requests (org_id, api_key_id, user_id, request_id, endpoint, method, status_code, latency_ms)
  values (finish_chat_request.org_id, finish_chat_request.api_key_id, finish_chat_request.user_id,
          finish_chat_request.request_id, finish_chat_request.endpoint, finish_chat_request.method,
          finish_chat_request.http_status, finish_chat_request.latency_ms);

  return result || jsonb_build_object('cost_usd', cost::text, 'credits', charged);
end;
$$;
revoke execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid,
                                                      bigint, bigint, bigint, bigint, boolean, boolean, text, integer,
                                                      text, text, bigint, boolean)
  from public, anon, authenticated;
grant execute on function public.finish_chat_request(text, text, integer, text, uuid, text, uuid, uuid, uuid, uuid,
                                                     bigint, bigint, bigint, bigint, boolean, boolean, text, integer,
                                                     text, text, bigint, boolean)
  to service_role;
