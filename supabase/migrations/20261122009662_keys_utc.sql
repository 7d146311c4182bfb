/**
 * Keys, part 7: a key's budget periods in UTC whatever the session's time zone.
 *
 * private.key_period_start and private.key_period_end added days and months to a
 * timestamptz, which Postgres does in the session's time zone: in a session on a zone
 * with daylight saving time, a '30d' period across a clock change, or a month with
 * one, started or ended an hour off. Both now count in UTC, so they are truly
 * immutable, as they are declared. (Their arithmetic names UTC itself rather than the
 * functions setting `timezone`, as credits_clock and billing_utc do for colder
 * functions: begin_chat_request calls these on every call of a key with a budget, and
 * a function's own setting is saved and restored around each call.)
 */

-- Section - Private helpers

/**
 * The start of the budget period containing `at`: the UTC calendar month ('monthly'),
 * or whole N-day periods counted from `anchor` (the key's creation) for 'Nd'.
 */
create or replace function private.key_period_start(period text, anchor timestamptz, at timestamptz)
returns timestamptz
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case when period = 'monthly' then date_trunc('month', at, 'UTC')
              else ((anchor at time zone 'UTC')
                    + floor(extract(epoch from (at - anchor)) / (rtrim(period, 'd')::numeric * 86400))
                      * make_interval(days => rtrim(period, 'd')::integer)) at time zone 'UTC' end;
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
  return case when period = 'monthly'
              then (date_trunc('month', start at time zone 'UTC') + interval '1 month') at time zone 'UTC'
              else ((start at time zone 'UTC') + make_interval(days => rtrim(period, 'd')::integer))
                   at time zone 'UTC' end;
end;
$$;
