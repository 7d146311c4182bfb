/**
 * Billing, part 3: a plan change with no Stripe period runs a UTC month.
 *
 * private.refresh_org_billing gave a plan change that Stripe gave no current period
 * (or an ended one) a period of `starts + interval '1 month'`, which Postgres adds in
 * the session's time zone: an hour off across a clock change in a zone with daylight
 * saving time. The function now runs in UTC whatever the caller's zone, like every
 * other credit period's arithmetic (it runs once per Stripe event, never per call).
 */

-- Section - Private helpers

-- its month (and the credit period it starts) in UTC, whatever the session's zone
alter function private.refresh_org_billing(uuid, timestamptz) set timezone = 'UTC';
