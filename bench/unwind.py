"""User-stack unwinding: .eh_frame tables (--unwind dwarf/auto) against frame pointers (fp).

1. The sampling program's cost per sample (kernel bpf_stats) at 99 Hz system-wide,
   Aperture --unwind dwarf, Aperture --unwind fp and bpftrace attached at once (so
   they walk the same stacks), then each Aperture mode alone; with the user-stack
   depth each Aperture mode recorded. The workload has deep stacks and no frame
   pointers: Debian's python3.11 recursing through a builtin, and a C call chain
   built with -fomit-frame-pointer (bench/workloads/unwind_deep.c).
2. The agent's CPU and peak RSS, --unwind auto and fp, on the quiet host and under a
   reproducible churn of short-lived processes (gcc, python3.11, a node loop).
3. Table build time per binary (libc, python3.11, the host's largest .eh_frame).
4. The BPF map memory of the tables of every process on this host.

Prints a Markdown report and writes bench/results/unwind.md.

Usage (root): .venv/bin/python bench/unwind.py [--duration 30] [--skip-busy]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile

from _common import (
    AGENT,
    BENCH_DIR,
    NCPU,
    BusyMeter,
    ProgStats,
    Tool,
    bpf_stats_enabled,
    build_c,
    cpu_seconds,
    fmt,
    log,
    machine_header,
    markdown_table,
    prog_stats,
    ready_when,
    require_tools,
    wait_for_quiet,
    write_report,
)
from aperture.agent.collectors.bpfobj import object_path
from aperture.agent.collectors.cpu import CpuConfig
from aperture.agent.libbpf import BpfObject
from aperture.agent.unwind.kernel_maps import KERNEL_ROW_BYTES, KernelTables, ProcessRegistry
from aperture.agent.unwind.tables import ROW_SIZE
from aperture.formats.json_format import load_json
from aperture.model import FrameKind, Profile
from cpu_overhead import combined, specs

HZ = 99
PYTHON = "/usr/bin/python3.11"  # Debian's: built without frame pointers
LIBC = f"/lib/{platform.machine()}-linux-gnu/libc.so.6"
DEEP_C = BENCH_DIR / "workloads" / "unwind_deep.c"
# Python 3.11 runs a Python-to-Python call inside the same C frame: a plain recursion
# leaves the native stack flat. Every second level here goes through map(), which
# re-enters the interpreter, so depth 30 makes a native stack about 70 frames deep.
RECURSE_PY = """\
def f(n):
    if n == 0:
        x = 0
        for i in range(300):
            x += i
        return x
    if n % 2:
        return f(n - 1) + 1
    return sum(map(f, (n - 1,))) + 1


while True:
    f(30)
