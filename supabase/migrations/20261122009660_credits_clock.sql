/**
 * Credits, part 7: the clocks of money periods.
 *
 * A reservation was stamped with now(), its transaction's start, while begin_chat_request
 * chose the key's budget period by clock_timestamp() a moment later, and
 * private.track_key_budget counts a settled charge against the key only when the stamp
 * lies in the key's current period. A call whose transaction began just before the
 * period turned and reached the key just after was reserved in the new period and
 * counted in neither: the organization paid it, the key's budget never saw it. A
 * reservation is now stamped when it is written, after the period was chosen, so the
 * stamp is never before the period it was reserved in.
 *
 * private.ensure_current_period added '1 month' to a timestamptz, which Postgres does in
 * the session's time zone: in a session on a zone with daylight saving time, a free
 * period in a month with a clock change ended an hour off the UTC month's end.
 * private.roll_credit_period already did the month in UTC; this does too.
 */

-- Section - Tables

-- the moment the hold is written (not its transaction's start): see above
alter table public.credit_reservations alter column created_at set default clock_timestamp();

-- Section - Private helpers

/**
 * Organizations without a billing period of their own (free plan, no subscription)
 * run on calendar months (UTC). Rolls the period when it has ended; cheap when not.
 */
create or replace function private.ensure_current_period(org uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  acct public.credit_accounts;
  plan text;
  month_start timestamp := date_trunc('month', now() at time zone 'UTC');
begin
  select * into acct from public.credit_accounts a where a.org_id = org;
  if acct.org_id is not null and acct.period_end is not null and acct.period_end > now() then
    return;
  end if;
  select o.plan_id into plan from public.organizations o where o.id = org;
  if plan is null then
    return;
  end if;
  perform private.start_plan_period(org, plan, month_start at time zone 'UTC',
                                    (month_start + interval '1 month') at time zone 'UTC');
end;
$$;
