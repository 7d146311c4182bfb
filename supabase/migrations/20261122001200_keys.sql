/**
 * API keys: `<prefix><64 hex>` from the server's CSPRNG, stored only as sha256 plus a
 * display prefix, returned once by create_api_key. Members list their organization's
 * keys (never the hash); owners and admins create and revoke them.
 */

-- Section - Tables

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  -- a key scoped to a project attributes its usage there; deleting the project deletes the key
  project_id uuid references public.projects (id) on delete cascade,
  created_by uuid references auth.users (id) on delete set null,
  name text not null check (char_length(btrim(name)) between 1 and 100),
  description text check (char_length(description) <= 1000),
  -- what a person sees to recognise the key: the prefix and the first 8 characters
  prefix text not null,
  key_hash bytea not null unique,
  status text not null default 'active' check (status in ('active', 'revoked', 'expired')),
  tier text not null default 'standard',
  expires_at timestamptz,
  last_used_at timestamptz,
  usage_count bigint not null default 0,
  revoked_at timestamptz,
  revoked_by uuid references auth.users (id) on delete set null,
  -- for teams migrating from Unkey
  unkey_key_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index api_keys_org_id_idx on public.api_keys (org_id);
create index api_keys_project_id_idx on public.api_keys (project_id);
create index api_keys_created_by_idx on public.api_keys (created_by);
create index api_keys_revoked_by_idx on public.api_keys (revoked_by);

alter table public.api_keys enable row level security;
revoke all on public.api_keys from anon, authenticated;
-- every column but key_hash
grant select (id, org_id, project_id, created_by, name, description, prefix, status, tier, expires_at,
              last_used_at, usage_count, revoked_at, revoked_by, unkey_key_id, created_at, updated_at)
  on public.api_keys to authenticated;

comment on table public.api_keys is
  'Organization API keys: display prefix, status, limits and usage; never the key or its hash.';

-- Section - Triggers

create trigger api_keys_set_updated_at before update on public.api_keys
  for each row execute function private.set_updated_at();

-- Section - Policies

/**
 * Members list their organization's keys (column grants keep key_hash out).
 */
create policy "API keys are viewable by members" on public.api_keys
  for select to authenticated
  using (org_id in (select private.member_org_ids('member')));

-- Section - Public RPCs

/**
 * Owners and admins create a key; the plaintext is in the result and nowhere else.
 * A project must belong to the organization; an expiry must be in the future.
 */
create or replace function public.create_api_key(
  org_id uuid, name text, description text default null, project_id uuid default null,
  expires_at timestamptz default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller_role public.member_role := private.require_member_role(create_api_key.org_id, 'admin');
  prefix text := private.setting('api_key_prefix');
  secret text := private.random_hex64();
  plaintext text := prefix || secret;
  k public.api_keys;
begin
  if create_api_key.name is null or char_length(btrim(create_api_key.name)) not between 1 and 100 then
    raise exception 'name must be 1 to 100 characters' using errcode = 'PT400';
  end if;
  if create_api_key.project_id is not null and not exists (
    select 1 from public.projects p where p.id = create_api_key.project_id and p.org_id = create_api_key.org_id
  ) then
    raise exception 'project % is not in this organization', create_api_key.project_id using errcode = 'PT400';
  end if;
  if create_api_key.expires_at is not null and create_api_key.expires_at <= now() then
    raise exception 'expires_at must be in the future' using errcode = 'PT400';
  end if;

  insert into public.api_keys (org_id, project_id, created_by, name, description, prefix, key_hash, expires_at)
  values (create_api_key.org_id, create_api_key.project_id, auth.uid(), btrim(create_api_key.name),
          create_api_key.description, prefix || left(secret, 8),
          pg_catalog.sha256(convert_to(plaintext, 'UTF8')), create_api_key.expires_at)
  returning * into k;
  return jsonb_build_object('id', k.id, 'key', plaintext, 'prefix', k.prefix, 'name', k.name,
                            'org_id', k.org_id, 'project_id', k.project_id, 'expires_at', k.expires_at,
                            'created_at', k.created_at);
end;
$$;
grant execute on function public.create_api_key(uuid, text, text, uuid, timestamptz) to authenticated, service_role;

/**
 * Owners and admins revoke a key of their organization. Unknown key (or another
 * organization's): 404. Revoking twice is a no-op.
 */
create or replace function public.revoke_api_key(id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  perform private.require_active_user();
  select * into k from public.api_keys x where x.id = revoke_api_key.id;
  if k.id is null or not private.is_member(k.org_id, 'member') then
    raise exception 'API key not found' using errcode = 'PT404';
  end if;
  perform private.require_member_role(k.org_id, 'admin');
  update public.api_keys x
  set status = 'revoked', revoked_at = coalesce(x.revoked_at, now()), revoked_by = coalesce(x.revoked_by, auth.uid())
  where x.id = k.id
  returning * into k;
  return jsonb_build_object('id', k.id, 'status', k.status, 'revoked_at', k.revoked_at);
end;
$$;
grant execute on function public.revoke_api_key(uuid) to authenticated, service_role;