"""
CHURN_C = "int square(int x) { return x * x; }\nint main(void) { return square(3) - 9; }\n"
# Busy half the time: JIT code (no tables, frame pointers in auto mode) that leaves
# the second core to the rest of the churn.
NODE_LOOP = (
    "function spin(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s; }"
    "setInterval(() => { const t = Date.now(); while (Date.now() - t < 50) spin(1000); }, 100);"
)
GCC_EVERY_S = 0.5
PYTHON_EVERY_S = 0.3
STEADY_FROM_S = 12.0  # after start: past the first 10 s drain
WARMUP_S = 8.0  # before the BPF window at least: every workload registered
# ... and then until each agent's table builder is idle (the agent under this share of a
# core for a second), for at most SETTLE_MAX_S in all.
IDLE_CORE_SHARE = 0.2
SETTLE_MAX_S = 40.0
DWARF_FP_TARGET = 2.0
SAMPLER = ("sample_cpu",)


# -- the tools and workloads ----------------------------------------------------------
def agent(label: str, mode: str, tmp: Path) -> Tool:
    """An agent profiling the host at 99 Hz; its profile goes to TMP/LABEL.json."""
    argv = [str(AGENT), "-F", str(HZ), "-d", "600s", "-q", "--unwind", mode]
    argv += ["-o", str(tmp / f"{label}.json")]
    return Tool(label, argv, ready_when(perf_events=NCPU, bpf_links=NCPU), tmp / f"{label}.log")


def bpftrace(tmp: Path) -> Tool:
    spec = next(s for s in specs(HZ, tmp) if s.label == "bpftrace")
    return Tool(spec.label, spec.argv, spec.ready, tmp / "bpftrace.log")


def background(label: str, argv: list[str]) -> Tool:
    """A workload: started at once, killed at the end (it dies with the benchmark)."""
    return Tool(label, argv, lambda _pid: True)


@contextmanager
def running(tools: Sequence[Tool]) -> Iterator[None]:
    """Start the tools in order (each until ready); kill what is left at the end."""
    try:
        for tool in tools:
            tool.start()
        yield
    finally:
        for tool in tools:
            tool.kill()


def stop_agent(tool: Tool) -> tuple[Profile | None, float, float]:
    """SIGINT, let it write its profile: (profile, total CPU s, peak RSS MB)."""
    usage = tool.stop()
    if usage.returncode not in (0, -signal.SIGINT):
        log(f"{tool.label} exited with {usage.returncode}: see {tool.output}")
    assert tool.output is not None
    path = tool.output.with_suffix(".json")
    profile = load_json(path.read_bytes()) if path.exists() else None
    return profile, usage.cpu_s, max(usage.maxrss_kib, tool.last_hwm_kib) / 1024


def rss_kib(pid: int) -> int:
    """VmRSS now (peak_rss_kib gives the high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Churn:
    """The busy host: gcc every 0.5 s, a short python3.11 every 0.3 s (threads), one node."""

    def __init__(self, tmp: Path) -> None:
        self._source = tmp / "churn.c"
        self._source.write_text(CHURN_C)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0
        self.node: Tool | None = None

    def start(self) -> None:
        gcc = ["gcc", "-O2", "-o", str(self._source.with_suffix("")), str(self._source)]
        py = [PYTHON, "-c", "sum(range(10**6))"]
        for argv, every in ((gcc, GCC_EVERY_S), (py, PYTHON_EVERY_S)):
            thread = threading.Thread(target=self._loop, args=(argv, every), daemon=True)
            thread.start()
            self._threads.append(thread)
        if shutil.which("node"):
            self.node = background("node", ["node", "-e", NODE_LOOP])
            self.node.start()  # from the main thread: its parent-death signal needs that

    def _loop(self, argv: list[str], every_s: float) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started += 1
            next_at += every_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def cpu_seconds(self) -> float:
        """The churn's CPU so far: reaped children (gcc, python3.11) and node."""
        node = cpu_seconds(self.node.pid) if self.node else 0.0
        return children_cpu_s() + node

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.node is not None:
            self.node.kill()


# -- 1. BPF cost per sample ----------------------------------------------------------
@dataclass
class BpfRun:
    """One tool's sampling program over a window, and what its stacks held."""

    label: str
    stats: ProgStats
    depth: dict[str, float] = field(default_factory=dict)
    complete_pct: float | None = None
    ends: str = ""
    other_cores: float = float("nan")
    warmup_s: float = float("nan")


def window_delta(before: ProgStats, after: ProgStats) -> ProgStats:
    return ProgStats(
        after.name, after.run_cnt - before.run_cnt, after.run_time_ns - before.run_time_ns
    )


def sampler_stats(tool: Tool) -> ProgStats:
    return combined(prog_stats(tool.pid, None if tool.label == "bpftrace" else SAMPLER))


def user_depth(profile: Profile, workloads: dict[str, int]) -> dict[str, float]:
    """Mean user frames per sample, weighted by value: per workload, and over every
    sample with a user stack; and per workload ("NAME to _start") the % of its
    samples whose stack reaches _start (unwound whole)."""
    pids = {pid: name for name, pid in workloads.items()}
    sums: dict[str, list[float]] = {name: [0.0, 0.0] for name in (*workloads, "all")}
    whole = dict.fromkeys(workloads, 0.0)
    for sample in profile.samples:
        depth = sum(1 for f in sample.stack if f.kind is FrameKind.USER)
        if depth == 0:
            continue
        name = pids.get(sample.pid)
        if name is not None and sample.stack[0].name == "_start":  # the stack is root first
            whole[name] += sample.value
        for key in ("all", name):
            if key is not None:
                sums[key][0] += depth * sample.value
                sums[key][1] += sample.value
    out = {name: s / n if n else float("nan") for name, (s, n) in sums.items()}
    for name, n in whole.items():
        out[f"{name} to _start"] = 100 * n / sums[name][1] if sums[name][1] else float("nan")
    return out


def early_ends(profile: Profile) -> str:
    """Why table walks stopped short of the entry point, most frequent first."""
    ends = {
        key.removeprefix("unwind_end_"): int(value)
        for key, value in profile.labels.items()
        if key.startswith("unwind_end_") and key != "unwind_end_bottom" and value.isdigit()
    }
    ranked = sorted(((n, end) for end, n in ends.items() if n), reverse=True)
    return ", ".join(f"{end} {n}" for n, end in ranked) or "none"


def complete_pct(profile: Profile) -> float | None:
    walks = int(profile.labels.get("unwind_table_walks", "0"))
    done = int(profile.labels.get("unwind_complete", "0"))
    return 100 * done / walks if walks else None


def settle(agents: list[Tool]) -> float:
    """WARMUP_S, then until every agent's table builder is idle; the seconds waited."""
    started = time.monotonic()
    time.sleep(WARMUP_S)
    while time.monotonic() - started < SETTLE_MAX_S:
        before = [t.oncpu_seconds() for t in agents]
        time.sleep(1.0)
        if all(
            t.oncpu_seconds() - b < IDLE_CORE_SHARE for t, b in zip(agents, before, strict=True)
        ):
            break
    else:
        log(f"an agent still busy (building tables?) after {SETTLE_MAX_S:.0f} s: measuring")
    return time.monotonic() - started


def bpf_window(
    tools: list[Tool], window_s: float, workloads: dict[str, int], own: Callable[[], float]
) -> list[BpfRun]:
    """Start the tools, wait out the warm-up, read bpf_stats over ``window_s``."""
    with running(tools):
        warmup = settle([t for t in tools if t.label != "bpftrace"])
        before = [sampler_stats(t) for t in tools]
        meter, own0 = BusyMeter(), own() + sum(t.cpu_seconds() for t in tools)
        time.sleep(window_s)
        after = [sampler_stats(t) for t in tools]
        other = meter.cores() - (own() + sum(t.cpu_seconds() for t in tools) - own0) / window_s
        runs = []
        for tool, b, a in zip(tools, before, after, strict=True):
            run = BpfRun(tool.label, window_delta(b, a), other_cores=max(0.0, other))
            run.warmup_s = warmup
            if tool.label != "bpftrace":  # bpftrace's print-out at exit is not wanted
                profile, _, _ = stop_agent(tool)
                if profile is not None:
                    run.depth = user_depth(profile, workloads)
                    run.complete_pct = complete_pct(profile)
                    run.ends = early_ends(profile)
            runs.append(run)
    return runs


# -- 2. agent CPU and RSS ------------------------------------------------------------
@dataclass
class AgentRun:
    label: str
    steady_cpu_pct: float
    total_cpu_s: float
    lifetime_s: float
    rss_start_mb: float
    rss_end_mb: float
    peak_rss_mb: float
    host_cores: float
    other_cores: float
    tables_loaded: str
    table_mib: float
    complete_pct: float | None
    processes: int
    ends: str
    to_start_pct: float | None


def agent_run(
    label: str, mode: str, tmp: Path, window_s: float, own: Callable[[], float], workload: int
) -> AgentRun:
    """utime+stime from STEADY_FROM_S after start for ``window_s``, and in total."""
    log(f"agent --unwind {mode}: {label}")
    tool = agent(f"agent-{label}-{mode}", mode, tmp)
    with tool:
        tool.start()
        time.sleep(max(0.0, tool.started + STEADY_FROM_S - time.monotonic()))
        cpu0, own0, rss0, meter = tool.cpu_seconds(), own(), rss_kib(tool.pid), BusyMeter()
        time.sleep(window_s)
        cpu1, own1, rss1, busy = tool.cpu_seconds(), own(), rss_kib(tool.pid), meter.cores()
        profile, total_cpu, peak_mb = stop_agent(tool)
    labels = profile.labels if profile else {}
    lifetime = time.monotonic() - tool.started
    return AgentRun(
        label=f"{label}, --unwind {mode}",
        steady_cpu_pct=100 * (cpu1 - cpu0) / window_s,
        total_cpu_s=total_cpu,
        lifetime_s=lifetime,
        rss_start_mb=rss0 / 1024,
        rss_end_mb=rss1 / 1024,
        peak_rss_mb=peak_mb,
        host_cores=busy,
        other_cores=max(0.0, busy - ((cpu1 - cpu0) + (own1 - own0)) / window_s),
        tables_loaded=labels.get("unwind_tables_loaded", "0"),
        table_mib=int(labels.get("unwind_table_bytes", "0")) / 2**20,
        complete_pct=complete_pct(profile) if profile and mode != "fp" else None,
        processes=len({s.pid for s in profile.samples}) if profile else 0,
        ends=early_ends(profile) if profile and mode != "fp" else "",
        to_start_pct=user_depth(profile, {"w": workload})["w to _start"] if profile else None,
    )


# -- 3. table build time -------------------------------------------------------------
def eh_frame_size(path: str) -> int:
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return 0
            f.seek(0)
            section = ELFFile(f).get_section_by_name(".eh_frame")
            return int(section["sh_size"]) if section is not None else 0
    except Exception:
        return 0


def largest_eh_frame() -> tuple[str, int, int]:
    """(path, .eh_frame bytes, files scanned) of the largest library on the host."""
    multiarch = f"{platform.machine()}-linux-gnu"
    patterns = [f"/usr/lib/{multiarch}/*.so*", "/usr/lib/chromium*/*", "/usr/lib/llvm-*/lib/*.so*"]
    paths = {os.path.realpath(p) for pat in patterns for p in glob.glob(pat) if os.path.isfile(p)}
    sizes = {p: eh_frame_size(p) for p in paths}
    best = max(sizes, key=lambda p: sizes[p])
    return best, sizes[best], len(paths)


@dataclass
class BuildRun:
    path: str
    eh_frame_bytes: int
    fdes: int
    rows: int
    best_s: float
    times: list[float]
    peak_rss_mb: float


# Run in a child of its own, so its peak RSS is the build's (the interpreter's own
# ~20 MB included).
_BUILD_CHILD = """
import json, sys, time
from aperture.agent.unwind.tables import build_table
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    table = build_table(sys.argv[1])
    times.append(time.perf_counter() - started)
print(json.dumps({"rows": len(table), "fdes": table.fdes, "times": times}))
"""


def build_times(path: str, runs: int = 3) -> BuildRun:
    """``build_table(path)`` ``runs`` times in a fresh interpreter."""
    argv = [sys.executable, "-c", _BUILD_CHILD, path, str(runs)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = json.loads(proc.stdout.read())
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"building the table of {path} failed")
    times = [float(t) for t in out["times"]]
    return BuildRun(
        path,
        eh_frame_size(path),
        out["fdes"],
        out["rows"],
        min(times),
        times,
        usage.ru_maxrss / 1024,
    )


def largest_in_venv() -> tuple[int, str]:
    """The venv's shared object with the largest .eh_frame (chDB's, for the aggregator)."""
    pattern = f"{sys.prefix}/lib/python*/site-packages/**/*.so*"
    paths = {os.path.realpath(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)}
    return max((eh_frame_size(p), p) for p in paths)


# -- 4. the tables of this host's processes in BPF maps ------------------------------
@dataclass
class HostTables:
    processes: int
    registered: int
    loaded: int
    rows: int
    kernel_bytes: int
    build_seconds: float
    wall_s: float
    evicted: int
    too_large: int
    no_table: int
    memlock_bytes: int
    queued: int
    inner_maps: int
    inner_names: set[str]
    # The mapped binaries with the largest .eh_frame: (path, bytes, the commands mapping it)
    largest: list[tuple[str, int, set[str]]]


def map_id(fd: int) -> int:
    text = Path(f"/proc/self/fdinfo/{fd}").read_text()
    match = re.search(r"^map_id:\s+(\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("this kernel's fdinfo has no map_id")
    return int(match.group(1))


def bpftool_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["bpftool", *args, "-j"], capture_output=True, text=True, check=True)
    data: list[dict[str, object]] = json.loads(out.stdout or "[]")
    return data


def inner_map_ids(outer_id: int) -> set[int]:
    """The inner maps ``unwind_tables`` holds (its values are map ids)."""
    ids = set()
    for entry in bpftool_json("map", "dump", "id", str(outer_id)):
        value = entry.get("inner_map_id", entry.get("value"))
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):  # raw bytes: a little-endian u32
            ids.add(int.from_bytes(bytes(int(b, 16) for b in value), "little"))
    return ids


