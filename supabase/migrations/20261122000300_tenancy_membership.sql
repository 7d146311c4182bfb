/**
 * The RPCs a frontend calls through PostgREST to manage organizations and their
 * members. Each one runs with its owner's rights, checks the caller's role first, and raises
 * SQLSTATEs PostgREST maps to HTTP: 42501 -> 403, PTxxx -> xxx.
 */

-- Section - Public RPCs

/**
 * Any active user creates a team organization and becomes its owner.
 * Bad name or slug: 400. Slug taken: 409.
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
 * Admins and owners invite an address; only owners may invite admins. Returns the
 * token once (only its sha256 is stored). A new invitation to the same address
 * replaces the open one. Personal organizations take no members.
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
  if invite_member.role = 'admin' and caller_role <> 'owner' then
    raise exception 'only owners may invite admins' using errcode = '42501';
  end if;
  if exists (
    select 1 from public.organization_members m join public.profiles p on p.id = m.user_id
    where m.org_id = invite_member.org_id and lower(p.email) = address
  ) then
    raise exception '% is already a member', address using errcode = 'PT409';
  end if;

  delete from public.invitations i
  where i.org_id = invite_member.org_id and lower(i.email) = address and i.accepted_at is null;

  return query
    insert into public.invitations (org_id, email, role, token_hash, invited_by)
    values (invite_member.org_id, address, invite_member.role,
            pg_catalog.sha256(convert_to(new_token, 'UTF8')), auth.uid())
    returning id, new_token, invitations.expires_at;
end;
$$;
grant execute on function public.invite_member(uuid, text, public.member_role) to authenticated, service_role;

/**
 * The invited user (signed in with the invited address) joins with the invited role.
 * Unknown token: 404. Already used: 409. Expired: 410. Another address: 403.
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
 * Admins and owners change a member's role. Only owners touch owners or make owners;
 * nobody raises their own role; the last owner cannot be demoted.
 */
create or replace function public.update_member_role(org_id uuid, user_id uuid, role public.member_role)
returns public.organization_members
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(update_member_role.org_id, 'admin');
  target_role public.member_role;
  result public.organization_members;
begin
  if update_member_role.role is null then
    raise exception 'role is required' using errcode = 'PT400';
  end if;
  select m.role into target_role from public.organization_members m
  where m.org_id = update_member_role.org_id and m.user_id = update_member_role.user_id
  for update;
  if target_role is null then
    raise exception 'user is not a member of this organization' using errcode = 'PT404';
  end if;
  if update_member_role.user_id = auth.uid() and update_member_role.role > caller_role then
    raise exception 'you cannot raise your own role' using errcode = '42501';
  end if;
  if (target_role = 'owner' or update_member_role.role = 'owner') and caller_role <> 'owner' then
    raise exception 'only owners may change an owner or make one' using errcode = '42501';
  end if;

  update public.organization_members m set role = update_member_role.role
  where m.org_id = update_member_role.org_id and m.user_id = update_member_role.user_id
  returning * into result;
  return result;
end;
$$;
grant execute on function public.update_member_role(uuid, uuid, public.member_role) to authenticated, service_role;

/**
 * Admins and owners remove a member; admins cannot remove owners; the last owner
 * stays (the keep-owner trigger answers 409).
 */
create or replace function public.remove_member(org_id uuid, user_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(remove_member.org_id, 'admin');
  target_role public.member_role;
begin
  select m.role into target_role from public.organization_members m
  where m.org_id = remove_member.org_id and m.user_id = remove_member.user_id
  for update;
  if target_role is null then
    raise exception 'user is not a member of this organization' using errcode = 'PT404';
  end if;
  if (select o.personal from public.organizations o where o.id = remove_member.org_id) then
    raise exception 'the owner of a personal organization cannot be removed' using errcode = 'PT400';
  end if;
  if target_role = 'owner' and caller_role <> 'owner' then
    raise exception 'only owners may remove an owner' using errcode = '42501';
  end if;
  delete from public.organization_members m
  where m.org_id = remove_member.org_id and m.user_id = remove_member.user_id;
end;
$$;
grant execute on function public.remove_member(uuid, uuid) to authenticated, service_role;

/**
 * Any member leaves a team organization; not their personal one, and not as its last owner.
 */
create or replace function public.leave_organization(org_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(leave_organization.org_id, 'member');
begin
  if (select o.personal from public.organizations o where o.id = leave_organization.org_id) then
    raise exception 'a personal organization cannot be left' using errcode = 'PT400';
  end if;
  delete from public.organization_members m
  where m.org_id = leave_organization.org_id and m.user_id = auth.uid();
end;
$$;
grant execute on function public.leave_organization(uuid) to authenticated, service_role;

/**
 * Owners delete a team organization and everything in it (a personal organization goes
 * only with its user). This is how a lone owner without an admin clears the way to
 * deleting their account.
 */
create or replace function public.delete_organization(org_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(delete_organization.org_id, 'owner');
begin
  if (select o.personal from public.organizations o where o.id = delete_organization.org_id) then
    raise exception 'a personal organization is deleted only with its user' using errcode = 'PT400';
  end if;
  delete from public.organizations o where o.id = delete_organization.org_id;
end;
$$;
grant execute on function public.delete_organization(uuid) to authenticated, service_role;
