-- Local demo data: two users, Alice's personal org and the "Acme" team org where Bob is
-- a member. Idempotent; `tollbooth db start` and the test suite apply it after migrations.

-- The plans come from their migration (tenancy): production needs them for sign-up.

insert into auth.users (id, aud, role, email, email_confirmed_at, raw_user_meta_data, raw_app_meta_data)
values
  ('00000000-0000-4000-8000-00000000a11c', 'authenticated', 'authenticated', 'alice@example.com', now(),
   '{"full_name": "Alice Demo"}', '{"provider": "email"}'),
  ('00000000-0000-4000-8000-000000000b0b', 'authenticated', 'authenticated', 'bob@example.com', now(),
   '{"full_name": "Bob Demo"}', '{"provider": "email"}')
on conflict (id) do nothing;

insert into public.organizations (id, name, slug, personal, plan_id, created_by)
values ('00000000-0000-4000-8000-00000000ac3e', 'Acme', 'acme', false, 'pro', '00000000-0000-4000-8000-00000000a11c')
on conflict (id) do nothing;

insert into public.organization_members (org_id, user_id, role) values
  ('00000000-0000-4000-8000-00000000ac3e', '00000000-0000-4000-8000-00000000a11c', 'owner'),
  ('00000000-0000-4000-8000-00000000ac3e', '00000000-0000-4000-8000-000000000b0b', 'member')
on conflict do nothing;

insert into public.projects (id, org_id, name, description, created_by)
values ('00000000-0000-4000-8000-0000000000f1', '00000000-0000-4000-8000-00000000ac3e', 'Website chat',
        'Support bot on the marketing site', '00000000-0000-4000-8000-00000000a11c')
on conflict (id) do nothing;

-- A demo API key for the Acme org, printed by `make dev`. Its value is public (the
-- instance's API key prefix, from private.app_settings, then sha256 of a fixed phrase):
-- local use only. The display prefix is the key prefix and the first 8 characters, as
-- create_api_key makes it.
insert into public.api_keys (id, org_id, created_by, name, description, prefix, key_hash)
select '00000000-0000-4000-8000-0000000000ce', '00000000-0000-4000-8000-00000000ac3e',
       '00000000-0000-4000-8000-00000000a11c', 'Local demo key', 'Seeded for make dev',
       s.prefix || left(s.k, 8), pg_catalog.sha256(convert_to(s.prefix || s.k, 'UTF8'))
from (select a.value as prefix,
             encode(pg_catalog.sha256(convert_to('tollbooth-local-demo-key', 'UTF8')), 'hex') as k
      from private.app_settings a where a.key = 'api_key_prefix') s
on conflict (id) do nothing;
