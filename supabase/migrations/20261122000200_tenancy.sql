/**
 * Tenancy: plans, profiles (one per auth.users row), organizations (tenants and billing
 * accounts), their members, invitations and projects, and the auth.users triggers that
 * keep them in step (sign-up, profile sync, deletion). Every user gets a personal
 * organization at sign-up. The user may change their own name, avatar and company;
 * role, email and activity are written by triggers and the service role only. Membership
 * changes only through the RPCs of the tenancy_membership migration, and an organization
 * always keeps an owner.
 */

-- Section - Types

create type public.user_role as enum ('user', 'premium', 'admin', 'banned');

-- Ordered: member < admin < owner, so `role >= 'admin'` means "admin or owner".
create type public.member_role as enum ('member', 'admin', 'owner');

-- Section - Tables

/**
 * Plans: what an organization pays for and how many credits a month that buys.
 * Readable by everyone (the pricing page is public); written by the service role only
 * (this migration, Stripe catalogue sync).
 */
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

comment on table public.plans is
  'Plans (free, pro, enterprise): monthly credits and features; the public pricing catalogue.';

-- The free plan must exist before the first sign-up, on every database (db push runs no seed).
insert into public.plans (id, name, monthly_credits, features, sort_order) values
  ('free', 'Free', 1000, '{"models": ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano"]}', 0),
  ('pro', 'Pro', 50000, '{}', 10),
  ('enterprise', 'Enterprise', 1000000, '{}', 20)
on conflict (id) do nothing;

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

comment on table public.profiles is
  'One profile per auth user; the user edits name, avatar and company only.';

create table public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(btrim(name)) between 1 and 100),
  slug text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$'),
  personal boolean not null default false,
  -- the user a personal organization belongs to; deleting the user deletes it
  personal_owner_id uuid unique references auth.users (id) on delete cascade,
  plan_id text not null default 'free' references public.plans (id),
  stripe_customer_id text unique,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint organizations_personal_has_owner check (personal = (personal_owner_id is not null)),
  -- personal-* slugs belong to personal organizations; a rename must not take one either
  constraint organizations_personal_slug_reserved check (personal or slug not like 'personal-%')
);
create index organizations_plan_id_idx on public.organizations (plan_id);
create index organizations_created_by_idx on public.organizations (created_by);

alter table public.organizations enable row level security;
revoke all on public.organizations from anon, authenticated;
grant select on public.organizations to authenticated;
grant update (name, slug) on public.organizations to authenticated;

comment on table public.organizations is
  'Tenants and billing accounts: every user has a personal one; teams are created by RPC.';

create table public.organization_members (
  org_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.member_role not null default 'member',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (org_id, user_id)
);
create index organization_members_user_id_idx on public.organization_members (user_id);

alter table public.organization_members enable row level security;
revoke all on public.organization_members from anon, authenticated;
grant select on public.organization_members to authenticated;

comment on table public.organization_members is
  'Who belongs to an organization and with which role (member < admin < owner).';

create table public.invitations (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  email text not null check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  role public.member_role not null default 'member' check (role <> 'owner'),
  -- sha256 of the token; the token itself is returned once by invite_member
  token_hash bytea not null unique,
  invited_by uuid references auth.users (id) on delete set null,
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz,
  accepted_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now()
);
create index invitations_org_id_idx on public.invitations (org_id);
create index invitations_invited_by_idx on public.invitations (invited_by);
create index invitations_accepted_by_idx on public.invitations (accepted_by);
-- one open invitation per address per organization
create unique index invitations_open_email_idx on public.invitations (org_id, lower(email))
  where accepted_at is null;

alter table public.invitations enable row level security;
revoke all on public.invitations from anon, authenticated;
-- never token_hash
grant select (id, org_id, email, role, invited_by, expires_at, accepted_at, accepted_by, created_at)
  on public.invitations to authenticated;
grant delete on public.invitations to authenticated;

comment on table public.invitations is
  'Email invitations to an organization; the token is stored only as its sha256.';

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (char_length(btrim(name)) between 1 and 100),
  description text check (char_length(description) <= 2000),
  archived_at timestamptz,
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (org_id, name)
);
create index projects_created_by_idx on public.projects (created_by);

alter table public.projects enable row level security;
revoke all on public.projects from anon, authenticated;
grant select, delete on public.projects to authenticated;
grant insert (org_id, name, description) on public.projects to authenticated;
grant update (name, description, archived_at) on public.projects to authenticated;

comment on table public.projects is
  'Organization-scoped projects that usage and API keys are attributed to.';

-- Section - Triggers

create trigger plans_set_updated_at before update on public.plans
  for each row execute function private.set_updated_at();

create trigger profiles_set_updated_at before update on public.profiles
  for each row execute function private.set_updated_at();

create trigger organizations_set_updated_at before update on public.organizations
  for each row execute function private.set_updated_at();

create trigger organization_members_set_updated_at before update on public.organization_members
  for each row execute function private.set_updated_at();

