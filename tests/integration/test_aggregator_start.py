"""The aggregator's start on a data dir it cannot use: one sentence and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from aggregator_proc import AggregatorProcess, free_port

PROG = "aperture-aggregator"


def can_override_permissions() -> bool:
    """Whether this process writes through permission bits (root with CAP_DAC_OVERRIDE)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 1))
    return os.geteuid() == 0


def without_permission_override() -> list[str]:
    """A command prefix under which permission bits hold, even for root."""
    if not can_override_permissions():
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_aggregator(
    data_dir: Path, *args: str, prefix: Sequence[str] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aperture.aggregator.cli", "--no-storage",
         "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def assert_one_sentence(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: ") and lines[0].endswith("."), lines[0]
    assert text in lines[0], lines[0]


# 10. A data dir that exists but is not writable, or a journal directory in it.


@pytest.mark.parametrize("unwritable", ["data", "data/journal"])
def test_unwritable_data_dir_is_one_sentence(tmp_path: Path, unwritable: str) -> None:
    prefix = without_permission_override()
    (tmp_path / "data" / "journal").mkdir(parents=True)
    (tmp_path / unwritable).chmod(0o555)
    try:
        result = run_aggregator(tmp_path / "data", prefix=prefix)
    finally:
        (tmp_path / unwritable).chmod(0o755)
    assert_one_sentence(
        result,
        f"cannot write to {tmp_path / unwritable} (Permission denied): give a --data-dir this "
        "user can write to.",
    )


# 7. alerts.json holds webhook URLs: 0600 like the journal, whatever the umask.


def test_alerts_json_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        agg = AggregatorProcess(tmp_path / "data", "--no-storage").start()
    finally:
        os.umask(old_umask)
    try:
        rule = {"name": "hot", "expression": {"metric": "buffer_utilization"}, "operator": ">",
                "threshold": 1, "webhook": "https://hooks.example.com/T0/secret"}  # fmt: skip
        r = httpx.post(f"{agg.http}/api/v1/alerts/rules", json=rule, headers=agg.headers())
        assert r.status_code == 201, r.text
    finally:
        assert agg.stop() == 0, agg.log.read_text()
    path = tmp_path / "data" / "alerts.json"
    assert "hooks.example.com" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_alerts_json_of_an_older_version_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "alerts.json"
    path.parent.mkdir()
    path.write_text('{"rules": {}, "states": {}, "history": []}')
    path.chmod(0o644)
    agg = AggregatorProcess(tmp_path / "data", "--no-storage").start()
    assert agg.stop() == 0, agg.log.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
