/**
 * Billing events: every Stripe event is recorded once by its id, then each Stripe object
 * is handed to one sync function (the only writer of its table), which applies its
 * effects on the organization in the same transaction. The webhook, the API sync and
 * the backfill reach them through the service-role RPCs at the end of this file.
 */

-- Section - Types

create type public.stripe_event_status as enum ('processed', 'ignored', 'failed');

-- Section - Tables

/**
 * Every Stripe event received: the idempotency record. A failed event keeps its error
 * and is processed again when Stripe retries it.
 */
create table public.stripe_events (
  id text primary key check (id like 'evt\_%'),
  type text not null,
  created timestamptz not null,
  livemode boolean not null default false,
  api_version text,
  -- the id of data.object
  object_id text,
  status public.stripe_event_status not null,
  error text,
  attempts integer not null default 1,
  received_at timestamptz not null default now(),
  processed_at timestamptz
);
create index stripe_events_failed_idx on public.stripe_events (received_at) where status = 'failed';
create index stripe_events_object_id_idx on public.stripe_events (object_id);

alter table public.stripe_events enable row level security;
revoke all on public.stripe_events from anon, authenticated;

-- Section - Private helpers

-- one sync function per Stripe object (the only writers)

/**
 * Stores a product when it is newer than the stored one. When the plan it sells
 * changes, the organizations subscribed to it are re-derived.
 */
