"""GET /v1/models: OpenAI's list shape, only the models the caller's plan allows, with
our prices; API keys and Supabase JWTs as for chat; a bad key is 401."""
from __future__ import annotations

import httpx
import psycopg
import pytest

from lib.core.auth import mint_access_token
from tests.support.personas import Person, make_team, make_user, personal_org
from tests.support.pg import as_user
from tests.support.secrets import JWT_SECRET
from tests.support.server import running_server

# the chat models of the free plan, and (issue 12) the embedding models every plan that lists models got
FREE_MODELS = ["gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o-mini", "text-embedding-3-large", "text-embedding-3-small"]


@pytest.fixture
def env(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as sql:
        with running_server(DATABASE_URL=fresh_dsn, SUPABASE_URL=None, SUPABASE_JWT_SECRET=JWT_SECRET,
                            OPENAI_API_KEY="sk-unused") as base:
            yield base, sql


def create_key(sql: psycopg.Connection, person: Person, org) -> str:
    with sql.transaction():
        row = as_user(sql, person).one("select public.create_api_key(org_id := %s, name := 'models test') as k", (org,))
    assert row
    return str(row["k"]["key"])


def get_models(base: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{base}/v1/models", headers={"authorization": f"Bearer {token}", **headers}, timeout=10)


def active_models(sql: psycopg.Connection) -> list[str]:
    return [r[0] for r in sql.execute("select model from public.model_prices where active order by model")]


def test_a_key_on_the_free_plan_lists_only_the_free_models_in_openais_shape(env):
    base, sql = env
    owner = make_user(sql, "owner")
    org = personal_org(sql, owner)
    assert sql.execute("select plan_id from organizations where id = %s", (org,)).fetchone()[0] == "free"
    r = get_models(base, create_key(sql, owner, org))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == FREE_MODELS
    mini = next(m for m in body["data"] if m["id"] == "gpt-4o-mini")
    assert mini["object"] == "model" and isinstance(mini["created"], int) and mini["owned_by"] == "openai"
    assert mini["pricing"] == {"input_usd_per_1m": "0.15", "cached_input_usd_per_1m": "0.075",
                               "output_usd_per_1m": "0.6", "credit_multiplier": "1"}
    assert mini["plan"] == "free"


def test_a_key_on_the_pro_plan_lists_every_active_model(env):
    base, sql = env
    owner = make_user(sql, "owner")
    team = make_team(sql, owner)
    sql.execute("update organizations set plan_id = 'pro' where id = %s", (team,))
    sql.execute("update model_prices set active = false where model = 'o3-mini'")
    r = get_models(base, create_key(sql, owner, team))
    assert r.status_code == 200, r.text
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == active_models(sql) and "o3-mini" not in ids and len(ids) > len(FREE_MODELS)


def test_a_jwt_lists_its_personal_org_or_the_org_it_names(env):
    base, sql = env
    owner, member = make_user(sql, "owner"), make_user(sql, "member")
    team = make_team(sql, owner, member=member)
    sql.execute("update organizations set plan_id = 'pro' where id = %s", (team,))
    token = mint_access_token(member.id, member.email, JWT_SECRET)
    assert [m["id"] for m in get_models(base, token).json()["data"]] == FREE_MODELS
    r = get_models(base, token, **{"x-org-id": str(team)})
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == active_models(sql)
    outsider = make_user(sql, "outsider")
    r = get_models(base, mint_access_token(outsider.id, outsider.email, JWT_SECRET), **{"x-org-id": str(team)})
    assert r.status_code == 403


def test_bad_or_revoked_key_is_401(env):
    base, sql = env
    r = get_models(base, "xan_" + "0" * 64)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_api_key"
    assert httpx.get(f"{base}/v1/models", timeout=10).status_code == 401
    owner = make_user(sql, "owner")
    org = personal_org(sql, owner)
    key = create_key(sql, owner, org)
    sql.execute("update api_keys set status = 'revoked', revoked_at = now() where org_id = %s", (org,))
    r = get_models(base, key)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert httpx.post(f"{base}/v1/models", timeout=10).status_code == 405
