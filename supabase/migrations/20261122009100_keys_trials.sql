/**
 * API keys as a product, part 2: trials (issue 12).
 *
 * `start_trial(name, slug, tier)` creates a trial workspace: a team organization on the
 * free plan owned by the caller, a `trials` row and a trial credit grant that expires
 * with the trial (length and credits per tier in private.app_settings:
 * trial_<tier>_days, trial_<tier>_credits). One active trial per person, and, so that
 * trials cannot farm free credits, at most `max_trials_per_person` trials ever per
 * person (the sha256 of the normalized email, like the free allowance; it outlives the
 * account). A trial ends:
 * - expired: at the first API call after expires_at (401 trial_expired; the proxy then
 *   calls public.expire_trials) or when the lifecycle job calls public.expire_trials;
 * - cancelled: cancel_trial by its owner;
 * either way what is left of its trial credits expires (ledger rows) and its keys stop
 * working (401 trial_expired); private.org_gate refuses them in begin_chat_request.
 * - converted: its organization's billing becomes active (an active Stripe
 *   subscription, through the billing migration's refresh); its keys keep working.
 */

-- Section - Tables

create table public.trials (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null unique references public.organizations (id) on delete cascade,
  owner_id uuid references auth.users (id) on delete set null,
  name text not null check (char_length(btrim(name)) between 1 and 100),
  slug text not null,
  tier text not null check (tier in ('standard', 'enterprise')),
  status text not null default 'active' check (status in ('active', 'expired', 'converted', 'cancelled')),
  credits bigint not null check (credits >= 0),
  expires_at timestamptz not null,
  converted_at timestamptz,
  cancelled_at timestamptz,
  expired_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index trials_owner_id_idx on public.trials (owner_id);
-- one active trial per person
create unique index trials_one_active_per_owner_idx on public.trials (owner_id) where status = 'active';
create index trials_active_expires_idx on public.trials (expires_at) where status = 'active';

alter table public.trials enable row level security;
revoke all on public.trials from anon, authenticated;
grant select on public.trials to authenticated;

comment on table public.trials is
  'Trial workspaces: one organization each, its tier, status and end; read by its owner and the org''s members.';

/**
 * Who started a trial: one row per trial, keyed by the sha256 of the person's normalized
 * email (never the address), kept when the account is deleted, so that deleting and
 * re-creating an account does not start more trials.
 */
create table private.trial_claims (
  trial_id uuid primary key,
  person_hash bytea not null,
  claimed_at timestamptz not null default now()
);
create index trial_claims_person_hash_idx on private.trial_claims (person_hash);
alter table private.trial_claims enable row level security;
comment on table private.trial_claims is 'Trials started per person (sha256 of the normalized email), to cap them.';

insert into private.app_settings (key, value) values
  ('trial_standard_days', '14'),
  ('trial_standard_credits', '5000'),
  ('trial_enterprise_days', '30'),
  ('trial_enterprise_credits', '50000'),
  ('max_trials_per_person', '1')
on conflict (key) do nothing;

-- Section - Triggers

create trigger trials_set_updated_at before update on public.trials
  for each row execute function private.set_updated_at();

/**
 * Trigger: an organization's billing became active (an active Stripe subscription): its
 * trial, active or already expired, is converted and its keys keep working.
 */
create or replace function private.convert_trial()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.billing_status = 'active' and old.billing_status is distinct from 'active' then
    update public.trials t set status = 'converted', converted_at = now()
    where t.org_id = new.id and t.status in ('active', 'expired');
  end if;
  return null;
end;
$$;

create trigger organizations_convert_trial after update of billing_status, plan_id on public.organizations
  for each row execute function private.convert_trial();

-- Section - Private helpers

/**
 * The organization's gate for API calls (replaces the chat_keycontrols migration's):
 * a trial that is cancelled, expired, or active past its end answers 401 trial_expired.
 */
create or replace function private.org_gate(org uuid)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  t public.trials;
begin
  select * into t from public.trials x where x.org_id = org_gate.org;
  if t.id is null or t.status = 'converted' or (t.status = 'active' and t.expires_at > now()) then
    return;
  end if;
  raise exception 'the trial of this workspace %', case when t.status = 'cancelled' then 'was cancelled'
                                                         else 'has ended' end
    using errcode = 'PT401', detail = '{"type": "trial_expired"}';
end;
$$;

/**
 * Ends one trial (`status` 'expired' or 'cancelled') if it is still active: what is left
 * of its trial credits expires (ledger rows). Returns whether it ended it.
 */
create or replace function private.end_trial(trial_id uuid, status text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  t public.trials;
  gid bigint;
begin
  select * into t from public.trials x where x.id = end_trial.trial_id;
  if t.id is null then
    return false;
  end if;
  perform private.lock_account(t.org_id);  -- the account first, as every credit writer
  select * into t from public.trials x where x.id = end_trial.trial_id for update;
  if t.status <> 'active' then
    return false;
  end if;
  update public.trials x
  set status = end_trial.status,
      expired_at = case when end_trial.status = 'expired' then now() end,
      cancelled_at = case when end_trial.status = 'cancelled' then now() end
  where x.id = t.id;
  for gid in
    select g.id from public.credit_grants g
    where g.org_id = t.org_id and g.kind = 'trial' and g.expired_at is null
  loop
    perform private.expire_grant(gid, 'trial ' || end_trial.status);
  end loop;
  return true;
end;
$$;

-- Section - Policies

/**
 * The trial's owner and the members of its organization read it.
 */
create policy "Trials are viewable by their owner and members" on public.trials
  for select to authenticated
  using (owner_id = (select auth.uid()) or org_id in (select private.member_org_ids('member')));

-- Section - Public RPCs

/**
 * Any active user starts a trial workspace: a new team organization (name, slug as
 * create_organization) they own, on the free plan, with the tier's trial credits until
 * the tier's end. 400 bad input, 409 slug taken or an active trial already, 429 past
 * max_trials_per_person or max_team_orgs_owned_per_user.
 */
create or replace function public.start_trial(name text, slug text, tier text default 'standard')
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := private.require_active_user();
  person bytea;
  days integer;
  credits bigint;
  org public.organizations;
  t public.trials;
begin
  if start_trial.tier is null or start_trial.tier not in ('standard', 'enterprise') then
    raise exception 'tier must be standard or enterprise' using errcode = 'PT400';
  end if;
  if start_trial.name is null or char_length(btrim(start_trial.name)) not between 1 and 100 then
    raise exception 'name must be 1 to 100 characters' using errcode = 'PT400';
  end if;
  if start_trial.slug is null or start_trial.slug !~ '^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$'
     or start_trial.slug like 'personal-%' then
    raise exception 'slug must be 1 to 48 lowercase letters, digits or dashes, not starting or ending with a dash, and not personal-*'
      using errcode = 'PT400';
  end if;
  days := coalesce(private.setting('trial_' || start_trial.tier || '_days')::integer, 14);
  credits := coalesce(private.setting('trial_' || start_trial.tier || '_credits')::bigint, 0);
  select pg_catalog.sha256(convert_to(
           coalesce('email:' || private.normalize_email(nullif(btrim(u.email), '')), 'user:' || u.id::text), 'UTF8'))
    into person from auth.users u where u.id = caller;

  -- one start at a time per person, so the checks below cannot be raced
  perform pg_advisory_xact_lock(hashtextextended('tollbooth:start_trial:' || encode(person, 'hex'), 0));
  if exists (select 1 from public.trials x where x.owner_id = caller and x.status = 'active') then
    raise exception 'you already have an active trial' using errcode = 'PT409';
  end if;
  perform private.check_limit('max_trials_per_person', 1,
    (select count(*) from private.trial_claims c where c.person_hash = person),
    'a person may start at most % trials');
  perform private.check_limit('max_team_orgs_owned_per_user', 10,
    (select count(*) from public.organization_members m join public.organizations o on o.id = m.org_id
     where m.user_id = caller and m.role = 'owner' and not o.personal),
    'a person may own at most % team organizations');
  if exists (select 1 from public.organizations o where o.slug = start_trial.slug) then
    raise exception 'slug "%" is taken', start_trial.slug using errcode = 'PT409';
  end if;

  insert into public.organizations (name, slug, personal, plan_id, created_by)
  values (btrim(start_trial.name), start_trial.slug, false, 'free', caller)
  returning * into org;
  insert into public.organization_members (org_id, user_id, role) values (org.id, caller, 'owner');
  insert into public.trials (org_id, owner_id, name, slug, tier, credits, expires_at)
  values (org.id, caller, btrim(start_trial.name), start_trial.slug, start_trial.tier, credits,
          now() + make_interval(days => days))
  returning * into t;
  insert into private.trial_claims (trial_id, person_hash) values (t.id, person);
  if credits > 0 then
    perform private.grant_credits(org.id, 'trial', credits, t.expires_at, 'trial:' || t.id::text,
                                  start_trial.tier || ' trial');
  end if;
  return to_jsonb(t);
end;
$$;
revoke execute on function public.start_trial(text, text, text) from public, anon;
grant execute on function public.start_trial(text, text, text) to authenticated, service_role;

/**
 * The trial's owner (or an owner of its organization) cancels an active trial: its
 * keys stop working and what is left of its trial credits expires. 404 unknown (or not
 * the caller's), 409 not active.
 */
create or replace function public.cancel_trial(trial_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := private.require_active_user();
  t public.trials;
begin
  select * into t from public.trials x where x.id = cancel_trial.trial_id;
  if t.id is null or not (t.owner_id = caller or private.is_member(t.org_id, 'member')) then
    raise exception 'trial not found' using errcode = 'PT404';
  end if;
  if t.owner_id is distinct from caller then
    perform private.require_member_role(t.org_id, 'owner');
  end if;
  if not private.end_trial(t.id, 'cancelled') then
    raise exception 'this trial is not active' using errcode = 'PT409';
  end if;
  select * into t from public.trials x where x.id = cancel_trial.trial_id;
  return to_jsonb(t);
end;
$$;
revoke execute on function public.cancel_trial(uuid) from public, anon;
grant execute on function public.cancel_trial(uuid) to authenticated, service_role;

/**
 * Service role (the lifecycle job, and the proxy after a trial_expired refusal): ends
 * every active trial past its end (its trial credits expire). Returns how many.
 */
create or replace function public.expire_trials()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  tid uuid;
  expired integer := 0;
begin
  for tid in
    select t.id from public.trials t where t.status = 'active' and t.expires_at <= now()
    order by t.expires_at limit 10000
  loop
    if private.end_trial(tid, 'expired') then
      expired := expired + 1;
    end if;
  end loop;
  return jsonb_build_object('expired_trials', expired);
end;
$$;
revoke execute on function public.expire_trials() from public, anon, authenticated;
grant execute on function public.expire_trials() to service_role;
