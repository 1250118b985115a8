"""Bad input to the agent ends in one clear line and a non-zero exit, before any BPF."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aperture.units import parse_duration


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aperture.agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-F", "0"], "out of range"),
        (["-F", "20000"], "out of range"),
        (["-F", "fast"], "not a whole number"),
        (["--duration", "5x"], "not a duration"),
        (["--duration", "0"], "not a positive duration"),
        (["--pid", "abc"], "not a process id"),
        (["--pid", "2147483646"], "no process with pid 2147483646"),
        (["-o", "/nonexistent-dir/x.svg"], "does not exist"),
        (["-o", "profile.txt"], ".svg"),
        (["-o", "/tmp"], "cannot tell the output format"),
        (["--mode", "gpu"], "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], expected: str) -> None:
    result = run_agent(*args, "--duration", "1s") if "--duration" not in args else run_agent(*args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("aperture-agent: error:")


def test_unwritable_output_file(tmp_path: Path) -> None:
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0":
        target = Path("/proc/aperture-test.svg")  # not writable even by root
    else:
        tmp_path.chmod(0o500)
        target = tmp_path / "x.svg"
    result = run_agent("--duration", "1s", "-o", str(target))
    assert result.returncode != 0
    assert "cannot write" in result.stderr or "permission" in result.stderr
    assert "Traceback" not in result.stderr


def test_output_that_is_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "looks-like.svg"
    target.mkdir()
    result = run_agent("--duration", "1s", "-o", str(target))
    assert result.returncode == 2
    assert "is a directory" in result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("45", 45), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-5s", "5 minutes", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
