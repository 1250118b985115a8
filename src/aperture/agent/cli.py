"""``aperture-agent``: record CPU, lock and syscall profiles with eBPF, write them locally
and/or push them to an aggregator (:mod:`aperture.agent.push`)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
from argparse import SUPPRESS
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from aperture import __version__
from aperture.agent.push_options import (
    DEFAULT_FLUSH_TIMEOUT,
    add_push_arguments,
    duration_arg,
    size_arg,
)
from aperture.agent.unwind import DEFAULT_TABLE_MEMORY
from aperture.errors import UsageError, UserError
from aperture.filters.options import add_filter_arguments, build_filter
from aperture.formats import (
    UnknownFormatError,
    split_suffix,
    supported_suffixes,
    write_profile,
    writer_for,
)
from aperture.model import EventType, Profile
from aperture.profile_types import PROFILE_TYPES
from aperture.units import format_duration

if TYPE_CHECKING:
    from aperture.agent.identity import AgentIdentity
    from aperture.agent.push import Pusher, PushReport
    from aperture.agent.recorder import Collector, Progress, Recording
    from aperture.agent.symbols.threadsafe import ThreadSafeSymbolizer
    from aperture.filters.host import WasmFilter

PROG = "aperture-agent"
MAX_FREQUENCY = 10_000
# allocations between young collections, once started (CPython's default: 700)
GC_THRESHOLD = 20_000


def _frequency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of Hz") from None
    if not 1 <= value <= MAX_FREQUENCY:
        raise argparse.ArgumentTypeError(f"{value} Hz is out of range (1-{MAX_FREQUENCY})")
    return value


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a process id")
    return value


MODES = ("cpu", "lock", "syscall", "offcpu")
# Where --mode all puts each mode's output, given --output STEM.SUFFIX.
OUTPUT_RULE = (
    "With --mode all, --output STEM.SUFFIX writes STEM.cpu.SUFFIX, STEM.lock.SUFFIX, "
    "STEM.offcpu.SUFFIX and STEM.syscalls.json when SUFFIX is .json, else STEM.syscalls.txt "
    "(a table)."
)


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _sample_every(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000000")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Record CPU stacks (user and kernel), futex lock contention and syscall "
        "latency on this host with eBPF, aggregated in the kernel and symbolized, then write "
        "a flamegraph, a table or another format, or push them to an aggregator. The "
        "agent's own CPU samples are recorded; its own off-CPU time, lock waits and "
        "syscalls are not (it spends them reading the others' data, and recording them "
        "would make more to read), unless --pid names the agent itself.",
        epilog="Output formats by file name: CPU and lock: "
        + ", ".join(supported_suffixes(EventType.CPU))
        + " (lock also .txt: the top-locks table); syscall: "
        + ", ".join(supported_suffixes(EventType.SYSCALL))
        + ". "
        + OUTPUT_RULE
        + " Example: sudo aperture-agent --duration 30s --output flamegraph.svg",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--mode",
        choices=[*MODES, "all"],
        default="cpu",
        help="cpu: sampled stacks; lock: futex waits by lock kind, with holders and wakers; "
        "syscall: latency per syscall; "
        "offcpu: time threads spend switched out, by stack and task state; "
        "all: the four at once (default: cpu)",
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
        help="record only this process, all its threads including new ones "
        "(default: the whole system)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=duration_arg,
        default=None,
        help="stop after this long: 30s, 5m, 1h or seconds (default: until Ctrl-C/SIGTERM)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="write the result here (see formats below)"
    )
    parser.add_argument(
        "--push-interval",
        dest="interval",
        type=duration_arg,
        default=10.0,
        metavar="DURATION",
        help="drain the kernel maps this often; with --aggregator each drain is one batch "
        "per mode (default: 10s)",
    )
    # The earlier name of --push-interval, kept working for existing scripts.
    parser.add_argument(
        "--window", dest="interval", type=duration_arg, default=argparse.SUPPRESS, help=SUPPRESS
    )
    parser.add_argument(
        "--include-idle",
        action="store_true",
        help="CPU: also record samples of idle CPUs (the swapper task)",
    )
    parser.add_argument(
        "--offcpu-min",
        type=duration_arg,
        default=10e-6,
        metavar="DURATION",
        help="offcpu: record blocks at least this long, e.g. 10us, 1ms; shorter ones are "
        "counted in the window's short_blocks and short_ns (default: 10us)",
    )
    parser.add_argument(
        "--offcpu-sample",
        type=_sample_every,
        default=1,
        metavar="N",
        help="offcpu: take stacks for 1 in N blocks, to bound the cost under context-switch "
        "storms; the other blocks' time is kept under [stack not sampled] (default: 1, all)",
    )
    parser.add_argument(
        "--lock-stack-min",
        type=duration_arg,
        default=100e-6,
        metavar="DURATION",
        help="lock: waits and holds at least this long always get their stacks; shorter ones "
        "get them 1 in --lock-stack-every (every wait is counted either way; default: 100us)",
    )
    parser.add_argument(
        "--lock-stack-every",
        type=_sample_every,
        default=64,
        metavar="N",
        help="lock: stacks for 1 in N shorter waits and releases, to bound the cost under futex "
        "storms; the others' time is kept under [stack not sampled] (default: 64; 1: all)",
    )
    parser.add_argument(
        "--per-process",
        action="store_true",
        help="syscall: one table row per process and syscall (default: per syscall)",
    )
    parser.add_argument(
        "--stack-map-size",
        type=int,
        default=16384,
        metavar="N",
        help="CPU stack map entries per window buffer; raise it if collisions are reported",
    )
    parser.add_argument(
        "--unwind",
        choices=("auto", "dwarf", "fp"),
        default="auto",
        help="CPU user stacks: dwarf walks .eh_frame tables in the kernel (code built "
        "without frame pointers, as Debian's libc and python are); fp follows frame "
        "pointers only; auto: tables where a binary has them, frame pointers elsewhere "
        "(JIT code) (default: auto)",
    )
    parser.add_argument(
        "--no-python-frames",
        dest="python_frames",
        action="store_false",
        help="CPU: do not walk CPython 3.10-3.13 interpreters for Python functions "
        "(their stacks then show _PyEval_EvalFrameDefault; default: walk them)",
    )
    parser.add_argument(
        "--unwind-table-memory",
        type=size_arg,
        default=DEFAULT_TABLE_MEMORY,
        metavar="BYTES",
        help="kernel memory for unwind tables, e.g. 64MiB; past it the least recently "
        f"used binaries' tables are evicted and counted (default: {DEFAULT_TABLE_MEMORY >> 20}MiB)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep built unwind tables here (by build-id), so a restarted agent does not "
        "parse the same binaries again (default: no cache)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress line and no summary"
    )
    add_push_arguments(parser)
    add_filter_arguments(parser)
    return parser


def output_paths(output: Path, modes: Sequence[str]) -> dict[str, Path]:
    """Each mode's output file: ``output`` itself for one mode, else by :data:`OUTPUT_RULE`."""
    if len(modes) == 1:
        return {modes[0]: output}
    stem, suffix = split_suffix(output)
    paths = {}
    for mode in modes:
        if mode == "syscall":
            paths[mode] = Path(f"{stem}.syscalls{suffix if suffix == '.json' else '.txt'}")
        else:
            paths[mode] = Path(f"{stem}.{mode}{suffix}")
    return paths


