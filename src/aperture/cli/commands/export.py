"""``aperture export``: a profile from an aggregator as collapsed, JSON, speedscope or pprof."""

from __future__ import annotations

import argparse
from pathlib import Path

from aperture.cli.client import Client
from aperture.cli.filters import add_filter_arguments, filter_params
from aperture.cli.rest import RestClient
from aperture.errors import UsageError, UserError
from aperture.formats.registry import write_atomic
from aperture.profile_types import stack_type_names
from aperture.query.models import UNIT_HEADER

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
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the -o suffix, else collapsed)",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="file to write (default: print text formats)")  # fmt: skip
    parser.add_argument("--type", choices=stack_type_names(), default="cpu",
                        help="profile type (default: cpu)")  # fmt: skip
    add_filter_arguments(parser)


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
    params = [("format", fmt), ("type", args.type), *filter_params(args)]
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        response = rest.request("GET", "/api/v1/export", params=params)
        body = response.content
    finally:
        rest.close()
    unit = response.headers.get(UNIT_HEADER, "")
    if args.output is None:
        return body.decode("utf-8").rstrip("\n")
    try:
        write_atomic(args.output, body)
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}.") from None
    carries = f"{args.type} in {unit}" if unit else args.type
    return f"wrote {args.output} ({fmt}, {carries}, {len(body)} bytes)"
