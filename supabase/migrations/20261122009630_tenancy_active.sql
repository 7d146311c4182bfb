/**
 * Tenancy, part 3: who is active, as a view a query can join (issue 8).
 *
 * private.is_user_active runs with its owner's rights, so Postgres cannot inline it:
 * a query that asks it for every owner of an organization runs one function call, with
 * its own executor, per owner. The rule now lives in the view private.active_users,
 * which any query joins like a table (the planner expands it); is_user_active answers
 * from the same view, so the rule is still written once.
 */

-- Section - Tables

/**
 * The users who may use the product at all: a profile that is not banned, is active,
 * and whose auth user is neither banned (banned_until) nor deleted. Only functions
 * running with their owner's rights read it: no API role has a privilege on it.
 */
create or replace view private.active_users as
  select p.id
  from public.profiles p
  join auth.users u on u.id = p.id
  where p.role <> 'banned'
    and p.is_active
    and (u.banned_until is null or u.banned_until <= now())
    and u.deleted_at is null;
revoke all on private.active_users from public, anon, authenticated;

-- Section - Private helpers

/**
 * True when user `uid` may use the product at all (a row of private.active_users).
 * Every policy, RPC and the chat proxy go through this or the view, so a ban takes
 * effect everywhere.
 */
create or replace function private.is_user_active(uid uuid)
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (select 1 from private.active_users a where a.id = is_user_active.uid);
$$;
grant execute on function private.is_user_active(uuid) to authenticated, service_role;
