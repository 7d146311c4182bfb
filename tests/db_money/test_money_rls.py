"""Row level security and grants of the money tables, as PostgREST runs requests:
credit_accounts, credit_grants, credit_ledger, credit_reservations, credit_balances,
api_keys, usage_events, api_requests and model_prices; plus create_api_key and
revoke_api_key.

None of these tables grants a write to anon or authenticated, so every direct write
by them is a grant denial (42501, nothing changed); reading another organization's
rows is a USING denial (zero rows, no error). Only the service role writes directly."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.db_money.helpers import KEY_RE, PERSONAS, api, begin, cast, create_key, finish, one, reserve, rows, sha256
from tests.pg import as_user, raises_sqlstate, scalar, snapshot

MEMBERS = {"owner", "admin", "member"}
ADMINS = {"owner", "admin"}
EVERYONE = ("anon", *PERSONAS, "service")
NOT_SERVICE = ("anon", *PERSONAS)


@dataclass(frozen=True)
class Money:
    key: dict  # the team's API key (create_api_key result, with the plaintext)
    other_key: dict  # other_team's


@pytest.fixture
def money(conn, cast) -> Money:
    """Rows in every money table for both teams: grants and ledger (from their plan
    allowance), a settled chat request (usage event, api_requests row) and an open
    reservation each, and one API key each."""
    key = create_key(conn, cast.owner, cast.team, name="team key")
    other_key = create_key(conn, cast.outsider, cast.other_team, name="other key")
    for org, k, tag in ((cast.team, key, "team"), (cast.other_team, other_key, "other")):
        began = begin(conn, f"rls-{tag}", completion_tokens_limit=100, key=k["key"])
        finish(conn, f"rls-{tag}", org, prompt_tokens=500, completion_tokens=50, api_key_id=began["api_key_id"],
               user_id=began["user_id"])
        reserve(conn, org, f"rls-{tag}-open", 25)
    return Money(key=key, other_key=other_key)


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


# Section - select


@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize("name", TABLES)
def test_select(conn, api, cast, money, name, who):
    table = TABLES[name]
    expected = superuser_count(conn, table, cast.team)
    assert expected > 0, f"the fixture put rows of the team in {name}"
    if who == "service":
        got = api(who)(table.select, {"org": cast.team})
        assert len(got) == expected, f"the service role reads every row of {name}"
    elif (who == "anon" and not table.anon_reads) or (who != "anon" and table.denied):
        with raises_sqlstate("42501"):
            api(who)(table.select, {"org": cast.team})
    else:
        got = api(who)(table.select, {"org": cast.team})
        if who == "anon" or who in table.readers:
            assert len(got) == expected, f"{who} reads the team's {len(got)}/{expected} rows of {name}"
        else:
            assert got == [], f"{who} must see none of the team's rows in {name} (USING denial, no error)"


@pytest.mark.parametrize("name", [n for n, x in TABLES.items() if not x.denied and "model_prices" not in n])
def test_members_see_only_their_own_orgs_rows(conn, api, cast, money, name):
    table = TABLES[name]
    everything = table.select.split(" where ")[0]
    mine = {r["org_id"] for r in api("owner")(everything)}
    assert cast.other_team not in mine, f"the team's owner sees nothing of other_team in {name}"
    assert cast.team in mine, f"but does see the team's rows in {name}"
    theirs = {r["org_id"] for r in api("outsider")(everything)}
    assert cast.other_team in theirs and cast.team not in theirs, f"and the outsider the other way round in {name}"
    assert api("banned")(everything) == [], f"a banned member sees nothing at all in {name}"


def test_credit_balances_shows_the_account(conn, api, cast, money):
    got = api("member").one("select * from public.credit_balances where org_id = %s", (cast.team,))
    acct = one(conn, "select * from public.credit_accounts where org_id = %s", (cast.team,))
    plan_left = scalar(conn, "select sum(remaining) from public.credit_grants where org_id = %s and kind = 'plan'",
                       (cast.team,))
    assert (got["remaining"], got["reserved"], got["period_start"], got["period_end"], got["plan_remaining"]) == \
        (acct["balance"], acct["reserved"], acct["period_start"], acct["period_end"], plan_left), \
        f"the view mirrors the account: {got}"
    assert got["reserved"] == 25, "the open reservation shows as reserved"


def test_credit_balances_is_security_invoker(conn):
    options = scalar(conn, "select reloptions from pg_class where oid = 'public.credit_balances'::regclass")
    assert "security_invoker=true" in (options or []), f"the view runs with the caller's rights: {options}"


@pytest.mark.parametrize("who", PERSONAS)
def test_nobody_reads_key_hashes(conn, api, cast, money, who):
    with raises_sqlstate("42501"):
        api(who)("select key_hash from public.api_keys where org_id = %s", (cast.team,))
    with raises_sqlstate("42501"):
        api(who)("select * from public.api_keys where org_id = %s", (cast.team,))


def test_members_list_keys_without_the_secret(conn, api, cast, money):
    listed = api("member")("select id, name, prefix, status, usage_count from public.api_keys where org_id = %s",
                           (cast.team,))
    assert [(str(r["id"]), r["name"], r["prefix"], r["status"], r["usage_count"]) for r in listed] == \
        [(money.key["id"], "team key", money.key["key"][:12], "active", 1)], f"a member lists the team's key: {listed}"


def test_service_role_reads_key_hashes(conn, api, cast, money):
    got = api("service").one("select key_hash from public.api_keys where id = %s", (money.key["id"],))
    assert bytes(got["key_hash"]) == sha256(money.key["key"]), "the service role (the proxy) reads the hash"


def test_usage_rows_are_readable_by_members_request_log_by_admins(conn, api, cast, money):
    for who in ("owner", "admin", "member"):
        seen = api(who)("select request_id from public.usage_events where org_id = %s", (cast.team,))
        assert [r["request_id"] for r in seen] == ["rls-team"], f"{who} reads the team's usage"
    for who in ("owner", "admin"):
        seen = api(who)("select request_id, status_code from public.api_requests where org_id = %s", (cast.team,))
        assert [(r["request_id"], r["status_code"]) for r in seen] == [("rls-team", 200)], f"{who} reads the log"
    assert api("member")("select request_id from public.api_requests") == [], \
        "a plain member reads no request log (it may hold customer data)"


# Section - writes


@pytest.mark.parametrize("who", NOT_SERVICE)
@pytest.mark.parametrize("op", ["insert", "update", "delete"])
@pytest.mark.parametrize("name", TABLES)
def test_direct_writes_are_refused(conn, api, cast, money, name, op, who):
    table = TABLES[name]
    before = snapshot(conn, name)
    with raises_sqlstate("42501"):
        api(who)(getattr(table, op), {"org": cast.team})
    assert snapshot(conn, name) == before, f"{who}'s refused {op} on {name} changed nothing"


@pytest.mark.parametrize("who", ["owner", "outsider"])
def test_writes_to_own_rows_are_refused_too(conn, api, cast, money, who):
    """Even an organization's owner cannot touch its money rows directly."""
    org = cast.team if who == "owner" else cast.other_team
    for name, table in TABLES.items():
        if table.denied or "model_prices" in name:
            continue
        before = snapshot(conn, name)
        with raises_sqlstate("42501"):
            api(who)(table.update, {"org": org})
        assert snapshot(conn, name) == before, f"the {who}'s update of their own {name} changed nothing"


