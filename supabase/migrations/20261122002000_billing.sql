/**
 * Billing: Stripe mirrored exactly in Postgres. The Stripe webhook (and the API sync
 * and backfill) hand each Stripe object to one SQL function, which stores it, records
 * the event, and applies the effects on the organization (plan, credits, billing
 * status, the personal owner's role) in the same transaction.
 *
 * Stripe delivers events late, twice and out of order, so:
 * - every event is recorded once by its id (`stripe_events`); a duplicate changes nothing;
 * - every mirrored row remembers when its state was true (`synced_at`: the event's
 *   `created`, or the moment it was fetched from the API) and an older state never
 *   overwrites a newer one. Within one second the more final state wins (deleted >
 *   canceled/paid > active > incomplete), then the larger event id, so any delivery
 *   order ends on the same rows;
 * - links between objects (customer -> organization) are sticky and order-free.
 * There are no foreign keys between the Stripe tables: children arrive before parents.
 *
 * Writes are the service role's only (these functions); users read through RLS.
 */

-- Section - types

create type public.subscription_status as enum (
  'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused'
);
-- derived from the organization's subscription (see private.refresh_org_billing)
create type public.billing_status as enum ('active', 'inactive', 'canceled', 'past_due');
create type public.stripe_event_status as enum ('processed', 'ignored', 'failed');

-- Section - tables

alter table public.organizations
  add column billing_status public.billing_status not null default 'inactive';

/**
 * The Stripe catalogue. A product sells a plan when its metadata names one (`plan`),
 * or when a plan names the product (plans.stripe_product_id).
 */
create table public.stripe_products (
  id text primary key,
  active boolean not null default true,
  name text,
  description text,
  -- metadata.plan, when it names a plan that exists
  plan_id text references public.plans (id) on delete set null,
  metadata jsonb not null default '{}'::jsonb,
  deleted_at timestamptz,
  -- when Stripe created the object
  created_at timestamptz,
  -- when the state stored here was true in Stripe; an older state never overwrites it
  synced_at timestamptz not null,
  last_event_id text,
  -- the object as Stripe sent it (never exposed to API roles)
  stripe_data jsonb not null,
  updated_at timestamptz not null default now()
);
create index stripe_products_plan_id_idx on public.stripe_products (plan_id);
create index stripe_products_active_idx on public.stripe_products (active);

create table public.stripe_prices (
  id text primary key,
  product_id text not null,
  active boolean not null default true,
  currency text not null,
  -- minor units (cents); null for tiered or custom prices
  unit_amount bigint,
  type text not null check (type in ('one_time', 'recurring')),
  recurring_interval text,
  recurring_interval_count integer,
  lookup_key text,
  nickname text,
  -- a credit pack names its credits here (`credits`, optional `credits_expire_days`)
  metadata jsonb not null default '{}'::jsonb,
  deleted_at timestamptz,
  created_at timestamptz,
  synced_at timestamptz not null,
  last_event_id text,
  stripe_data jsonb not null,
  updated_at timestamptz not null default now()
);
create index stripe_prices_product_id_idx on public.stripe_prices (product_id);
create index stripe_prices_active_idx on public.stripe_prices (active);

/**
 * Stripe customers and the organization each one pays for. A row can exist before
 * Stripe's customer event (a link made at checkout): then it has no stripe_data yet.
 */