def mapped_binaries() -> dict[str, set[str]]:
    """Every file mapped executable by a process now, with the commands that map it."""
    found: dict[str, set[str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            lines = (proc / "maps").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
                found.setdefault(parts[5], set()).add(comm)
    return found


def host_tables() -> HostTables:
    obj = BpfObject(object_path("cpu"))
    config = CpuConfig.from_buffer(obj.map(".rodata").initial_value())
    config.unwind_mode = 2
    obj.load()
    tables = KernelTables(obj.map("unwind_tables"))
    registry = ProcessRegistry(obj.map("proc_mappings"), tables)
    try:
        mapped = mapped_binaries()
        sizes = largest_mapped(mapped, 5)
        started = time.monotonic()
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
        # build=True: every table now (the agent builds a table when a sample first needs it).
        registered = sum(registry.register(pid, build=True) for pid in pids)
        if not registry.wait_idle(300):
            log("tables still being built after 300 s: reporting what is loaded")
        wall = time.monotonic() - started
        stats = tables.stats()
        inner = inner_map_ids(map_id(obj.map("unwind_tables").fd))
        shown = [m for m in bpftool_json("map", "show") if m.get("id") in inner]
        return HostTables(
            processes=len(pids),
            registered=registered,
            loaded=stats.loaded,
            rows=stats.rows,
            kernel_bytes=stats.kernel_bytes,
            build_seconds=stats.build_seconds,
            wall_s=wall,
            evicted=stats.evicted,
            too_large=stats.too_large,
            no_table=stats.no_table,
            queued=stats.queued,
            memlock_bytes=sum(int(str(m.get("bytes_memlock", 0))) for m in shown),
            inner_maps=len(shown),
            inner_names={str(m.get("name", "")) for m in shown},
            largest=[(path, size, mapped[path]) for size, path in sizes],
        )
    finally:
        registry.close()
        obj.close()


# -- the report ----------------------------------------------------------------------
def ns(run: BpfRun | None) -> float:
    return run.stats.ns_per_run if run else float("nan")


def bpf_section(paired: list[BpfRun], alone: list[BpfRun], args: argparse.Namespace) -> list[str]:
    by = {r.label: r for r in paired}
    solo = {r.label: r for r in alone}
    names = ["Aperture dwarf", "Aperture fp", "bpftrace"]
    rows = [
        ["ns per sample, all three attached", *(fmt(ns(by.get(n)), 0) for n in names)],
        [
            "samples in the window",
            *(fmt(by[n].stats.run_cnt, 0) if n in by else "n/a" for n in names),
        ],
        ["ns per sample, attached alone", *(fmt(ns(solo.get(n)), 0) for n in names[:2]), "-"],
        [
            "samples in the window (alone)",
            *(fmt(solo[n].stats.run_cnt, 0) if n in solo else "n/a" for n in names[:2]),
            "-",
        ],
    ]

    def both(name: str, key: str) -> str:
        """The paired run's value / the alone run's."""
        values = [
            r.depth.get(key) if r and r.depth else None for r in (by.get(name), solo.get(name))
        ]
        return " / ".join(fmt(v, 1) for v in values)

    for key, title in (
        ("python3.11", "mean user frames: python3.11 workload"),
        ("unwind_deep", "mean user frames: C chain"),
        ("all", "mean user frames: every sample with a user stack"),
        ("python3.11 to _start", "python3.11 workload samples unwound to _start, %"),
        ("unwind_deep to _start", "C chain samples unwound to _start, %"),
    ):
        rows.append([f"{title} (together / alone)", *(both(n, key) for n in names[:2]), "-"])
    rows.append(
        [
            "table walks complete to the entry point, all processes, %",
            " / ".join(
                fmt(r.complete_pct if r else None, 1)
                for r in (by.get(names[0]), solo.get(names[0]))
            ),
            "-",
            "-",
        ]
    )
    dwarf, fp, bt = (by.get(n) for n in names)
    whole = dwarf.depth.get("python3.11 to _start", 0.0) if dwarf else 0.0
    warning = (
        [
            f"- WARNING: only {fmt(whole, 1)} % of the python3.11 workload's dwarf samples reached "
            "_start in the paired window: some of its binaries had no table loaded yet (a huge "
            "binary elsewhere on the host holds up the table builder: parts 2 and 3), so the dwarf "
            "cost above is for partly walked stacks"
        ]
        if whole < 90
        else []
    )
    ratio = ns(dwarf) / ns(fp)
    ratio_alone = ns(solo.get(names[0])) / ns(solo.get(names[1]))
    extra_frames = (
        (dwarf.depth.get("all", float("nan")) - fp.depth.get("all", float("nan")))
        if dwarf and fp
        else float("nan")
    )
    ok = ratio <= DWARF_FP_TARGET
    per_frame = (ns(dwarf) - ns(fp)) / extra_frames if extra_frames > 0 else None
    other = paired[0].other_cores if paired else float("nan")
    return [
        "## 1. BPF cost per sample",
        "",
        f"At {HZ} Hz on all {NCPU} CPUs, kernel.bpf_stats_enabled=1, run_time_ns / run_cnt of each "
        f"tool's sampling program over a {args.duration:.0f} s window (after the warm-up "
        "below), the alone runs over "
        f"{alone_window(args):.0f} s each. Workloads: Debian's {PYTHON} recursing to depth 30 "
        "(every second level through map(), so the native stack is deep; 3.11 inlines plain "
        "Python calls) and bench/workloads/unwind_deep.c (gcc -O2 -fomit-frame-pointer, ten "
        "calls deep), each spinning on a core. bpftrace runs "
        "`profile:hz:99 { @[kstack, ustack, comm] = count(); }`. User frames are counted in each "
        "agent's own -o JSON (whole run, samples with at least one user frame, weighted by count).",
        f"Warm-up before the window (until the agents' table builders were idle, "
        f"{WARMUP_S:.0f}-{SETTLE_MAX_S:.0f} s): together "
        f"{fmt(paired[0].warmup_s if paired else None, 0)} s, alone "
        + " / ".join(fmt(r.warmup_s, 0) for r in alone)
        + " s. "
        f"Other load on the host in the paired window (besides the workloads and the tools): "
        f"{fmt(other, 2)} cores; in the alone windows "
        + " / ".join(fmt(r.other_cores, 2) for r in alone)
        + " cores.",
        "",
        markdown_table(["", *names], rows),
        "",
        *warning,
        f"- dwarf / fp, attached together: {fmt(ratio, 2)}x (target ≤ {DWARF_FP_TARGET:.0f}x): "
        f"{'met' if ok else 'MISSED'}; attached alone: {fmt(ratio_alone, 2)}x",
        f"- table walks that stopped early, by reason (whole run, every process on the host): "
        f"{dwarf.ends if dwarf else 'n/a'}",
        f"- dwarf / bpftrace, attached together: {fmt(ns(dwarf) / ns(bt), 2)}x",
        f"- the table walk records {fmt(extra_frames, 1)} more user frames per sample than the "
        f"frame-pointer walk, for {fmt(ns(dwarf) - ns(fp), 0)} ns more per sample "
        f"({fmt(per_frame, 0)} ns per extra frame)",
    ]


def alone_window(args: argparse.Namespace) -> float:
    return max(5.0, float(args.duration) / 2)


def agent_section(
    runs: list[AgentRun], churn: dict[str, int], args: argparse.Namespace
) -> list[str]:
    rows = [
        [
            r.label,
            fmt(r.steady_cpu_pct, 2),
            f"{fmt(r.total_cpu_s, 2)} / {fmt(r.lifetime_s, 1)} = "
            f"{fmt(100 * r.total_cpu_s / r.lifetime_s, 1)} %",
            f"{fmt(r.rss_start_mb, 1)} → {fmt(r.rss_end_mb, 1)}",
            fmt(r.peak_rss_mb, 1),
            f"{r.tables_loaded} / {fmt(r.table_mib, 1)}",
            fmt(r.complete_pct, 1),
            fmt(r.to_start_pct, 1),
            fmt(r.processes, 0),
            fmt(r.host_cores, 2),
            fmt(r.other_cores, 2),
        ]
        for r in runs
    ]
    header = [
        "host, mode",
        f"agent CPU {STEADY_FROM_S:.0f}-{STEADY_FROM_S + args.duration:.0f} s, % of a core",
        "agent CPU in total, s / lifetime s",
        "RSS at window start → end, MB",
        "peak RSS (VmHWM), MB",
        "tables loaded / MiB",
        "table walks complete, %",
        "python3.11 workload to _start, %",
        "processes sampled",
        "host busy, cores",
        "other load, cores",
    ]
    churn_text = ", ".join(f"{label}: {n} processes started" for label, n in churn.items())
    return [
        "## 2. Agent CPU and memory",
        "",
        f"{HZ} Hz system-wide, one agent at a time, utime+stime (10 ms ticks) from "
        f"{STEADY_FROM_S:.0f} s after start for {args.duration:.0f} s (past the first 10 s drain), "
        "and in total (wait4, including start-up and writing its -o JSON at exit). Quiet: the "
        f"python3.11 workload alone. Busy: the same, plus gcc compiling a small C file every "
        f"{GCC_EVERY_S} s, `{PYTHON} -c 'sum(range(10**6))'` every {PYTHON_EVERY_S} s and one "
        "node process spinning half the time (JIT code: frame pointers in auto mode). Host busy "
        "is /proc/stat over the window; other load is that minus the agent, the workloads and "
        "the churn." + (f" Churn: {churn_text}." if churn_text else ""),
        "",
        markdown_table(header, rows),
        "",
        *(f"- {r.label}: walks stopped early by {r.ends}" for r in runs if r.ends),
    ]


def largest_mapped(mapped: dict[str, set[str]], n: int) -> list[tuple[int, str]]:
    """The ``n`` mapped binaries with the largest .eh_frame: (bytes, path)."""
    return sorted(((eh_frame_size(p), p) for p in mapped), reverse=True)[:n]


def build_section(builds: list[BuildRun], scanned: int) -> list[str]:
    rows = [
        [
            b.path,
            fmt(b.eh_frame_bytes / 2**10, 0),
            fmt(b.fdes, 0),
            fmt(b.rows, 0),
            fmt(b.rows * ROW_SIZE / 2**20, 2),
            fmt(b.rows * KERNEL_ROW_BYTES / 2**20, 2),
            fmt(b.best_s * 1000, 0),
            " / ".join(fmt(t * 1000, 0) for t in b.times),
            fmt(b.rows / b.best_s / 1e6, 2),
            fmt(b.peak_rss_mb, 0),
        ]
        for b in builds
    ]
    header = [
        "binary",
        ".eh_frame KiB",
        "FDEs",
        "rows",
        f"rows × {ROW_SIZE} B, MiB",
        f"kernel, rows × {KERNEL_ROW_BYTES} B, MiB",
        "best build, ms",
        "each build, ms",
        "M rows/s",
        "peak RSS of the building process, MB",
    ]
    return [
        "## 3. Table build time",
        "",
        "`aperture.agent.unwind.tables.build_table`, best of 3, in a fresh interpreter per "
        "binary (no cache). "
        f"The third binary has the largest .eh_frame of {scanned} ELF files under "
        "/usr/lib/<multiarch>/*.so*, /usr/lib/chromium*/ and /usr/lib/llvm-*/lib/; a fourth "
        "row, built once, is the largest in this venv's site-packages when larger still "
        "(the aggregator and this project's tests map it).",
        "",
        markdown_table(header, rows),
    ]


def host_section(h: HostTables) -> list[str]:
    rows = [
        ["processes in /proc / registered", f"{h.processes} / {h.registered}"],
        ["binaries with a table in the kernel", fmt(h.loaded, 0)],
        ["rows", fmt(h.rows, 0)],
        ["TableStats.kernel_bytes, MiB", fmt(h.kernel_bytes / 2**20, 2)],
        [
            f"inner maps' bytes_memlock (bpftool: {h.inner_maps} maps, named "
            f"{', '.join(sorted(h.inner_names)) or '-'}), MiB",
            fmt(h.memlock_bytes / 2**20, 2),
        ],
        ["build seconds (sum over tables)", fmt(h.build_seconds, 2)],
        ["register all + wait_idle, wall s", fmt(h.wall_s, 2)],
        ["evicted / too large / no table", f"{h.evicted} / {h.too_large} / {h.no_table}"],
        ["still queued after the wait", fmt(h.queued, 0)],
    ]
    diff = 100 * (h.memlock_bytes / h.kernel_bytes - 1) if h.kernel_bytes else float("nan")
    return [
        "## 4. Map memory of this host's tables",
        "",
        "The CPU object loaded in auto mode (nothing attached), a KernelTables (default memory "
        "limit) and ProcessRegistry, every pid in /proc registered with build=True (every "
        "table it maps, where the agent builds one when a sample first needs it), then "
        "wait_idle: the most the host's processes could take. The check: "
        "the inner maps the outer `unwind_tables` map holds, by id from `bpftool map dump`, "
        "their `bytes_memlock` summed from `bpftool map show -j`.",
        "",
        markdown_table(["", "value"], rows),
        "",
        f"- bpftool's sum is {fmt(diff, 1)} % off TableStats.kernel_bytes",
        "- the binaries mapped on the host with the largest .eh_frame: "
        + "; ".join(
            f"{path} ({fmt(size / 2**10, 0)} KiB, mapped by {', '.join(sorted(comms)[:4])})"
            for path, size, comms in h.largest
        ),
    ]


# -- the run -------------------------------------------------------------------------
def bpf_costs(tmp: Path, deep: Path, args: argparse.Namespace) -> tuple[list[BpfRun], ...]:
    """Part 1: the three tools together, then each Aperture mode alone."""
    script = tmp / "recurse.py"
    py = background("python3.11", [PYTHON, str(script)])
    c = background("unwind_deep", [str(deep)])
    with running([py, c]):
        workloads = {"python3.11": py.pid, "unwind_deep": c.pid}

        def own() -> float:
            return py.cpu_seconds() + c.cpu_seconds()

        log("BPF cost: dwarf, fp and bpftrace attached together")
        together = [agent("Aperture dwarf", "dwarf", tmp), agent("Aperture fp", "fp", tmp)]
        paired = bpf_window([*together, bpftrace(tmp)], args.duration, workloads, own)
        alone = []
        for mode in ("dwarf", "fp"):
            log(f"BPF cost: {mode} alone")
            tools = [agent(f"Aperture {mode}", mode, tmp)]
            alone += bpf_window(tools, alone_window(args), workloads, own)
    return paired, alone


def agent_costs(tmp: Path, args: argparse.Namespace) -> tuple[list[AgentRun], dict[str, int]]:
    """Part 2: each mode on the quiet host, then each under the churn."""
    py = background("python3.11", [PYTHON, str(tmp / "recurse.py")])
    runs: list[AgentRun] = []
    churned: dict[str, int] = {}
    with running([py]):
        for mode in ("auto", "fp"):
            runs.append(agent_run("quiet", mode, tmp, args.duration, py.cpu_seconds, py.pid))
        for mode in () if args.skip_busy else ("auto", "fp"):
            churn = Churn(tmp)
            churn.start()
            try:
                own = sum_of(py.cpu_seconds, churn.cpu_seconds)
                runs.append(agent_run("busy", mode, tmp, args.duration, own, py.pid))
            finally:
                churn.stop()
            churned[f"--unwind {mode}"] = churn.started
    return runs, churned


def sum_of(*clocks: Callable[[], float]) -> Callable[[], float]:
    def total() -> float:
        return sum((clock() for clock in clocks), 0.0)

    return total


def code_version() -> str:
    """HEAD, and whether src/ had uncommitted changes (others edit it while this runs)."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True)
        return run.stdout.strip()

    dirty = git("status", "--porcelain", "--", "../src")
    return git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes in src/" if dirty else ""
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=30.0, help="steady window, seconds")
    parser.add_argument("--skip-busy", action="store_true", help="no churn run in part 2")
    args = parser.parse_args(argv)
    require_tools("gcc", "bpftool", "bpftrace")
    if not Path(PYTHON).exists():
        sys.exit(f"{PYTHON} is missing: apt-get install python3.11")
    deep = build_c(DEEP_C, "-fomit-frame-pointer")  # after build_c's -fno-omit: it wins
    start_busy = wait_for_quiet()
    version = code_version()
    with tempfile.TemporaryDirectory(prefix="aperture-unwind-") as tmpdir, bpf_stats_enabled():
        tmp = Path(tmpdir)
        (tmp / "recurse.py").write_text(RECURSE_PY)
        paired, alone = bpf_costs(tmp, deep, args)
        agent_runs, churned = agent_costs(tmp, args)
    log("table build times")
    largest, _, scanned = largest_eh_frame()
    builds = [build_times(p) for p in (os.path.realpath(LIBC), PYTHON, largest)]
    size, venv_largest = largest_in_venv()
    if size > builds[-1].eh_frame_bytes:
        log(f"table build time: {venv_largest}, once")
        builds.append(build_times(venv_largest, runs=1))
    log("tables of every process on the host")
    host = host_tables()
    title = "User-stack unwinding: tables against frame pointers"
    text = "\n".join(
        [
            machine_header(title, " ".join(["bench/unwind.py", *sys.argv[1:]])),
            f"- host CPU busy just before the run (other work on this shared machine): "
            f"{fmt(start_busy, 2)} cores",
            f"- code: {version} (at the start of the run)",
            "",
            *bpf_section(paired, alone, args),
            "",
            *agent_section(agent_runs, churned, args),
            "",
            *build_section(builds, scanned),
            "",
            *host_section(host),
        ]
    )
    write_report("unwind", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
