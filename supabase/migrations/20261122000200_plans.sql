/**
 * Plans: what an organization pays for and how many credits a month that buys.
 * Readable by everyone (the pricing page is public); written by the service role only
 * (seed, Stripe catalogue sync).
 */

-- Section - tables
create table public.plans (
  id text primary key check (id ~ '^[a-z][a-z0-9_-]{0,31}$'),
  name text not null,
  monthly_credits bigint not null check (monthly_credits >= 0),
  -- e.g. {"models": ["gpt-4o-mini"], "max_members": 3}; absent keys mean "no limit"
  features jsonb not null default '{}'::jsonb check (jsonb_typeof(features) = 'object'),
  -- the Stripe product that sells this plan, when known
  stripe_product_id text,
  sort_order integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

alter table public.plans enable row level security;
-- revoke all, not a list: on Postgres 17+ the default grant includes MAINTAIN (lock, vacuum)
revoke all on public.plans from anon, authenticated;
grant select on public.plans to anon, authenticated;

create trigger plans_set_updated_at before update on public.plans
  for each row execute function private.set_updated_at();

-- The free plan must exist before the first sign-up, on every database (db push runs no seed).
insert into public.plans (id, name, monthly_credits, features, sort_order) values
  ('free', 'Free', 1000, '{"models": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano"]}', 0),
  ('pro', 'Pro', 50000, '{}', 10),
  ('enterprise', 'Enterprise', 1000000, '{}', 20)
on conflict (id) do nothing;

-- Section - policies

-- Plans are public: anyone, signed in or not, may read the catalogue.
create policy "Plans are viewable by everyone" on public.plans
  for select to anon, authenticated
  using (true);
