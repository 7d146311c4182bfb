/**
 * Credits, part 6: a reservation's row rules run as a trigger, not as CHECK constraints.
 *
 * Postgres rebuilds every CHECK constraint of a table for every statement that writes
 * it (ExecRelCheck reads each stored expression back from its text and compiles it),
 * and a metered call writes its reservation twice: the hold at begin and the close at
 * finish. The five rules of credit_reservations (request id length, amount, status,
 * charged, used tokens) cost about 4% of the Postgres CPU of a metered call that way; a
 * plpgsql trigger compiles them once per session. They run on every insert and on every
 * update that sets one of their columns (a lease renewal sets only expires_at). A broken
 * rule is reported as its constraint reported it: SQLSTATE 23514 naming the same
 * constraint. The never-negative balance rules on credit_accounts, credit_grants and
 * credit_ledger stay CHECK constraints.
 */

-- Section - Triggers

/**
 * Trigger (any writer of credit_reservations): the rules its CHECK constraints held;
 * NULL passes, as it did a CHECK. The first rule broken is raised as that constraint's
 * check_violation (private.raise_check_violation). Named to run after the table's other
 * BEFORE triggers, as a CHECK would.
 */
create or replace function private.check_reservation_row()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  broken text := case
    when not (char_length(new.request_id) between 1 and 200) then 'credit_reservations_request_id_check'
    when not (new.amount >= 0) then 'credit_reservations_amount_check'
    when not (new.status in ('open', 'settled', 'released')) then 'credit_reservations_status_check'
    when not (new.charged >= 0) then 'credit_reservations_charged_check'
    when not (new.used_tokens >= 0) then 'credit_reservations_used_tokens_check'
  end;
begin
  if broken is not null then
    perform private.raise_check_violation('credit_reservations', broken);
  end if;
  return new;
end;
$$;

alter table public.credit_reservations
  drop constraint credit_reservations_request_id_check,
  drop constraint credit_reservations_amount_check,
  drop constraint credit_reservations_status_check,
  drop constraint credit_reservations_charged_check,
  drop constraint credit_reservations_used_tokens_check;

create trigger credit_reservations_zz_check_row
  before insert or update of request_id, amount, status, charged, used_tokens
  on public.credit_reservations
  for each row execute function private.check_reservation_row();
