"""``aperture-agent``: record CPU profiles with eBPF and write them locally."""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from aperture import __version__
from aperture.errors import AgentError, UsageError
from aperture.formats import UnknownFormatError, supported_suffixes, write_profile, writer_for
from aperture.model import Profile

PROG = "aperture-agent"
MAX_FREQUENCY = 10_000


def _frequency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of Hz") from None
    if not 1 <= value <= MAX_FREQUENCY:
        raise argparse.ArgumentTypeError(f"{value} Hz is out of range (1-{MAX_FREQUENCY})")
    return value


def _duration(text: str) -> float:
    from aperture.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a process id")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sample CPU stacks (user and kernel) of this host with eBPF, aggregate "
        "them in the kernel, symbolize them, and write a flamegraph or another format.",
        epilog="Output format by file name: "
        + ", ".join(supported_suffixes())
        + ". Example: sudo aperture-agent --duration 30s --output flamegraph.svg",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--mode", choices=["cpu"], default="cpu", help="what to record (default: cpu)"
    )
    parser.add_argument(
        "-F",
        "--frequency",
        type=_frequency,
        default=99,
        metavar="HZ",
        help="CPU samples per second per CPU, 1-10000 (default: 99)",
    )
    parser.add_argument(
        "-p",
        "--pid",
        type=_pid,
        default=0,
        help="profile only this process, all its threads including new ones "
        "(default: the whole system)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=_duration,
        default=None,
        help="stop after this long: 30s, 5m, 1h or seconds (default: until Ctrl-C/SIGTERM)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="write the profile here (see formats below)"
    )
    parser.add_argument(
        "--window",
        type=_duration,
        default=10.0,
        help="drain the kernel maps this often (default: 10s)",
    )
    parser.add_argument(
        "--include-idle",
        action="store_true",
        help="also record samples of idle CPUs (the swapper task)",
    )
    parser.add_argument(
        "--stack-map-size",
        type=int,
        default=16384,
        metavar="N",
        help="stack map entries per window buffer; raise it if stack collisions are reported",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress line and no summary"
    )
    return parser


def _check_output(path: Path) -> None:
    """Refuse an output path before recording, not after."""
    try:
        writer_for(path)
    except UnknownFormatError as exc:
        raise UsageError(str(exc)) from None
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory: give a file name.")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: the directory {parent} does not exist.")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {path}: permission denied.")
    # os.access says yes to root everywhere; creating a file is the real test.
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".aperture-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}.") from None


def _save(profile: Profile, path: Path) -> None:
    """Write the profile; if that fails, keep it in a temporary file and say where."""
    try:
        write_profile(profile, path)
    except OSError as exc:
        fd, fallback = tempfile.mkstemp(prefix="aperture-", suffix=".json")
        os.close(fd)
        write_profile(profile, Path(fallback))
        raise AgentError(
            f"could not write {path} ({exc.strerror or exc}); the profile was saved "
            f"to {fallback} instead."
        ) from None


def _check_pid(pid: int) -> None:
    if pid and not Path(f"/proc/{pid}").is_dir():
        raise UsageError(f"no process with pid {pid} is running.")


def run(args: argparse.Namespace) -> int:
    from aperture.agent import system
    from aperture.agent.collectors.cpu import CpuCollector, CpuOptions
    from aperture.agent.recorder import Progress, record, stop_on_signals
    from aperture.agent.summary import format_cpu_summary
    from aperture.agent.symbols.symbolizer import Symbolizer

    if args.output is not None:
        _check_output(args.output)
    _check_pid(args.pid)
    if args.stack_map_size < 1024:
        raise UsageError("--stack-map-size must be at least 1024.")
    system.check_privileges()
    system.check_btf()
    system.ensure_tracefs()

    symbolizer = Symbolizer()
    collector = CpuCollector(
        CpuOptions(
            frequency_hz=args.frequency,
            pid=args.pid,
            include_idle=args.include_idle,
            stack_map_entries=args.stack_map_size,
        ),
        symbolizer,
    )
    stop = threading.Event()
    with stop_on_signals(stop):
        collector.start()
        try:
            recording = record(
                {"cpu": collector},
                duration_s=args.duration,
                window_s=args.window,
                stop=stop,
                progress=Progress(sys.stderr, enabled=not args.quiet),
            )
        finally:
            collector.close()
    profile = recording.merged("cpu")
    assert profile is not None
    profile.labels.update(
        {"host": socket.gethostname(), "kernel": platform.release(), "agent": __version__}
    )
    if args.pid:
        profile.labels["pid"] = str(args.pid)
    if not args.quiet:
        print(format_cpu_summary(profile), file=sys.stderr)
    if args.output is not None:
        _save(profile, args.output)
        if not args.quiet:
            print(f"wrote {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (callable from tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except AgentError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
