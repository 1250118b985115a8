"""Shared pieces of the overhead benchmarks.

Building the workloads, starting a measured tool and reading what it costs
(CPU from /proc/PID/stat, peak RSS from wait4, BPF run time from bpf_stats),
the background load of this shared machine, and the Markdown report.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
RESULTS_DIR = BENCH_DIR / "results"
# The agent of the venv running this script (`make bench` runs .venv/bin/python).
AGENT = Path(sys.executable).parent / "aperture-agent"
BPF_INCLUDE = REPO_DIR / "src" / "aperture" / "bpf"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
# BPF program types that hook kernel events (the ones that can slow a benchmark).
TRACING_PROG_TYPES = {"tracing", "raw_tracepoint", "tracepoint", "perf_event", "kprobe"}
# The host's load when the benchmark started (it shares the machine with other work).
START_LOAD = " ".join(Path("/proc/loadavg").read_text().split()[:3])
_PR_SET_PDEATHSIG = 1
# Resolved before any fork: a child must not dlopen while another thread may hold its lock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def log(text: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- building ----------------------------------------------------------------
def _stale(output: Path, *sources: Path) -> bool:
    return not output.exists() or any(s.stat().st_mtime > output.stat().st_mtime for s in sources)


def build_c(source: Path, *flags: str) -> Path:
    """Compile a workload with frame pointers (so every profiler sees whole stacks)."""
    output = BUILD_DIR / source.stem
    if _stale(output, source):
        BUILD_DIR.mkdir(exist_ok=True)
        cmd = ["gcc", "-O2", "-fno-omit-frame-pointer", *flags, "-o", str(output), str(source)]
        subprocess.run(cmd, check=True)
    return output


def build_bpf(source: Path) -> Path:
    """Compile a BPF object with the Makefile's flags (CO-RE, BTF kept)."""
    output = BUILD_DIR / source.name.replace(".bpf.c", ".bpf.o")
    if _stale(output, source):
        BUILD_DIR.mkdir(exist_ok=True)
        machine = platform.machine()
        arch = "arm64" if machine == "aarch64" else "x86"
        multiarch = subprocess.run(
            ["gcc", "-dumpmachine"], capture_output=True, text=True, check=True
        ).stdout.strip()
        cmd = [
            *("clang", "-O2", "-g", "-Wall", "-Werror", "-mcpu=v3", "-target", "bpf"),
            f"-D__TARGET_ARCH_{arch}",
            f"-I/usr/include/{multiarch}",
            f"-I{BPF_INCLUDE}",
            *("-c", str(source), "-o", str(output)),
        ]
        subprocess.run(cmd, check=True)
        subprocess.run(["llvm-strip", "-g", str(output)], check=True)
    return output


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (run `make setup` as root)")
    if os.geteuid() != 0:
        sys.exit("the benchmarks load BPF programs: run them as root")