create or replace function private.sync_product(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pid text := data ->> 'id';
  is_deleted boolean := coalesce((data ->> 'deleted')::boolean, false);
  old_plan text := (select p.plan_id from public.stripe_products p where p.id = pid);
  new_plan text := (select pl.id from public.plans pl where pl.id = data ->> 'plan');
  stored boolean;
  org uuid;
begin
  insert into public.stripe_products as t (id, active, name, description, plan_id, metadata, deleted_at, created_at,
                                           synced_at, last_event_id, stripe_data)
  values (pid, coalesce((data ->> 'active')::boolean, true) and not is_deleted, data ->> 'name',
          data ->> 'description', new_plan, coalesce(data -> 'metadata', '{}'::jsonb),
          case when is_deleted then as_of end, private.stripe_time(data, 'created'), as_of, event_id, object)
  on conflict (id) do update
  set active = excluded.active, name = excluded.name, description = excluded.description, plan_id = excluded.plan_id,
      metadata = excluded.metadata, deleted_at = excluded.deleted_at, created_at = excluded.created_at,
      synced_at = excluded.synced_at, last_event_id = excluded.last_event_id, stripe_data = excluded.stripe_data
  where private.stripe_newer(excluded.synced_at, private.stripe_state_rank(null, excluded.deleted_at is not null),
                             excluded.last_event_id, t.synced_at,
                             private.stripe_state_rank(null, t.deleted_at is not null), t.last_event_id)
  returning true into stored;
  if stored and new_plan is distinct from old_plan then
    for org in select distinct s.org_id from public.subscriptions s where s.product_id = pid and s.org_id is not null
               order by 1 loop
      perform private.refresh_org_billing(org, as_of);
    end loop;
  end if;
  return jsonb_build_object('product', pid, 'applied', coalesce(stored, false));
end;
$$;

/**
 * Stores a price when it is newer than the stored one, and gives its product to the
 * subscriptions that knew only the price.
 */
create or replace function private.sync_price(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pid text := data ->> 'id';
  is_deleted boolean := coalesce((data ->> 'deleted')::boolean, false);
  stored boolean;
  org uuid;
begin
  insert into public.stripe_prices as t (id, product_id, active, currency, unit_amount, type, recurring_interval,
                                         recurring_interval_count, lookup_key, nickname, metadata, deleted_at,
                                         created_at, synced_at, last_event_id, stripe_data)
  values (pid, data ->> 'product_id', coalesce((data ->> 'active')::boolean, true) and not is_deleted,
          data ->> 'currency', (data ->> 'unit_amount')::bigint, data ->> 'type', data ->> 'recurring_interval',
          (data ->> 'recurring_interval_count')::integer, data ->> 'lookup_key', data ->> 'nickname',
          coalesce(data -> 'metadata', '{}'::jsonb), case when is_deleted then as_of end,
          private.stripe_time(data, 'created'), as_of, event_id, object)
  on conflict (id) do update
  set product_id = excluded.product_id, active = excluded.active, currency = excluded.currency,
      unit_amount = excluded.unit_amount, type = excluded.type, recurring_interval = excluded.recurring_interval,
      recurring_interval_count = excluded.recurring_interval_count, lookup_key = excluded.lookup_key,
      nickname = excluded.nickname, metadata = excluded.metadata, deleted_at = excluded.deleted_at,
      created_at = excluded.created_at, synced_at = excluded.synced_at, last_event_id = excluded.last_event_id,
      stripe_data = excluded.stripe_data
  where private.stripe_newer(excluded.synced_at, private.stripe_state_rank(null, excluded.deleted_at is not null),
                             excluded.last_event_id, t.synced_at,
                             private.stripe_state_rank(null, t.deleted_at is not null), t.last_event_id)
  returning true into stored;
  for org in
    update public.subscriptions s set product_id = data ->> 'product_id'
    where s.price_id = pid and s.product_id is null and s.org_id is not null
    returning s.org_id
  loop
    perform private.refresh_org_billing(org, as_of);
  end loop;
  return jsonb_build_object('price', pid, 'applied', coalesce(stored, false));
end;
$$;

/**
 * Stores a customer when it is newer than the stored one; links it to the organization
 * its metadata names (org_id). A deleted customer stops being its organization's.
 */
create or replace function private.sync_customer(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  cid text := data ->> 'id';
  is_deleted boolean := coalesce((data ->> 'deleted')::boolean, false);
  org uuid := private.stripe_org(data ->> 'org_id');
  stored boolean;
  linked boolean;
begin
  insert into public.stripe_customers as t (id, org_id, email, name, metadata, deleted_at, created_at, synced_at,
                                            last_event_id, stripe_data)
  values (cid, org, data ->> 'email', data ->> 'name', coalesce(data -> 'metadata', '{}'::jsonb),
          case when is_deleted then as_of end, private.stripe_time(data, 'created'), as_of, event_id, object)
  on conflict (id) do update
  set email = coalesce(excluded.email, case when excluded.deleted_at is not null then t.email end),
      name = coalesce(excluded.name, case when excluded.deleted_at is not null then t.name end),
      metadata = excluded.metadata, deleted_at = excluded.deleted_at,
      created_at = coalesce(excluded.created_at, t.created_at), synced_at = excluded.synced_at,
      last_event_id = excluded.last_event_id, stripe_data = excluded.stripe_data
  where private.stripe_newer(excluded.synced_at, private.stripe_state_rank(null, excluded.deleted_at is not null),
                             excluded.last_event_id, t.synced_at,
                             private.stripe_state_rank(null, t.deleted_at is not null), t.last_event_id)
  returning true into stored;
  linked := private.link_customer(cid, org);
  select c.org_id into org from public.stripe_customers c where c.id = cid;
  if stored and is_deleted then
    update public.organizations o set stripe_customer_id = null where o.stripe_customer_id = cid;
  end if;
  if linked then
    perform private.refresh_org_billing(org, as_of);
  end if;
  return jsonb_build_object('customer', cid, 'applied', coalesce(stored, false), 'org_id', org);
end;
$$;

/**
 * Stores a subscription when it is newer than the stored one. Its organization comes
 * from its metadata (org_id) or its customer's link, and sticks once known. Then the
 * organization's billing is re-derived.
 */
create or replace function private.sync_subscription(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  sid text := data ->> 'id';
  customer text := data ->> 'customer_id';
  org uuid := coalesce(private.stripe_org(data ->> 'org_id'),
                       (select c.org_id from public.stripe_customers c where c.id = customer));
  item jsonb;
  stored boolean;
  linked boolean;
  effects jsonb;
begin
  select x.i || jsonb_build_object('product_id', coalesce(x.i ->> 'product_id',
           (select p.product_id from public.stripe_prices p where p.id = x.i ->> 'price_id')))
  into item
  from jsonb_array_elements(coalesce(data -> 'items', '[]'::jsonb)) with ordinality as x(i, n)
  order by private.plan_for_product(coalesce(x.i ->> 'product_id',
             (select p.product_id from public.stripe_prices p where p.id = x.i ->> 'price_id'))) is null, x.n
  limit 1;

  insert into public.subscriptions as t (id, org_id, customer_id, status, price_id, product_id, quantity,
    cancel_at_period_end, cancel_at, canceled_at, ended_at, current_period_start, current_period_end, trial_start,
    trial_end, metadata, created_at, synced_at, last_event_id, stripe_data)
  values (sid, org, customer, (data ->> 'status')::public.subscription_status, item ->> 'price_id',
          item ->> 'product_id', (item ->> 'quantity')::integer,
          coalesce((data ->> 'cancel_at_period_end')::boolean, false), private.stripe_time(data, 'cancel_at'),
          private.stripe_time(data, 'canceled_at'), private.stripe_time(data, 'ended_at'),
          private.stripe_time(data, 'current_period_start'), private.stripe_time(data, 'current_period_end'),
          private.stripe_time(data, 'trial_start'), private.stripe_time(data, 'trial_end'),
          coalesce(data -> 'metadata', '{}'::jsonb), private.stripe_time(data, 'created'), as_of, event_id, object)
  on conflict (id) do update
  set customer_id = excluded.customer_id, status = excluded.status, price_id = excluded.price_id,
      product_id = excluded.product_id, quantity = excluded.quantity,
      cancel_at_period_end = excluded.cancel_at_period_end, cancel_at = excluded.cancel_at,
      canceled_at = excluded.canceled_at, ended_at = excluded.ended_at,
      current_period_start = excluded.current_period_start, current_period_end = excluded.current_period_end,
      trial_start = excluded.trial_start, trial_end = excluded.trial_end, metadata = excluded.metadata,
      created_at = excluded.created_at, synced_at = excluded.synced_at, last_event_id = excluded.last_event_id,
      stripe_data = excluded.stripe_data
  where private.stripe_newer(excluded.synced_at, private.stripe_state_rank(excluded.status::text),
                             excluded.last_event_id, t.synced_at, private.stripe_state_rank(t.status::text),
                             t.last_event_id)
  returning true into stored;

  update public.subscriptions s set org_id = org where s.id = sid and s.org_id is null and org is not null;
  linked := found;
  linked := private.link_customer(customer, org) or linked;
  select s.org_id into org from public.subscriptions s where s.id = sid;
  if org is not null and (stored or linked) then
    effects := private.refresh_org_billing(org, as_of);
  end if;
  return jsonb_build_object('subscription', sid, 'applied', coalesce(stored, false), 'org_id', org,
                            'billing', effects);
end;
$$;

/**
 * Stores a payment row (invoice or payment intent) when it is newer than the stored
 * one. The organization comes from the subscription or the customer.
 */
create or replace function private.sync_payment(payment_kind text, data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  pid text := data ->> 'id';
  org uuid := coalesce((select s.org_id from public.subscriptions s where s.id = data ->> 'subscription_id'),
                       (select c.org_id from public.stripe_customers c where c.id = data ->> 'customer_id'));
  stored boolean;
begin
  insert into public.payments as t (id, kind, org_id, customer_id, subscription_id, amount, amount_paid, currency,
    status, description, hosted_invoice_url, billing_reason, period_start, period_end, failure_message, created_at,
    synced_at, last_event_id, stripe_data)
  values (pid, payment_kind, org, data ->> 'customer_id', data ->> 'subscription_id',
          coalesce((data ->> 'amount')::bigint, 0), coalesce((data ->> 'amount_paid')::bigint, 0),
          data ->> 'currency', coalesce(data ->> 'status', 'unknown'), data ->> 'description',
          data ->> 'hosted_invoice_url', data ->> 'billing_reason', private.stripe_time(data, 'period_start'),
          private.stripe_time(data, 'period_end'), data ->> 'failure_message', private.stripe_time(data, 'created'),
          as_of, event_id, object)
  on conflict (id) do update
  set org_id = coalesce(t.org_id, excluded.org_id), customer_id = excluded.customer_id,
      subscription_id = excluded.subscription_id, amount = excluded.amount, amount_paid = excluded.amount_paid,
      currency = excluded.currency, status = excluded.status, description = excluded.description,
      hosted_invoice_url = excluded.hosted_invoice_url, billing_reason = excluded.billing_reason,
      period_start = excluded.period_start, period_end = excluded.period_end,
      failure_message = excluded.failure_message, created_at = excluded.created_at, synced_at = excluded.synced_at,
      last_event_id = excluded.last_event_id, stripe_data = excluded.stripe_data
  where private.stripe_newer(excluded.synced_at, private.stripe_state_rank(excluded.status),
                             excluded.last_event_id, t.synced_at, private.stripe_state_rank(t.status),
                             t.last_event_id)
  returning true into stored;
  return jsonb_build_object('payment', pid, 'applied', coalesce(stored, false), 'org_id', org);
end;
$$;

/**
 * An invoice. A paid `subscription_cycle` invoice starts the new credit period of the
 * plan the organization is on (never a period older than the current one, never one
 * already over, never for a plan the organization has left).
 */
create or replace function private.sync_invoice(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  result jsonb := private.sync_payment('invoice', data, object, as_of, event_id);
  org uuid := (result ->> 'org_id')::uuid;
  plan text;
  starts timestamptz := private.stripe_time(data, 'period_start');
  ends timestamptz := private.stripe_time(data, 'period_end');
begin
  if org is null or data ->> 'status' <> 'paid' or data ->> 'billing_reason' <> 'subscription_cycle' then
    return result;
  end if;
  plan := coalesce(private.plan_for_product(coalesce(data ->> 'product_id',
                     (select p.product_id from public.stripe_prices p where p.id = data ->> 'price_id'))),
                   (select o.plan_id from public.organizations o where o.id = org));
  if plan <> 'free' and ends > now()
     and plan = (select o.plan_id from public.organizations o where o.id = org)
     and not exists (select 1 from public.credit_accounts a
                     where a.org_id = org and a.period_start is not null and a.period_start >= starts) then
    perform private.start_plan_period(org, plan, starts, ends, 'stripe: ' || plan || ' renewal');
    result := result || jsonb_build_object('credit_period_started', starts);
  end if;
  return result;
end;
$$;

/**
 * checkout.session.completed: links the customer to the organization the session names
 * (client_reference_id, else metadata.org_id). A paid credit-pack purchase (payment
 * mode) becomes a purchase grant, once per session: the credits the session's
 * metadata names (checkout put private.pack_credits' answer there), else what
 * private.pack_credits answers for the session's price and quantity; expiring after
 * credits_expire_days when given.
 */
create or replace function private.complete_checkout(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  org uuid := private.stripe_org(data ->> 'org_id');
  pack_days integer;
  credits bigint := (data ->> 'credits')::bigint;
  expire_days integer := (data ->> 'credits_expire_days')::integer;
  result jsonb := jsonb_build_object('checkout_session', data ->> 'id', 'org_id', org);
begin
  if org is null then
    return result || jsonb_build_object('linked', false);
  end if;
  perform private.link_customer(data ->> 'customer_id', org);
  if data ->> 'mode' = 'subscription' then
    update public.subscriptions s set org_id = org where s.id = data ->> 'subscription_id' and s.org_id is null;
    return result || jsonb_build_object('billing', private.refresh_org_billing(org, as_of));
  end if;
  if data ->> 'mode' <> 'payment' or data ->> 'payment_status' <> 'paid' then
    return result;
  end if;
  if credits is null then
    select c.credits, c.expire_days into credits, pack_days
    from private.pack_credits(data ->> 'price_id', (data ->> 'quantity')::integer) c;
    expire_days := coalesce(expire_days, pack_days);
  end if;
  if coalesce(credits, 0) <= 0 then
    return result || jsonb_build_object('credits', 0);
  end if;
  perform private.grant_credits(org, 'purchase', credits,
                                case when expire_days > 0 then as_of + make_interval(days => expire_days) end,
                                'stripe:' || (data ->> 'id'), 'credit pack ' || coalesce(data ->> 'price_id', ''));
  return result || jsonb_build_object('credits', credits);
end;
$$;

/**
 * One Stripe object of `kind` (normalized `data`, raw `object`) as of `as_of`. Objects
 * of one customer are applied one at a time (a transaction lock on the customer id), so
 * concurrent deliveries of its events never deadlock on its rows.
 */
create or replace function private.stripe_sync(kind text, data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  customer text := case kind when 'customer' then data ->> 'id' else data ->> 'customer_id' end;
begin
  if data ->> 'id' is null then
    raise exception 'a % must have an id', kind using errcode = 'PT400';
  end if;
  if customer is not null then
    perform pg_advisory_xact_lock(hashtextextended('stripe customer ' || customer, 0));
  end if;
  return case kind
    when 'product' then private.sync_product(data, object, as_of, event_id)
    when 'price' then private.sync_price(data, object, as_of, event_id)
    when 'customer' then private.sync_customer(data, object, as_of, event_id)
    when 'subscription' then private.sync_subscription(data, object, as_of, event_id)
    when 'invoice' then private.sync_invoice(data, object, as_of, event_id)
    when 'payment_intent' then private.sync_payment('payment_intent', data, object, as_of, event_id)
    when 'checkout_session' then private.complete_checkout(data, object, as_of, event_id)
  end;
end;
$$;

-- Section - Public RPCs

/**
 * Service role (webhook): applies one verified Stripe event in one transaction. The
 * event id is recorded first: a duplicate (already processed or ignored) answers
 * `duplicate` and changes nothing; a failed one is processed again. `kind` null
 * records the event as ignored. `fetched`: `object` was re-fetched from the API, so
 * it is true as of now rather than as of the event.
 */
create or replace function public.stripe_apply_event(
  event_id text, event_type text, created bigint, livemode boolean default false, api_version text default null,
  kind text default null, data jsonb default null, object jsonb default null, fetched boolean default false
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  recorded text;
  effects jsonb;
begin
  if event_id is null or event_id not like 'evt\_%' or event_type is null or stripe_apply_event.created is null then
    raise exception 'an event needs an evt_ id, a type and a created time' using errcode = 'PT400';
  end if;
  insert into public.stripe_events as e (id, type, created, livemode, api_version, object_id, status, processed_at)
  values (event_id, event_type, to_timestamp(stripe_apply_event.created), coalesce(stripe_apply_event.livemode, false),
          stripe_apply_event.api_version, data ->> 'id',
          case when kind is null then 'ignored' else 'processed' end::public.stripe_event_status, now())
  on conflict (id) do update
  set status = excluded.status, error = null, attempts = e.attempts + 1, received_at = now(),
      processed_at = now(), object_id = excluded.object_id
  where e.status = 'failed'
  returning e.id into recorded;
  if recorded is null then
    return jsonb_build_object('event_id', event_id, 'status', 'duplicate');
  end if;
  if kind is null then
    return jsonb_build_object('event_id', event_id, 'status', 'ignored');
  end if;
  effects := private.stripe_sync(kind, data, object,
                                 case when fetched then now() else to_timestamp(stripe_apply_event.created) end,
                                 event_id);
  if effects is null then
    raise exception 'unknown Stripe object kind %', kind using errcode = 'PT400';
  end if;
  return jsonb_build_object('event_id', event_id, 'status', 'processed', 'effects', effects);
end;
$$;

revoke execute on function public.stripe_apply_event(text, text, bigint, boolean, text, text, jsonb, jsonb, boolean) from public, anon, authenticated;

grant execute on function public.stripe_apply_event(text, text, bigint, boolean, text, text, jsonb, jsonb, boolean) to service_role;

/**
 * Service role (webhook): records that an event could not be applied (its changes were
 * rolled back), so the failure is visible and Stripe's retry processes it again.
 * Never downgrades an event that was processed meanwhile.
 */
create or replace function public.stripe_record_event_failure(
  event_id text, event_type text, created bigint, error text, livemode boolean default false,
  api_version text default null, object_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.stripe_events as e (id, type, created, livemode, api_version, object_id, status, error)
  values (event_id, event_type, to_timestamp(stripe_record_event_failure.created),
          coalesce(stripe_record_event_failure.livemode, false), stripe_record_event_failure.api_version,
          stripe_record_event_failure.object_id, 'failed', left(stripe_record_event_failure.error, 2000))
  on conflict (id) do update
  set error = excluded.error, attempts = e.attempts + 1, received_at = now()
  where e.status = 'failed';
  return (select jsonb_build_object('event_id', e.id, 'status', e.status, 'attempts', e.attempts)
          from public.stripe_events e where e.id = event_id);
end;
$$;

revoke execute on function public.stripe_record_event_failure(text, text, bigint, text, boolean, text, text) from public, anon, authenticated;

grant execute on function public.stripe_record_event_failure(text, text, bigint, text, boolean, text, text) to service_role;

/**
 * Service role (API sync, backfill): stores Stripe objects fetched from the API now
 * (`objects`: [{"data": normalized, "object": raw}, …]), with the same rules and
 * effects as events. Idempotent.
 */
create or replace function public.stripe_sync_objects(kind text, objects jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  item jsonb;
  result jsonb;
  applied integer := 0;
  seen integer := 0;
begin
  if kind not in ('product', 'price', 'customer', 'subscription', 'invoice', 'payment_intent') then
    raise exception 'cannot sync Stripe objects of kind %', kind using errcode = 'PT400';
  end if;
  if jsonb_typeof(objects) is distinct from 'array' then
    raise exception 'objects must be a JSON array' using errcode = 'PT400';
  end if;
  for item in select x from jsonb_array_elements(objects) as x loop
    result := private.stripe_sync(kind, item -> 'data', item -> 'object', now(), null);
    seen := seen + 1;
    applied := applied + case when (result ->> 'applied')::boolean then 1 else 0 end;
  end loop;
  return jsonb_build_object('kind', kind, 'synced', seen, 'applied', applied);
end;
$$;

revoke execute on function public.stripe_sync_objects(text, jsonb) from public, anon, authenticated;

grant execute on function public.stripe_sync_objects(text, jsonb) to service_role;
