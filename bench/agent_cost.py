"""What a continuous profiler costs the host: the agent beside perf and bpftrace.

Each tool profiles the whole host at 99 Hz, one at a time, on the quiet host and
under a reproducible churn (bench/unwind.py's: gcc every 0.5 s, a short Debian
python3.11 every 0.3 s, one node process busy half the time). The agent runs as
deployed, pushing to a local aggregator (``--no-storage``; its CPU is not the
agent's), in ``--mode cpu`` and ``--mode all``. Per run: the tool's own CPU (its
process, from /proc/PID/stat: user + system, which includes the BPF verifier at
load) in its first window (start to 12 s) and in steady state (12 s to the end),
its BPF programs' run time where it has its own (bpf_stats: the time they take in
the sampled processes, not in the tool), VmRSS over the run and VmHWM, and the
churn's own slowdown (processes it got through, against a run with no tool).

usage: python bench/agent_cost.py [--seconds 60] [--skip-quiet]
"""

from __future__ import annotations

import argparse
import compileall
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from _common import (
    AGENT,
    NCPU,
    REPO_DIR,
    BusyMeter,
    Tool,
    bpf_stats_enabled,
    fmt,
    log,
    machine_header,
    markdown_table,
    prog_stats,
    ready_when,
    require_tools,
    write_report,
)
from unwind import Churn, code_version, rss_kib

HZ = 99
FIRST_WINDOW_S = 12.0  # the agent's first drain is at 10 s
AGGREGATOR = Path(sys.executable).parent / "aperture-aggregator"
GOAL_BUSY_PCT = 0.5
GOAL_QUIET_PCT = 0.2
GOAL_FIRST_S = 0.3
GOAL_RSS_MB = 80.0
GOAL_ALL_PCT = 1.0


@dataclass
class Run:
    tool: str
    host: str
    first_s: float = 0.0  # CPU seconds from start to FIRST_WINDOW_S
    steady_pct: float = 0.0  # % of a core from FIRST_WINDOW_S to the end
    total_s: float = 0.0
    bpf_pct: float | None = None  # its BPF programs' run time, % of a core
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    peak_mb: float = 0.0
    churn_rate: float | None = None  # churn processes per second during the run
    host_cores: float = 0.0  # the whole host busy over the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tools(tmp: Path, grpc_port: int) -> list[Tool]:
    push = ["--aggregator", f"http://127.0.0.1:{grpc_port}", "-F", str(HZ), "-d", "600s", "-q"]
    ready = ready_when(perf_events=NCPU, bpf_links=NCPU)
    perf = ["perf", "record", "-F", str(HZ), "-a", "-g", "-o", str(tmp / "perf.data")]
    script = f"profile:hz:{HZ} {{ @[kstack, ustack, comm] = count(); }}"
    return [
        Tool("Aperture --mode cpu", [str(AGENT), *push], ready, tmp / "agent-cpu.log"),
        Tool("Aperture --mode all", [str(AGENT), "--mode", "all", *push], ready, tmp / "all.log"),
        Tool("perf record -a -g", perf, ready_when(perf_events=NCPU), tmp / "perf.log"),
        Tool(
            "bpftrace",
            ["bpftrace", "-e", script],
            ready_when(perf_events=NCPU, bpf_progs=1),
            tmp / "bpftrace.log",
        ),
    ]


def measure(tool: Tool, host: str, seconds: float, churn: Churn | None) -> Run:
    log(f"{tool.label}, {host} host, {seconds:.0f} s")
    run = Run(tool.label, host)
    meter = BusyMeter()
    started_before = churn.started if churn else 0
    with bpf_stats_enabled():
        tool.start()
        t0 = tool.started
        bpf0 = _bpf_ns(tool)
        first_cpu: float | None = None
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(1.0)
            run.rss_mb.append((round(elapsed), rss_kib(tool.pid) / 1024))
            if first_cpu is None and elapsed >= FIRST_WINDOW_S:
                first_cpu, first_at = tool.cpu_seconds(), time.monotonic()
        end_cpu, end_at = tool.cpu_seconds(), time.monotonic()
        bpf1 = _bpf_ns(tool)
        started_during = churn.started - started_before if churn else 0
        usage = tool.stop()  # bpftrace symbolizes its whole map here: counted in total
    assert first_cpu is not None
    run.first_s = first_cpu
    run.steady_pct = 100 * (end_cpu - first_cpu) / (end_at - first_at)
    run.total_s = usage.cpu_s
    run.peak_mb = max(usage.maxrss_kib, tool.last_hwm_kib) / 1024
    if bpf0 is not None and bpf1 is not None:
        run.bpf_pct = 100 * (bpf1 - bpf0) / 1e9 / (end_at - t0)
    if churn is not None:
        run.churn_rate = started_during / (end_at - t0)
    run.host_cores = meter.cores()
    return run


