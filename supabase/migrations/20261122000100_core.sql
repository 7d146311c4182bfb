/**
 * Core, shared by every capability: the private schema for policy helpers and internal
 * functions, the rule that no function is executable by the API roles unless a migration
 * grants it right below its definition, instance settings, shared utilities and the
 * health check.
 */

-- private schema (not exposed through PostgREST)
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

-- functions are private by default; each RPC is granted explicitly
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;

-- Section - Tables

/**
 * Instance-wide settings SQL functions need (the API key prefix, the credit price, the
 * metering commit mode). The API key prefix lives here and nowhere else: the database
 * mints keys with it, the seed builds the demo key from it, and `tollbooth migrate`
 * writes API_KEY_PREFIX into it.
 */
create table private.app_settings (
  key text primary key,
  value text not null,
  -- a letter, up to 15 letters or digits, then '_' (never a dot: keys are not JWTs)
  constraint app_settings_api_key_prefix_format
    check (key <> 'api_key_prefix' or value ~ '^[A-Za-z][A-Za-z0-9]{0,15}_$')
);
-- not exposed and granted to no API role; RLS on as well, with no policies
alter table private.app_settings enable row level security;
comment on table private.app_settings is
  'Instance-wide settings read by SQL functions through private.setting(); the one home of the API key prefix.';
insert into private.app_settings (key, value) values
  ('api_key_prefix', 'xan_'),
  -- how many credits one US dollar of upstream cost buys (1 credit = $0.001)
  ('credits_per_usd', '1000'),
  -- 'off': the proxy's two commits per request do not wait for the WAL flush (about 3 ms
  -- each on a local disk). Each transaction stays atomic; only a Postgres crash can lose
  -- the last few hundred ms of metering commits. 'on' trades that latency for zero loss.
  ('metering_synchronous_commit', 'off')
on conflict (key) do nothing;

-- Section - Private helpers

/**
 * Keeps `updated_at` honest on every table that has one.
 */
create or replace function private.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

/**
 * The value of instance setting `name` (private.app_settings), or null. Runs with its
 * owner's rights because no API role may read the settings table.
 */
create or replace function private.setting(name text)
returns text
language sql stable
security definer
set search_path = ''
as $$
  select s.value from private.app_settings s where s.key = setting.name;
$$;

/**
 * 256 bits from the server's CSPRNG (gen_random_uuid is pg_strong_random), as 64 hex
 * characters. pgcrypto is not available everywhere, so two v4 UUIDs are hashed.
 */
create or replace function private.random_hex64()
returns text
language sql volatile
set search_path = ''
as $$
  select encode(pg_catalog.sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')), 'hex');
$$;

-- Section - Public RPCs

/**
 * Liveness probe for the service role (GET /api/health through either transport).
 */
create or replace function public.health_check()
returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object('ok', true, 'now', now());
$$;
revoke execute on function public.health_check() from public, anon, authenticated;
grant execute on function public.health_check() to service_role;