create trigger projects_set_updated_at before update on public.projects
  for each row execute function private.set_updated_at();

/**
 * An organization always keeps an owner: refuses a change to organization_members that
 * leaves an existing organization without one. Skipped while the organization itself
 * or the departing user is being deleted (cascades); deleting a user hands ownership
 * over first (see private.handle_deleted_user). The organization row is locked before
 * counting owners, so two owners leaving or demoting each other at once cannot both pass.
 */
create or replace function private.ensure_org_keeps_owner()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.role <> 'owner' then
    return null;
  end if;
  if tg_op = 'UPDATE' and new.role = 'owner' then
    return null;
  end if;
  perform 1 from public.organizations o where o.id = old.org_id for no key update;
  if not found then
    return null;
  end if;
  if tg_op = 'DELETE' and not exists (select 1 from auth.users u where u.id = old.user_id) then
    return null;
  end if;
  if not exists (
    select 1 from public.organization_members m where m.org_id = old.org_id and m.role = 'owner'
  ) then
    raise exception 'an organization must keep at least one owner' using errcode = 'PT409';
  end if;
  return null;
end;
$$;

create trigger organization_members_keep_owner
  after update or delete on public.organization_members
  for each row execute function private.ensure_org_keeps_owner();

/**
 * Sign-up: creates the profile, the personal organization (free plan) and its owner
 * membership for every new auth user. Fires for OAuth, magic link and password alike.
 * The metadata is user-supplied, so it is fitted to the columns rather than allowed to
 * fail the sign-up: the name is cut to 200 characters, an over-long avatar URL dropped.
 */
create or replace function private.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  display_name text := left(coalesce(
    nullif(btrim(new.raw_user_meta_data ->> 'full_name'), ''),
    nullif(btrim(new.raw_user_meta_data ->> 'name'), '')), 200);
  avatar text := coalesce(new.raw_user_meta_data ->> 'avatar_url', new.raw_user_meta_data ->> 'picture');
  new_org_id uuid;
begin
  insert into public.profiles (id, email, full_name, avatar_url, last_sign_in_at)
  values (new.id, new.email, display_name,
          case when char_length(avatar) <= 2000 then avatar end,
          new.last_sign_in_at);

  insert into public.organizations (name, slug, personal, personal_owner_id, plan_id, created_by)
  values (left(coalesce(display_name, nullif(split_part(new.email, '@', 1), ''), 'Personal'), 100),
          'personal-' || replace(new.id::text, '-', ''), true, new.id, 'free', new.id)
  returning id into new_org_id;

  insert into public.organization_members (org_id, user_id, role)
  values (new_org_id, new.id, 'owner');
  return new;
end;
$$;

create trigger on_auth_user_created
  after insert on auth.users
  for each row execute function private.handle_new_user();

/**
 * Email, last sign-in and account state changes in auth.users flow to the profile.
 */
create or replace function private.handle_updated_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.profiles p
  set email = new.email,
      last_sign_in_at = new.last_sign_in_at
  where p.id = new.id
    and (p.email is distinct from new.email or p.last_sign_in_at is distinct from new.last_sign_in_at);
  return new;
end;
$$;

create trigger on_auth_user_updated
  after update of email, last_sign_in_at on auth.users
  for each row execute function private.handle_updated_user();

/**
 * Before a user is deleted, every team organization they solely own is handed to its
 * longest-standing active admin (never a banned or inactive one). With no admin to take over, the delete fails with a clear
 * error: transfer ownership or delete the organization first. Their personal
 * organization, profile and memberships then go with them by cascade. The organizations
 * are locked before their owners are counted, as in private.ensure_org_keeps_owner, so a
 * co-owner leaving at the same moment is seen.
 */
create or replace function private.handle_deleted_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  org record;
  heir uuid;
begin
  perform 1 from public.organizations o
  join public.organization_members m on m.org_id = o.id
  where m.user_id = old.id and m.role = 'owner' and not o.personal
  order by o.id
  for no key update of o;

  for org in
    select o.id, o.name from public.organizations o
    join public.organization_members m on m.org_id = o.id
    where m.user_id = old.id and m.role = 'owner' and not o.personal
      and not exists (select 1 from public.organization_members x
                      where x.org_id = o.id and x.role = 'owner' and x.user_id <> old.id)
  loop
    select m.user_id into heir from public.organization_members m
    where m.org_id = org.id and m.role = 'admin' and private.is_user_active(m.user_id)
    order by m.created_at, m.user_id
    limit 1;
    if heir is null then
      raise exception 'user % is the only owner of organization "%" and it has no admin to take over; transfer ownership or delete the organization first', old.id, org.name
        using errcode = 'PT409';
    end if;
    update public.organization_members set role = 'owner' where org_id = org.id and user_id = heir;
  end loop;
  return old;
end;
$$;

create trigger on_auth_user_deleted
  before delete on auth.users
  for each row execute function private.handle_deleted_user();

-- Section - Private helpers

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

/**
 * The organizations the active caller belongs to with at least `min_role`.
 * Policies use it as `org_id in (select private.member_org_ids(...))`, one
 * evaluation per statement. Empty for banned or inactive users.
 */
