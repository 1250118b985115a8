"""``aperture import``: store a pprof file or ``perf script`` text in an aggregator.

A pprof file is sent as it is; perf script text is read here (its times count
from boot, so the recording is placed to end now, or at ``--at``) and sent as
the pprof of its type (CPU for cpu-clock and task-clock, cycles for cycles).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aperture.cli.client import Client
from aperture.cli.rest import RestClient, parse_label
from aperture.errors import UsageError
from aperture.formats.files import name_of, read_file
from aperture.formats.perf_script import looks_like_perf_script
from aperture.formats.pprof import to_pprof

HELP = "store a pprof file (.pb.gz or raw) or perf script text in an aggregator"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path,
                        help="a pprof profile (gzip or raw) or `perf script` output")  # fmt: skip
    parser.add_argument("--service", default=None,
                        help="the service it is from (default: the file's name)")  # fmt: skip
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="label to store it under (repeatable)")  # fmt: skip
    parser.add_argument("--kind", choices=("mutex", "block"), default=None,
                        help="what a Go contentions/delay profile is (its sample types "
                        "cannot tell)")  # fmt: skip
    parser.add_argument("--at", metavar="TIME",
                        help="move the profile's window to end at TIME (now, -1h, RFC 3339): "
                        "for a profile recorded before the aggregator's retention, which it "
                        "refuses otherwise (default: the time recorded in the file)")  # fmt: skip


def run(args: argparse.Namespace, client: Client) -> str:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}.") from None
    service = args.service or name_of(str(args.file))
    params: list[tuple[str, str]] = [("service", service)]
    for text in args.label:
        key, value = parse_label(text)
        params.append((f"label.{key}", value))
    if args.at:
        params.append(("at", args.at))
    if args.kind:
        params.append(("kind", args.kind))
    bodies = [data]
    if looks_like_perf_script(data) or not data.strip():
        read = read_file(data, str(args.file), now_ns=time.time_ns())
        for warning in read.warnings:
            print(f"aperture: warning: {args.file}: {warning}", file=sys.stderr)
        bodies = [to_pprof(p) for p in read.profiles.values() if p.samples]
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    result: dict[str, Any] = {"batches": 0, "already_stored": 0, "profiles": []}
    try:
        for body in bodies:
            one = rest.request("POST", "/api/v1/ingest/pprof", params=params, content=body).json()
            for key in ("batches", "already_stored"):
                result[key] += one.get(key, 0)
            result["profiles"] += one.get("profiles", [])
    finally:
        rest.close()
    if args.json:
        return json.dumps(result, indent=2)
    profiles = result.get("profiles", [])
    if not profiles:
        return f"{args.file} has no samples: nothing stored"
    parts = [f"{p['type']}: {p['total']} {p['unit']} in {p['samples']} stacks" for p in profiles]
    agents = sorted({p["agent_id"] for p in profiles})
    # Say when, so the user knows which --from finds it.
    start = min(p["start_ns"] for p in profiles)
    end = max(p["end_ns"] for p in profiles)
    verb = "already stored" if result.get("already_stored") == len(profiles) else "stored"
    moved = ""
    if "recorded_start_ns" in profiles[0]:
        was = min(p["recorded_start_ns"] for p in profiles)
        moved = f" (moved by --at from its recorded {_time(was)} UTC)"
    return (
        f"{verb} {args.file} as {', '.join(agents)} ({'; '.join(parts)}), "
        f"window {_time(start)} to {_time(end)} UTC{moved}"
    )


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
