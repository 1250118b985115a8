"""Finding the packaged BPF objects and reading shared per-CPU counters."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from aperture.agent.libbpf import BpfMap, num_possible_cpus
from aperture.errors import UserError


def object_path(name: str) -> Path:
    """Path of a packaged ``NAME.bpf.o``, with a fix when it was never built."""
    path = Path(str(resources.files("aperture") / "bpf" / f"{name}.bpf.o"))
    if not path.is_file():
        raise UserError(
            f"the BPF object {path.name} is missing from the package ({path}): "
            "build it with `make bpf` (needs clang) or install a released wheel."
        )
    return path


def check_layout(bpf_map: BpfMap, key: type[ctypes._CData], value: type[ctypes._CData]) -> None:
    """Fail loudly when a ctypes mirror drifted from the C struct it reads."""
    if bpf_map.key_size != ctypes.sizeof(key) or bpf_map.value_size != ctypes.sizeof(value):
        raise UserError(
            f"map {bpf_map.name}: key/value sizes {bpf_map.key_size}/{bpf_map.value_size} "
            f"do not match the agent's {ctypes.sizeof(key)}/{ctypes.sizeof(value)}; "
            "rebuild the BPF objects (`make bpf`)."
        )


class PerCpuCounters:
    """Sums of a PERCPU_ARRAY of u64 counters, one named slot per index."""

    def __init__(self, bpf_map: BpfMap, names: Sequence[str]) -> None:
        self._map = bpf_map
        self.names = tuple(names)
        self._ncpu = num_possible_cpus()
        self._prev = [0] * len(self.names)

    def read(self) -> list[int]:
        values = (ctypes.c_uint64 * self._ncpu)()
        totals = []
        for index in range(len(self.names)):
            key = ctypes.c_uint32(index)
            totals.append(sum(values) if self._map.lookup(key, values) else 0)
        return totals

    def deltas(self) -> dict[str, int]:
        """Each counter's growth since the last call (since the start, the first time)."""
        now = self.read()
        delta = {n: now[i] - self._prev[i] for i, n in enumerate(self.names)}
        self._prev = now
        return delta


class DoubleBuffer:
    """The control map that tells programs which of two map sets to write."""

    def __init__(self, control: BpfMap) -> None:
        self._control = control
        self.active = 0

    def flip(self) -> int:
        """Point programs at the other buffer; return the now idle one to drain."""
        idle = self.active
        self.active ^= 1
        self._control.update(ctypes.c_uint32(0), ctypes.c_uint32(self.active))
        # Programs already running on other CPUs finish with the old buffer
        # within microseconds; 2 ms is three orders of magnitude of margin.
        time.sleep(0.002)
        return idle


def decode_comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")
