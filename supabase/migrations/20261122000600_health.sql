/**
 * Liveness probe for the service role (GET /api/health through either transport).
 */
create or replace function public.health_check()
returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object('ok', true, 'now', now());
$$;
revoke execute on function public.health_check() from public, anon, authenticated;
grant execute on function public.health_check() to service_role;
