"""`tollbooth serve`: every function on one production-style server: uvicorn worker
processes (uvloop, httptools), each serving one ASGI app that runs the async functions
(chat) natively and the flask ones through a thread pool."""
from __future__ import annotations

import argparse
import os
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from functions import mounts
from lib.cli.common import use_local_database_unless_configured
from lib.core import log
from lib.core.server import ExactPaths, create_asgi_app, serve_asgi
from lib.local.stack import LOCAL_JWT_SECRET


def asgi_app() -> ExactPaths:
    """Each worker's app (uvicorn calls this factory in every worker process)."""
    log.configure(os.environ.get("LOG_LEVEL", "INFO"))
    return create_asgi_app(mounts(), wsgi_threads=int(os.environ.get("TOLLBOOTH_WSGI_THREADS", "16")))


def database_is_local(database_url: str) -> bool:
    """Whether every host of this Postgres URL is this machine (loopback or a socket)."""
    try:
        hosts = str(conninfo_to_dict(database_url).get("host") or "").split(",")
    except psycopg.ProgrammingError:
        return False
    return all(h in ("", "localhost", "::1") or h.startswith(("127.", "/")) for h in hosts)


def default_workers(database_url: str | None, cores: int) -> int:
    """One worker per core, but one per two cores when Postgres runs on this machine: a
    worker is one event loop that never blocks, so it can use a whole core, and every
    core a worker takes is one Postgres has not. Measured on 2 cores with a local
    Postgres (bench/floor.py, and the two side by side in one run): one worker answered
    concurrency 4 and 16 faster than two (p50 4.0 / 12.0 ms over direct against 4.3 /
    14.9, p99 7.3 against 9.2 ms at concurrency 4), and concurrency 1 the same. With one
    worker, one organization's metering calls also all share one lane (lib.core.lanes)
    instead of waiting on its account row across processes."""
    if database_url and database_is_local(database_url):
        return max(1, cores // 2)
    return max(1, cores)


def cmd_serve(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    if args.workers is None:
        args.workers = default_workers(os.environ.get("DATABASE_URL"), os.cpu_count() or 1)
    os.environ.setdefault("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    os.environ["TOLLBOOTH_WSGI_THREADS"] = str(args.threads)
    log.configure(os.environ.get("LOG_LEVEL", "INFO"))
    print(f"serving every function on http://{args.host}:{args.port} "
          f"({args.workers} uvicorn workers; {args.threads} threads each for the WSGI functions)", flush=True)
    serve_asgi("lib.cli.serve:asgi_app", args.host, args.port, workers=args.workers)
    return 0


def register(sub: Any) -> None:
    sv = sub.add_parser("serve", help="serve every function on one server")
    sv.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s)")
    sv.add_argument("--port", type=int, default=8787, help="port to serve on (default %(default)s)")
    concurrency = os.environ.get("WEB_CONCURRENCY")
    sv.add_argument("--workers", type=int, default=int(concurrency) if concurrency else None,
                    help="uvicorn worker processes (default WEB_CONCURRENCY, else one per CPU core, or one per "
                         "two cores when Postgres runs on this machine)")
    sv.add_argument("--threads", type=int, default=16,
                    help="threads per worker for the flask (WSGI) functions (default %(default)s)")
    sv.set_defaults(func=cmd_serve)
