"""`tollbooth`: the local stack (embedded Postgres, migrations, seed, server) and admin
tasks. The CLI is the composition root: the only part of `lib` that may import
`functions/` and every capability package. Each group registers its subcommands."""
from __future__ import annotations

import argparse
import os
import sys

from lib.cli import chat, frontend, local, meetings, serve, stripe, usage
from lib.cli.common import NoDatabase
from lib.core.config import DEFAULT_DATA_DIR
from lib.core.errors import MissingSetting


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollbooth", description=__doc__)
    p.add_argument("--data-dir", default=os.environ.get("TOLLBOOTH_DATA_DIR", DEFAULT_DATA_DIR),
                   help="embedded Postgres data directory (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    local.register(sub)
    serve.register(sub)
    stripe.register(sub)
    frontend.register(sub)
    meetings.register(sub)
    chat.register(sub)
    usage.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except MissingSetting as err:
        print(f"error: `tollbooth {args.command}` needs {err.setting}: set it in the environment "
              f"and run it again", file=sys.stderr)
        return 1
    except NoDatabase as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