def test_service_role_writes_api_keys(conn, api, cast, money):
    svc = api("service")
    new_id = svc.one("insert into public.api_keys (org_id, name, prefix, key_hash) "
                     "values (%s, 'imported', 'xan_imported', %s) returning id",
                     (cast.team, sha256("imported")))["id"]
    assert scalar(conn, "select name from public.api_keys where id = %s", (new_id,)) == "imported", "inserted"
    assert svc.count("update public.api_keys set name = 'renamed' where id = %s returning id", (new_id,)) == 1, \
        "the service role updates a key"
    assert scalar(conn, "select name from public.api_keys where id = %s", (new_id,)) == "renamed", "updated"
    assert svc.count("delete from public.api_keys where id = %s returning id", (new_id,)) == 1, "and deletes it"
    assert scalar(conn, "select count(*) from public.api_keys where id = %s", (new_id,)) == 0, "deleted"


def test_service_role_writes_model_prices(conn, api):
    svc = api("service")
    assert svc.count("insert into public.model_prices (model, input_usd_per_1m, cached_input_usd_per_1m, "
                     "output_usd_per_1m) values ('gpt-test', 1, 0.5, 2) returning model") == 1, "inserted"
    assert svc.count("update public.model_prices set output_usd_per_1m = 3 where model = 'gpt-test' "
                     "returning model") == 1, "updated"
    assert scalar(conn, "select output_usd_per_1m from public.model_prices where model = 'gpt-test'") == 3, "stored"
    assert svc.count("delete from public.model_prices where model = 'gpt-test' returning model") == 1, "deleted"
    assert scalar(conn, "select count(*) from public.model_prices where model = 'gpt-test'") == 0, "gone"


