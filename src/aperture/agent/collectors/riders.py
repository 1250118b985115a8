"""Collectors whose programs ride in the CPU profiler's object (off-CPU time, locks).

They share its unwinder, process registry and Python maps; each has its own
double-buffered maps, control map and counters, which this base class flips
and reads. ``owns_engine``: the collector starts and closes the CPU collector
(when no ``cpu`` mode, and no other rider, does); otherwise the engine is
started first and closed by its owner.
"""

from __future__ import annotations

import ctypes
import time
from typing import ClassVar

from aperture.agent.collectors.bpfobj import DoubleBuffer, PerCpuCounters, check_layout
from aperture.agent.collectors.cpu import CpuCollector
from aperture.agent.libbpf import BpfObject
from aperture.errors import UserError
from aperture.model import EventType, Profile
from aperture.profile_types import value_unit


class EngineRider:
    """Start, stop and window flips of a rider; subclasses read their maps in ``drain``."""

    event_type: ClassVar[EventType]
    option: ClassVar[str]  # the CpuOptions field that turns the programs on
    control_map: ClassVar[str]
    counters_map: ClassVar[str]
    stat_names: ClassVar[tuple[str, ...]]
    loss_names: ClassVar[tuple[str, ...]]  # of the stats, those that mean data was lost
    # (map name, key type, value type) checked against the object at start
    layouts: ClassVar[tuple[tuple[str, type[ctypes._CData], type[ctypes._CData]], ...]]

    def __init__(self, engine: CpuCollector, *, owns_engine: bool) -> None:
        if getattr(engine.options, self.option) is None:
            raise ValueError(f"the CPU collector was made without {self.option} options")
        self.engine = engine
        self._owns = owns_engine
        self._buffers: DoubleBuffer | None = None
        self._counters: PerCpuCounters | None = None
        self._window_start_ns = 0

    def start(self) -> None:
        if self._owns:
            self.engine.start()
        obj = self.engine.bpf_object()
        for name, key, value in self.layouts:
            check_layout(obj.map(name), key, value)
        self._buffers = DoubleBuffer(obj.map(self.control_map))
        self._counters = PerCpuCounters(obj.map(self.counters_map), self.stat_names)
        self._window_start_ns = time.time_ns()

    def close(self) -> None:
        if self._owns:
            self.engine.close()
        self._buffers = None

    def sample_count(self) -> int:
        """The first counter so far (cheap: for progress display)."""
        return self._counters.read()[0] if self._counters else 0

    def _next_window(self) -> tuple[BpfObject, int, Profile]:
        """Flip the buffers: the object, the idle buffer to drain and the window's profile."""
        if self._buffers is None or self._counters is None:
            raise UserError(f"the {self.event_type} collector is not running")
        end_ns = time.time_ns()
        idle = self._buffers.flip()
        profile = Profile(self.event_type, value_unit(self.event_type),
                          start_ns=self._window_start_ns, end_ns=end_ns)  # fmt: skip
        self._window_start_ns = end_ns
        return self.engine.bpf_object(), idle, profile

    def _window_counters(self, profile: Profile) -> dict[str, int]:
        """Each counter's growth over the window; the losses go on the profile."""
        assert self._counters is not None  # checked by _next_window
        delta = self._counters.deltas()
        profile.losses = {n: delta[n] for n in self.loss_names}
        return delta