def _check_output(path: Path, event_type: EventType) -> None:
    """Refuse an output path before recording, not after."""
    try:
        writer_for(path, event_type)
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
        raise UserError(
            f"could not write {path} ({exc.strerror or exc}); the profile was saved "
            f"to {fallback} instead."
        ) from None


def _check_pid(pid: int) -> None:
    if pid and not Path(f"/proc/{pid}").is_dir():
        raise UsageError(f"no process with pid {pid} is running.")


def build_collectors(
    args: argparse.Namespace, modes: Sequence[str], symbolizer: ThreadSafeSymbolizer
) -> dict[str, Collector]:
    from aperture.agent.collectors.cpu import (
        CpuCollector,
        CpuOptions,
        LockOptions,
        OffCpuOptions,
    )
    from aperture.agent.collectors.lock import LockCollector
    from aperture.agent.collectors.offcpu import OffCpuCollector
    from aperture.agent.collectors.syscall import SyscallCollector, SyscallOptions

    collectors: dict[str, Collector] = {}
    # cpu, offcpu and lock share one BPF object (the unwinder): its first user in dict
    # order starts it and the others read it; without cpu, the first of the others owns it.
    if {"cpu", "offcpu", "lock"} & set(modes):
        offcpu = lock = None
        if "offcpu" in modes:
            offcpu = OffCpuOptions(round(args.offcpu_min * 1e9), args.offcpu_sample)
        if "lock" in modes:
            lock = LockOptions(round(args.lock_stack_min * 1e9), args.lock_stack_every)
        engine = CpuCollector(
            CpuOptions(
                frequency_hz=args.frequency,
                pid=args.pid,
                include_idle=args.include_idle,
                stack_map_entries=args.stack_map_size,
                unwind=args.unwind,
                python_frames=args.python_frames,
                unwind_table_memory=args.unwind_table_memory,
                cache_dir=args.cache_dir,
                sample_cpu="cpu" in modes,
                offcpu=offcpu,
                lock=lock,
                leave_out_agent=True,
            ),
            symbolizer,
        )
        owner = "cpu" if "cpu" in modes else "offcpu" if offcpu is not None else "lock"
        if "cpu" in modes:
            collectors["cpu"] = engine
        if offcpu is not None:
            collectors["offcpu"] = OffCpuCollector(engine, owns_engine=owner == "offcpu")
        if lock is not None:
            collectors["lock"] = LockCollector(engine, owns_engine=owner == "lock")
    if "syscall" in modes:
        collectors["syscall"] = SyscallCollector(SyscallOptions(pid=args.pid, leave_out_agent=True))
    return collectors


