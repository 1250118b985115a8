"""Filter flags shared by the agent (``--filter``) and the aggregator (``--ingest-filter``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aperture.filters.host import DEFAULT_FUEL, DEFAULT_MEMORY, parse_size

if TYPE_CHECKING:
    from aperture.filters.host import WasmFilter


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fuel(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the fuel must be at least 1")
    return value


def add_filter_arguments(
    parser: argparse.ArgumentParser, prefix: str = "", *, file_flag: bool = True
) -> None:
    """``--{prefix}filter FILE`` and its sandbox flags; ``prefix`` is "" or "ingest-"."""
    dest = prefix.replace("-", "_")
    where = (
        "each batch at ingest"
        if prefix
        else "each window's records with stacks (CPU, lock, off-CPU)"
    )
    if file_flag:
        parser.add_argument(
            f"--{prefix}filter",
            dest=f"{dest}filter",
            type=Path,
            default=None,
            metavar="FILE",
            help=f"a WASM filter (.wasm, or .wat text) run on {where}, one call per batch, "
            "sandboxed: no WASI, no imports (see docs/filters.md)",
        )
    parser.add_argument(
        f"--{prefix}filter-arg",
        dest=f"{dest}filter_arg",
        default="",
        metavar="STR",
        help="a string the filter reads from the batch header (a prefix, a function name, N)",
    )
    parser.add_argument(
        f"--{prefix}filter-fuel",
        dest=f"{dest}filter_fuel",
        type=_fuel,
        default=DEFAULT_FUEL,
        metavar="N",
        help=f"wasmtime fuel per batch (about one unit per instruction; default: {DEFAULT_FUEL})",
    )
    parser.add_argument(
        f"--{prefix}filter-memory",
        dest=f"{dest}filter_memory",
        type=_size,
        default=DEFAULT_MEMORY,
        metavar="SIZE",
        help=f"the filter's linear-memory limit (default: {DEFAULT_MEMORY >> 20}M)",
    )
    parser.add_argument(
        f"--{prefix}filter-failure",
        dest=f"{dest}filter_failure",
        choices=["open", "closed"],
        default="open",
        help="when the filter traps or runs out of fuel: open passes the batch unfiltered, "
        "closed drops its records (default: open)",
    )


def build_filter(
    args: argparse.Namespace, prefix: str = "", on_failure: Callable[[str], None] | None = None
) -> WasmFilter | None:
    """The filter the flags name, or None; a bad module fails here, in one line."""
    dest = prefix.replace("-", "_")
    path: Path | None = getattr(args, f"{dest}filter")
    if path is None:
        return None
    from aperture.filters.host import FilterOptions, WasmFilter

    options = FilterOptions(
        fuel=getattr(args, f"{dest}filter_fuel"),
        memory_bytes=getattr(args, f"{dest}filter_memory"),
        failure=getattr(args, f"{dest}filter_failure"),
        arg=str(getattr(args, f"{dest}filter_arg")).encode(),
    )
    return WasmFilter(path, options, on_failure=on_failure)
