"""`tollbooth serve`: every function on one production-style server: uvicorn worker
processes (uvloop, httptools), each serving one ASGI app that runs the async functions
(chat) natively and the flask ones through a thread pool."""
from __future__ import annotations

import argparse
import os
from typing import Any

from functions import mounts
from lib.cli.common import use_local_database_unless_configured
from lib.core import log
from lib.core.server import ExactPaths, create_asgi_app, serve_asgi
from lib.local.stack import LOCAL_JWT_SECRET


def asgi_app() -> ExactPaths:
    """Each worker's app (uvicorn calls this factory in every worker process)."""
    log.configure(os.environ.get("LOG_LEVEL", "INFO"))
    return create_asgi_app(mounts(), wsgi_threads=int(os.environ.get("TOLLBOOTH_WSGI_THREADS", "16")))


def cmd_serve(args: argparse.Namespace) -> int:
    use_local_database_unless_configured(args)
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
    sv.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2)),
                    help="uvicorn worker processes (default WEB_CONCURRENCY or the CPU count: %(default)s)")
    sv.add_argument("--threads", type=int, default=16,
                    help="threads per worker for the flask (WSGI) functions (default %(default)s)")
    sv.set_defaults(func=cmd_serve)
