"""``aperture syscalls``: syscall counts, errors and latency quantiles in a range."""

from __future__ import annotations

import argparse
import json

from aperture.cli.client import Client
from aperture.cli.filters import add_filter_arguments, filter_params
from aperture.cli.rest import RestClient
from aperture.formats.humanize import format_duration_ns
from aperture.formats.tables import render_table

HELP = "syscalls by total time with errors and p50/p90/p99 latency (over REST)"


_DURATIONS = ("total_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-process", action="store_true", help="one row per process")
    parser.add_argument("--limit", type=int, default=25, help="rows shown (default: 25)")
    add_filter_arguments(parser)


def run(args: argparse.Namespace, _client: Client) -> str:
    params = [("per_process", str(args.per_process).lower()), *filter_params(args)]
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        data = rest.request("GET", "/api/v1/syscalls", params=params).json()
    finally:
        rest.close()
    if args.json:
        return json.dumps(data, indent=2)
    if not data["syscalls"]:
        return "no syscalls in this range: widen it (--from) or run agents with --mode syscall"
    rows = []
    for r in data["syscalls"][: args.limit]:
        errnos = ",".join(f"{name}:{n}" for name, n in r["top_errno"]) or "-"
        row = [r["name"], str(r["count"]), f"{r['rate']:.1f}", str(r["errors"]),
               f"{r['error_rate']:.1%}", errnos,
               *(format_duration_ns(r[k]) for k in _DURATIONS)]  # fmt: skip
        if args.per_process:
            row[:0] = [str(r["pid"]), r["comm"] or ""]
        rows.append(row)
    header = ["syscall", "count", "rate/s", "errors", "err%", "top errno", "total", "p50",
              "p90", "p99", "max"]  # fmt: skip
    if args.per_process:
        header[:0] = ["pid", "process"]
    return render_table(header, rows, left=3 if args.per_process else 1).rstrip()
