/**
 * API keys, part 5: a key's settings are checked when they are written, not on every use.
 *
 * Postgres evaluates every CHECK constraint of a table for every row an UPDATE writes,
 * whichever columns changed, and rebuilds each one for every statement (ExecRelCheck
 * reads the stored expression back from its text and compiles it each time). api_keys
 * had nine, all about settings that only the key's admins write (name, description,
 * status, models, credit limit and period, rpm, tpm, allowed addresses), while every
 * metered call updates the key's counters: usage and rate window at begin, budget and
 * token window at close. Those nine cost about 6% of the Postgres CPU of a metered call
 * (bench: the key with every control). The same nine rules now run in a BEFORE trigger
 * on every insert and on every update that sets one of those columns; an update of the
 * counters alone does not run them. A violation is reported as the constraint reported
 * it: SQLSTATE 23514 naming the same constraint (PostgREST: 400). The RPCs that write
 * settings still check them first and answer their own 400s.
 */

-- Section - Triggers

/**
 * Trigger (any writer of api_keys): a key's settings keep the rules its CHECK
 * constraints held; NULL passes, as it did a CHECK. The first rule broken is raised as
 * that constraint's check_violation (private.raise_check_violation). Named to run after
 * the other BEFORE triggers, as a CHECK would.
 */
create or replace function private.check_api_key_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  broken text := case
    when not (char_length(pg_catalog.btrim(new.name)) between 1 and 100) then 'api_keys_name_check'
    when not (char_length(new.description) <= 1000) then 'api_keys_description_check'
    when not (new.status in ('active', 'revoked', 'expired')) then 'api_keys_status_check'
    when not (new.models is null or cardinality(new.models) <= 200) then 'api_keys_models_check'
    when not (new.credit_limit >= 0) then 'api_keys_credit_limit_check'
    when not (new.credit_limit_period = 'monthly' or new.credit_limit_period ~ '^[1-9][0-9]{0,3}d$')
      then 'api_keys_credit_limit_period_check'
    when not (new.rpm > 0) then 'api_keys_rpm_check'
    when not (new.tpm > 0) then 'api_keys_tpm_check'
    when not (new.allowed_ips is null or cardinality(new.allowed_ips) between 1 and 100) then 'api_keys_allowed_ips_check'
  end;
begin
  if broken is not null then
    perform private.raise_check_violation('api_keys', broken);
  end if;
  return new;
end;
$$;

alter table public.api_keys
  drop constraint api_keys_name_check,
  drop constraint api_keys_description_check,
  drop constraint api_keys_status_check,
  drop constraint api_keys_models_check,
  drop constraint api_keys_credit_limit_check,
  drop constraint api_keys_credit_limit_period_check,
  drop constraint api_keys_rpm_check,
  drop constraint api_keys_tpm_check,
  drop constraint api_keys_allowed_ips_check;

create trigger api_keys_zz_check_settings
  before insert or update of name, description, status, models, credit_limit, credit_limit_period, rpm, tpm,
                             allowed_ips
  on public.api_keys
  for each row execute function private.check_api_key_settings();
