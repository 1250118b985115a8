"""``aperture import``: store a pprof file in an aggregator, queryable like agent data."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from aperture.cli.client import Client
from aperture.cli.rest import RestClient, parse_label
from aperture.errors import UsageError

HELP = "store a pprof file (.pb.gz or raw) in an aggregator"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the pprof profile (gzip or raw)")
    parser.add_argument("--service", default=None,
                        help="the service it is from (default: the file's name)")  # fmt: skip
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="label to store it under (repeatable)")  # fmt: skip
    parser.add_argument("--at", metavar="TIME",
                        help="move the profile's window to end at TIME (now, -1h, RFC 3339): "
                        "for a profile recorded before the aggregator's retention, which it "
                        "refuses otherwise (default: the time recorded in the file)")  # fmt: skip


def _service(path: Path) -> str:
    name = path.name
    for suffix in (".pb.gz", ".pprof", ".pb", ".gz"):
        name = name.removesuffix(suffix)
    return name or "pprof"


def run(args: argparse.Namespace, client: Client) -> str:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}.") from None
    service = args.service or _service(args.file)
    params: list[tuple[str, str]] = [("service", service)]
    for text in args.label:
        key, value = parse_label(text)
        params.append((f"label.{key}", value))
    if args.at:
        params.append(("at", args.at))
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        result = rest.request("POST", "/api/v1/ingest/pprof", params=params, content=data).json()
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