def _bpf_ns(tool: Tool) -> int | None:
    """Run time of the BPF programs the tool holds (perf has none of its own)."""
    if tool.label.startswith("perf"):
        return None
    stats = prog_stats(tool.pid)
    return sum(s.run_time_ns for s in stats.values()) if stats else None


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def baseline_churn_rate(churn: Churn, seconds: float) -> float:
    log(f"the churn alone, {seconds:.0f} s")
    before, t0 = churn.started, time.monotonic()
    time.sleep(seconds)
    return (churn.started - before) / (time.monotonic() - t0)


def report(runs: Sequence[Run], alone_rate: float | None, args: argparse.Namespace) -> str:
    rows = []
    for r in runs:
        slowdown = "-"
        if r.churn_rate is not None and alone_rate:
            slowdown = fmt(100 * (1 - r.churn_rate / alone_rate), 1, " %")
        rss = [mb for _, mb in r.rss_mb]
        rows.append([
            r.tool, r.host, fmt(r.steady_pct, 2), fmt(r.first_s, 2), fmt(r.total_s, 2),
            "-" if r.bpf_pct is None else fmt(r.bpf_pct, 2),
            f"{rss[min(len(rss) - 1, int(FIRST_WINDOW_S))]:.0f} → {rss[-1]:.0f}" if rss else "-",
            fmt(r.peak_mb, 0), slowdown, fmt(r.host_cores, 2),
        ])  # fmt: skip
    headers = [
        "tool", "host", f"CPU {FIRST_WINDOW_S:.0f} s → end, % of a core",
        f"CPU 0–{FIRST_WINDOW_S:.0f} s (first window), s", "CPU in total, s",
        "its BPF programs, % of a core", "RSS at 12 s → end, MB", "peak RSS, MB",
        "churn slowed by", "host busy, cores",
    ]  # fmt: skip
    goals = []
    for r in runs:
        if not r.tool.startswith("Aperture"):
            continue
        want = (GOAL_ALL_PCT if "all" in r.tool else
                GOAL_BUSY_PCT if r.host == "churn" else GOAL_QUIET_PCT)  # fmt: skip
        goals.append(
            f"- {r.tool}, {r.host}: steady {r.steady_pct:.2f}% (goal ≤ {want}%: "
            f"{verdict(r.steady_pct <= want)}); first window {r.first_s:.2f} s (goal ≤ "
            f"{GOAL_FIRST_S} s: {verdict(r.first_s <= GOAL_FIRST_S)}); peak RSS "
            f"{r.peak_mb:.0f} MB (goal ≤ {GOAL_RSS_MB:.0f}: {verdict(r.peak_mb <= GOAL_RSS_MB)})"
        )
    return "\n".join([
        machine_header("Agent cost: Aperture beside perf and bpftrace", "bench/agent_cost.py"),
        f"- code: {code_version()}",
        "",
        f"Each tool alone, {args.seconds:.0f} s, 99 Hz on all {NCPU} CPUs. The agent pushes "
        "to a local aggregator (--no-storage). CPU is the tool's own process (user + "
        "system); a tool's BPF programs run in the sampled processes and are shown "
        "apart (perf has none). Churn: gcc every 0.5 s, /usr/bin/python3.11 -c every 0.3 s "
        "(threads of this script), one node process busy half the time; 'churn slowed by' "
        "is the drop in the processes it started per second against the churn alone"
        + (f" ({alone_rate:.2f}/s)." if alone_rate else ".")
        + " The package's bytecode is compiled first, as a wheel install does.",
        "",
        markdown_table(headers, rows),
        "",
        *goals,
    ]) + "\n"  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="each run (60)")
    parser.add_argument("--skip-quiet", action="store_true", help="only the churn runs")
    args = parser.parse_args(argv)
    require_tools("perf", "bpftrace", "gcc")
    # As installed from the wheel: pip compiles the package's bytecode at install, and
    # a run from the source tree under PYTHONDONTWRITEBYTECODE would compile it at every
    # start instead (~0.1 s of the first window on this machine).
    compileall.compile_dir(REPO_DIR / "src" / "aperture", quiet=1)
    runs: list[Run] = []
    alone: float | None = None
    with TemporaryDirectory(prefix="aperture-agent-cost-") as name:
        tmp = Path(name)
        grpc, http = free_port(), free_port()
        aggregator = Tool("aggregator", [str(AGGREGATOR), "--no-storage", "--data-dir",
                          str(tmp / "agg"), "--listen", f"127.0.0.1:{grpc}", "--admin-listen",
                          f"127.0.0.1:{http}"], lambda _pid: _listening(grpc),
                          tmp / "aggregator.log")  # fmt: skip
        aggregator.start()
        try:
            if not args.skip_quiet:
                for tool in tools(tmp, grpc):
                    runs.append(measure(tool, "quiet", args.seconds, None))
            churn = Churn(tmp)
            churn.start()
            try:
                alone = baseline_churn_rate(churn, min(30.0, args.seconds))
                for tool in tools(tmp, grpc):
                    runs.append(measure(tool, "churn", args.seconds, churn))
            finally:
                churn.stop()
        finally:
            aggregator.kill()
    text = report(runs, alone, args)
    print(text)
    write_report("agent_cost", text)
    return 0


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())
