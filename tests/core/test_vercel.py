"""vercel.json can never drift from the functions that exist."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from functions import ROUTES

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "vercel.json").read_text())


def _vercel_source(flask_path: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r":\1", flask_path)


def _entry_module(destination: str) -> str:
    """The functions.<module> an api/<name>.py entry point imports `app` from."""
    name = destination.removeprefix("/api/")
    path = ROOT / "api" / f"{name}.py"
    assert path.exists(), f"{destination} has no api/{name}.py"
    tree = ast.parse(path.read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "app" for a in n.names)]
    assert imports, f"api/{name}.py does not import app"
    module = imports[0].module
    assert module and module.startswith("functions."), f"api/{name}.py imports from {module}"
    assert (ROOT / "functions" / f"{module.split('.', 1)[1]}.py").exists(), f"{module} does not exist"
    return module.split(".", 1)[1]


def test_every_rewrite_lands_on_an_existing_function():
    for rule in CONFIG["rewrites"]:
        module = _entry_module(rule["destination"])
        routes = [r for r in ROUTES if _vercel_source(r.path) == rule["source"]]
        assert routes, f"rewrite {rule['source']} is not a route in functions.ROUTES"
        assert routes[0].module == module, f"{rule['source']} goes to {module}, ROUTES says {routes[0].module}"


def test_every_route_is_deployed():
    sources = {r["source"] for r in CONFIG["rewrites"]}
    for route in ROUTES:
        assert _vercel_source(route.path) in sources, f"route {route.path} missing from vercel.json rewrites"


def test_every_cron_calls_a_route_and_is_a_valid_schedule():
    paths = {_vercel_source(r.path) for r in ROUTES}
    for cron in CONFIG.get("crons", []):
        assert cron["path"].split("?")[0] in paths, f"cron {cron['path']} is not a route"
        assert len(cron["schedule"].split()) == 5, f"cron schedule {cron['schedule']!r} is not 5 fields"


def test_every_function_target_exists_for_functions_framework():
    import importlib

    for route in ROUTES:
        module = importlib.import_module(f"functions.{route.module}")
        assert callable(getattr(module, route.target, None)), f"functions/{route.module}.py has no {route.target}()"
        assert hasattr(module, "app"), f"functions/{route.module}.py exports no WSGI or ASGI app for Vercel"


def test_the_usage_rollup_cron_is_scheduled_on_a_get_route():
    crons = {c["path"]: c["schedule"] for c in CONFIG.get("crons", [])}
    assert "/api/cron/usage-rollup" in crons, "the rollup and lifecycle job is scheduled"
    route = next(r for r in ROUTES if r.path == "/api/cron/usage-rollup")
    assert "GET" in route.methods, "Vercel Cron calls its path with GET"


def test_the_chat_entry_point_is_an_asgi_app_answering_our_json_errors():
    """Vercel's Python runtime serves an ASGI `app` as it is: every path reaches chat."""
    import asyncio

    import httpx

    from api.chat import app

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vercel") as client:
            return await client.get("/api/chat")

    r = asyncio.run(call())
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"
    assert r.headers["x-request-id"].startswith("req_")
