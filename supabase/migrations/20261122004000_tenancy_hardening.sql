/**
 * Tenancy hardening (issue 11). Forward-only changes to the tenancy and credits rules:
 *
 * - The free plan's monthly allowance belongs to a person, once a calendar month: only a
 *   personal organization receives it, and only the first personal organization of a
 *   normalized email address in that month (remembered by the address's sha256 in
 *   private.free_allowance_claims, which outlives the account). A team organization on
 *   the free plan has no plan allowance; paid plans grant theirs as before.
 * - anon and authenticated hold no privilege on sequences, now or for future ones.
 * - An invitation is re-checked at acceptance (its inviter still active and still
 *   allowed to invite to that role) and becomes void (voided_at) when its inviter is
 *   demoted, removed or shut out.
 * - Limits (private.app_settings, with defaults): team organizations owned per person,
 *   open invitations per organization, projects per organization (active keys per
 *   organization: the keys_bans migration). Exceeding one raises PT429 naming it.
 * - invite_member answers an existing member's address as any other address.
 * - organizations.stripe_customer_id is readable by admins only (RPC).
 * - URL columns hold https: URLs (http: for localhost) only.
 * - profiles has one SELECT policy.
 */

-- Section - Types

-- An absolute https: URL, or http: on localhost / 127.0.0.1 / [::1]; never javascript:, data: etc.
create domain public.https_url as text
  check (value ~* '^(https://[^\s/?#@]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?)([/?#]\S*)?$');

-- Section - Tables

/**
 * Who received the free plan's monthly allowance: one row per normalized email address
 * (sha256, never the address) and calendar month, naming the personal organization
 * that got it. Not tied to the user, so deleting and re-creating an account with the
 * same address in the same month does not grant it twice.
 */
create table private.free_allowance_claims (
  email_hash bytea not null,
  period_month date not null,
  org_id uuid not null,
  claimed_at timestamptz not null default now(),
  primary key (email_hash, period_month)
);
alter table private.free_allowance_claims enable row level security;
comment on table private.free_allowance_claims is
  'The free monthly allowance, once per person (sha256 of the normalized email) and calendar month.';

insert into private.app_settings (key, value) values
  ('max_team_orgs_owned_per_user', '10'),
  ('max_open_invitations_per_org', '50'),
  ('max_active_keys_per_org', '50'),
  ('max_projects_per_org', '100')
on conflict (key) do nothing;

