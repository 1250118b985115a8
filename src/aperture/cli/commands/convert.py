"""``aperture convert IN OUT``: another tool's profile file in any of our output formats.

Offline: no aggregator. IN is pprof (gzip or raw) or ``perf script`` text; OUT's
suffix names the format, as everywhere (.folded, .svg, .speedscope.json, .pb.gz,
.json). perf script to folded stacks writes what ``inferno-collapse-perf`` and
``stackcollapse-perf.pl`` write: stacks rooted at the process name, weighted by
each event's period, with their options (--pid, --tid, --kernel, --jit, --all,
--addrs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aperture.cli.client import Client
from aperture.errors import UsageError, UserError
from aperture.formats.files import ReadFile, read_file
from aperture.formats.humanize import describe_value
from aperture.formats.perf_script import CollapseOptions, collapse
from aperture.formats.registry import UnknownFormatError, split_suffix, write_atomic, writer_for

HELP = "convert a pprof or perf script file to folded, SVG, speedscope, pprof or JSON (offline)"

_FOLDED = (".folded", ".collapsed")


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="pprof (.pb.gz or raw) or `perf script` text")
    parser.add_argument("output", type=Path,
                        help="file to write; its suffix names the format")  # fmt: skip
    parser.add_argument("--type", default=None,
                        help="the profile type to write when IN has several (a Go heap "
                        "profile has alloc_objects, alloc_space, inuse_objects and "
                        "inuse_space)")  # fmt: skip
    parser.add_argument("--kind", choices=("mutex", "block"), default=None,
                        help="what a Go contentions/delay profile is (its sample types "
                        "cannot tell)")  # fmt: skip
    group = parser.add_argument_group("perf script to folded stacks (as inferno-collapse-perf)")
    group.add_argument("--pid", action="store_true", help="root frames are comm-pid")
    group.add_argument("--tid", action="store_true", help="root frames are comm-pid/tid")
    group.add_argument("--kernel", action="store_true", help="kernel frames end in _[k]")
    group.add_argument("--jit", action="store_true", help="JIT frames end in _[j]")
    group.add_argument("--all", action="store_true", help="--kernel and --jit")
    group.add_argument("--addrs", action="store_true",
                       help="unknown frames keep their address")  # fmt: skip


def _options(args: argparse.Namespace) -> CollapseOptions | None:
    """The collapse options given, or None when none was."""
    if not any((args.pid, args.tid, args.kernel, args.jit, args.all, args.addrs)):
        return None
    return CollapseOptions(include_pid=args.pid, include_tid=args.tid,
                           annotate_kernel=args.kernel or args.all,
                           annotate_jit=args.jit or args.all, include_addrs=args.addrs)  # fmt: skip


def run(args: argparse.Namespace, client: Client) -> str:
    try:
        data = args.input.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}.") from None
    _, suffix = split_suffix(args.output)
    options = _options(args)
    read = read_file(data, str(args.input), now_ns=time.time_ns(), kind=args.kind or "")
    for warning in read.warnings:
        print(f"aperture: warning: {args.input}: {warning}", file=sys.stderr)
    if read.kind == "perf script" and suffix.lower() in _FOLDED:
        folded = collapse(data.decode("utf-8", "replace"), options or CollapseOptions())
        _write(args.output, lambda: write_atomic(
            args.output, "".join(f"{line}\n" for line in folded.lines()).encode()))  # fmt: skip
        return (f"wrote {args.output}: {len(folded.stacks):,} stacks of {folded.events:,} "
                f"{folded.event or 'perf'} events, weighted by their period")  # fmt: skip
    if options is not None:
        raise UsageError(
            "--pid, --tid, --kernel, --jit, --all and --addrs apply to perf script text "
            "converted to folded stacks (.folded or .collapsed) only."
        )
    event_type = _pick(read, args.type, args.input)
    profile = read.profiles[event_type]
    try:
        writer = writer_for(args.output, profile.event_type)
    except UnknownFormatError as exc:
        raise UsageError(str(exc)) from None
    _write(args.output, lambda: writer.write(profile, args.output))
    what = describe_value(profile.total, profile.unit, profile.event_type)
    stacks = len(profile.samples)
    return f"wrote {args.output} ({writer.name}): {event_type}, {what} in {stacks:,} stacks"


def _write(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}.") from None


def _pick(read: ReadFile, asked: str | None, path: Path) -> str:
    """The type to write: the one asked for, or the file's only one."""
    types = sorted(read.profiles)
    if not types:
        raise UsageError(f"{path} has no samples: nothing to convert.")
    if asked is not None:
        if asked not in read.profiles:
            raise UsageError(f"{path} has no {asked} data; it has {', '.join(types)}.")
        return asked
    if len(types) > 1:
        raise UsageError(f"{path} has {', '.join(types)} data: choose one with --type.")
    return types[0]
