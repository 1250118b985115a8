"""The CPU profiler on the real kernel with real BPF, end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aperture.formats.json_format import load_json
from aperture.model import FrameKind, Profile

pytestmark = pytest.mark.usefixtures("bpf")


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aperture.agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def names_total(profile: Profile, name: str) -> int:
    return sum(s.value for s in profile.samples if any(f.name == name for f in s.stack))


def contains_chain(names: list[str], chain: list[str]) -> bool:
    n = len(chain)
    return any(names[i : i + n] == chain for i in range(len(names) - n + 1))


def test_hot_functions_in_known_ratio_with_callers(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
    spawn.append(proc)
    out = tmp_path / "ratio.json"
    result = run_agent(
        "--pid", str(proc.pid), "-F", "499", "--duration", "6s", "-o", str(out),
        "--label", "env=prod",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile = load_json(out.read_text())
    assert {s.pid for s in profile.samples} == {proc.pid}
    # the identity a push carries, in the file too: --label, host, kernel, --pid
    assert profile.labels["env"] == "prod"
    assert profile.labels["kernel"] == os.uname().release
    assert profile.labels["pid"] == str(proc.pid)
    assert profile.labels["host"] == socket.gethostname()
    a, b = names_total(profile, "hot_a"), names_total(profile, "hot_b")
    # 3,000 alone; a loaded host gives the workload less CPU, hence fewer samples
    assert a + b > 600, f"too few samples: {a}+{b}"
    assert 0.70 <= a / (a + b) <= 0.80, f"hot_a share {a / (a + b):.3f}, expected 0.75±0.05"
    # The whole caller chain unwinds: main -> run_cycle -> hot_a -> spin.
    chained = sum(
        s.value
        for s in profile.samples
        if contains_chain([f.name for f in s.stack], ["main", "run_cycle", "hot_a", "spin"])
    )
    assert chained / a > 0.9, f"only {chained}/{a} hot_a samples have the full chain"
    assert "spin" in result.stderr  # the summary's top functions by self samples


def test_pid_follows_threads_started_later(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    from aperture.agent.collectors.cpu import CpuCollector, CpuOptions
    from aperture.agent.symbols.symbolizer import Symbolizer

    go = tmp_path / "go"
    target = subprocess.Popen([str(workloads / "late_thread"), str(go), "3"])
    noise = subprocess.Popen([str(workloads / "cpu_ratio"), "30"])
    spawn.extend([target, noise])
    collector = CpuCollector(CpuOptions(frequency_hz=499, pid=target.pid), Symbolizer())
    collector.start()
    try:
        go.touch()  # the thread is created only now, after profiling began
        target.wait(timeout=30)
        profile = collector.drain()
    finally:
        collector.close()
    assert profile.samples, "no samples from the target"
    assert {s.pid for s in profile.samples} == {target.pid}, "samples from other processes"
    late = [s for s in profile.samples if any(f.name == "late_thread_work" for f in s.stack)]
    assert sum(s.value for s in late) > 100  # ~1,500 alone
    assert all(s.tid != target.pid for s in late), "work should run on the new thread"
    assert all(s.comm == "late_thread" for s in late)


def test_kernel_frames_sit_above_user_frames(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen([str(workloads / "syscall_heavy"), "30"])
    spawn.append(proc)
    out = tmp_path / "sys.json"
    result = run_agent("--pid", str(proc.pid), "-F", "499", "--duration", "3s", "-o", str(out))
    assert result.returncode == 0, result.stderr
    profile = load_json(out.read_text())
    with_vfs = [s for s in profile.samples if any(f.name == "vfs_read" for f in s.stack)]
    assert sum(s.value for s in with_vfs) > 0.05 * profile.total
    for sample in with_vfs:
        kinds = [f.kind for f in sample.stack]
        first_kernel = kinds.index(FrameKind.KERNEL)
        assert FrameKind.KERNEL not in kinds[:first_kernel]
        assert all(k is FrameKind.KERNEL for k in kinds[first_kernel:]), kinds
        # Debian's libc has no frame pointers, so read()'s caller read_loop is
        # skipped by the unwinder; main and the libc wrapper are there, in order.
        names = [f.name for f in sample.stack]
        assert names.index("main") < names.index("read") < names.index("vfs_read")


def test_short_lived_process_is_symbolized(
    workloads: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    from aperture.agent.collectors.cpu import CpuCollector, CpuOptions
    from aperture.agent.symbols.symbolizer import Symbolizer

    collector = CpuCollector(CpuOptions(frequency_hz=499), Symbolizer())
    collector.start()
    try:
        proc = subprocess.Popen([str(workloads / "cpu_ratio"), "0.4"])
        spawn.append(proc)
        proc.wait(timeout=30)
        profile = collector.drain()  # the process is gone by now
    finally:
        collector.close()
    mine = [s for s in profile.samples if s.pid == proc.pid]
    assert mine, "no samples of the short-lived process"
    assert names_total(profile, "hot_a") > 0
    assert all(s.comm == "cpu_ratio" for s in mine)


def test_every_format_from_a_real_run(
    workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    import json
    import xml.etree.ElementTree as ET

    from aperture.formats.collapsed import parse_collapsed

    proc = subprocess.Popen([str(workloads / "cpu_ratio"), "60"])
    spawn.append(proc)
    for name in ("p.svg", "p.collapsed", "p.folded", "p.speedscope.json"):
        out = tmp_path / name
        result = run_agent("--pid", str(proc.pid), "--duration", "1s", "-q", "-o", str(out))
        assert result.returncode == 0, result.stderr
        text = out.read_text()
        assert "hot_a" in text
        if name.endswith(".svg"):
            ET.fromstring(text)
        elif name.endswith(".speedscope.json"):
            assert json.loads(text)["$schema"].startswith("https://www.speedscope.app/")
        else:
            assert sum(parse_collapsed(text).values()) > 0


def test_without_capabilities_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            sys.executable,
            "-m",
            "aperture.agent.cli",
            "--duration",
            "1s",
            "-o",
            str(tmp_path / "x.svg"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CAP_BPF" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