def run(args: argparse.Namespace) -> int:
    """The agent's run, step by step: flags, host, collectors, recording, outputs."""
    from aperture.agent.push_options import build_pusher
    from aperture.agent.recorder import Progress

    modes, outputs, me = _check_flags(args)
    progress = Progress(sys.stderr, enabled=not args.quiet)

    def warn(text: str) -> None:
        progress.log(f"{PROG}: warning: {text}")

    flt = build_filter(args, on_failure=warn)  # a bad module fails before any BPF
    pusher = build_pusher(args, warn)
    flushed: list[PushReport] = []  # the pusher's final report, once it is flushed
    try:
        if pusher is not None:
            _check_pusher(pusher, args, progress)  # before any BPF
        _prepare_host()
        recording = _record(args, modes, outputs, flt, pusher, progress, flushed)
    finally:
        if pusher is not None and not flushed:
            pusher.close()  # failed before recording: spooled batches stay for the next start
    report = flushed[0] if flushed else None
    failures = _write_outputs(recording, outputs, me.profile_labels(args.pid))
    if not args.quiet:
        _print_summaries(args, recording, report, flt, outputs)
    if report is not None and report.lost_total:
        failures.append(_lost_sentence(report, args))
    if failures:
        raise UserError(" ".join(failures))
    return 0


def _check_flags(
    args: argparse.Namespace,
) -> tuple[list[str], dict[str, Path], AgentIdentity]:
    """The modes, output paths and identity the flags ask for; UsageError if bad."""
    from aperture.agent.identity import agent_identity

    modes = list(MODES) if args.mode == "all" else [args.mode]
    outputs = output_paths(args.output, modes) if args.output is not None else {}
    for mode, path in outputs.items():
        _check_output(path, EventType(mode))
    _check_pid(args.pid)
    me = agent_identity(args.label)  # a bad --label or downward-API value fails here
    if args.stack_map_size < 1024:
        raise UsageError("--stack-map-size must be at least 1024.")
    return modes, outputs, me


def _check_pusher(pusher: Pusher, args: argparse.Namespace, progress: Progress) -> None:
    """A wrong token must not cost a privileged start-up: checked before any BPF."""
    from aperture.agent.push import batches

    pusher.check()
    if pusher.pending() and not args.quiet:
        progress.log(
            f"{batches(pusher.pending())} from an earlier run wait in "
            f"{args.spool_dir}: sending them first"
        )


def _prepare_host() -> None:
    from aperture.agent import system

    system.check_privileges()
    system.check_btf()
    system.ensure_tracefs()
    system.bound_native_heap()


