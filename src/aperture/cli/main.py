"""``aperture``: query, aggregate and diff profiles held by an aggregator."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from aperture import __version__
from aperture.cli.commands import (
    aggregate,
    alerts,
    convert,
    diff,
    export,
    filter_test,
    import_profile,
    query,
    syscalls,
    top,
)
from aperture.cli.rest import add_api_argument
from aperture.errors import UserError

PROG = "aperture"
COMMANDS: dict[str, ModuleType] = {
    "query": query,
    "aggregate": aggregate,
    "diff": diff,
    "top": top,
    "syscalls": syscalls,
    "export": export,
    "import": import_profile,
    "convert": convert,
    "filter-test": filter_test,
    "alerts": alerts,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        cmd.add_argument(
            "--endpoint",
            default="http://127.0.0.1:50051",
            help="the aggregator's gRPC address (default: http://127.0.0.1:50051)",
        )
        cmd.add_argument(
            "--token", default=None, help="bearer token (default: $APERTURE_AUTH_TOKEN)"
        )
        cmd.add_argument("--tls-ca", type=Path, default=None, help="CA file for https endpoints")
        add_api_argument(cmd)
        cmd.add_argument("--json", action="store_true", help="print JSON for machines")
        module.prepare_parser(cmd)
    return parser


# Flags whose values may start with "-" (relative times): argparse would read
# "--from -1h" as two options, so such pairs become "--from=-1h".
TIME_FLAGS = ("--from", "--to", "--baseline", "--comparison")


def join_time_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] in TIME_FLAGS and i + 1 < len(args) and args[i + 1].startswith("-"):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (callable from tests)."""
    from aperture.cli.client import Client

    args = build_parser().parse_args(join_time_values(sys.argv[1:] if argv is None else argv))
    try:
        client = Client(args.endpoint, token=args.token, tls_ca=args.tls_ca)
        try:
            print(COMMANDS[args.command].run(args, client))
        finally:
            client.close()
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
