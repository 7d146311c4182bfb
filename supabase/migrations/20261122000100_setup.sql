/**
 * Setup shared by every capability: the private schema for policy helpers and
 * internal functions, and the rule that no function is executable by the API roles
 * unless a migration grants it right below its definition.
 */

-- Section - private schema (not exposed through PostgREST)
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

-- Section - functions are private by default; each RPC is granted explicitly
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;

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
