/**
 * API keys as a product, part 3: Unkey-managed keys (issue 12). With UNKEY_ROOT_KEY and
 * UNKEY_API_ID set, `tollbooth keys create|revoke|rotate` mirror a key at Unkey and keep
 * its `unkey_key_id`; `tollbooth keys sync-unkey` reconciles both sides (keys made
 * through PostgREST directly, Unkey calls that failed). Verification stays local. These
 * RPCs are the service role's: they hand lib/keys what to do and record what it did.
 */

-- Section - Private helpers

/**
 * A key as Unkey mirrors it: id, name, organization, whether it still works here,
 * expiry, and its unkey_key_id (never a hash).
 */
create or replace function private.unkey_view(k public.api_keys)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object('id', k.id, 'name', k.name, 'org_id', k.org_id, 'status', k.status,
    'usable', k.status = 'active' and (k.expires_at is null or k.expires_at > now()),
    'expires_at', k.expires_at, 'unkey_key_id', k.unkey_key_id);
$$;

-- Section - Public RPCs

/**
 * Service role (lib/keys): one key as Unkey mirrors it (see private.unkey_view); 404 unknown.
 */
create or replace function public.unkey_key_state(key_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  select * into k from public.api_keys x where x.id = unkey_key_state.key_id;
  if k.id is null then
    raise exception 'API key not found' using errcode = 'PT404';
  end if;
  return private.unkey_view(k);
end;
$$;
revoke execute on function public.unkey_key_state(uuid) from public, anon, authenticated;
grant execute on function public.unkey_key_state(uuid) to service_role;

/**
 * Service role (`tollbooth keys sync-unkey`): what is out of step with Unkey: `create`,
 * usable keys without an unkey_key_id; `delete`, keys that no longer work here but
 * still have one; `linked`, every key with an unkey_key_id (to find Unkey's orphans).
 */
create or replace function public.unkey_sync_plan()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'create', coalesce((select jsonb_agg(private.unkey_view(k) order by k.created_at) from public.api_keys k
                        where k.unkey_key_id is null and k.status = 'active'
                          and (k.expires_at is null or k.expires_at > now())), '[]'::jsonb),
    'delete', coalesce((select jsonb_agg(private.unkey_view(k) order by k.created_at) from public.api_keys k
                        where k.unkey_key_id is not null
                          and not (k.status = 'active' and (k.expires_at is null or k.expires_at > now()))), '[]'::jsonb),
    'linked', coalesce((select jsonb_object_agg(k.id::text, k.unkey_key_id) from public.api_keys k
                        where k.unkey_key_id is not null
                          and k.status = 'active' and (k.expires_at is null or k.expires_at > now())), '{}'::jsonb));
$$;
revoke execute on function public.unkey_sync_plan() from public, anon, authenticated;
grant execute on function public.unkey_sync_plan() to service_role;

/**
 * Service role (lib/keys): records a key's Unkey id (null once it is deleted at Unkey).
 */
create or replace function public.set_unkey_key_id(key_id uuid, unkey_key_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  update public.api_keys x set unkey_key_id = set_unkey_key_id.unkey_key_id where x.id = set_unkey_key_id.key_id
  returning * into k;
  if k.id is null then
    raise exception 'API key not found' using errcode = 'PT404';
  end if;
  return private.unkey_view(k);
end;
$$;
revoke execute on function public.set_unkey_key_id(uuid, text) from public, anon, authenticated;
grant execute on function public.set_unkey_key_id(uuid, text) to service_role;

/**
 * Service role (lib/keys): removes a key that was just created and never used, when
 * mirroring it at Unkey failed, so nothing is left half-made. A key that was used, or
 * has any reservation, is revoked instead. Returns what happened.
 */
create or replace function public.discard_api_key(key_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
begin
  select * into k from public.api_keys x where x.id = discard_api_key.key_id for update;
  if k.id is null then
    return jsonb_build_object('id', discard_api_key.key_id, 'discarded', false);
  end if;
  if k.usage_count = 0 and not exists (select 1 from public.credit_reservations r where r.api_key_id = k.id) then
    delete from public.api_keys x where x.id = k.id;
    return jsonb_build_object('id', k.id, 'discarded', true);
  end if;
  update public.api_keys x set status = 'revoked', revoked_at = coalesce(x.revoked_at, now()) where x.id = k.id;
  return jsonb_build_object('id', k.id, 'discarded', false, 'revoked', true);
end;
$$;
revoke execute on function public.discard_api_key(uuid) from public, anon, authenticated;
grant execute on function public.discard_api_key(uuid) to service_role;
