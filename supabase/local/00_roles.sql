-- Local-only: what Supabase's Postgres image provides and plain Postgres lacks.
-- Applied by `tollbooth migrate` only when the database is not a Supabase one
-- (no `supabase_admin` role). Never pushed to Supabase. Idempotent.

-- Section - roles (supabase/postgres init-scripts/00000000000000-initial-schema.sql)
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

-- 20230529180330_alter_api_roles_for_inherit.sql
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
grant anon, authenticated, service_role to authenticator;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

-- Section - schemas and the default privileges Supabase sets up: every new table,
-- function and sequence in public is granted to the API roles, so RLS is the only guard.
create schema if not exists extensions;
grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;

alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;

-- uuid-ossp is not shipped with the embedded server; the core function stands in.
create or replace function extensions.uuid_generate_v4() returns uuid
  language sql volatile as 'select gen_random_uuid()';