create table public.stripe_customers (
  id text primary key check (id like 'cus\_%'),
  org_id uuid references public.organizations (id) on delete set null,
  email text,
  name text,
  metadata jsonb not null default '{}'::jsonb,
  deleted_at timestamptz,
  created_at timestamptz,
  -- null while the row is only a link made at checkout (Stripe's customer not seen yet)
  synced_at timestamptz,
  last_event_id text,
  stripe_data jsonb,
  updated_at timestamptz not null default now()
);
create index stripe_customers_org_id_idx on public.stripe_customers (org_id);

create table public.subscriptions (
  id text primary key check (id like 'sub\_%'),
  org_id uuid references public.organizations (id) on delete set null,
  customer_id text not null,
  status public.subscription_status not null,
  -- the item that names the plan (the first whose product sells one, else the first)
  price_id text,
  product_id text,
  quantity integer,
  cancel_at_period_end boolean not null default false,
  cancel_at timestamptz,
  canceled_at timestamptz,
  ended_at timestamptz,
  current_period_start timestamptz,
  current_period_end timestamptz,
  trial_start timestamptz,
  trial_end timestamptz,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz,
  synced_at timestamptz not null,
  last_event_id text,
  stripe_data jsonb not null,
  updated_at timestamptz not null default now()
);
create index subscriptions_org_id_idx on public.subscriptions (org_id);
create index subscriptions_customer_id_idx on public.subscriptions (customer_id);
create index subscriptions_price_id_idx on public.subscriptions (price_id);
create index subscriptions_product_id_idx on public.subscriptions (product_id);

/**
 * Payment history: invoices (`in_…`) and payment intents (`pi_…`). On newer API
 * versions a subscription charge shows as its invoice and as its payment intent.
 */
create table public.payments (
  id text primary key,
  kind text not null check (kind in ('invoice', 'payment_intent')),
  org_id uuid references public.organizations (id) on delete set null,
  customer_id text,
  subscription_id text,
  -- amount due (invoice) or intended (payment intent), in minor units
  amount bigint not null default 0,
  amount_paid bigint not null default 0,
  currency text,
  -- Stripe's status of the invoice or payment intent
  status text not null,
  description text,
  hosted_invoice_url text,
  billing_reason text,
  period_start timestamptz,
  period_end timestamptz,
  failure_message text,
  created_at timestamptz,
  synced_at timestamptz not null,
  last_event_id text,
  stripe_data jsonb not null,
  updated_at timestamptz not null default now()
);
create index payments_org_id_created_idx on public.payments (org_id, created_at);
create index payments_customer_id_idx on public.payments (customer_id);
create index payments_subscription_id_idx on public.payments (subscription_id);

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

-- RLS on all; column grants keep stripe_data (raw provider data, client secrets) away from API roles.
alter table public.stripe_products enable row level security;
alter table public.stripe_prices enable row level security;
alter table public.stripe_customers enable row level security;
alter table public.subscriptions enable row level security;
alter table public.payments enable row level security;
alter table public.stripe_events enable row level security;
revoke all on public.stripe_products, public.stripe_prices, public.stripe_customers, public.subscriptions,
  public.payments, public.stripe_events from anon, authenticated;
grant select (id, active, name, description, plan_id, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_products to anon, authenticated;
grant select (id, product_id, active, currency, unit_amount, type, recurring_interval, recurring_interval_count,
              lookup_key, nickname, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_prices to anon, authenticated;
grant select (id, org_id, email, name, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_customers to authenticated;
grant select (id, org_id, customer_id, status, price_id, product_id, quantity, cancel_at_period_end, cancel_at,
              canceled_at, ended_at, current_period_start, current_period_end, trial_start, trial_end, metadata,
              created_at, synced_at, updated_at)
  on public.subscriptions to authenticated;
grant select (id, kind, org_id, customer_id, subscription_id, amount, amount_paid, currency, status, description,
              hosted_invoice_url, billing_reason, period_start, period_end, failure_message, created_at, synced_at,
              updated_at)
  on public.payments to authenticated;

-- Section - triggers

create trigger stripe_products_set_updated_at before update on public.stripe_products
  for each row execute function private.set_updated_at();
create trigger stripe_prices_set_updated_at before update on public.stripe_prices
  for each row execute function private.set_updated_at();
create trigger stripe_customers_set_updated_at before update on public.stripe_customers
  for each row execute function private.set_updated_at();
create trigger subscriptions_set_updated_at before update on public.subscriptions
  for each row execute function private.set_updated_at();
create trigger payments_set_updated_at before update on public.payments
  for each row execute function private.set_updated_at();

-- Section - private helpers

/**
 * A Stripe timestamp (epoch seconds) in a normalized object, or null.
 */
create or replace function private.stripe_time(data jsonb, key text)
returns timestamptz
language sql immutable
set search_path = ''
as $$
  select to_timestamp((data ->> key)::double precision);
$$;

/**
 * How final a state is, to order two states of one object true in the same second.
 */
create or replace function private.stripe_state_rank(status text, deleted boolean default false)
returns integer
language sql immutable
set search_path = ''
as $$
  select case
    when deleted then 3
    when status in ('canceled', 'incomplete_expired', 'paid', 'succeeded', 'void', 'uncollectible') then 2
    when status in ('incomplete', 'draft', 'requires_payment_method', 'requires_confirmation',
                    'requires_action', 'processing') then 0
    else 1
  end;
$$;

/**
 * The mirror's ordering rule: a state of an object (true at `new_at`, `new_rank` final,
 * from event `new_event`) is stored unless the stored one is newer, or as new and more
 * final, or as new and final with a larger event id. A row only linked is always older.
 */
create or replace function private.stripe_newer(
  new_at timestamptz, new_rank integer, new_event text, old_at timestamptz, old_rank integer, old_event text
)
returns boolean
language sql immutable
set search_path = ''
as $$
  select old_at is null
      or (new_at, new_rank, coalesce(new_event, '')) >= (old_at, old_rank, coalesce(old_event, ''));
$$;

/**
 * The organization a Stripe value (client_reference_id, metadata.org_id) names, when
 * it is a uuid of an existing organization; otherwise null.
 */
create or replace function private.stripe_org(value text)
returns uuid
language sql stable
security definer
set search_path = ''
as $$
  select o.id from public.organizations o
  where o.id = case when value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    then value::uuid end;
$$;

/**
 * The plan a Stripe product sells: its metadata.plan, else the plan naming it.
 */
create or replace function private.plan_for_product(product text)
returns text
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select p.plan_id from public.stripe_products p where p.id = product and p.plan_id is not null),
    (select pl.id from public.plans pl where pl.stripe_product_id = product order by pl.id limit 1));
$$;

/**
 * Derives an organization's billing from its subscriptions, once any exists (an
 * organization Stripe never billed keeps the plan it has). The governing subscription
 * is the entitled one (active, trialing, past_due), else the most recent. Entitled:
 * the product's plan (unknown product: the plan stays), billing status active or
 * past_due, and a personal organization's owner is `premium`. Otherwise: the free
 * plan, status canceled/inactive/past_due (unpaid), owner `user`. Admins and banned
 * users keep their role. A plan change starts a credit period at once: what is left
 * of the old plan's grant expires and the new plan's monthly credits are granted.
 */
create or replace function private.refresh_org_billing(org uuid, at timestamptz)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  o public.organizations;
  s public.subscriptions;
  entitled boolean;
  want_plan text;
  want_status public.billing_status;
  starts timestamptz;
  ends timestamptz;
begin
  select * into o from public.organizations x where x.id = org for update;
  select * into s from public.subscriptions x where x.org_id = org
  order by case when x.status in ('active', 'trialing', 'past_due') then 0
                when x.status in ('unpaid', 'paused', 'incomplete') then 1 else 2 end,
           x.created_at desc nulls last, x.id desc
  limit 1;
  if o.id is null or s.id is null then
    return null;
  end if;
  entitled := s.status in ('active', 'trialing', 'past_due');
  want_status := case
    when s.status in ('active', 'trialing') then 'active'
    when s.status in ('past_due', 'unpaid') then 'past_due'
    when s.status in ('canceled', 'incomplete_expired') then 'canceled'
    else 'inactive' end;
  want_plan := case when entitled then coalesce(private.plan_for_product(s.product_id), o.plan_id) else 'free' end;

  if want_plan is distinct from o.plan_id then
    starts := greatest(at, s.synced_at);
    ends := case when entitled and s.current_period_end > starts then s.current_period_end
                 else starts + interval '1 month' end;
    update public.organizations x set plan_id = want_plan where x.id = org;
    perform private.start_plan_period(org, want_plan, starts, ends,
                                      'stripe: plan ' || o.plan_id || ' -> ' || want_plan);
  end if;
  if want_status is distinct from o.billing_status then
    update public.organizations x set billing_status = want_status where x.id = org;
  end if;
  if o.personal then
    update public.profiles p
    set role = case when entitled then 'premium' else 'user' end::public.user_role
    where p.id = o.personal_owner_id and p.role in ('user', 'premium')
      and p.role <> case when entitled then 'premium' else 'user' end::public.user_role;
  end if;
  return jsonb_build_object('org_id', org, 'plan_id', want_plan, 'billing_status', want_status,
                            'plan_changed', want_plan is distinct from o.plan_id);
end;
$$;

/**
 * Links a customer to an organization (first link wins), fills in the organization's
 * stripe_customer_id when it has none (or only a deleted one), and attaches that
 * customer's unlinked subscriptions and payments. True when anything was linked.
 */
create or replace function private.link_customer(customer text, org uuid)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  linked boolean := false;
begin
  if customer is null or org is null then
    return false;
  end if;
  insert into public.stripe_customers as c (id, org_id) values (customer, org)
  on conflict (id) do update set org_id = org where c.org_id is null;
  linked := found;
  update public.organizations o set stripe_customer_id = customer
  where o.id = org and o.stripe_customer_id is distinct from customer
    and (o.stripe_customer_id is null
         or exists (select 1 from public.stripe_customers d where d.id = o.stripe_customer_id and d.deleted_at is not null))
    and not exists (select 1 from public.organizations x where x.stripe_customer_id = customer)
    and exists (select 1 from public.stripe_customers c
                where c.id = customer and c.org_id = org and c.deleted_at is null);
  update public.subscriptions s set org_id = org where s.customer_id = customer and s.org_id is null;
  linked := linked or found;
  update public.payments p set org_id = org where p.customer_id = customer and p.org_id is null;
  return linked or found;
end;
$$;

-- Section - private helpers: one sync function per Stripe object (the only writers)

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
 * metadata names, else the price's (or its product's) metadata.credits per unit;
 * expiring after credits_expire_days when given.
 */
create or replace function private.complete_checkout(data jsonb, object jsonb, as_of timestamptz, event_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  org uuid := private.stripe_org(data ->> 'org_id');
  price public.stripe_prices;
  product_meta jsonb;
  per_unit text;
  days text;
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
    select * into price from public.stripe_prices p where p.id = data ->> 'price_id';
    select p.metadata into product_meta from public.stripe_products p where p.id = price.product_id;
    per_unit := coalesce(price.metadata ->> 'credits', product_meta ->> 'credits');
    days := coalesce(price.metadata ->> 'credits_expire_days', product_meta ->> 'credits_expire_days');
    credits := case when per_unit ~ '^\d{1,15}$' then per_unit::bigint end
               * greatest(coalesce((data ->> 'quantity')::integer, 1), 1);
    expire_days := coalesce(expire_days, case when days ~ '^\d{1,5}$' then days::integer end);
  end if;
  if coalesce(credits, 0) <= 0 then
    return result || jsonb_build_object('credits', 0);
  end if;
  perform private.grant_credits(org, 'purchase', credits,
                                as_of + make_interval(days => expire_days),
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

-- Section - policies

-- The catalogue is public: anyone may read active products.
create policy "Active products are viewable by everyone" on public.stripe_products
  for select to anon, authenticated
  using (active);

-- The catalogue is public: anyone may read active prices.
create policy "Active prices are viewable by everyone" on public.stripe_prices
  for select to anon, authenticated
  using (active);

-- Who pays for an organization is its admins' business.
create policy "Customers are viewable by organization admins" on public.stripe_customers
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

-- Every member may see what the organization is subscribed to.
create policy "Subscriptions are viewable by members" on public.subscriptions
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

-- Invoices and payments are for the organization's admins.
create policy "Payments are viewable by organization admins" on public.payments
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

-- Section - RPCs for the service role (the Stripe webhook, checkout, sync and backfill)

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

/**
 * Service role (checkout, portal, sync): what a verified user may do with an
 * organization's billing. Checks the user exactly as PostgREST would for their JWT
 * (active, member with at least `min_role`: 403/404 otherwise); with `price_id`, that
 * the price is active in the mirror (400 otherwise). Returns the organization (plan,
 * billing status), the user's email, its live customer (if any) and the price.
 */
create or replace function public.stripe_billing_context(
  org_id uuid, user_id uuid, min_role public.member_role default 'admin', price_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role;
  o public.organizations;
  p public.stripe_prices;
  product public.stripe_products;
  customer text;
begin
  caller_role := private.require_role_of(stripe_billing_context.org_id, stripe_billing_context.user_id, min_role);

  select * into o from public.organizations x where x.id = stripe_billing_context.org_id;
  if price_id is not null then
    select * into p from public.stripe_prices x where x.id = price_id and x.active and x.deleted_at is null;
    select * into product from public.stripe_products x where x.id = p.product_id;
    if p.id is null or product.active is false then
      raise exception 'price % is not available', price_id using errcode = 'PT400';
    end if;
  end if;
  select c.id into customer from public.stripe_customers c
  where c.org_id = o.id and c.deleted_at is null
  order by coalesce(c.id = o.stripe_customer_id, false) desc, c.created_at desc nulls last, c.id
  limit 1;
  return jsonb_build_object(
    'org_id', o.id, 'org_name', o.name, 'plan_id', o.plan_id, 'billing_status', o.billing_status,
    'role', caller_role, 'customer_id', customer,
    'email', (select pr.email from public.profiles pr where pr.id = user_id),
    'price', case when p.id is not null then jsonb_build_object(
      'id', p.id, 'type', p.type, 'product_id', p.product_id,
      'credits', coalesce(p.metadata ->> 'credits', product.metadata ->> 'credits'),
      'credits_expire_days', coalesce(p.metadata ->> 'credits_expire_days', product.metadata ->> 'credits_expire_days'))
    end);
end;
$$;

revoke execute on function public.stripe_apply_event(text, text, bigint, boolean, text, text, jsonb, jsonb, boolean) from public, anon, authenticated;
revoke execute on function public.stripe_record_event_failure(text, text, bigint, text, boolean, text, text) from public, anon, authenticated;
revoke execute on function public.stripe_sync_objects(text, jsonb) from public, anon, authenticated;
revoke execute on function public.stripe_billing_context(uuid, uuid, public.member_role, text) from public, anon, authenticated;
grant execute on function public.stripe_apply_event(text, text, bigint, boolean, text, text, jsonb, jsonb, boolean) to service_role;
grant execute on function public.stripe_record_event_failure(text, text, bigint, text, boolean, text, text) to service_role;
grant execute on function public.stripe_sync_objects(text, jsonb) to service_role;
grant execute on function public.stripe_billing_context(uuid, uuid, public.member_role, text) to service_role;
