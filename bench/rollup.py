"""The usage rollup at scale, on one embedded Postgres started for this run:
1,000,000 usage events over 1,000 organizations and 90 days (3 models, 2 API keys and
a project per organization, 5% failed), then

- a bare `group by` over the same rows and key as usage_daily (the floor: aggregate,
  write nothing) next to the full first rollup (`usage_rollup()`: aggregate + write);
- 10,000 new events, then the incremental rollup (reads only them through the txid
  index) next to the full rollup's time;
- `usage_summary` for one organization over 30 days (usage_daily + unrolled events),
  p50 of many calls, next to the same function answering from the raw events only
  (watermark cleared and that org's rollups removed, inside a rolled-back transaction).

Timings only (the machines are shared and noisy); nothing is asserted.
Run: .venv/bin/python bench/rollup.py [--events 1000000] [--orgs 1000] [--days 90]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from lib.local import embedded, migrate  # noqa: E402

KEY = ("org_id, (created_at at time zone 'UTC')::date, extract(hour from created_at at time zone 'UTC'), "
       "project_id, api_key_id, user_id, model, kind, status = 'succeeded'")
BARE = f"""
select count(*) from (
  select {KEY}, count(*), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(reasoning_tokens),
         sum(total_tokens), sum(credits), sum(cost_usd)
  from public.usage_events group by 1, 2, 3, 4, 5, 6, 7, 8, 9) x
"""


def insert_events(conn: psycopg.Connection, n: int, days: float, offset: int = 0) -> None:
    conn.execute("""
        insert into public.usage_events (created_at, org_id, api_key_id, project_id, kind, model, prompt_tokens,
          completion_tokens, total_tokens, cached_tokens, cost_usd, credits, request_id, status)
        select now() - random() * make_interval(days => %(days)s::integer), o.org_id,
               case when i %% 2 = 0 then o.key1 else o.key2 end, o.project_id, 'chat',
               (array['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini'])[1 + i %% 3],
               p, c, p + c, p / 4, (p * 0.00000015 + c * 0.0000006)::numeric(24, 12),
               ceil((p * 0.00000015 + c * 0.0000006) * 1000)::bigint, 'bench-' || (i + %(offset)s),
               case when i %% 20 = 0 then 'upstream_error' else 'succeeded' end::public.usage_status
        from generate_series(1, %(n)s) as i
        cross join lateral (select (random() * 2000)::bigint as p, (random() * 500)::bigint as c) t
        join bench_orgs o on o.idx = 1 + (i::bigint * 7919) %% (select count(*) from bench_orgs)
    """, {"n": n, "days": days, "offset": offset})


def note(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def timed(conn: psycopg.Connection, sql: str, params: Sequence[Any] | None = None) -> tuple[float, Any]:
    start = time.perf_counter()
    row = conn.execute(sql, params).fetchone()
    return (time.perf_counter() - start) * 1000, row[0] if row else None


def p50(conn: psycopg.Connection, sql: str, params: Sequence[Any], n: int) -> float:
    for _ in range(5):
        conn.execute(sql, params)
    return statistics.median(timed(conn, sql, params)[0] for _ in range(n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--orgs", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-bench-rollup-"))
    admin = embedded.start(tmp / "pg", keep_running=False, database="postgres")
    embedded.ensure_database(admin, "bench")
    dsn = admin.replace("/postgres?", "/bench?")
    migrate.apply_all(dsn, seed=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            create table bench_orgs as
            with o as (insert into public.organizations (name, slug)
                       select 'Bench ' || i, 'bench-' || i from generate_series(1, %s) i returning id)
            select row_number() over (order by id) as idx, id as org_id from o
        """, (args.orgs,))
        conn.execute("alter table bench_orgs add column key1 uuid, add column key2 uuid, add column project_id uuid")
        conn.execute("""
            with p as (insert into public.projects (org_id, name) select org_id, 'Main' from bench_orgs
                       returning id, org_id)
            update bench_orgs b set project_id = p.id from p where p.org_id = b.org_id""")
        for col in ("key1", "key2"):
            conn.execute(f"""
                with k as (insert into public.api_keys (org_id, name, prefix, key_hash)
                           select org_id, '{col}', 'xan_bench', sha256(convert_to(gen_random_uuid()::text, 'UTF8'))
                           from bench_orgs returning id, org_id)
                update bench_orgs b set {col} = k.id from k where k.org_id = b.org_id""")
        conn.execute("create index on bench_orgs (idx)")
        note(f"loading {args.events:,} events")
        started = time.perf_counter()
        insert_events(conn, args.events, args.days)
        load_s = time.perf_counter() - started
        conn.execute("vacuum analyze public.usage_events")
        total = conn.execute("select count(*) from public.usage_events").fetchone()[0]  # type: ignore[index]

        note("bare group by")
        bare_ms, groups = timed(conn, BARE)
        note("full rollup")
        full_ms, full = timed(conn, "select public.usage_rollup()")
        conn.execute("vacuum analyze public.usage_daily")
        insert_events(conn, args.new, 1, offset=args.events)
        note("incremental rollup")
        incr_ms, incr = timed(conn, "select public.usage_rollup()")
        org = conn.execute("select org_id from bench_orgs where idx = 1").fetchone()[0]  # type: ignore[index]
        summary = "select private.usage_summary_json(%s, 30, 'UTC', 'day')"
        note("usage_summary")
        rolled_p50 = p50(conn, summary, (org,), args.calls)
        with conn.transaction(force_rollback=True):
            conn.execute("update private.usage_rollup_state set snapshot = null")
            conn.execute("delete from public.usage_daily where org_id = %s", (org,))
            raw_p50 = p50(conn, summary, (org,), args.calls)
        rows = conn.execute("select count(*) from public.usage_daily").fetchone()[0]  # type: ignore[index]

    print(f"\nusage rollup: {total:,} events, {args.orgs:,} orgs, {args.days} days "
          f"(loaded in {load_s:.1f} s); usage_daily {rows:,} rows ({groups:,} groups in the bare aggregate)\n")
    line = "{:<52} {:>12} {:>10} {:>10}"
    print(line.format("measure", "time", "ratio", "target"))
    print(line.format("-" * 52, "-" * 12, "-" * 10, "-" * 10))
    print(line.format("bare group by over the same rows (baseline)", f"{bare_ms:,.0f} ms", "1.00x", ""))
    print(line.format(f"full rollup usage_rollup() ({full['events']:,} events)", f"{full_ms:,.0f} ms",
                      f"{full_ms / bare_ms:.2f}x", "<= 2x"))
    print(line.format(f"incremental after {args.new:,} new events ({incr['events']:,})", f"{incr_ms:,.0f} ms",
                      f"{100 * incr_ms / full_ms:.2f}%", "<= 2%"))
    print(line.format("usage_summary 1 org, 30 days, p50 (usage_daily)", f"{rolled_p50:.2f} ms", "1.00x", "<= 5 ms"))
    print(line.format("same summary from raw events only, p50", f"{raw_p50:.2f} ms",
                      f"{raw_p50 / rolled_p50:.2f}x", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