# -- one process's costs -------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def oncpu_seconds(pid: int) -> float:
    """On-CPU time of the live threads of a process from schedstat (ns precision, where
    utime+stime move in 10 ms ticks; threads that already exited are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the resident-set high-water mark so far (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def anon_fds(pid: int) -> Counter[str]:
    """Open anonymous-inode fds by kind: perf_event, bpf-prog, bpf_link, ..."""
    kinds: Counter[str] = Counter()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return kinds
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("anon_inode:"):
            kinds[target.removeprefix("anon_inode:").strip("[]")] += 1
    return kinds


def _fdinfo_prog_ids(pid: int) -> set[int]:
    """Ids of the BPF programs a process holds (program fds and link fds)."""
    ids: set[int] = set()
    try:
        infos = list(Path(f"/proc/{pid}/fdinfo").iterdir())
    except OSError:
        return ids
    for info in infos:
        try:
            text = info.read_text()
        except OSError:
            continue
        match = re.search(r"^prog_id:\s+(\d+)", text, re.MULTILINE)
        if match:
            ids.add(int(match.group(1)))
    return ids


def _preexec() -> None:
    # Tools die with the benchmark, so an interrupted run leaves nothing attached.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ExitUsage:
    """What wait4 says about a finished process."""

    returncode: int
    cpu_s: float
    maxrss_kib: int
    wall_s: float
    exit_s: float  # from the stop signal to the end: writing output, symbolizing
    killed: bool  # did not finish within the stop timeout


@dataclass
class Tool:
    """A measured tool: started, awaited until attached, sampled, stopped."""

    label: str
    argv: list[str]
    ready: Callable[[int], bool]
    output: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    startup_s: float = 0.0
    last_hwm_kib: int = 0
    _poller: threading.Thread | None = None
    _stop_poll: threading.Event = field(default_factory=threading.Event)
    _out: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the tool and return once ``ready(pid)`` holds (its probes are attached)."""
        self._out = open(self.output or os.devnull, "wb")  # noqa: SIM115 (closed in stop)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            preexec_fn=_preexec,
        )
        deadline = self.started + timeout_s
        while not self.ready(self.proc.pid):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited early ({self.proc.returncode}): {self._tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.label} was not ready after {timeout_s:.0f} s")
            time.sleep(0.05)
        self.startup_s = time.monotonic() - self.started
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        # VmHWM only grows: the last reading before exit is the peak seen from outside.
        while not self._stop_poll.wait(0.5):
            self.last_hwm_kib = max(self.last_hwm_kib, peak_rss_kib(self.pid))

    def _tail(self) -> str:
        if self.output is None or not self.output.exists():
            return ""
        return self.output.read_text(errors="replace")[-800:]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def oncpu_seconds(self) -> float:
        return oncpu_seconds(self.pid)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60.0) -> ExitUsage:
        """Signal the tool, let it write its output (killed after ``timeout_s``), reap it
        with wait4."""
        assert self.proc is not None
        self.last_hwm_kib = max(self.last_hwm_kib, peak_rss_kib(self.pid))
        self._stop_poll.set()
        self.proc.send_signal(sig)
        signalled = time.monotonic()
        killed = False
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - signalled > timeout_s:
                log(f"{self.label} still writing its output after {timeout_s:.0f} s: killed")
                self.proc.kill()
                killed = True
                pid, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.02)
        now = time.monotonic()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self._out is not None:
            self._out.close()
        return ExitUsage(
            returncode=self.proc.returncode,
            cpu_s=usage.ru_utime + usage.ru_stime,
            maxrss_kib=usage.ru_maxrss,
            wall_s=now - self.started,
            exit_s=now - signalled,
            killed=killed,
        )

    def kill(self) -> None:
        self._stop_poll.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._out is not None:
            self._out.close()

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def ready_when(
    *, perf_events: int = 0, bpf_links: int = 0, bpf_progs: int = 0, settle_s: float = 0.3
) -> Callable[[int], bool]:
    """A readiness test on the fds a tool holds once it has attached its probes.

    Ready when the tool holds at least the given perf_event, bpf_link and BPF
    program fds (program or link) and that set has not changed for ``settle_s``.
    """
    last: dict[str, Any] = {"kinds": None, "since": 0.0}

    def ready(pid: int) -> bool:
        kinds = anon_fds(pid)
        now = time.monotonic()
        if kinds != last["kinds"]:
            last.update(kinds=kinds, since=now)
            return False
        return (
            kinds["perf_event"] >= perf_events
            and kinds["bpf_link"] >= bpf_links
            and kinds["bpf-prog"] + kinds["bpf_link"] >= bpf_progs
            and now - last["since"] >= settle_s
        )

    return ready


# -- BPF program statistics ---------------------------------------------------
@contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    """kernel.bpf_stats_enabled=1 for the block, the previous value restored after."""
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    previous = path.read_text().strip()
    path.write_text("1\n")
    try:
        yield
    finally:
        path.write_text(previous + "\n")


@dataclass(frozen=True)
class ProgStats:
    name: str
    run_cnt: int
    run_time_ns: int

    @property
    def ns_per_run(self) -> float:
        return self.run_time_ns / self.run_cnt if self.run_cnt else float("nan")


def _bpftool_progs() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True
    ).stdout
    progs: list[dict[str, Any]] = json.loads(out or "[]")
    return progs


def prog_stats(pid: int, names: Sequence[str] | None = None) -> dict[str, ProgStats]:
    """bpf_stats of the programs ``pid`` holds, by name, from ``bpftool prog show -j``.

    Programs are picked by the ids the process holds, then by name: other
    engineers' tests on this host load programs with the same names.
    """
    owned = _fdinfo_prog_ids(pid)
    stats: dict[str, ProgStats] = {}
    for prog in _bpftool_progs():
        name = str(prog.get("name", ""))
        if prog.get("id") not in owned or (names is not None and name not in names):
            continue
        old = stats.get(name, ProgStats(name, 0, 0))
        stats[name] = ProgStats(
            name,
            old.run_cnt + int(prog.get("run_cnt", 0)),
            old.run_time_ns + int(prog.get("run_time_ns", 0)),
        )
    return stats


def foreign_tracing_progs() -> int:
    """Tracing-type BPF programs loaded on the host (none of ours runs when this is asked)."""
    return sum(1 for p in _bpftool_progs() if p.get("type") in TRACING_PROG_TYPES)


# -- the rest of the machine ---------------------------------------------------
def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


