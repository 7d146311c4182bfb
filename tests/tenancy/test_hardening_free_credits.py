"""Finding 1 of issue 11: the free plan's monthly allowance belongs to a person, once a
calendar month, and lives in their personal organization. Creating, deleting and
re-creating team organizations, leaving and re-joining, or deleting and re-creating the
account with the same address never adds free credits. A team that subscribes still
gets its paid plan's allowance."""
from __future__ import annotations

import hashlib

from tests.support.personas import make_team, make_user, personal_org
from tests.support.pg import as_user, scalar
from tests.support.stripe import NOW, apply, catalogue, customer_event, subscription_event


def spendable(conn, person) -> int:
    """Credits across every organization `person` belongs to (as superuser)."""
    return scalar(conn, "select coalesce(sum(a.balance), 0) from public.credit_accounts a "
                        "join public.organization_members m on m.org_id = a.org_id where m.user_id = %s",
                  (person.id,))


def balance(conn, org) -> int:
    return scalar(conn, "select balance from public.credit_accounts where org_id = %s", (org,))


def create_org(conn, person, slug: str):
    return as_user(conn, person).one("select (public.create_organization(name := %s, slug := %s)).id", (slug, slug))["id"]


def test_personal_org_holds_the_free_allowance(conn):
    alice = make_user(conn, "alice")
    assert balance(conn, personal_org(conn, alice)) == 1000, "the person's free allowance is in their personal org"


def test_create_organization_grants_no_free_credits(conn):
    alice = make_user(conn, "alice")
    team = create_org(conn, alice, "alice-team")
    assert balance(conn, team) == 0, "a team on the free plan starts with no plan allowance"
    assert scalar(conn, "select count(*) from public.credit_grants where org_id = %s", (team,)) == 0, "no grant"
    assert scalar(conn, "select period_end > now() from public.credit_accounts where org_id = %s", (team,)), \
        "the team still has a current (empty) period, so it is not re-evaluated on every call"
    assert spendable(conn, alice) == 1000, "one person, one allowance"


def test_creating_deleting_and_recreating_orgs_never_adds_credits(conn):
    alice = make_user(conn, "alice")
    me = as_user(conn, alice)
    for n in range(5):
        team = create_org(conn, alice, f"farm-{n}")
        assert spendable(conn, alice) == 1000, f"after creating org {n}"
        me("select public.delete_organization(org_id := %s)", (team,))
        create_org(conn, alice, f"farm-{n}")  # same slug again
    assert spendable(conn, alice) == 1000, "five creations, five deletions and five re-creations: still 1,000"


def test_leaving_and_rejoining_a_team_adds_nothing(conn):
    owner, bob = make_user(conn, "owner"), make_user(conn, "bob")
    team = make_team(conn, owner, allowance=0)
    for n in range(3):
        invite = as_user(conn, owner).one(
            "select * from public.invite_member(org_id := %s, email := %s, role := 'member')", (team, bob.email))
        as_user(conn, bob)("select public.accept_invitation(token := %s)", (invite["token"],))
        as_user(conn, bob)("select public.leave_organization(org_id := %s)", (team,))
    assert (spendable(conn, bob), balance(conn, team)) == (1000, 0), "joining and leaving moves no credits"


def test_recreated_account_with_the_same_address_gets_no_second_allowance(conn):
    first = make_user(conn, "mallory", email="Mallory.Farm+one@gmail.com")
    assert balance(conn, personal_org(conn, first)) == 1000
    conn.execute("delete from auth.users where id = %s", (first.id,))
    for address in ("mallory.farm+one@gmail.com", "MalloryFarm+two@googlemail.com", " m.a.l.l.o.r.y.farm@GMAIL.com"):
        again = make_user(conn, "mallory", email=address.strip())
        org = personal_org(conn, again)
        assert balance(conn, org) == 0, f"{address}: the same person this month gets no second allowance"
        assert scalar(conn, "select period_end > now() from public.credit_accounts where org_id = %s", (org,))
        conn.execute("delete from auth.users where id = %s", (again.id,))


def test_the_claim_is_stored_as_a_hash_only(conn):
    person = make_user(conn, "hashy", email="Hashy@Example.test")
    rows = conn.execute("select email_hash, org_id from private.free_allowance_claims where org_id = %s",
                        (personal_org(conn, person),)).fetchall()
    assert rows == [(hashlib.sha256(b"email:hashy@example.test").digest(), personal_org(conn, person))]


def test_another_person_still_gets_theirs(conn):
    make_user(conn, "first", email="first@example.test")
    second = make_user(conn, "second", email="second@example.test")
    assert balance(conn, personal_org(conn, second)) == 1000


def test_the_next_month_brings_the_allowance_again(conn):
    alice = make_user(conn, "alice")
    org = personal_org(conn, alice)
    conn.execute("select private.start_plan_period(%s, 'free', date_trunc('month', now()) + interval '1 month', "
                 "date_trunc('month', now()) + interval '2 months')", (org,))
    assert scalar(conn, "select count(*) from public.credit_grants where org_id = %s and kind = 'plan' "
                        "and expired_at is null and remaining = 1000", (org,)) == 1, "a new month, a new allowance"


def test_a_team_that_subscribes_gets_its_paid_allowance(conn):
    owner = make_user(conn, "payer")
    team = create_org(conn, owner, "paying-team")
    apply(conn, *catalogue(), customer_event("cus_HardenTeam", org_id=team),
          subscription_event("sub_HardenTeam", "cus_HardenTeam", org_id=team, type="customer.subscription.created"))
    assert scalar(conn, "select plan_id from public.organizations where id = %s", (team,)) == "pro"
    assert balance(conn, team) == 50000, "pro's monthly credits, as before"

    apply(conn, subscription_event("sub_HardenTeam", "cus_HardenTeam", org_id=team, status="canceled",
                                   type="customer.subscription.deleted", created=NOW - 60))
    assert scalar(conn, "select plan_id from public.organizations where id = %s", (team,)) == "free"
    assert balance(conn, team) == 0, "back on free, a team holds no plan allowance"

