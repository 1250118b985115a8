"""``aperture filter-test``: run a WASM filter offline on a JSON profile, print what it keeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from aperture.cli.client import Client
from aperture.errors import UsageError
from aperture.filters.host import WasmFilter, apply_filter, lock_records, sample_records
from aperture.filters.options import add_filter_arguments, build_filter
from aperture.formats.json_format import load_json, to_json
from aperture.model import EventType, Profile

HELP = "run a WASM filter on a JSON profile (no aggregator needed) and print what it kept"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filter_file", type=Path, metavar="FILTER", help=".wasm or .wat filter")
    parser.add_argument(
        "--input", type=Path, required=True, metavar="FILE", help="an Aperture JSON profile"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="also write the filtered profile (JSON)"
    )
    add_filter_arguments(parser, file_flag=False)  # FILTER is the positional argument


def _describe(flt: WasmFilter, before: Profile, after: Profile) -> list[str]:
    lock = before.event_type is EventType.LOCK and bool(before.locks)
    records = lock_records(before.locks) if lock else sample_records(before)
    kept_ids = {id(x) for x in (after.locks if lock else after.samples)}
    items = before.locks if lock else before.samples
    lines = []
    for rec, item in zip(records, items, strict=True):
        mark = "keep" if id(item) in kept_ids else "drop"
        leaf = rec.stack[-1].name if rec.stack else "-"
        lines.append(f"{mark}  pid {rec.pid:<7} {rec.comm:<16} {rec.value:>12}  {leaf}")
    kept = len(after.locks if lock else after.samples)
    lines.append(
        f"{flt.path.name}: kept {kept} of {len(items)} records "
        f"({after.total} of {before.total} {before.unit})"
    )
    return lines


def run(args: argparse.Namespace, _client: Client) -> str:
    args.filter = args.filter_file
    flt = build_filter(args)
    assert flt is not None
    try:
        text = args.input.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}.") from None
    try:
        profile = load_json(text)
    except ValueError as exc:
        reason = str(exc).rstrip(".")
        raise UsageError(f"{args.input} is not an Aperture JSON profile ({reason}).") from None
    filtered = apply_filter(flt, profile)
    lines = _describe(flt, profile, filtered)
    if flt.stats.failures:
        lines.append(flt.summary())
    if args.output is not None:
        args.output.write_text(to_json(filtered))
        lines.append(f"wrote {args.output}")
    return "\n".join(lines)