def test_service_role_cannot_rewrite_the_ledger(conn, api, cast, money):
    before = snapshot(conn, "public.credit_ledger")
    with raises_sqlstate("42501", "append-only"):
        api("service")("update public.credit_ledger set amount = 1000000 where org_id = %s", (cast.team,))
    assert snapshot(conn, "public.credit_ledger") == before, "the ledger is unchanged"


def test_service_role_cannot_delete_ledger_rows(conn, api, cast, money):
    before = snapshot(conn, "public.credit_ledger")
    with raises_sqlstate("42501"):
        api("service")("delete from public.credit_ledger where org_id = %s", (cast.team,))
    assert snapshot(conn, "public.credit_ledger") == before, "the ledger is unchanged"


@pytest.mark.parametrize("who", ["anon", "member"])
def test_api_roles_cannot_lock_model_prices(conn, api, money, who):
    role = "anon" if who == "anon" else "authenticated"
    with raises_sqlstate("42501"):
        api(who)("lock table public.model_prices in access exclusive mode")  # would stall every chat request
    assert not scalar(conn, "select has_table_privilege(%s, 'public.model_prices', 'MAINTAIN')", (role,)), \
        f"{role} holds no MAINTAIN privilege on model_prices"


def test_api_roles_hold_only_select_on_the_money_tables(conn):
    privileges = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN")
    held = rows(conn, """
        select r.role, t.name, p.priv from unnest(array['anon', 'authenticated']) r(role)
        cross join unnest(%s::text[]) t(name) cross join unnest(%s::text[]) p(priv)
        where has_table_privilege(r.role, t.name, p.priv)
    """, ([n for n in TABLES if "model_prices" not in n], list(privileges)))
    assert held == [], f"the API roles hold no write privilege on a money table: {held}"


# Section - create_api_key


def stored_key(conn, key_id) -> dict:
    return one(conn, "select * from public.api_keys where id = %s", (key_id,))


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_and_admins_create_keys(conn, cast, who):
    person = getattr(cast, who)
    expires = scalar(conn, "select now() + interval '30 days'")
    k = create_key(conn, person, cast.team, name="  CI key  ", description="for CI", project_id=cast.project,
                   expires_at=expires)
    assert KEY_RE.match(k["key"]), f"the key is 'xan_' and 64 hex characters: {k['key']}"
    row = stored_key(conn, k["id"])
    assert bytes(row["key_hash"]) == sha256(k["key"]), "only sha256(key) is stored"
    assert row["prefix"] == k["prefix"] == k["key"][:12], "the display prefix is 'xan_' and the first 8 characters"
    assert (row["org_id"], row["project_id"], row["created_by"], row["name"], row["description"], row["status"],
            row["expires_at"]) == (cast.team, cast.project, person.id, "CI key", "for CI", "active", expires), \
        f"the key row: {row}"
    assert k["key"] not in str(row), "the plaintext is stored nowhere in the row"
    hashed = scalar(conn, "select sha256(convert_to(%s, 'UTF8')) = key_hash from public.api_keys where id = %s",
                    (k["key"], k["id"]))
    assert hashed, "sha256(convert_to(key, 'UTF8')) in SQL matches the stored hash"


def test_every_key_is_different(conn, cast):
    keys = {create_key(conn, cast.owner, cast.team, name=f"k{i}")["key"] for i in range(5)}
    assert len(keys) == 5, "five calls, five different keys"


@pytest.mark.parametrize("who,sqlstate", [("member", "42501"), ("outsider", "42501"), ("banned", "42501"),
                                          ("anon", "42501")])
def test_others_cannot_create_keys(conn, api, cast, who, sqlstate):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate(sqlstate):
        api(who)("select public.create_api_key(org_id := %s, name := 'nope')", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, f"{who}'s refused create_api_key made no key"


def test_service_role_cannot_create_keys_without_a_user(conn, api, cast):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT401"):
        api("service")("select public.create_api_key(org_id := %s, name := 'nope')", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, "no key without a signed-in caller"


def test_create_key_for_an_unknown_org_is_404(conn, api):
    with raises_sqlstate("PT404"):
        api("owner")("select public.create_api_key(org_id := %s, name := 'nope')", (uuid.uuid4(),))


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, None])
def test_create_key_needs_a_name(conn, api, cast, name):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "name"):
        api("admin")("select public.create_api_key(org_id := %s, name := %s)", (cast.team, name))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


