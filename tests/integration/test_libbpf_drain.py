"""Draining a real BPF hash map larger than one batch returns every entry once."""

from __future__ import annotations

import ctypes

import pytest

from aperture.agent.collectors.bpfobj import object_path
from aperture.agent.collectors.syscall import SyscallKey, SyscallStats
from aperture.agent.libbpf import BpfObject

pytestmark = pytest.mark.usefixtures("bpf")


def test_drain_of_more_than_one_batch_keeps_every_row() -> None:
    obj = BpfObject(object_path("syscall"))
    try:
        obj.load()
        stats = obj.map("stats0")
        n = 5000  # more than the 4096-entry batch
        for i in range(n):
            value = SyscallStats(count=i + 1, total_ns=10 * i)
            stats.update(SyscallKey(tgid=i + 1, nr=i % 300), value)
        rows = stats.drain(SyscallKey, SyscallStats)
        got = {(k.tgid, k.nr): (v.count, v.total_ns) for k, v in rows}
        assert len(rows) == n
        assert got == {(i + 1, i % 300): (i + 1, 10 * i) for i in range(n)}
        assert stats.drain(SyscallKey, SyscallStats) == []  # drained means deleted
        assert ctypes.sizeof(SyscallKey) == stats.key_size
    finally:
        obj.close()
