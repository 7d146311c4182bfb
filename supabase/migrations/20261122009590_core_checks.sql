/**
 * Core, part 2: one way to report a broken row rule.
 *
 * A few hot tables keep some row rules in BEFORE triggers instead of CHECK constraints
 * (Postgres rebuilds every CHECK of a table for every statement that writes it; a
 * trigger's rules are compiled once per session: migrations keys_settings,
 * credits_rowchecks, usage_rowchecks). Their triggers report a broken rule exactly as
 * the constraint did, through this helper.
 */

-- Section - Private helpers

/**
 * Raises what a broken CHECK constraint raises: SQLSTATE 23514 (check_violation) with
 * the constraint, table and schema in the error's fields (PostgREST answers 400).
 */
create or replace function private.raise_check_violation(table_name text, constraint_name text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'new row for relation "%" violates check constraint "%"', table_name, constraint_name
    using errcode = 'check_violation', constraint = constraint_name, schema = 'public', table = table_name;
end;
$$;
