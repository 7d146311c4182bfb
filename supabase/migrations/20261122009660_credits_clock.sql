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
 * period in a month with a clock change ended an hour off the UTC month's end. It now
 * runs in UTC (as private.roll_credit_period's arithmetic already did), whatever the
 * caller's zone: it runs only when a period has ended, so the setting costs nothing on
 * the hot path.
 */

-- Section - Tables

-- the moment the hold is written (not its transaction's start): see above
alter table public.credit_reservations alter column created_at set default clock_timestamp();

-- Section - Private helpers

-- calendar months in UTC, whatever the session's zone (see above)
alter function private.ensure_current_period(uuid) set timezone = 'UTC';
