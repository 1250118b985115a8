"""``aperture query``: the recent batches held by an aggregator."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from aperture.cli.client import Client
from aperture.formats.humanize import format_duration_ns
from aperture.formats.tables import render_table
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.v1 import aggregator_pb2 as apb

HELP = "list recent batches in an aggregator's buffer"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20, help="how many batches (default: 20)")
    parser.add_argument("--agent", default="", help="only this agent_id")
    parser.add_argument(
        "--type", choices=[str(t) for t in PROFILE_TYPES], default="", help="only this event type"
    )


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace, client: Client) -> str:
    response = client.call(
        client.stub.Query,
        apb.QueryRequest(agent_id=args.agent, limit=args.limit, event_type=args.type),
    )
    if args.json:
        return json.dumps(
            [
                {
                    "agent_id": b.agent_id,
                    "host": b.host,
                    "sequence": b.sequence,
                    "window_start_ns": b.window_start_ns,
                    "window_end_ns": b.window_end_ns,
                    "event_types": list(b.event_types),
                    "cpu_samples": b.cpu_samples,
                    "lock_wait_ns": b.lock_wait_ns,
                    "syscalls": b.syscalls,
                    "received_ns": b.received_ns,
                    "bytes": b.bytes,
                }
                for b in response.batches
            ],
            indent=2,
        )
    if not response.batches:
        return "no batches in the aggregator's buffer yet"
    rows = [
        [
            b.agent_id, b.host, str(b.sequence), _time(b.window_start_ns),
            f"{(b.window_end_ns - b.window_start_ns) / 1e9:.1f}s", ",".join(b.event_types),
            str(b.cpu_samples), format_duration_ns(b.lock_wait_ns), str(b.syscalls), str(b.bytes),
        ]
        for b in response.batches
    ]  # fmt: skip
    header = ["agent", "host", "seq", "window start (UTC)", "length", "types", "cpu samples",
              "lock wait", "syscalls", "bytes"]  # fmt: skip
    return render_table(header, rows, left=2).rstrip()