def _record(
    args: argparse.Namespace,
    modes: list[str],
    outputs: dict[str, Path],
    flt: WasmFilter | None,
    pusher: Pusher | None,
    progress: Progress,
    flushed: list[PushReport],
) -> Recording:
    """Start the collectors, record until the end, close them and flush the pusher
    (its report appended to ``flushed``, also when recording failed)."""
    from aperture.agent.recorder import record, stop_on_signals
    from aperture.agent.symbols.threadsafe import ThreadSafeSymbolizer

    symbolizer = ThreadSafeSymbolizer()  # one for every mode: files loaded once
    collectors = build_collectors(args, modes, symbolizer)
    if flt is not None:
        from aperture.filters.collector import FilteredCollector

        for mode in collectors:  # a type without stacks (syscalls) has nothing to filter
            if PROFILE_TYPES[EventType(mode)].has_stacks:
                collectors[mode] = FilteredCollector(collectors[mode], flt)
    stop, again = threading.Event(), threading.Event()
    started: list[Collector] = []
    with stop_on_signals(stop, again):
        try:
            for collector in collectors.values():
                collector.start()
                started.append(collector)
            if pusher is not None:
                pusher.start()
            _settle_heap()
            recording = record(
                collectors,
                duration_s=args.duration,
                window_s=args.interval,
                stop=stop,
                on_window=_push_window(pusher) if pusher is not None else None,
                progress=progress,
                status=pusher.status_line if pusher is not None else None,
                keep_windows=bool(outputs),
                per_process=args.per_process,
                after_drain=lambda: _after_drain(symbolizer),
            )
        finally:
            for collector in started:
                collector.close()
            if pusher is not None and started:
                # Also when recording failed: what was queued is still worth sending.
                flushed.append(_final_flush(pusher, args, progress, again))
    return recording


def _settle_heap() -> None:
    """Once started: what start-up built (modules, kernel symbols, the BPF object's
    maps) leaves the collector's generations, and collections come less often.

    The agent's steady work makes many short-lived, acyclic objects (frames,
    stacks, map entries); with CPython's default thresholds the cyclic collector
    ran every 700 allocations and took 6% of the agent's CPU on a busy host,
    walking start-up objects that never die.
    """
    from aperture.agent.system import release_native_heap

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    release_native_heap()


def _after_drain(symbolizer: ThreadSafeSymbolizer) -> None:
    """Once per window, after every collector drained: forget the processes gone
    since the last one, and hand the window's freed C heap back."""
    from aperture.agent.system import release_native_heap

    symbolizer.sweep_exited()
    release_native_heap()


def _write_outputs(
    recording: Recording, outputs: dict[str, Path], labels: dict[str, str]
) -> list[str]:
    """Each mode's merged profile to its file; the sentences of those that failed."""
    failures = []
    for mode, path in outputs.items():
        profile = recording.merged(mode)
        assert profile is not None  # record() always drains once
        profile.labels.update(labels)
        try:
            _save(profile, path)
        except UserError as exc:  # keep writing the other modes' outputs
            failures.append(str(exc))
    return failures


def _print_summaries(
    args: argparse.Namespace,
    recording: Recording,
    report: PushReport | None,
    flt: WasmFilter | None,
    outputs: dict[str, Path],
) -> None:
    from aperture.agent.push import format_push_summary
    from aperture.agent.summary import format_summary

    print(format_summary(recording.totals), file=sys.stderr)
    if report is not None:
        print("\n" + format_push_summary(report, args.aggregator), file=sys.stderr)
    if flt is not None:
        print(flt.summary(), file=sys.stderr)
    for path in outputs.values():
        print(f"wrote {path}", file=sys.stderr)


def _lost_sentence(report: PushReport, args: argparse.Namespace) -> str:
    from aperture.agent.push import batches

    advice = "" if args.spool_dir else "; --spool-dir keeps undelivered batches for a restart"
    return (
        f"{batches(report.lost_total)} did not reach the aggregator at {args.aggregator} "
        f"and {'is' if report.lost_total == 1 else 'are'} lost (see the Push summary){advice}."
    )


def _push_window(pusher: Pusher) -> Callable[[str, Profile], None]:
    def on_window(_name: str, profile: Profile) -> None:
        pusher.submit([profile])  # one batch per window per mode

    return on_window


def _final_flush(
    pusher: Pusher, args: argparse.Namespace, progress: Progress, again: threading.Event
) -> PushReport:
    from aperture.agent.push import batches

    timeout = args.flush_timeout or DEFAULT_FLUSH_TIMEOUT
    pending = pusher.pending()
    if pending and not args.quiet:
        progress.log(
            f"delivering {batches(pending)} still queued to {args.aggregator} (up to "
            f"{format_duration(timeout)}; Ctrl-C again to stop)"
        )
    return pusher.flush(timeout, cancel=again)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (callable from tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
