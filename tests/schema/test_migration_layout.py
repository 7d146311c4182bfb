"""The layout of supabase/migrations (DESIGN.md, STYLE.md 1-4): one file per capability,
each under 700 lines, one section order, every grant right under its function, search_path
pinned on every SECURITY DEFINER function, and a comment on every table the frontend reads.

The file checks are plain functions over SQL text, so the last test can show each one
failing on a broken example."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib.local import migrate

NAME = re.compile(r"^\d{14}_(core|tenancy|credits|keys|usage|chat|billing|meetings)(_[a-z]+)?\.sql$")
SECTIONS = ("Types", "Tables", "Triggers", "Private helpers", "Policies", "Public RPCs")
MAX_LINES = 700
FILES = migrate.migration_files()

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_FUNCTION = re.compile(r"^create (?:or replace )?function ([\w.]+)\s*\(", re.IGNORECASE)
_GRANT = re.compile(r"^(?:grant|revoke) execute on function ([\w.]+)\s*\(", re.IGNORECASE)


def statements(sql: str) -> list[str]:
    """The statements of a SQL script, comments removed and whitespace collapsed. A `;`
    inside a string, a quoted name, a dollar-quoted body or a comment does not split."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            buf.append(" ")
        elif c in "'\"":
            j = i + 1
            while j < n and not (sql[j] == c and sql[j + 1:j + 2] != c):
                j += 2 if sql[j] == c else 1
            buf.append(sql[i:j + 1])
            i = j + 1
        elif m := _DOLLAR.match(sql, i):
            j = sql.find(m.group(0), m.end())
            j = n if j < 0 else j + len(m.group(0))
            buf.append(sql[i:j])
            i = j
        elif c == ";":
            out.append(" ".join("".join(buf).split()))
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    out.append(" ".join("".join(buf).split()))
    return [s for s in out if s]


def section_problems(sql: str) -> list[str]:
    """Banners must read `-- Section - <name>` with a known name, in SECTIONS order, once each."""
    problems, last = [], -1
    for number, line in enumerate(sql.splitlines(), 1):
        if not re.match(r"^\s*--\s*section\b", line, re.IGNORECASE):
            continue
        name = line[len("-- Section - "):] if line.startswith("-- Section - ") else None
        if name not in SECTIONS:
            problems.append(f"line {number}: {line!r} is not one of the banners {SECTIONS}")
        elif SECTIONS.index(name) <= last:
            problems.append(f"line {number}: {name!r} comes after {SECTIONS[last]!r}")
        else:
            last = SECTIONS.index(name)
    return problems


def grant_problems(sql: str) -> list[str]:
    """Every `grant/revoke execute on function X` must follow X's `create function`, with
    only other grants/revokes of X in between."""
    problems = []
    stmts = statements(sql)
    for k, stmt in enumerate(stmts):
        m = _GRANT.match(stmt)
        if not m:
            continue
        name = m.group(1).lower()
        j = k - 1
        while j >= 0 and (g := _GRANT.match(stmts[j])) and g.group(1).lower() == name:
            j -= 1
        f = _FUNCTION.match(stmts[j]) if j >= 0 else None
        if not f or f.group(1).lower() != name:
            problems.append(f"{stmt[:90]}… does not directly follow the definition of {name}")
    return problems


def search_path_problems(sql: str) -> list[str]:
    """Every SECURITY DEFINER function pins `set search_path = ''` (its header, before the body)."""
    problems = []
    for stmt in statements(sql):
        f = _FUNCTION.match(stmt)
        if not f:
            continue
        header = re.split(r"\bas\s+\$", stmt, maxsplit=1, flags=re.IGNORECASE)[0].lower()
        if "security definer" in header and "set search_path = ''" not in header:
            problems.append(f"{f.group(1)} is SECURITY DEFINER without set search_path = ''")
    return problems


def test_there_are_migrations():
    assert len(FILES) >= 7, f"expected one file per capability at least, found {[p.name for p in FILES]}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_is_named_by_capability(path: Path):
    assert NAME.match(path.name), f"{path.name} is not YYYYMMDDHHMMSS_<capability>[_<part>].sql ({NAME.pattern})"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_is_under_the_line_budget(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines < MAX_LINES, f"{path.name} has {lines} lines; split it into <capability>_<part>.sql files"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sections_come_in_the_fixed_order(path: Path):
    assert section_problems(path.read_text()) == [], f"{path.name}: section banners out of order"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_grants_sit_directly_under_their_function(path: Path):
    assert grant_problems(path.read_text()) == [], f"{path.name}: grants away from their function"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_security_definer_functions_pin_search_path(path: Path):
    assert search_path_problems(path.read_text()) == [], f"{path.name}: unpinned SECURITY DEFINER functions"


def test_every_table_the_frontend_reads_has_a_comment(conn):
    """Tables in public with a select policy for anon/authenticated, and views they may
    read, carry a `comment on table` (pg_description) saying what they hold."""
    rows = conn.execute("""
        select c.oid::regclass::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public'
          and ((c.relkind in ('r', 'p') and exists (
                 select 1 from pg_policies p
                 where p.schemaname = 'public' and p.tablename = c.relname and p.cmd in ('SELECT', 'ALL')
                   and p.roles && array['anon', 'authenticated']::name[]))
               or (c.relkind = 'v' and has_table_privilege('authenticated', c.oid, 'select')))
          and not exists (select 1 from pg_description d
                          where d.objoid = c.oid and d.classoid = 'pg_class'::regclass and d.objsubid = 0)
        order by 1
    """).fetchall()
    assert rows == [], f"tables the frontend reads without `comment on table`: {[r[0] for r in rows]}"


def test_the_checks_catch_a_broken_file():
    """Each check fails on SQL that breaks its rule, and the splitter keeps bodies whole."""
    body = "create function public.f() returns int language sql security definer as $$ select 1; $$;"
    assert len(statements(body + "\n-- a; comment\nselect ';' /* ; */;")) == 2
    assert search_path_problems(body), "SECURITY DEFINER without search_path"
    assert not search_path_problems(body.replace("security definer", "security definer set search_path = ''"))
    grant = "grant execute on function public.f() to service_role;"
    assert grant_problems(body + "\nselect 1;\n" + grant), "a statement between function and grant"
    assert grant_problems(grant + "\n" + body), "grant before the function"
    assert not grant_problems(body + "\nrevoke execute on function public.f() from public;\n" + grant)
    assert section_problems("-- Section - Policies\n-- Section - Tables\n"), "sections out of order"
    assert section_problems("-- Section - tables\n"), "banner spelled differently"
    assert section_problems("-- Section - Tables\n-- Section - Tables\n"), "a section twice"
    assert not section_problems("-- Section - Types\n-- Section - Public RPCs\n")
    assert not NAME.match("20261122000100_setup.sql") and not NAME.match("20261122_core.sql")
    assert NAME.match("20261122002100_billing_events.sql")
