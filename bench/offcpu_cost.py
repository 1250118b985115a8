"""Off-CPU profiler cost: what `--mode offcpu` adds to each context switch.

A context-switch storm (bench/workloads/pipe_pingpong.c: two threads hand a byte
back and forth over two pipes, pinned to one CPU, so each round is two blocking
reads and two switches) alone, under bpftrace counting `sched_switch` (the floor of
any BPF tool on that tracepoint), and under `aperture-agent --mode offcpu` taking
stacks at every switch and at 1 in 16; added ns per switch by wall and CPU time,
in-BPF ns per switch from kernel bpf_stats, the tool's own CPU, and whether every
block was accounted for (recorded, or counted as shorter than --offcpu-min).
Prints a Markdown table and writes bench/results/offcpu_cost.md.

Usage (root): .venv/bin/python bench/offcpu_cost.py [--runs 3] [--rounds 300000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from _common import (
    AGENT,
    BENCH_DIR,
    NCPU,
    ProgStats,
    WorkloadRun,
    build_c,
    elapsed_ns_line,
    fmt,
    machine_header,
    median,
    ready_when,
    require_tools,
    run_workload,
    write_report,
)
from syscall_overhead import Row, baseline, table, under_tool

ROUNDS = 300_000  # about 0.6 s alone on the 2-core VM this was written on
WORKLOAD = BENCH_DIR / "workloads" / "pipe_pingpong.c"
BPFTRACE_SWITCH = "tracepoint:sched:sched_switch { @ = count(); }"


def accounted(path: Path) -> str:
    """Blocks the agent saw, and how each was kept (from its JSON output's window labels)."""
    doc = json.loads(path.read_text())
    labels = doc.get("labels", {})
    losses = sum(int(v) for v in doc.get("losses", {}).values())
    blocks = int(labels.get("blocks", 0))
    short = int(labels.get("short_blocks", 0))
    unsampled = int(labels.get("blocks_not_sampled", 0))
    return (
        f"{'none' if losses == 0 else 'LOST'}: {blocks:,} blocks ({short:,} short, "
        f"{unsampled:,} without stacks); loss {losses}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="ping-pong rounds per run")
    args = parser.parse_args(argv)
    require_tools("gcc", "bpftool", "bpftrace", "taskset")
    binary = build_c(WORKLOAD, "-pthread")
    n, switches = args.runs, 2 * args.rounds
    pin = ["taskset", "-c", str(NCPU - 1)]

    def storm() -> WorkloadRun:
        return run_workload([*pin, str(binary), str(args.rounds)], elapsed_ns_line)

    def per_switch(progs: dict[str, ProgStats]) -> float | None:
        return sum(p.ns_per_run for p in progs.values()) if progs else None

    rows = [baseline("switch storm", storm, switches, n)]
    rows[0].events = switches
    with tempfile.TemporaryDirectory(prefix="aperture-bench-") as tmpdir:
        tmp = Path(tmpdir)
        floor = under_tool("bpftrace sched_switch", ["bpftrace", "-e", BPFTRACE_SWITCH],
                           ready_when(perf_events=1, bpf_progs=1), storm, n, tmp, None)  # fmt: skip
        rows.append(Row("bpftrace counting `sched_switch`", switches, floor.timed, rows[0].timed,
                        switches, per_switch(floor.progs), tool_cpu=True))  # fmt: skip
        for sample in (1, 16):
            out = tmp / f"offcpu-{sample}.json"
            agent = under_tool(
                f"Aperture offcpu 1-in-{sample}",
                [str(AGENT), "--mode", "offcpu", "--offcpu-sample", str(sample), "-d", "300s",
                 "--push-interval", "300s",
                 "-q", "-o", str(out)],
                ready_when(bpf_links=6),
                storm, n, tmp, ("offcpu_switch",),
            )  # fmt: skip
            rows.append(
                Row(f"Aperture `--mode offcpu --offcpu-sample {sample}`", switches, agent.timed,
                    rows[0].timed, switches, per_switch(agent.progs), tool_cpu=True,
                    loss=accounted(out)),
            )  # fmt: skip
    method = (
        "Each run is RUNS rounds of the ping-pong pinned to one CPU: 2 x RUNS context switches "
        "of the storm's threads (the host's own switches come on top, and the tools see those "
        "too). Added ns / switch = (median - alone median) / switches, by wall time (the "
        "workload's own clock) and by CPU time (its utime + stime from wait4, where BPF "
        "programs run, plus a system-wide tool's own CPU). In-BPF ns / switch is the "
        "program's mean run time from kernel bpf_stats over one extra, untimed run. "
        "Aperture's blocks are those it saw over all runs, from its JSON output."
    )
    ours = rows[-2]
    bt = rows[1]
    verdict = []
    if ours.added_cpu_ns is not None and bt.added_cpu_ns is not None:
        ratio = ours.added_cpu_ns / bt.added_cpu_ns if bt.added_cpu_ns > 0 else float("nan")
        verdict.append(
            f"- Stacks at every switch cost {fmt(ours.added_cpu_ns, 0)} ns per switch, "
            f"{fmt(ratio, 1)}x bpftrace's counting ({fmt(bt.added_cpu_ns, 0)} ns); "
            f"1 in 16: {fmt(rows[-1].added_cpu_ns, 0)} ns."
        )
    text = "\n".join(
        [
            machine_header("Off-CPU profiler overhead", f"bench/offcpu_cost.py --runs {n}"),
            "",
            f"## Context-switch storm: 2 threads ping-pong over pipes, {args.rounds:,} rounds, "
            f"pinned to one CPU ({n} timed runs, alone median "
            f"{fmt(median(rows[0].timed.times), 3)} s)",
            "",
            method.replace("RUNS", f"{args.rounds:,}"),
            "",
            table(rows, "switches", "switch"),
            "",
            *verdict,
        ]
    )
    write_report("offcpu_cost", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
