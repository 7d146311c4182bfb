/**
 * Chat, part 2: the money path under faults (issue 8).
 *
 * - Zero-loss commits by default: a completed call's settlement (and the reservation it
 *   settles) waits for the WAL flush, so a Postgres crash loses no charge. Set
 *   `metering_synchronous_commit` to 'off' in private.app_settings to trade that for
 *   about one WAL flush of latency per commit.
 * - Hot-path SQL never waits long for a lock: begin and finish run under
 *   `lock_timeout` (private setting `metering_lock_timeout`, default 2 s; SQLSTATE 55P03,
 *   which the proxy answers 503 and retries settlement), so one organization's locked
 *   account row cannot pin the connection pool for everybody.
 * - A completion limit above the model's maximum is bad input (400), not 402: enforced
 *   in begin_chat_request, whose one body is in the chat_keycontrols migration.
 */

-- Section - Tables

-- the zero-loss default (issue 8): settlement commits wait for the WAL flush
update private.app_settings set value = 'on' where key = 'metering_synchronous_commit' and value = 'off';
insert into private.app_settings (key, value) values ('metering_lock_timeout', '2s') on conflict (key) do nothing;

-- Section - Private helpers

/**
 * Applies the metering commit mode and lock timeout to the current transaction.
 */
create or replace function private.apply_metering_commit_mode()
returns void
language sql
security definer
set search_path = ''
as $$
  select set_config('synchronous_commit', coalesce(private.setting('metering_synchronous_commit'), 'on'), true),
         set_config('lock_timeout', coalesce(private.setting('metering_lock_timeout'), '2s'), true);
$$;
