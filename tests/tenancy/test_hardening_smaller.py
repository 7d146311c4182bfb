"""Finding 6 of issue 11 (the membership oracle is in test_hardening_invitations.py):
organizations.stripe_customer_id is for admins only; URL columns take https: (http: on
localhost) only; profiles has one SELECT policy per role and action, and so does every
other table in public."""
from __future__ import annotations

import pytest

from tests.support.personas import add_member, make_team, make_user
from tests.support.pg import as_user, raises_sqlstate, scalar


@pytest.fixture
def billed(conn):
    owner, admin, member = make_user(conn, "owner"), make_user(conn, "admin"), make_user(conn, "member")
    org = make_team(conn, owner, allowance=0)
    add_member(conn, org, admin, "admin")
    add_member(conn, org, member, "member")
    conn.execute("update public.organizations set stripe_customer_id = 'cus_Secret' where id = %s", (org,))
    return owner, admin, member, org


def test_member_cannot_read_the_stripe_customer_id(conn, billed):
    owner, admin, member, org = billed
    with raises_sqlstate("42501"):
        as_user(conn, member)("select stripe_customer_id from public.organizations where id = %s", (org,))
    with raises_sqlstate("42501"):
        as_user(conn, member)("select public.organization_stripe_customer_id(org_id := %s)", (org,))


def test_member_still_reads_the_rest_of_the_org(conn, billed):
    owner, admin, member, org = billed
    row = as_user(conn, member).one("select id, name, slug, personal, plan_id, billing_status, created_at "
                                    "from public.organizations where id = %s", (org,))
    assert row["id"] == org and row["plan_id"] == "free"


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_admins_read_the_stripe_customer_id(conn, billed, who):
    person = dict(zip(("owner", "admin"), billed))[who]
    got = as_user(conn, person).one("select public.organization_stripe_customer_id(org_id := %s) as c", (billed[3],))
    assert got["c"] == "cus_Secret"


def test_outsider_cannot_read_the_stripe_customer_id(conn, billed):
    with raises_sqlstate("42501"):
        as_user(conn, make_user(conn, "outsider"))(
            "select public.organization_stripe_customer_id(org_id := %s)", (billed[3],))


BAD_URLS = ["javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", "data:text/html,<script>x</script>",
            "http://evil.example/a.png", "//evil.example/a.png", "https://", "https://a b/c", "ftp://x.example/a",
            "http://localhost.evil.example/a", "vbscript:msgbox(1)"]
GOOD_URLS = ["https://cdn.example.com/a.png?s=64", "HTTPS://lh3.googleusercontent.com/a/x=s96-c",
             "http://localhost:54321/storage/v1/a.png", "http://127.0.0.1/a.png", "https://example.com"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_avatar_url_refuses_unsafe_urls(conn, url):
    person = make_user(conn, "artist")
    with raises_sqlstate("23514"):
        as_user(conn, person)("update public.profiles set avatar_url = %s where id = %s", (url, person.id))
    assert scalar(conn, "select avatar_url from public.profiles where id = %s", (person.id,)) is None


@pytest.mark.parametrize("url", GOOD_URLS)
def test_avatar_url_takes_https_and_local_http(conn, url):
    person = make_user(conn, "artist")
    assert as_user(conn, person).count("update public.profiles set avatar_url = %s where id = %s returning id",
                                       (url, person.id)) == 1


def test_sign_up_with_an_unsafe_avatar_drops_it(conn):
    person = make_user(conn, "oauth", avatar_url="javascript:alert(1)")
    assert scalar(conn, "select avatar_url from public.profiles where id = %s", (person.id,)) is None
    safe = make_user(conn, "oauth2", picture="https://cdn.example.com/p.png")
    assert scalar(conn, "select avatar_url from public.profiles where id = %s", (safe.id,)) == \
        "https://cdn.example.com/p.png"


def test_every_url_column_is_https_only(conn):
    rows = conn.execute(
        "select c.table_name || '.' || c.column_name from information_schema.columns c "
        "where c.table_schema = 'public' and c.column_name like '%%url' "
        "and c.domain_name is distinct from 'https_url'").fetchall()
    assert rows == [], f"URL columns without the https_url domain: {rows}"


def test_one_permissive_policy_per_table_role_and_action(conn):
    rows = conn.execute(
        "select tablename, r, cmd, count(*) from pg_policies, unnest(roles) r "
        "where schemaname = 'public' and permissive = 'PERMISSIVE' "
        "group by tablename, r, cmd having count(*) > 1").fetchall()
    assert rows == [], f"several permissive policies for one role and action (multiple_permissive_policies): {rows}"


def test_profiles_select_policy_still_separates_owner_and_platform_admin(conn):
    user, other, admin = make_user(conn, "user"), make_user(conn, "other"), make_user(conn, "padmin")
    conn.execute("update public.profiles set role = 'admin' where id = %s", (admin.id,))
    assert [r["id"] for r in as_user(conn, user)("select id from public.profiles")] == [user.id]
    seen = {r["id"] for r in as_user(conn, admin)("select id from public.profiles")}
    assert {user.id, other.id, admin.id} <= seen