def test_create_key_refuses_another_orgs_project(conn, api, cast):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "not in this organization"):
        api("owner")("select public.create_api_key(org_id := %s, name := 'k', project_id := %s)",
                     (cast.team, cast.other_project))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


@pytest.mark.parametrize("when", ["now() - interval '1 day'", "now()"])
def test_create_key_refuses_a_past_expiry(conn, api, cast, when):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT400", "future"):
        api("owner")(f"select public.create_api_key(org_id := %s, name := 'k', expires_at := {when})", (cast.team,))
    assert snapshot(conn, "public.api_keys") == before, "no key was made"


# Section - revoke_api_key


def test_admin_revokes_a_key(conn, api, cast, money):
    got = api("admin").one("select public.revoke_api_key(id := %s) as r", (money.key["id"],))["r"]
    row = stored_key(conn, money.key["id"])
    assert got == {"id": money.key["id"], "status": "revoked", "revoked_at": got["revoked_at"]} and got["revoked_at"], \
        f"revoke_api_key reports the revocation: {got}"
    assert (row["status"], row["revoked_by"]) == ("revoked", cast.admin.id) and row["revoked_at"] is not None, \
        f"the key is revoked by the admin: {row}"
    listed = api("member")("select status from public.api_keys where id = %s", (money.key["id"],))
    assert [r["status"] for r in listed] == ["revoked"], "members still list it, as revoked"


def test_revoking_twice_is_a_no_op(conn, api, cast, money):
    api("admin")("select public.revoke_api_key(id := %s)", (money.key["id"],))
    first = stored_key(conn, money.key["id"])
    again = api("owner").one("select public.revoke_api_key(id := %s) as r", (money.key["id"],))["r"]
    second = stored_key(conn, money.key["id"])
    assert again["status"] == "revoked", f"the second call reports the revoked key: {again}"
    assert (second["status"], second["revoked_at"], second["revoked_by"]) == \
        (first["status"], first["revoked_at"], first["revoked_by"]), "the first revocation is kept as it was"


@pytest.mark.parametrize("who,sqlstate", [("member", "42501"), ("banned", "42501"), ("outsider", "PT404"),
                                          ("anon", "42501")])
def test_others_cannot_revoke(conn, api, cast, money, who, sqlstate):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate(sqlstate):
        api(who)("select public.revoke_api_key(id := %s)", (money.key["id"],))
    assert snapshot(conn, "public.api_keys") == before, f"{who}'s refused revoke changed nothing"
    assert stored_key(conn, money.key["id"])["status"] == "active", "the key stays active"


def test_revoking_an_unknown_key_is_404(conn, api):
    with raises_sqlstate("PT404"):
        api("owner")("select public.revoke_api_key(id := %s)", (uuid.uuid4(),))


def test_admin_of_one_org_cannot_revoke_anothers_key(conn, api, cast, money):
    before = snapshot(conn, "public.api_keys")
    with raises_sqlstate("PT404"):
        api("admin")("select public.revoke_api_key(id := %s)", (money.other_key["id"],))
    assert snapshot(conn, "public.api_keys") == before, "another organization's key is not even found"


def test_user_cannot_call_the_service_rpcs(conn, api, cast, money):
    """The credit and chat RPCs are for the service role only."""
    calls = [
        "select public.reserve_credits(org_id := %(org)s, request_id := 'x', amount := 1)",
        "select public.settle_credits(request_id := 'rls-team-open', charge := 0)",
        "select public.release_credits(request_id := 'rls-team-open')",
        "select public.release_stale_reservations()",
        "select public.grant_credits(org_id := %(org)s, kind := 'adjustment', amount := 1000000)",
        "select public.begin_chat_request(request_id := 'x', model := 'gpt-4o-mini', prompt_tokens_bound := 1, "
        "user_id := %(me)s)",
        "select public.finish_chat_request(request_id := 'rls-team-open', status := 'succeeded', http_status := 200, "
        "endpoint := '/v1', org_id := %(org)s, model := 'gpt-4o-mini')",
        "select public.ensure_usage_partitions()",
    ]
    before = snapshot(conn, "public.credit_ledger", "public.credit_reservations", "public.usage_events")
    for who in ("anon", "owner"):
        for sql in calls:
            with raises_sqlstate("42501"):
                api(who)(sql, {"org": cast.team, "me": cast.owner.id})
    assert snapshot(conn, "public.credit_ledger", "public.credit_reservations", "public.usage_events") == before, \
        "none of the refused calls changed anything"
    got = as_user(conn, cast.owner)  # sanity: the same person can read their balance
    assert got("select org_id from public.credit_balances where org_id = %s", (cast.team,)), "and read the balance"
