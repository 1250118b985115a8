"""The agent's C heap gives large freed blocks back (a fixed mmap threshold)."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import sys
from aperture.agent.system import bound_native_heap
if sys.argv[1] == "bound":
    assert bound_native_heap()
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
big = bytearray(24 << 20)  # freed: glibc alone would now keep blocks below 24 MB in its heap
del big
blocks, pins = [], []
for _ in range(32):
    blocks.append(bytearray(b"x" * (1 << 20)))
    pins.append(bytearray(4096))  # between the blocks: the heap cannot shrink past them
held = rss_kb()
del blocks
print((held - rss_kb()) // 1024)  # MiB given back to the system
"""


def _returned_mib(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_freed_blocks_are_given_back_even_after_a_larger_one_was_freed() -> None:
    assert _returned_mib("bound") >= 28  # of 32 MiB freed
    assert _returned_mib("default") < 8, "glibc's own threshold: the probe would not tell"
