"""``aperture export``: a profile from an aggregator as collapsed, JSON, speedscope or pprof."""

from __future__ import annotations

import argparse
from pathlib import Path

from aperture.cli.client import Client
from aperture.cli.rest import RestClient, add_api_argument, parse_label
from aperture.errors import AgentError, UsageError
from aperture.formats.registry import write_atomic

HELP = "export a profile from an aggregator (collapsed, json, speedscope or pprof)"

FORMATS = ("collapsed", "json", "speedscope", "pprof")
# The output file's suffix names the format when --format is not given.
_BY_SUFFIX = (
    (".pb.gz", "pprof"),
    (".speedscope.json", "speedscope"),
    (".json", "json"),
    (".collapsed", "collapsed"),
    (".folded", "collapsed"),
)


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    add_api_argument(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the -o suffix, else collapsed)",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="file to write (default: print text formats)")  # fmt: skip
    parser.add_argument("--type", choices=["cpu", "lock"], default="cpu", help="event type")
    parser.add_argument("--from", dest="from_", default="-1h", metavar="TIME",
                        help="start: RFC 3339, unix ns or relative (default: -1h)")  # fmt: skip
    parser.add_argument("--to", default="now", metavar="TIME", help="end (default: now)")
    parser.add_argument("--host", default=None, help="only this host")
    parser.add_argument("--agent", default=None, help="only this agent_id")
    parser.add_argument("--comm", default=None, help="only this process name")
    parser.add_argument("--pid", type=int, default=None, help="only this process id")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="only batches with this label (repeatable)")  # fmt: skip


def pick_format(fmt: str | None, output: Path | None) -> str:
    """The format asked for, or the one the output file's suffix names."""
    if fmt is not None:
        return fmt
    if output is None:
        return "collapsed"
    name = output.name.lower()
    for suffix, found in _BY_SUFFIX:
        if name.endswith(suffix):
            return found
    raise UsageError(
        f"cannot tell the format of {str(output)!r}: pass --format or name the file "
        ".collapsed, .folded, .json, .speedscope.json or .pb.gz."
    )


def run(args: argparse.Namespace, client: Client) -> str:
    fmt = pick_format(args.format, args.output)
    if fmt == "pprof" and args.output is None:
        raise UsageError("pprof is a binary format: write it to a file with -o FILE.pb.gz.")
    params: list[tuple[str, str]] = [("format", fmt), ("type", args.type),
                                     ("from", args.from_), ("to", args.to)]  # fmt: skip
    for key in ("host", "agent", "comm", "pid"):
        value = getattr(args, key)
        if value is not None:
            params.append((key, str(value)))
    for text in args.label:
        key, value = parse_label(text)
        params.append((f"label.{key}", value))
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        body = rest.request("GET", "/api/v1/export", params=params).content
    finally:
        rest.close()
    if args.output is None:
        return body.decode("utf-8").rstrip("\n")
    try:
        write_atomic(args.output, body)
    except OSError as exc:
        raise AgentError(f"cannot write {args.output}: {exc.strerror or exc}.") from None
    return f"wrote {args.output} ({fmt}, {len(body)} bytes)"
