"""Short versions of the reliability fault runs (reliability/faults.py): real agent, real
aggregator, real faults; the full-length runs write docs/reliability.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reliability"))
import faults

pytestmark = pytest.mark.usefixtures("bpf")


def test_agent_killed_with_a_spool_delivers_every_spooled_batch_after_restart(
    tmp_path: Path,
) -> None:
    res = faults.agent_kill9_spool(tmp_path, run_s=4, stall_s=4, rerun_s=4)
    m = res.metrics
    assert m["spooled_at_kill"] > 0
    assert m["spooled_lost"] == 0, res.lost
    assert m["first_run_sequences_missing"] == m["second_run_sequences_missing"] == 0
    assert m["duplicate_batches"] == 0
    assert res.held, res.lost


def test_spool_disk_full_counts_every_drop_and_the_agent_keeps_recording(
    tmp_path: Path,
) -> None:
    # 32 KiB fills within a few windows however quiet the host is (a quiet host's
    # batches over a 12 s stall did not always fill 256 KiB)
    res = faults.spool_disk_full(tmp_path, run_s=3, stall_s=12, after_s=4, spool_size="32k")
    m = res.metrics
    assert m["agent_exit"] == 0 or m["agent_drops_counted"] > 0  # exit 1 reports drops
    assert m.get("agent_spool_write_failures", 0) > 0, res.notes  # the tmpfs really filled
    assert m["sequences_missing"] == m["agent_drops_counted"], res.lost  # drops are counted
    assert m["duplicate_batches"] == 0
