"""Table-unwound stacks are symbolized once across windows, and never kept past a change.

The symbolizer here is a real :class:`Symbolizer` over this test's own process
(its maps and ELF files), counted by a thin wrapper: what is checked is the
collector's cache, which must not call it again for a stack it has, and must
when the process's snapshot changed or the stack's contents differ.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from aperture.agent.collectors.cpu import MAX_KEPT_STACKS, CpuCollector, CpuOptions, Unwound
from aperture.agent.symbols.symbolizer import Symbolizer
from aperture.model import Frame

PID = os.getpid()
LIBC = ctypes.CDLL(None)


class Counted(Symbolizer):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def user_frames(self, pid: int, addrs: Sequence[int]) -> list[Frame]:
        self.calls += 1
        return super().user_frames(pid, addrs)


def _addr(name: str) -> int:
    return ctypes.cast(getattr(LIBC, name), ctypes.c_void_p).value or 0


def stacks() -> tuple[Unwound, Unwound]:
    a = Unwound((_addr("getpid") + 1, _addr("malloc") + 1), (), 0)
    b = Unwound((_addr("getppid") + 1, _addr("malloc") + 1), (), 0)
    return a, b


def test_a_recurring_stack_is_symbolized_once_and_named_the_same() -> None:
    symbolizer = Counted()
    assert symbolizer.remember(PID)
    cpu = CpuCollector(CpuOptions(), symbolizer)
    a, _ = stacks()
    first = cpu._kept_user_stack(PID, 0x1001, a)
    assert any(f.name.endswith("getpid") for f in first)  # glibc names it __getpid
    for _ in range(5):  # later windows
        assert cpu._kept_user_stack(PID, 0x1001, a) == first
    assert symbolizer.calls == 1


def test_a_new_snapshot_or_other_contents_under_the_same_hash_are_symbolized_again() -> None:
    symbolizer = Counted()
    assert symbolizer.remember(PID)
    cpu = CpuCollector(CpuOptions(), symbolizer)
    a, b = stacks()
    named_a = cpu._kept_user_stack(PID, 0x1001, a)
    # the same BPF hash for other contents (a collision across windows): not a's frames
    named_b = cpu._kept_user_stack(PID, 0x1001, b)
    assert symbolizer.calls == 2 and named_b != named_a
    assert any(f.name.endswith("getppid") for f in named_b)
    # the process's maps snapshot replaced (an exec, a map change): symbolized again
    assert symbolizer.remember(PID)
    assert cpu._kept_user_stack(PID, 0x1001, b) == named_b
    assert symbolizer.calls == 3


def test_a_process_without_a_snapshot_is_not_kept_and_the_cache_is_bounded() -> None:
    symbolizer = Counted()
    cpu = CpuCollector(CpuOptions(), symbolizer)
    a, _ = stacks()
    cpu._kept_user_stack(PID, 0x1001, a)  # remembered during the call, after the token
    cpu._kept_user_stack(PID, 0x1001, a)
    assert symbolizer.calls == 2  # the first answer was not kept: no snapshot before it
    for h in range(MAX_KEPT_STACKS + 10):
        cpu._kept_user_stack(PID, 2 * h + 3, a)
    assert len(cpu._kept) == MAX_KEPT_STACKS
