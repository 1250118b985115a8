"""WASM filters on real agent windows: the agent's --filter and filter-test on its JSON."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aperture.formats.json_format import load_json

pytest.importorskip("wasmtime", reason="wasmtime is in the filters extra (make setup)")
pytestmark = pytest.mark.usefixtures("bpf")

EXAMPLES = Path(__file__).resolve().parents[2] / "src/aperture/filters/examples"


@pytest.fixture(scope="module")
def filters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("clang") is None or shutil.which("wasm-ld") is None:
        pytest.skip("clang and lld (wasm-ld) are needed to build filters: `make setup`")
    out = tmp_path_factory.mktemp("wasm")
    for src in EXAMPLES.glob("*.c"):
        subprocess.run(
            ["clang", "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry",
             "-Wl,--export=aperture_alloc", "-Wl,--export=aperture_filter",
             "-o", str(out / f"{src.stem}.wasm"), str(src)],
            check=True,
        )  # fmt: skip
    return out


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aperture.agent.cli", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_agent_keeps_only_the_comm_prefix(
    filters: Path, workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    spawn.append(subprocess.Popen([str(workloads / "cpu_ratio"), "60"]))
    out = tmp_path / "p.json"
    wasm = str(filters / "comm_prefix.wasm")
    result = agent("-d", "2s", "--push-interval", "1s", "-o", str(out),
                   "--filter", wasm, "--filter-arg", "cpu_ra")  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile = load_json(out.read_text())
    assert profile.total > 0
    assert {s.comm for s in profile.samples} == {"cpu_ratio"}
    assert "filter comm_prefix.wasm: kept" in result.stderr


def test_drop_idle_on_a_real_batch(filters: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    result = agent("-d", "1s", "--include-idle", "-q", "-o", str(raw))
    assert result.returncode == 0, result.stderr
    before = load_json(raw.read_text())
    kept = tmp_path / "kept.json"
    run = subprocess.run(
        [sys.executable, "-m", "aperture.cli.main", "filter-test",
         str(filters / "drop_idle.wasm"), "--input", str(raw), "-o", str(kept)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    after = load_json(kept.read_text())
    idle = [s for s in before.samples if s.pid == 0 or s.comm.startswith("swapper")]
    assert not [s for s in after.samples if s.pid == 0 or s.comm.startswith("swapper")]
    assert len(after.samples) == len(before.samples) - len(idle)
    assert f"kept {len(after.samples)} of {len(before.samples)} records" in run.stdout


def test_agent_refuses_a_filter_with_imports(tmp_path: Path) -> None:
    wat = tmp_path / "wasi.wat"
    wat.write_text('(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))')
    result = agent("-d", "1s", "--filter", str(wat))
    assert result.returncode == 2
    assert "imports wasi_snapshot_preview1.proc_exit" in result.stderr
    assert result.stderr.count("\n") == 1


def test_agent_filters_lock_records(
    filters: Path, workloads: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    go = tmp_path / "go"
    proc = subprocess.Popen(
        [str(workloads / "mutex_contend"), str(go), "4", "40", "2000"], stdout=subprocess.PIPE
    )
    spawn.append(proc)
    out = tmp_path / "locks.json"
    agent_proc = subprocess.Popen(
        [sys.executable, "-m", "aperture.agent.cli", "--mode", "lock", "-d", "4s", "-q",
         "-o", str(out), "--filter", str(filters / "comm_prefix.wasm"),
         "--filter-arg", "mutex_c"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2)
    go.touch()
    proc.wait(timeout=60)
    _, err = agent_proc.communicate(timeout=60)
    assert agent_proc.returncode == 0, err
    profile = load_json(out.read_text())
    assert profile.locks and {k.comm for k in profile.locks} == {"mutex_contend"}
    assert {s.comm for s in profile.samples} == {"mutex_contend"}
    assert profile.total == sum(k.wait_ns for k in profile.locks if k.role == "wait")
