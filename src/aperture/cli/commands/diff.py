"""``aperture diff``: what changed between two time ranges, normalized per side (gRPC)."""

from __future__ import annotations

import argparse
import json
import time

from aperture.cli.client import Client
from aperture.cli.filters import parse_range
from aperture.formats.tables import render_table
from aperture.profile_types import stack_type_names
from aperture.proto.v1 import aggregator_pb2 as apb

HELP = "compare a baseline and a comparison range: each function's share of each (gRPC Diff)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=stack_type_names(), default="cpu", help="event type")
    parser.add_argument("--baseline", default="-2h:-1h", metavar="FROM:TO",
                        help="baseline range (default: -2h:-1h)")  # fmt: skip
    parser.add_argument("--comparison", default="-1h:now", metavar="FROM:TO",
                        help="comparison range (default: -1h:now)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=20, help="rows shown (default: 20)")
    parser.add_argument("--agent", default="", help="only this agent_id (both sides)")
    parser.add_argument("--host", default="", help="only this host (both sides)")
    parser.add_argument("--pid", type=int, default=0, help="only this process id (both sides)")


def run(args: argparse.Namespace, client: Client) -> str:
    now = time.time_ns()
    sides = []
    for flag, text in (("--baseline", args.baseline), ("--comparison", args.comparison)):
        start, end = parse_range(text, flag, now_ns=now)
        side = apb.AggregateRequest(event_type=args.type, from_ns=start, to_ns=end,
                                    agent_id=args.agent, host=args.host, pid=args.pid)  # fmt: skip
        sides.append(side)
    request = apb.DiffRequest(baseline=sides[0], comparison=sides[1], limit=args.limit)
    response = client.call(client.stub.Diff, request)
    if args.json:
        return json.dumps({
            "baseline_total": response.baseline_total,
            "comparison_total": response.comparison_total,
            "functions": [{"name": f.name, "baseline_self": f.baseline_self,
                           "comparison_self": f.comparison_self,
                           "baseline_share": f.baseline_share,
                           "comparison_share": f.comparison_share,
                           "delta_share": f.delta_share} for f in response.functions],
        }, indent=2)  # fmt: skip
    if not (response.baseline_total or response.comparison_total):
        return "no samples in either range: widen them or check the agents"
    rows = [
        [f"{f.delta_share * 100:+.2f}pp", f"{f.baseline_share * 100:.2f}%",
         f"{f.comparison_share * 100:.2f}%", f.name]
        for f in response.functions
    ]  # fmt: skip
    table = render_table(["change", "baseline", "comparison", "function"], rows, left=0,
                         last_left=True)  # fmt: skip
    return (f"baseline {response.baseline_total}, comparison {response.comparison_total} "
            f"(self shares of each side's total)\n{table.rstrip()}")  # fmt: skip
