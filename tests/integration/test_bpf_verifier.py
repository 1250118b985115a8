"""The verifier's work on our programs stays far from the kernel's limit.

The kernel refuses a program whose verification processes 1,000,000
instructions, and the time it takes is the agent's start-up CPU (system time).
The table walker once took 561,390 instructions and 0.39 s to verify, because
the walk's flags and counts lived on the BPF stack where the verifier tracks
their values and checked the loop body once per combination; they live in a
map value now (unwind.bpf.h, ``walk_vars``).
"""

from __future__ import annotations

import pytest

from aperture.agent.collectors.bpfobj import object_path
from aperture.agent.collectors.cpu import UNWIND_MODES, CpuConfig
from aperture.agent.libbpf import BpfObject, VerifierStats

pytestmark = pytest.mark.usefixtures("bpf")

# A tenth of the kernel's limit. Kernel builds differ several-fold on the same
# object: with find_row's 24-step search unrolled inside the walk, sample_cpu
# (--unwind auto) took 17,030 instructions and 12 ms on one 6.18 build, 112,030
# and 0.35-0.69 s on another (dwarf: 123,500), which fails here; with the search
# a bpf_loop of its own, 19,608 and 22 ms there (dwarf 31,084). The verifier's
# time is the agent's start-up CPU (system time).
BUDGET_INSNS = 100_000


def _verify(name: str, unwind_mode: str | None = None) -> dict[str, VerifierStats]:
    obj = BpfObject(object_path(name))
    try:
        if unwind_mode is not None:
            config = CpuConfig.from_buffer(obj.map(".rodata").initial_value())
            config.unwind_mode = UNWIND_MODES[unwind_mode]
        programs = obj.programs()
        for prog in programs:
            prog.keep_verifier_stats()
        obj.load()
        return {prog.name: prog.verifier_stats() for prog in programs}
    finally:
        obj.close()


@pytest.mark.parametrize("mode", sorted(UNWIND_MODES))
def test_the_cpu_programs_verify_within_a_quarter_of_the_limit(mode: str) -> None:
    stats = _verify("cpu", mode)
    # off-CPU and locks: the same walker
    assert {"sample_cpu", "offcpu_switch", "lock_futex_enter", "lock_futex_exit"} <= set(stats)
    over = {name: s.insns for name, s in stats.items() if s.insns > BUDGET_INSNS}
    assert not over, f"--unwind {mode}: verifier processed {over} instructions"


@pytest.mark.parametrize("name", ["syscall"])
def test_the_syscall_programs_verify_within_a_quarter_of_the_limit(name: str) -> None:
    stats = _verify(name)
    assert stats
    over = {prog: s.insns for prog, s in stats.items() if s.insns > BUDGET_INSNS}
    assert not over, f"{name}.bpf.o: verifier processed {over} instructions"
