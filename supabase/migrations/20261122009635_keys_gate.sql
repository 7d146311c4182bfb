/**
 * Keys, part 5: the gate and the budget period without a query of their own (issue 8).
 *
 * The chat proxy's begin reads an organization's plan, trial and owners in one query;
 * the trial rule is now a function of the trial row (private.trial_gate), which
 * private.org_gate and that query both apply, so the rule is still written once. The
 * budget period functions were SQL functions, which a caller with a pinned search_path
 * runs through an executor of their own on every call; as PL/pgSQL they are a plain
 * expression evaluated in place. Same answers.
 */

-- Section - Private helpers

/**
 * The trial rule for API calls: no trial, a converted one, or an active one before its
 * end passes; a trial that is cancelled, expired, or active past its end answers 401
 * trial_expired. `t` is the organization's trials row (null: none).
 */
create or replace function private.trial_gate(t public.trials)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if t.id is null or t.status = 'converted' or (t.status = 'active' and t.expires_at > now()) then
    return;
  end if;
  raise exception 'the trial of this workspace %', case when t.status = 'cancelled' then 'was cancelled'
                                                         else 'has ended' end
    using errcode = 'PT401', detail = '{"type": "trial_expired"}';
end;
$$;

/**
 * The organization's gate for API calls: its trial, by private.trial_gate.
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
  perform private.trial_gate(t);
end;
$$;

/**
 * The start of the budget period containing `at`: the calendar month (UTC), or the
 * N-day slice counted from `anchor` (the key's creation).
 */
create or replace function private.key_period_start(period text, anchor timestamptz, at timestamptz)
returns timestamptz
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case when period = 'monthly' then date_trunc('month', at, 'UTC')
              else anchor + floor(extract(epoch from (at - anchor)) / (rtrim(period, 'd')::numeric * 86400))
                            * make_interval(days => rtrim(period, 'd')::integer) end;
end;
$$;

/**
 * The end of the budget period starting at `start` (when the budget resets).
 */
create or replace function private.key_period_end(period text, start timestamptz)
returns timestamptz
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case when period = 'monthly' then (date_trunc('month', start, 'UTC') + interval '1 month')
              else start + make_interval(days => rtrim(period, 'd')::integer) end;
end;
$$;
