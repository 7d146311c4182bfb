"""`tollbooth serve`: every function on one production-style server (gunicorn)."""
from __future__ import annotations

import argparse
import os
from typing import Any

import flask

from functions import mounts
from lib.cli.common import use_local_database_unless_configured
from lib.core import log
from lib.core.server import create_app, serve_wsgi
from lib.local.stack import LOCAL_JWT_SECRET


def app() -> flask.Flask:
    return create_app(mounts())


def cmd_serve(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
    os.environ.setdefault("SUPABASE_JWT_SECRET", LOCAL_JWT_SECRET)
    log.configure(os.environ.get("LOG_LEVEL", "INFO"))
    print(f"serving every function on http://{args.host}:{args.port} "
          f"({args.workers} workers x {args.threads} threads)", flush=True)
    serve_wsgi(app, args.host, args.port, workers=args.workers, threads=args.threads)
    return 0


def register(sub: Any) -> None:
    sv = sub.add_parser("serve", help="serve every function on one server")
    sv.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s)")
    sv.add_argument("--port", type=int, default=8787, help="port to serve on (default %(default)s)")
    sv.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2)),
                    help="gunicorn worker processes (default WEB_CONCURRENCY or the CPU count: %(default)s)")
    sv.add_argument("--threads", type=int, default=16, help="threads per worker (default %(default)s)")
    sv.set_defaults(func=cmd_serve)
