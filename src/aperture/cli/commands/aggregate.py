"""``aperture aggregate``: a range's profile summed into top functions and stacks (gRPC)."""

from __future__ import annotations

import argparse
import json
import time

from aperture.cli.client import Client
from aperture.errors import UsageError
from aperture.formats.tables import render_table
from aperture.profile_types import stack_type_names
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.timeparse import parse_time

HELP = "sum a time range into top functions and heaviest stacks (gRPC Aggregate)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=stack_type_names(), default="cpu", help="event type")
    parser.add_argument("--from", dest="from_", default="-1h", metavar="TIME",
                        help="start: RFC 3339, unix ns or relative (default: -1h)")  # fmt: skip
    parser.add_argument("--to", default="now", metavar="TIME", help="end (default: now)")
    parser.add_argument("--limit", type=int, default=20, help="rows shown (default: 20)")
    parser.add_argument("--agent", default="", help="only this agent_id")
    parser.add_argument("--host", default="", help="only this host")
    parser.add_argument("--pid", type=int, default=0, help="only this process id")


def request_of(args: argparse.Namespace, from_: str, to: str, now_ns: int) -> apb.AggregateRequest:
    try:
        start, end = parse_time(from_, now_ns=now_ns), parse_time(to, now_ns=now_ns)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return apb.AggregateRequest(event_type=args.type, from_ns=start, to_ns=end,
                                agent_id=args.agent, host=args.host, pid=args.pid,
                                limit=args.limit)  # fmt: skip


def run(args: argparse.Namespace, client: Client) -> str:
    request = request_of(args, args.from_, args.to, time.time_ns())
    response = client.call(client.stub.Aggregate, request)
    if args.json:
        return json.dumps({
            "total": response.total, "unit": response.unit,
            "functions": [{"name": f.name, "module": f.module, "self": f.self,
                           "total": f.total} for f in response.functions],
            "stacks": [{"frames": list(s.frames), "value": s.value} for s in response.stacks],
        }, indent=2)  # fmt: skip
    if not response.total:
        return "no samples in this range: widen it (--from) or check the agents"
    share = 100.0 / response.total
    functions = render_table(
        ["self%", "total%", "function", "module"],
        [[f"{f.self * share:.2f}%", f"{f.total * share:.2f}%", f.name, f.module]
         for f in response.functions],
        left=0, last_left=True,
    )  # fmt: skip
    stacks = "\n".join(
        f"{s.value * share:6.2f}%  {';'.join(s.frames)}" for s in response.stacks[: args.limit]
    )
    return (f"{response.total} {response.unit}\n\n{functions.rstrip()}\n\n"
            f"heaviest stacks (root first):\n{stacks}")  # fmt: skip
