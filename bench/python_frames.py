"""Python frames: their BPF cost per sample, and the agent's CPU and memory, side by side.

Four busy CPython processes of different versions (Debian's 3.11 and pyenv's 3.10,
3.12, 3.13 where installed) run a recursive CPU-bound script. Two agents sample the
whole host at 99 Hz at the same time, one walking Python frames and one with
--no-python-frames, so both programs see the same stacks; py-spy (when installed)
dumps one of the processes for reference. Prints a Markdown table and writes
bench/results/python_frames.md.

Usage (root): .venv/bin/python bench/python_frames.py [--duration 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import (
    AGENT,
    BusyMeter,
    Tool,
    bpf_stats_enabled,
    cpu_seconds,
    fmt,
    log,
    machine_header,
    markdown_table,
    peak_rss_kib,
    prog_stats,
    ready_when,
    require_tools,
    write_report,
)
from aperture.formats.json_format import load_json
from aperture.model import FrameKind

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
PYTHONS = {
    "3.10": PYENV / "3.10.13/bin/python3.10",
    "3.11 (Debian)": Path("/usr/bin/python3.11"),
    "3.12": PYENV / "3.12.1/bin/python3.12",
    "3.13": PYENV / "3.13.0/bin/python3.13",
}
SCRIPT = textwrap.dedent(
    """
    import sys, time
    def leaf():
        s = 0
        for i in range(2000):
            s += i
        return s
    def rec(n):
        return leaf() if n == 0 else rec(n - 1)
    end = time.time() + float(sys.argv[1])
    while time.time() < end:
        rec(20)
    """
)
TARGET_RATIO = 2.0  # the issue: Python walking at most 2x the native-only cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured window, s")
    args = parser.parse_args(argv)
    require_tools("bpftool")
    pythons = {name: path for name, path in PYTHONS.items() if path.exists()}
    with tempfile.TemporaryDirectory(prefix="aperture-pybench-") as tmp, bpf_stats_enabled():
        script = Path(tmp) / "rec.py"
        script.write_text(SCRIPT)
        run_s = args.duration + 30
        workloads = {
            name: subprocess.Popen([str(path), str(script), str(run_s)])
            for name, path in pythons.items()
        }
        outs = {mode: Path(tmp) / f"{mode}.json" for mode in ("python", "native")}
        tools = {
            "python": Tool("with Python frames", [str(AGENT), "-F", "99", "-d", "300s", "-q",
                           "-o", str(outs["python"])], ready_when(perf_events=2, bpf_links=2)),
            "native": Tool("--no-python-frames", [str(AGENT), "-F", "99", "-d", "300s", "-q",
                           "--no-python-frames", "-o", str(outs["native"])],
                           ready_when(perf_events=2, bpf_links=2)),
        }  # fmt: skip
        try:
            for tool in tools.values():
                tool.start()
            time.sleep(8)  # tables built, processes registered
            before = {m: prog_stats(t.pid, ["sample_cpu"])["sample_cpu"] for m, t in tools.items()}
            cpu0 = {m: cpu_seconds(t.pid) for m, t in tools.items()}
            busy = BusyMeter()
            t0 = time.monotonic()
            time.sleep(args.duration)
            wall = time.monotonic() - t0
            after = {m: prog_stats(t.pid, ["sample_cpu"])["sample_cpu"] for m, t in tools.items()}
            cpu1 = {m: cpu_seconds(t.pid) for m, t in tools.items()}
            rss = {m: peak_rss_kib(t.pid) / 1024 for m, t in tools.items()}
            other = busy.cores()
            pyspy = _py_spy(workloads.get("3.12") or next(iter(workloads.values())))
        finally:
            for tool in tools.values():
                tool.stop()
            for proc in workloads.values():
                proc.kill()
                proc.wait()
        rows = []
        ns = {}
        for mode in ("python", "native"):
            runs = after[mode].run_cnt - before[mode].run_cnt
            ns[mode] = (after[mode].run_time_ns - before[mode].run_time_ns) / max(1, runs)
            profile = load_json(outs[mode].read_text())
            pids = {p.pid: name for name, p in workloads.items()}
            own = [s for s in profile.samples if s.pid in pids]
            with_py = sum(s.value for s in own if any(f.kind is FrameKind.PYTHON for f in s.stack))
            total = sum(s.value for s in own) or 1
            rows.append([
                tools[mode].label, fmt(ns[mode], 0), str(runs),
                fmt(100 * (cpu1[mode] - cpu0[mode]) / wall, 2), fmt(rss[mode], 1),
                fmt(100 * with_py / total, 1),
            ])  # fmt: skip
    ratio = ns["python"] / ns["native"]
    table = markdown_table(
        ["agent", "BPF ns per sample", "samples", "agent CPU, % of a core", "peak RSS, MB",
         "workload samples with Python frames, %"],
        rows,
    )  # fmt: skip
    lines = [
        machine_header("Python frames: cost", "bench/python_frames.py"),
        "",
        f"Busy CPython processes: {', '.join(pythons)} (a 20-deep recursion each). Both agents "
        f"attached at once, system-wide, 99 Hz, {args.duration:.0f} s window after an 8 s "
        f"warm-up; host busy meanwhile {other:.2f} cores (the workloads, both agents and any "
        "other work on this shared machine).",
        "",
        table,
        "",
        f"- Python walking / native only, BPF ns per sample: {ratio:.2f}x (target ≤ "
        f"{TARGET_RATIO:.0f}x): {'met' if ratio <= TARGET_RATIO else 'MISSED'}",
        f"- py-spy dump of one workload, for reference: {pyspy}",
    ]
    text = "\n".join(lines)
    print(text)
    write_report("python_frames", text)
    return 0


def _py_spy(proc: subprocess.Popen[bytes]) -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return "py-spy is not installed (pip install py-spy)"
    log("py-spy dump")
    out = subprocess.run([exe, "dump", "--pid", str(proc.pid)], capture_output=True, text=True)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ")]
    return " → ".join(reversed(names[:6])) if names else (out.stderr.strip() or "no output")


if __name__ == "__main__":
    sys.exit(main())
