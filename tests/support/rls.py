"""The row level security matrix of the money tables, as PostgREST runs requests:
credit_accounts, credit_grants, credit_ledger, credit_reservations, credit_balances,
api_keys, usage_events, api_requests and model_prices. tests/credits and tests/keys
each run it over their tables; the `money` fixture (tests/conftest.py) fills them.

None of these tables grants a write to anon or authenticated, so every direct write
by them is a grant denial (42501, nothing changed); reading another organization's
rows is a USING denial (zero rows, no error). Only the service role writes directly."""
from __future__ import annotations

from dataclasses import dataclass

from tests.support.pg import raises_sqlstate, rows, snapshot

MEMBERS = {"owner", "admin", "member"}
ADMINS = {"owner", "admin"}
# the personas the money matrix has always covered (platform_admin is tested in tests/tenancy)
PERSONAS = ("owner", "admin", "member", "outsider", "banned")
EVERYONE = ("anon", *PERSONAS, "service")
NOT_SERVICE = ("anon", *PERSONAS)


@dataclass(frozen=True)
class Money:
    key: dict  # the team's API key (create_api_key result, with the plaintext)
    other_key: dict  # other_team's


@dataclass(frozen=True)
class Table:
    name: str
    readers: frozenset  # personas that read the team's rows; the rest see none (or 42501 when `denied`)
    select: str  # with %(org)s; never a column the authenticated role lacks
    insert: str
    update: str
    delete: str
    denied: bool = False  # no select grant for authenticated at all
    anon_reads: bool = False


def t(name, readers, select=None, insert="", update=None, delete=None, **kw) -> Table:
    return Table(name=name, readers=frozenset(readers),
                 select=select or f"select org_id from {name} where org_id = %(org)s",
                 insert=insert,
                 update=update or f"update {name} set org_id = org_id where org_id = %(org)s returning 1",
                 delete=delete or f"delete from {name} where org_id = %(org)s returning 1", **kw)


TABLES = {x.name: x for x in (
    t("public.credit_accounts", MEMBERS,
      insert="insert into public.credit_accounts (org_id, balance) values (%(org)s, 1000000) returning 1",
      update="update public.credit_accounts set balance = 1000000 where org_id = %(org)s returning 1"),
    t("public.credit_grants", MEMBERS,
      insert="insert into public.credit_grants (org_id, kind, amount, remaining) "
             "values (%(org)s, 'adjustment', 1000000, 1000000) returning 1",
      update="update public.credit_grants set remaining = amount where org_id = %(org)s returning 1"),
    t("public.credit_ledger", MEMBERS,
      insert="insert into public.credit_ledger (org_id, kind, amount, balance_after) "
             "values (%(org)s, 'adjustment', 1000000, 1000000) returning 1",
      update="update public.credit_ledger set amount = 1000000 where org_id = %(org)s returning 1"),
    t("public.credit_reservations", set(), denied=True,
      insert="insert into public.credit_reservations (request_id, org_id, amount, expires_at) "
             "values ('forged', %(org)s, 0, now() + interval '1 hour') returning 1",
      update="update public.credit_reservations set status = 'released' where org_id = %(org)s returning 1"),
    t("public.credit_balances", MEMBERS,
      insert="insert into public.credit_balances (org_id, remaining) values (%(org)s, 1000000) returning 1",
      update="update public.credit_balances set remaining = 1000000 where org_id = %(org)s returning 1"),
    t("public.api_keys", MEMBERS,
      insert="insert into public.api_keys (org_id, name, prefix, key_hash) "
             "values (%(org)s, 'forged', 'xan_forged', '\\x00') returning 1",
      update="update public.api_keys set status = 'active', expires_at = null where org_id = %(org)s returning 1"),
    t("public.usage_events", MEMBERS,
      insert="insert into public.usage_events (org_id, request_id, status) values (%(org)s, 'forged', 'succeeded') "
             "returning 1",
      update="update public.usage_events set credits = 0 where org_id = %(org)s returning 1"),
    t("public.api_requests", ADMINS,
      insert="insert into public.api_requests (org_id, request_id, endpoint, method, status_code) "
             "values (%(org)s, 'forged', '/v1/chat/completions', 'POST', 200) returning 1",
      update="update public.api_requests set status_code = 500 where org_id = %(org)s returning 1"),
    t("public.model_prices", set(PERSONAS), anon_reads=True,
      select="select model from public.model_prices",
      insert="insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, output_usd_per_1m) "
             "values ('forged', 0, 0, 0) returning 1",
      update="update public.model_prices set output_usd_per_1m = 0 where model = 'gpt-4o-mini' returning 1",
      delete="delete from public.model_prices where model = 'gpt-4o-mini' returning 1"),
)}


def superuser_count(conn, table: Table, org) -> int:
    return len(rows(conn, table.select, {"org": org}))


def check_select(conn, api, cast, table: Table, who: str):
    expected = superuser_count(conn, table, cast.team)
    assert expected > 0, f"the fixture put rows of the team in {table.name}"
    if who == "service":
        got = api(who)(table.select, {"org": cast.team})
        assert len(got) == expected, f"the service role reads every row of {table.name}"
    elif (who == "anon" and not table.anon_reads) or (who != "anon" and table.denied):
        with raises_sqlstate("42501"):
            api(who)(table.select, {"org": cast.team})
    else:
        got = api(who)(table.select, {"org": cast.team})
        if who == "anon" or who in table.readers:
            assert len(got) == expected, f"{who} reads the team's {len(got)}/{expected} rows of {table.name}"
        else:
            assert got == [], f"{who} must see none of the team's rows in {table.name} (USING denial, no error)"


def check_members_see_only_their_own_orgs_rows(api, cast, table: Table):
    everything = table.select.split(" where ")[0]
    mine = {r["org_id"] for r in api("owner")(everything)}
    assert cast.other_team not in mine, f"the team's owner sees nothing of other_team in {table.name}"
    assert cast.team in mine, f"but does see the team's rows in {table.name}"
    theirs = {r["org_id"] for r in api("outsider")(everything)}
    assert cast.other_team in theirs and cast.team not in theirs, f"and the outsider the other way round in {table.name}"
    assert api("banned")(everything) == [], f"a banned member sees nothing at all in {table.name}"


def check_direct_write_is_refused(conn, api, cast, table: Table, op: str, who: str):
    before = snapshot(conn, table.name)
    with raises_sqlstate("42501"):
        api(who)(getattr(table, op), {"org": cast.team})
    assert snapshot(conn, table.name) == before, f"{who}'s refused {op} on {table.name} changed nothing"
