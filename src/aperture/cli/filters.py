"""The time-range and filter flags the query commands share."""

from __future__ import annotations

import argparse

from aperture.cli.rest import parse_label
from aperture.errors import UsageError
from aperture.timeparse import parse_time


def add_filter_arguments(parser: argparse.ArgumentParser, *, time_range: bool = True) -> None:
    if time_range:
        parser.add_argument("--from", dest="from_", default="-1h", metavar="TIME",
                            help="start: RFC 3339, unix ns or relative (default: -1h)")  # fmt: skip
        parser.add_argument("--to", default="now", metavar="TIME", help="end (default: now)")
    parser.add_argument("--host", default=None, help="only this host")
    parser.add_argument("--agent", default=None, help="only this agent_id")
    parser.add_argument("--comm", default=None, help="only this process name")
    parser.add_argument("--pid", type=int, default=None, help="only this process id")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="only data with this label (repeatable)")  # fmt: skip


def filter_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    """REST query parameters of the filter flags (time range included when present)."""
    params: list[tuple[str, str]] = []
    if hasattr(args, "from_"):
        params += [("from", args.from_), ("to", args.to)]
    for key in ("host", "agent", "comm", "pid"):
        value = getattr(args, key)
        if value is not None:
            params.append((key, str(value)))
    for text in args.label:
        key, value = parse_label(text)
        params.append((f"label.{key}", value))
    return params


def parse_range(text: str, flag: str, *, now_ns: int) -> tuple[int, int]:
    """``FROM:TO`` (``-2h:-1h``, ``-1h:now``, RFC 3339 on either side) to unix ns."""
    for i, char in enumerate(text):
        if char != ":":
            continue
        try:
            start = parse_time(text[:i], now_ns=now_ns)
            end = parse_time(text[i + 1 :], now_ns=now_ns)
        except ValueError:
            continue
        if end <= start:
            raise UsageError(f"{flag} {text!r}: the end must be later than the start.")
        return start, end
    raise UsageError(f"{flag} {text!r} is not FROM:TO (e.g. -2h:-1h or -1h:now).")
