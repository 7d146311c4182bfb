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

-- Section - Types

create type public.subscription_status as enum (
  'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused'
);
-- derived from the organization's subscription (see private.refresh_org_billing)
create type public.billing_status as enum ('active', 'inactive', 'canceled', 'past_due');

-- Section - Tables

alter table public.organizations
  add column billing_status public.billing_status not null default 'inactive';

-- RLS on every table; column grants keep stripe_data (raw provider data, client secrets)
-- away from the API roles.

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

alter table public.stripe_products enable row level security;
revoke all on public.stripe_products from anon, authenticated;
grant select (id, active, name, description, plan_id, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_products to anon, authenticated;
comment on table public.stripe_products is
  'Mirror of the Stripe products; a product sells a plan or a credit pack. Active ones are public.';

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

alter table public.stripe_prices enable row level security;
revoke all on public.stripe_prices from anon, authenticated;
grant select (id, product_id, active, currency, unit_amount, type, recurring_interval, recurring_interval_count,
              lookup_key, nickname, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_prices to anon, authenticated;
comment on table public.stripe_prices is
  'Mirror of the Stripe prices; a credit pack names its credits in metadata. Active ones are public.';

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

alter table public.stripe_customers enable row level security;
revoke all on public.stripe_customers from anon, authenticated;
grant select (id, org_id, email, name, metadata, deleted_at, created_at, synced_at, updated_at)
  on public.stripe_customers to authenticated;
comment on table public.stripe_customers is
  'Stripe customers and the organization each one pays for (organization admins).';

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

alter table public.subscriptions enable row level security;
revoke all on public.subscriptions from anon, authenticated;
grant select (id, org_id, customer_id, status, price_id, product_id, quantity, cancel_at_period_end, cancel_at,
              canceled_at, ended_at, current_period_start, current_period_end, trial_start, trial_end, metadata,
              created_at, synced_at, updated_at)
  on public.subscriptions to authenticated;
comment on table public.subscriptions is
  'Mirror of the Stripe subscriptions of each organization (members).';

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

alter table public.payments enable row level security;
revoke all on public.payments from anon, authenticated;
grant select (id, kind, org_id, customer_id, subscription_id, amount, amount_paid, currency, status, description,
              hosted_invoice_url, billing_reason, period_start, period_end, failure_message, created_at, synced_at,
              updated_at)
  on public.payments to authenticated;
comment on table public.payments is
  'Payment history from Stripe invoices and payment intents (organization admins).';

-- Section - Triggers

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

-- Section - Private helpers

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

/**
 * What `quantity` units of credit-pack price `price_id` buy: `credits` (the price's
 * metadata.credits, else its product's, times the quantity) and `expire_days` (its
 * credits_expire_days, likewise). No row when the price is not a pack (not a one-time
 * price in the mirror, or no positive whole number of credits). The one place this is
 * computed: checkout asks it through public.stripe_billing_context, and the
 * checkout.session.completed fallback (private.complete_checkout) asks it too.
 */
create or replace function private.pack_credits(price_id text, quantity integer default 1)
returns table (credits bigint, expire_days integer)
language sql stable
set search_path = ''
as $$
  select m.per_unit::bigint * greatest(coalesce(pack_credits.quantity, 1), 1),
         -- 0 (or anything not a positive whole number) means the credits never expire
         case when m.days ~ '^\d{1,5}$' and m.days::integer > 0 then m.days::integer end
  from (
    select coalesce(p.metadata ->> 'credits', pr.metadata ->> 'credits') as per_unit,
           coalesce(p.metadata ->> 'credits_expire_days', pr.metadata ->> 'credits_expire_days') as days
    from public.stripe_prices p
    left join public.stripe_products pr on pr.id = p.product_id
    where p.id = pack_credits.price_id and p.type = 'one_time'
  ) m
  where m.per_unit ~ '^\d{1,15}$' and m.per_unit::bigint > 0;
$$;

-- Section - Policies

/**
 * The catalogue is public: anyone may read active products.
 */
create policy "Active products are viewable by everyone" on public.stripe_products
  for select to anon, authenticated
  using (active);

/**
 * The catalogue is public: anyone may read active prices.
 */
create policy "Active prices are viewable by everyone" on public.stripe_prices
  for select to anon, authenticated
  using (active);

/**
 * Who pays for an organization is its admins' business.
 */
create policy "Customers are viewable by organization admins" on public.stripe_customers
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

/**
 * Every member may see what the organization is subscribed to.
 */
create policy "Subscriptions are viewable by members" on public.subscriptions
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Invoices and payments are for the organization's admins.
 */
create policy "Payments are viewable by organization admins" on public.payments
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

-- Section - Public RPCs

/**
 * Service role (checkout, portal, sync): what a verified user may do with an
 * organization's billing. Checks the user exactly as PostgREST would for their JWT
 * (active, member with at least `min_role`: 403/404 otherwise); with `price_id`, that
 * the price is active in the mirror (400 otherwise). Returns the organization (plan,
 * billing status), the user's email, its live customer (if any), the price, and what a
 * checkout of `quantity` units of it buys (private.pack_credits): `checkout_credits`
 * and `credits_expire_days`, both null unless the price is a credit pack. Checkout puts
 * these numbers into the session's metadata as they are.
 */
create or replace function public.stripe_billing_context(
  org_id uuid, user_id uuid, min_role public.member_role default 'admin', price_id text default null,
  quantity integer default 1
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
  checkout_credits bigint;
  expire_days integer;
begin
  caller_role := private.require_role_of(stripe_billing_context.org_id, stripe_billing_context.user_id, min_role);

  select * into o from public.organizations x where x.id = stripe_billing_context.org_id;
  if price_id is not null then
    select * into p from public.stripe_prices x where x.id = price_id and x.active and x.deleted_at is null;
    select * into product from public.stripe_products x where x.id = p.product_id;
    if p.id is null or product.active is false then
      raise exception 'price % is not available', price_id using errcode = 'PT400';
    end if;
    select c.credits, c.expire_days into checkout_credits, expire_days
    from private.pack_credits(p.id, stripe_billing_context.quantity) c;
  end if;
  select c.id into customer from public.stripe_customers c
  where c.org_id = o.id and c.deleted_at is null
  order by coalesce(c.id = o.stripe_customer_id, false) desc, c.created_at desc nulls last, c.id
  limit 1;
  return jsonb_build_object(
    'org_id', o.id, 'org_name', o.name, 'plan_id', o.plan_id, 'billing_status', o.billing_status,
    'role', caller_role, 'customer_id', customer,
    'email', (select pr.email from public.profiles pr where pr.id = user_id),
    'price', case when p.id is not null then jsonb_build_object('id', p.id, 'type', p.type, 'product_id', p.product_id) end,
    'checkout_credits', checkout_credits, 'credits_expire_days', expire_days);
end;
$$;
revoke execute on function public.stripe_billing_context(uuid, uuid, public.member_role, text, integer) from public, anon, authenticated;
grant execute on function public.stripe_billing_context(uuid, uuid, public.member_role, text, integer) to service_role;
