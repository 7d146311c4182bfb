/**
 * Billing, part 3: a plan change with no Stripe period runs a UTC month.
 *
 * private.refresh_org_billing gave a plan change that Stripe gave no current period
 * (or an ended one) a period of `starts + interval '1 month'`, which Postgres adds in
 * the session's time zone: an hour off across a clock change in a zone with daylight
 * saving time. The month is now added in UTC, like every other credit period.
 */

-- Section - Private helpers

/**
 * Derives an organization's billing from its subscriptions, once any exists (an
 * organization Stripe never billed keeps the plan it has). The governing subscription
 * is the entitled one (active, trialing, past_due), else the most recent. Entitled:
 * the product's plan (unknown product: the plan stays), billing status active or
 * past_due, and a personal organization's owner is `premium`. Otherwise: the free
 * plan, status canceled/inactive/past_due (unpaid), owner `user`. Admins and banned
 * users keep their role. A plan change starts a credit period at once: what is left
 * of the old plan's grant expires and the new plan's monthly credits are granted.
 */
create or replace function private.refresh_org_billing(org uuid, at timestamptz)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  o public.organizations;
  s public.subscriptions;
  entitled boolean;
  want_plan text;
  want_status public.billing_status;
  starts timestamptz;
  ends timestamptz;
begin
  select * into o from public.organizations x where x.id = org for update;
  select * into s from public.subscriptions x where x.org_id = org
  order by case when x.status in ('active', 'trialing', 'past_due') then 0
                when x.status in ('unpaid', 'paused', 'incomplete') then 1 else 2 end,
           x.created_at desc nulls last, x.id desc
  limit 1;
  if o.id is null or s.id is null then
    return null;
  end if;
  entitled := s.status in ('active', 'trialing', 'past_due');
  want_status := case
    when s.status in ('active', 'trialing') then 'active'
    when s.status in ('past_due', 'unpaid') then 'past_due'
    when s.status in ('canceled', 'incomplete_expired') then 'canceled'
    else 'inactive' end;
  want_plan := case when entitled then coalesce(private.plan_for_product(s.product_id), o.plan_id) else 'free' end;

  if want_plan is distinct from o.plan_id then
    starts := greatest(at, s.synced_at);
    ends := case when entitled and s.current_period_end > starts then s.current_period_end
                 else ((starts at time zone 'UTC') + interval '1 month') at time zone 'UTC' end;
    update public.organizations x set plan_id = want_plan where x.id = org;
    perform private.start_plan_period(org, want_plan, starts, ends,
                                      'stripe: plan ' || o.plan_id || ' -> ' || want_plan);
  end if;
  if want_status is distinct from o.billing_status then
    update public.organizations x set billing_status = want_status where x.id = org;
  end if;
  if o.personal then
    update public.profiles p
    set role = case when entitled then 'premium' else 'user' end::public.user_role
    where p.id = o.personal_owner_id and p.role in ('user', 'premium')
      and p.role <> case when entitled then 'premium' else 'user' end::public.user_role;
  end if;
  return jsonb_build_object('org_id', org, 'plan_id', want_plan, 'billing_status', want_status,
                            'plan_changed', want_plan is distinct from o.plan_id);
end;
$$;