-- Sequences: nothing in our schema needs anon or authenticated to read or move one
-- (identity columns are filled by the table's owner rights on insert).
revoke all on all sequences in schema public from anon, authenticated;
alter default privileges for role postgres in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;
-- Tables too: every table grants what it needs explicitly, right under its definition.
alter default privileges for role postgres in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on tables from anon, authenticated;

-- An invitation whose inviter lost the right to send it is void (kept, to say why at acceptance).
alter table public.invitations add column voided_at timestamptz;
grant select (voided_at) on public.invitations to authenticated;

-- Members read every column of their organizations but the Stripe customer id.
revoke select on public.organizations from authenticated;
grant select (id, name, slug, personal, personal_owner_id, plan_id, created_by, created_at, updated_at,
              billing_status)
  on public.organizations to authenticated;

-- URL columns: https only. Unsafe URLs already stored are dropped, not kept.
update public.profiles set avatar_url = null
where avatar_url is not null and avatar_url !~* '^(https://[^\s/?#@]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?)([/?#]\S*)?$';
alter table public.profiles alter column avatar_url type public.https_url;
update public.payments set hosted_invoice_url = null
where hosted_invoice_url is not null and hosted_invoice_url !~* '^(https://[^\s/?#@]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?)([/?#]\S*)?$';
alter table public.payments alter column hosted_invoice_url type public.https_url;

-- Section - Triggers

/**
 * Sign-up (replaces the tenancy migration's): as before, but an avatar URL that is not
 * https (see public.https_url) or is over-long is dropped rather than failing sign-up.
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
  safe_avatar public.https_url;
  new_org_id uuid;
begin
  if char_length(avatar) <= 2000 then
    begin
      safe_avatar := avatar::public.https_url;
    exception when check_violation then
      safe_avatar := null;
    end;
  end if;

  insert into public.profiles (id, email, full_name, avatar_url, last_sign_in_at)
  values (new.id, new.email, display_name, safe_avatar, new.last_sign_in_at);

  insert into public.organizations (name, slug, personal, personal_owner_id, plan_id, created_by)
  values (left(coalesce(display_name, nullif(split_part(new.email, '@', 1), ''), 'Personal'), 100),
          'personal-' || replace(new.id::text, '-', ''), true, new.id, 'free', new.id)
  returning id into new_org_id;

  insert into public.organization_members (org_id, user_id, role)
  values (new_org_id, new.id, 'owner');
  return new;
end;
$$;

/**
 * Invitations never outlive their inviter's rights: when a member is demoted or
 * removed, the open invitations they sent that their role no longer allows (admin
 * invitations need an owner, member invitations an admin) become void (voided_at).
 */
create or replace function private.void_invitations_of_member()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.invitations i set voided_at = now()
  where i.org_id = old.org_id and i.invited_by = old.user_id and i.accepted_at is null and i.voided_at is null
    and (tg_op = 'DELETE' or new.role < private.role_to_invite(i.role));
  return null;
end;
$$;

create trigger organization_members_void_invitations
  after update of role or delete on public.organization_members
  for each row execute function private.void_invitations_of_member();

/**
 * A banned or deactivated user's open invitations become void (a ban through
 * auth.users.banned_until is caught at acceptance instead, see accept_invitation).
 */
create or replace function private.void_invitations_of_banned()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.role = 'banned' or not new.is_active then
    update public.invitations i set voided_at = now()
    where i.invited_by = new.id and i.accepted_at is null and i.voided_at is null;
  end if;
  return null;
end;
$$;

create trigger profiles_void_invitations
  after update of role, is_active on public.profiles
  for each row execute function private.void_invitations_of_banned();

/**
 * Projects per organization are limited (max_projects_per_org): members insert
 * projects through PostgREST, so the limit is a trigger. The organization row is
 * locked first, so two inserts at once cannot both take the last place.
 */
create or replace function private.enforce_project_limit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1 from public.organizations o where o.id = new.org_id for no key update;
  perform private.check_limit('max_projects_per_org', 100,
    (select count(*) from public.projects p where p.org_id = new.org_id),
    'an organization may have at most % projects');
  return new;
end;
$$;

create trigger projects_enforce_limit
  before insert on public.projects
  for each row execute function private.enforce_project_limit();

-- Section - Private helpers

/**
 * The least role that may invite to `invited`: owners invite admins, admins invite members.
 */
create or replace function private.role_to_invite(invited public.member_role)
returns public.member_role
language sql immutable
set search_path = ''
as $$
  select case when invited >= 'admin' then 'owner' else 'admin' end::public.member_role;
$$;

/**
 * The limit named `name` in private.app_settings (else `fallback`); raises PT429 naming
 * it when `used` has reached it. `message` has one %, the limit.
 */
create or replace function private.check_limit(name text, fallback integer, used bigint, message text)
returns void
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  cap integer := coalesce(private.setting(check_limit.name)::integer, fallback);
begin
  if used >= cap then
    raise exception 'limit % reached: %', name, replace(message, '%', cap::text)
      using errcode = 'PT429', hint = 'the limit is set in private.app_settings';
  end if;
end;
$$;

/**
 * An email address as one person: lowercased and trimmed, without a +tag, and for
 * Gmail without dots (Gmail ignores both). Used only to key the free allowance.
 */
create or replace function private.normalize_email(address text)
returns text
language sql immutable
set search_path = ''
as $$
  with parts as (
    select split_part(lower(btrim(address)), '@', 1) as local,
           split_part(lower(btrim(address)), '@', 2) as domain
  )
  select case when domain in ('gmail.com', 'googlemail.com')
              then replace(split_part(local, '+', 1), '.', '') || '@gmail.com'
              else split_part(local, '+', 1) || '@' || domain end
  from parts;
$$;

/**
 * Who the free allowance of organization `org` belongs to: the sha256 of its personal
 * owner's normalized email (of the user id when there is no email); null for a team
 * organization, which has no free allowance.
 */
create or replace function private.free_allowance_owner(org uuid)
returns bytea
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.sha256(convert_to(
           coalesce('email:' || private.normalize_email(nullif(btrim(u.email), '')), 'user:' || u.id::text), 'UTF8'))
  from public.organizations o join auth.users u on u.id = o.personal_owner_id
  where o.id = free_allowance_owner.org and o.personal;
$$;

/**
 * Starts a plan allowance period (replaces the credits migration's): what is left of
 * the previous plan grant expires and the plan's monthly credits are granted until
 * `period_end`, idempotent per period. The free plan's credits go only to a personal
 * organization whose person has not received them in this calendar month for another
 * organization (private.free_allowance_claims): a team organization on the free plan,
 * or a re-created account, gets a period with no allowance.
 */
create or replace function private.start_plan_period(
  org uuid, plan text, period_start timestamptz, period_end timestamptz, reason text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  allowance bigint;
  old_grant bigint;
  new_grant bigint;
  person bytea;
  month date := (date_trunc('month', period_start at time zone 'utc'))::date;
  claimed_for uuid;
  ext text := 'plan:' || org || ':' || plan || ':' || extract(epoch from period_start)::bigint;
begin
  select p.monthly_credits into allowance from public.plans p where p.id = start_plan_period.plan;
  if allowance is null then
    raise exception 'unknown plan %', plan using errcode = 'PT400';
  end if;
  perform private.lock_account(org);
  select g.id into new_grant from public.credit_grants g where g.external_id = ext;
  if new_grant is not null then
    -- this plan's allowance for this period was granted already (maybe the org switched
    -- away and back): no second allowance, but no other plan's credits stay live either
    for old_grant in
      select g.id from public.credit_grants g
      where g.org_id = org and g.kind = 'plan' and g.expired_at is null and g.id <> new_grant
    loop
      perform private.expire_grant(old_grant, coalesce(reason, 'plan changed'));
    end loop;
    return new_grant;
  end if;
  if plan = 'free' and allowance > 0 then
    person := private.free_allowance_owner(org);
    if person is null then
      allowance := 0;
    else
      insert into private.free_allowance_claims (email_hash, period_month, org_id)
      values (person, month, org)
      on conflict (email_hash, period_month) do nothing;
      select c.org_id into claimed_for from private.free_allowance_claims c
      where c.email_hash = person and c.period_month = month;
      if claimed_for <> org then
        allowance := 0;
      end if;
    end if;
  end if;
  for old_grant in
    select g.id from public.credit_grants g
    where g.org_id = org and g.kind = 'plan' and g.expired_at is null
  loop
    perform private.expire_grant(old_grant, coalesce(reason, 'plan period ended'));
  end loop;
  if allowance > 0 then
    new_grant := private.grant_credits(org, 'plan', allowance, period_end, ext,
                                       coalesce(reason, plan || ' plan allowance'));
  end if;
  update public.credit_accounts a
  set period_start = start_plan_period.period_start, period_end = start_plan_period.period_end
  where a.org_id = org;
  return new_grant;
end;
$$;

-- Existing data: the personal organizations that hold this month's free allowance claim
-- it; what is left of a free allowance granted to a team organization expires.
insert into private.free_allowance_claims (email_hash, period_month, org_id)
select distinct on (private.free_allowance_owner(g.org_id), (date_trunc('month', a.period_start at time zone 'utc'))::date)
       private.free_allowance_owner(g.org_id), (date_trunc('month', a.period_start at time zone 'utc'))::date, g.org_id
from public.credit_grants g
join public.credit_accounts a on a.org_id = g.org_id
join public.organizations o on o.id = g.org_id
where o.personal and g.kind = 'plan' and g.external_id like 'plan:%:free:%' and a.period_start is not null
order by 1, 2, g.id
on conflict do nothing;

select private.expire_grant(g.id, 'the free allowance belongs to personal organizations')
from public.credit_grants g join public.organizations o on o.id = g.org_id
where not o.personal and g.kind = 'plan' and g.expired_at is null and g.remaining > 0
  and g.external_id like 'plan:%:free:%';

-- Section - Policies

drop policy "Profiles are viewable by their owner" on public.profiles;
drop policy "Profiles are viewable by platform admins" on public.profiles;

/**
 * A user reads their own profile (while active); platform admins read every profile.
 * One policy, so Postgres evaluates one expression per row.
 */
create policy "Profiles are viewable by their owner and platform admins" on public.profiles
  for select to authenticated
  using ((id = (select auth.uid()) and (select private.is_active_user()))
         or (select private.is_platform_admin()));

-- Section - Public RPCs

/**
 * Any active user creates a team organization and becomes its owner (replaces the
 * membership migration's). Bad name or slug: 400. Slug taken: 409. Owning
 * max_team_orgs_owned_per_user team organizations already: 429. The new organization
 * is on the free plan with no plan allowance (the free allowance is personal).
 */
create or replace function public.create_organization(name text, slug text)
returns public.organizations
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := private.require_active_user();
  org public.organizations;
begin
  if create_organization.name is null or char_length(btrim(create_organization.name)) not between 1 and 100 then
    raise exception 'name must be 1 to 100 characters' using errcode = 'PT400';
  end if;
  if create_organization.slug is null
     or create_organization.slug !~ '^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$'
     or create_organization.slug like 'personal-%' then
    raise exception 'slug must be 1 to 48 lowercase letters, digits or dashes, not starting or ending with a dash, and not personal-*'
      using errcode = 'PT400';
  end if;
  -- one creation at a time per person, so the count below cannot be raced
  perform pg_advisory_xact_lock(hashtextextended('tollbooth:create_organization:' || caller::text, 0));
  perform private.check_limit('max_team_orgs_owned_per_user', 10,
    (select count(*) from public.organization_members m join public.organizations o on o.id = m.org_id
     where m.user_id = caller and m.role = 'owner' and not o.personal),
    'a person may own at most % team organizations');
  if exists (select 1 from public.organizations o where o.slug = create_organization.slug) then
    raise exception 'slug "%" is taken', create_organization.slug using errcode = 'PT409';
  end if;

  insert into public.organizations (name, slug, personal, plan_id, created_by)
  values (btrim(create_organization.name), create_organization.slug, false, 'free', caller)
  returning * into org;
  insert into public.organization_members (org_id, user_id, role) values (org.id, caller, 'owner');
  return org;
end;
$$;
grant execute on function public.create_organization(text, text) to authenticated, service_role;

/**
 * Admins and owners invite an address; only owners may invite admins (replaces the
 * membership migration's). Returns the token once (only its sha256 is stored). A new
 * invitation to the same address replaces the open one. Personal organizations take no
 * members. An address that already belongs to a member is answered like any other (no
 * membership oracle); that invitation fails at acceptance. At most
 * max_open_invitations_per_org open invitations: 429.
 */
create or replace function public.invite_member(
  org_id uuid, email text, role public.member_role default 'member'
)
returns table (invitation_id uuid, token text, expires_at timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(invite_member.org_id, 'admin');
  new_token text := private.random_hex64();
  address text := lower(btrim(invite_member.email));
begin
  if (select o.personal from public.organizations o where o.id = invite_member.org_id) then
    raise exception 'a personal organization cannot have other members' using errcode = 'PT400';
  end if;
  if address is null or address !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    raise exception 'email is not a valid address' using errcode = 'PT400';
  end if;
  if invite_member.role is null or invite_member.role = 'owner' then
    raise exception 'invitations are for the member or admin role; promote an owner after they join'
      using errcode = 'PT400';
  end if;
  if caller_role < private.role_to_invite(invite_member.role) then
    raise exception 'only owners may invite admins' using errcode = '42501';
  end if;

  perform 1 from public.organizations o where o.id = invite_member.org_id for no key update;
  delete from public.invitations i
  where i.org_id = invite_member.org_id and lower(i.email) = address and i.accepted_at is null;
  perform private.check_limit('max_open_invitations_per_org', 50,
    (select count(*) from public.invitations i
     where i.org_id = invite_member.org_id and i.accepted_at is null and i.voided_at is null
       and i.expires_at > now()),
    'an organization may have at most % open invitations');

  return query
    insert into public.invitations (org_id, email, role, token_hash, invited_by)
    values (invite_member.org_id, address, invite_member.role,
            pg_catalog.sha256(convert_to(new_token, 'UTF8')), auth.uid())
    returning id, new_token, invitations.expires_at;
end;
$$;
grant execute on function public.invite_member(uuid, text, public.member_role) to authenticated, service_role;

/**
 * The invited user (signed in with the invited address) joins with the invited role
 * (replaces the membership migration's). Unknown token: 404. Already used: 409.
 * Expired: 410. Another address: 403. Void (410): the inviter is gone, banned or
 * inactive, or no longer has the role to invite to that role (owner for admin, admin
 * for member); such an invitation never becomes valid again by itself.
 */
create or replace function public.accept_invitation(token text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := private.require_active_user();
  inv public.invitations;
  caller_email text;
  inviter_role public.member_role;
begin
  select * into inv from public.invitations i
  where i.token_hash = pg_catalog.sha256(convert_to(coalesce(accept_invitation.token, ''), 'UTF8'))
  for update;
  if inv.id is null then
    raise exception 'invitation not found' using errcode = 'PT404';
  end if;
  if inv.accepted_at is not null then
    raise exception 'invitation has already been used' using errcode = 'PT409';
  end if;
  if inv.expires_at <= now() then
    raise exception 'invitation expired at %', inv.expires_at using errcode = 'PT410';
  end if;
  select lower(p.email) into caller_email from public.profiles p where p.id = caller;
  if caller_email is distinct from lower(inv.email) then
    raise exception 'this invitation was sent to another address' using errcode = '42501';
  end if;
  if inv.voided_at is not null then
    raise exception 'invitation is void: the person who sent it may no longer invite to the % role', inv.role
      using errcode = 'PT410', hint = 'ask an admin or owner of the organization for a new invitation';
  end if;
  select m.role into inviter_role from public.organization_members m
  where m.org_id = inv.org_id and m.user_id = inv.invited_by
  for share;
  if inviter_role is null or inviter_role < private.role_to_invite(inv.role)
     or not private.is_user_active(inv.invited_by) then
    raise exception 'invitation is void: the person who sent it may no longer invite to the % role', inv.role
      using errcode = 'PT410', hint = 'ask an admin or owner of the organization for a new invitation';
  end if;
  if exists (select 1 from public.organization_members m where m.org_id = inv.org_id and m.user_id = caller) then
    raise exception 'already a member of this organization' using errcode = 'PT409';
  end if;

  insert into public.organization_members (org_id, user_id, role) values (inv.org_id, caller, inv.role);
  update public.invitations set accepted_at = now(), accepted_by = caller where id = inv.id;
  return inv.org_id;
end;
$$;
grant execute on function public.accept_invitation(text) to authenticated, service_role;

/**
 * Admins and owners read their organization's Stripe customer id (members read every
 * other column of the organization directly; this one is not granted to them).
 */
create or replace function public.organization_stripe_customer_id(org_id uuid)
returns text
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(organization_stripe_customer_id.org_id, 'admin');
begin
  return (select o.stripe_customer_id from public.organizations o where o.id = organization_stripe_customer_id.org_id);
end;
$$;
revoke execute on function public.organization_stripe_customer_id(uuid) from public, anon, authenticated;
grant execute on function public.organization_stripe_customer_id(uuid) to authenticated, service_role;
