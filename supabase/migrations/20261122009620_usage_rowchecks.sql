/**
 * Usage, part 4: a usage event's row rules run as a trigger, not as CHECK constraints.
 *
 * Postgres rebuilds every CHECK constraint of a table for every statement that writes
 * it (ExecRelCheck reads each stored expression back from its text and compiles it), and
 * every metered call inserts one usage event. Its seven rules (the kind, and no negative
 * token count or credits) cost about 2% of the Postgres CPU of a metered call that way;
 * a plpgsql trigger compiles them once per session. They run on every insert and on
 * every update that sets one of their columns, on every partition (a trigger on the
 * partitioned table is cloned to each partition, including those made later). A broken
 * rule is reported as its constraint reported it: SQLSTATE 23514 naming the same
 * constraint.
 */

-- Section - Triggers

/**
 * Trigger (any writer of usage_events): the rules its CHECK constraints held. The first
 * rule broken is raised as that constraint's check_violation
 * (private.raise_check_violation).
 */
create or replace function private.check_usage_event_row()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  broken text := case
    when not (new.kind in ('chat', 'api', 'automation')) then 'usage_events_kind_check'
    when not (new.prompt_tokens >= 0) then 'usage_events_prompt_tokens_check'
    when not (new.completion_tokens >= 0) then 'usage_events_completion_tokens_check'
    when not (new.total_tokens >= 0) then 'usage_events_total_tokens_check'
    when not (new.cached_tokens >= 0) then 'usage_events_cached_tokens_check'
    when not (new.reasoning_tokens >= 0) then 'usage_events_reasoning_tokens_check'
    when not (new.credits >= 0) then 'usage_events_credits_check'
  end;
begin
  if broken is not null then
    perform private.raise_check_violation('usage_events', broken);
  end if;
  return new;
end;
$$;

alter table public.usage_events
  drop constraint usage_events_kind_check,
  drop constraint usage_events_prompt_tokens_check,
  drop constraint usage_events_completion_tokens_check,
  drop constraint usage_events_total_tokens_check,
  drop constraint usage_events_cached_tokens_check,
  drop constraint usage_events_reasoning_tokens_check,
  drop constraint usage_events_credits_check;

create trigger usage_events_zz_check_row
  before insert or update of kind, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
                             credits
  on public.usage_events
  for each row execute function private.check_usage_event_row();
