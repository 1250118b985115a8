"""``aperture top``: the functions with the most samples (or lock wait) in a range."""

from __future__ import annotations

import argparse
import json

from aperture.cli.client import Client
from aperture.cli.filters import add_filter_arguments, filter_params
from aperture.cli.rest import RestClient
from aperture.formats.humanize import format_duration_ns
from aperture.formats.tables import render_table
from aperture.profile_types import stack_type_names

HELP = "top functions by self or total value (over REST)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=stack_type_names(), default="cpu", help="event type")
    parser.add_argument("--sort", choices=["self", "total"], default="self")
    parser.add_argument("--limit", type=int, default=20, help="how many functions (default: 20)")
    add_filter_arguments(parser)


def run(args: argparse.Namespace, _client: Client) -> str:
    params = [("type", args.type), ("sort", args.sort), ("limit", str(args.limit))]
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        data = rest.request("GET", "/api/v1/top", params=params + filter_params(args)).json()
    finally:
        rest.close()
    if args.json:
        return json.dumps(data, indent=2)
    if not data["functions"]:
        return "no samples in this range: widen it (--from) or check the agents"

    def value(v: int) -> str:
        return format_duration_ns(v) if data["unit"] == "nanoseconds" else str(v)

    rows = [
        [f"{f['self_pct']:.2f}%", value(f["self"]), f"{f['total_pct']:.2f}%", value(f["total"]),
         f["name"], f["module"]]
        for f in data["functions"]
    ]  # fmt: skip
    total = value(data["total"])
    table = render_table(["self%", "self", "total%", "total", "function", "module"], rows, left=0,
                         last_left=True)  # fmt: skip
    return f"{data['type']}: {total} {data['unit']} in range\n{table.rstrip()}"