class BusyMeter:
    """CPU busy on the whole host, in cores, between construction and :meth:`cores`."""

    def __init__(self) -> None:
        self._busy, self._total = _cpu_jiffies()

    def cores(self) -> float:
        busy, total = _cpu_jiffies()
        return NCPU * (busy - self._busy) / max(1, total - self._total)


_quiet_budget = {"left_s": 30.0}


def wait_for_quiet(max_wait_s: float = 15.0, threshold_cores: float = 0.25) -> float:
    """Wait (bounded) until other work on this shared host leaves the CPUs idle.

    At most ``max_wait_s`` per call and 30 s per benchmark script in all, so a
    host that never goes quiet still gets measured (the report shows its load).
    Returns the busy cores of the last second checked.
    """
    started = time.monotonic()
    deadline = started + min(max_wait_s, _quiet_budget["left_s"])
    try:
        while True:
            meter = BusyMeter()
            time.sleep(1.0)
            busy = meter.cores()
            quiet = busy < threshold_cores and foreign_tracing_progs() == 0
            if quiet or time.monotonic() > deadline:
                if not quiet:
                    log(f"host still busy ({busy:.2f} cores or BPF tracing): measuring anyway")
                return busy
            log(f"waiting for a quiet host: {busy:.2f} cores busy")
    finally:
        _quiet_budget["left_s"] -= time.monotonic() - started


# -- workloads -----------------------------------------------------------------
@dataclass(frozen=True)
class WorkloadRun:
    pid: int
    elapsed_s: float  # as the workload measured itself
    cpu_s: float  # utime + stime from wait4: the task's ns-precise runtime, split by ticks
    wall_s: float
    output: str


def run_workload(argv: Sequence[str], elapsed: Callable[[str], float]) -> WorkloadRun:
    """Run a workload to completion; ``elapsed`` reads its own timing from its output."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_preexec
    )
    assert proc.stdout is not None
    text = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {text[-500:]}")
    return WorkloadRun(
        pid=proc.pid,
        elapsed_s=elapsed(text),
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=time.monotonic() - started,
        output=text,
    )


@dataclass(frozen=True)
class TimedRuns:
    """Workload runs back to back, with what the tool and the rest of the host used meanwhile."""

    runs: list[WorkloadRun]
    elapsed_s: float
    tool_cpu_s: float  # utime+stime (10 ms ticks)
    tool_oncpu_s: float  # schedstat (ns)
    other_cores: float  # host CPU busy minus the workload and the tool, in cores

    @property
    def times(self) -> list[float]:
        return [r.elapsed_s for r in self.runs]

    @property
    def cpu_times(self) -> list[float]:
        """The workload's own CPU time per run: unlike its wall time, other work on the
        host does not inflate it (steal time is excluded; with no IRQ time accounting
        in this kernel, a sampling interrupt's BPF time is charged to the task it hit)."""
        return [r.cpu_s for r in self.runs]

    @property
    def tool_cpu_pct(self) -> float:
        return 100 * self.tool_cpu_s / self.elapsed_s

    @property
    def tool_oncpu_pct(self) -> float:
        return 100 * self.tool_oncpu_s / self.elapsed_s


def timed_runs(workload: Callable[[], WorkloadRun], n: int, tool: Tool | None = None) -> TimedRuns:
    """Run ``workload`` ``n`` times while measuring ``tool`` (if any) and the host."""
    meter = BusyMeter()
    cpu0 = tool.cpu_seconds() if tool else 0.0
    on0 = tool.oncpu_seconds() if tool else 0.0
    started = time.monotonic()
    runs = [workload() for _ in range(n)]
    elapsed = time.monotonic() - started
    cpu = tool.cpu_seconds() - cpu0 if tool else 0.0
    oncpu = tool.oncpu_seconds() - on0 if tool else 0.0
    busy = meter.cores()
    own = sum(r.cpu_s for r in runs) + cpu
    return TimedRuns(runs, elapsed, cpu, oncpu, max(0.0, busy - own / elapsed))


def elapsed_ns_line(text: str) -> float:
    """The ``elapsed_ns N`` line our C workloads print, in seconds."""
    match = re.search(r"elapsed_ns (\d+)", text)
    if not match:
        raise RuntimeError(f"no elapsed_ns in workload output: {text[-300:]}")
    return int(match.group(1)) / 1e9


# -- numbers and the report ----------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_header(title: str, command: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- date: {now}",
            f"- machine: kernel {platform.release()}, {NCPU} CPUs ({cpu_model()}), "
            f"load average at start {START_LOAD}",
            f"- command: `{command}`",
        ]
    )


def write_report(name: str, text: str) -> Path:
    """Print the report and keep it as bench/results/NAME.md."""
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text + "\n")
    log(f"wrote {path.relative_to(REPO_DIR)}")
    return path
