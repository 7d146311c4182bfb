/**
 * Profiles: one per auth.users row. The user may change their name, avatar and
 * company; role, email and activity are written by triggers and the service role only.
 */

-- Section - types
create type public.user_role as enum ('user', 'premium', 'admin', 'banned');

-- Section - tables
create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  email text,
  full_name text check (char_length(full_name) <= 200),
  avatar_url text check (char_length(avatar_url) <= 2000),
  company text check (char_length(company) <= 200),
  -- `admin` is a platform admin; `banned` has no access anywhere
  role public.user_role not null default 'user',
  -- switched off by the service role to suspend an account without banning it
  is_active boolean not null default true,
  last_sign_in_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

alter table public.profiles enable row level security;
-- Column privileges: a user can change only the harmless columns of their own row.
revoke all on public.profiles from anon, authenticated;
grant select on public.profiles to authenticated;
grant update (full_name, avatar_url, company) on public.profiles to authenticated;

create index profiles_email_idx on public.profiles (lower(email));

create trigger profiles_set_updated_at before update on public.profiles
  for each row execute function private.set_updated_at();

-- Section - private helpers

/**
 * True when user `uid` may use the product at all: a profile that is not banned, is
 * active, and whose auth user is neither banned (banned_until) nor deleted. Every
 * policy, RPC and the chat proxy go through this, so a ban takes effect everywhere.
 */
create or replace function private.is_user_active(uid uuid)
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
    from public.profiles p
    join auth.users u on u.id = p.id
    where p.id = is_user_active.uid
      and p.role <> 'banned'
      and p.is_active
      and (u.banned_until is null or u.banned_until <= now())
      and u.deleted_at is null
  );
$$;
grant execute on function private.is_user_active(uuid) to authenticated, service_role;

/**
 * True when the signed-in caller is an active user (see private.is_user_active).
 */
create or replace function private.is_active_user()
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select private.is_user_active(auth.uid());
$$;
grant execute on function private.is_active_user() to authenticated, service_role;

/**
 * True when the caller is an active platform admin (profiles.role = 'admin').
 */
create or replace function private.is_platform_admin()
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select private.is_active_user() and exists (
    select 1 from public.profiles p where p.id = auth.uid() and p.role = 'admin'
  );
$$;
grant execute on function private.is_platform_admin() to authenticated, service_role;

/**
 * Raises 401/403 unless the caller is signed in and active; returns their user id.
 * Used first thing by every RPC the frontend calls.
 */
create or replace function private.require_active_user()
returns uuid
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  caller uuid := auth.uid();
begin
  if caller is null then
    raise exception 'not signed in' using errcode = 'PT401';
  end if;
  if not private.is_active_user() then
    raise exception 'this account is banned or inactive' using errcode = '42501';
  end if;
  return caller;
end;
$$;
grant execute on function private.require_active_user() to authenticated, service_role;

-- Section - policies

-- A user reads their own profile (while active).
create policy "Profiles are viewable by their owner" on public.profiles
  for select to authenticated
  using (id = (select auth.uid()) and (select private.is_active_user()));

-- Platform admins read every profile.
create policy "Profiles are viewable by platform admins" on public.profiles
  for select to authenticated
  using ((select private.is_platform_admin()));

-- A user updates their own profile; column grants limit it to name, avatar and company.
create policy "Profiles are editable by their owner" on public.profiles
  for update to authenticated
  using (id = (select auth.uid()) and (select private.is_active_user()))
  with check (id = (select auth.uid()));