create or replace function private.member_org_ids(min_role public.member_role default 'member')
returns setof uuid
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  if not private.is_active_user() then
    return;
  end if;
  return query
    select m.org_id from public.organization_members m
    where m.user_id = auth.uid() and m.role >= member_org_ids.min_role;
end;
$$;
grant execute on function private.member_org_ids(public.member_role) to authenticated, service_role;

/**
 * True when the active caller is a member of `org` with at least `min_role`.
 */
create or replace function private.is_member(org uuid, min_role public.member_role default 'member')
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select private.is_active_user() and exists (
    select 1 from public.organization_members m
    where m.org_id = is_member.org and m.user_id = auth.uid() and m.role >= is_member.min_role
  );
$$;
grant execute on function private.is_member(uuid, public.member_role) to authenticated, service_role;

/**
 * The role of user `uid` in `org`, or an error: 401 no user, 403 banned/inactive or
 * below `min_role`, 404 no such organization. Service-role code that acts for a
 * verified user (checkout, billing portal) calls this with the user's id.
 */
create or replace function private.require_role_of(org uuid, uid uuid, min_role public.member_role)
returns public.member_role
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  found_role public.member_role;
begin
  if uid is null then
    raise exception 'not signed in' using errcode = 'PT401';
  end if;
  if not private.is_user_active(uid) then
    raise exception 'this account is banned or inactive' using errcode = '42501';
  end if;
  if not exists (select 1 from public.organizations o where o.id = require_role_of.org) then
    raise exception 'organization % not found', org using errcode = 'PT404';
  end if;
  select m.role into found_role from public.organization_members m
  where m.org_id = require_role_of.org and m.user_id = require_role_of.uid;
  if found_role is null or found_role < min_role then
    raise exception 'this needs the % role in the organization', min_role using errcode = '42501';
  end if;
  return found_role;
end;
$$;
grant execute on function private.require_role_of(uuid, uuid, public.member_role) to service_role;

/**
 * The signed-in caller's role in `org` (see private.require_role_of).
 */
create or replace function private.require_member_role(org uuid, min_role public.member_role)
returns public.member_role
language sql stable
security definer
set search_path = ''
as $$
  select private.require_role_of(require_member_role.org, auth.uid(), require_member_role.min_role);
$$;
grant execute on function private.require_member_role(uuid, public.member_role) to authenticated, service_role;

-- Section - Policies

/**
 * Plans are public: anyone, signed in or not, may read the catalogue.
 */
create policy "Plans are viewable by everyone" on public.plans
  for select to anon, authenticated
  using (true);

/**
 * A user reads their own profile (while active).
 */
create policy "Profiles are viewable by their owner" on public.profiles
  for select to authenticated
  using (id = (select auth.uid()) and (select private.is_active_user()));

/**
 * Platform admins read every profile.
 */
create policy "Profiles are viewable by platform admins" on public.profiles
  for select to authenticated
  using ((select private.is_platform_admin()));

/**
 * A user updates their own profile; column grants limit it to name, avatar and company.
 */
create policy "Profiles are editable by their owner" on public.profiles
  for update to authenticated
  using (id = (select auth.uid()) and (select private.is_active_user()))
  with check (id = (select auth.uid()));

/**
 * Members see the organizations they belong to.
 */
create policy "Organizations are viewable by members" on public.organizations
  for select to authenticated
  using (id in (select private.member_org_ids('member')));

/**
 * Admins and owners rename an organization (column grants: name and slug only).
 */
create policy "Organizations are editable by admins" on public.organizations
  for update to authenticated
  using (id in (select private.member_org_ids('admin')))
  with check (id in (select private.member_org_ids('admin')));

/**
 * Members see who else is in their organizations.
 */
create policy "Memberships are viewable by members of the organization" on public.organization_members
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Admins and owners see the organization's invitations (never the token hash).
 */
create policy "Invitations are viewable by organization admins" on public.invitations
  for select to authenticated
  using (org_id in (select private.member_org_ids('admin')));

/**
 * Admins and owners withdraw invitations.
 */
create policy "Invitations are deletable by organization admins" on public.invitations
  for delete to authenticated
  using (org_id in (select private.member_org_ids('admin')));

/**
 * Members see their organizations' projects.
 */
create policy "Projects are viewable by members" on public.projects
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

/**
 * Admins and owners create projects.
 */
create policy "Projects are creatable by organization admins" on public.projects
  for insert to authenticated
  with check (org_id in (select private.member_org_ids('admin')));

/**
 * Admins and owners edit projects.
 */
create policy "Projects are editable by organization admins" on public.projects
  for update to authenticated
  using (org_id in (select private.member_org_ids('admin')))
  with check (org_id in (select private.member_org_ids('admin')));

/**
 * Admins and owners delete projects.
 */
create policy "Projects are deletable by organization admins" on public.projects
  for delete to authenticated
  using (org_id in (select private.member_org_ids('admin')));
