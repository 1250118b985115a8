"""What every BPF collector does the same way: open, configure, load, check, attach, drain."""

from __future__ import annotations

import ctypes
import os
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, TypeVar

from aperture.agent.collectors.bpfobj import (
    DoubleBuffer,
    PerCpuCounters,
    check_layout,
    object_path,
)
from aperture.agent.collectors.processes import ProcessWatcher
from aperture.agent.libbpf import BpfObject
from aperture.errors import UserError
from aperture.model import EventType, Profile
from aperture.profile_types import value_unit

if TYPE_CHECKING:  # ctypes._CData is typeshed's name, not the runtime's
    # A map checked after load: its name and the ctypes mirrors of its key and value.
    Layout = tuple[str, type[ctypes._CData], type[ctypes._CData]]

_Config = TypeVar("_Config", bound=ctypes.Structure)


_INIT_PID_NS = 0xEFFFFFFC  # the kernel's PROC_PID_INIT_INO: the host's pid namespace


def own_tgid(target: int, leave_out: bool) -> int:
    """The agent's own process, for the programs to leave out of what they record
    (0 when not asked to, or when ``--pid`` asks for it).

    Its blocks, lock waits and syscalls are its reading of the other processes'
    data: recorded, each window's handling would make more for the next (its own
    threads wait on each other for the GIL), and that feedback was a large share of
    the agent's cost on a busy host. Its CPU samples are still recorded.
    """
    me = os.getpid()
    if not leave_out or target == me or not _in_host_pid_namespace():
        return 0  # in a container's pid namespace our pid is not the one BPF sees
    return me


def _in_host_pid_namespace() -> bool:
    try:
        return os.stat("/proc/self/ns/pid").st_ino == _INIT_PID_NS
    except OSError:
        return False


def rodata(obj: BpfObject, config: type[_Config]) -> _Config:
    """The object's ``.rodata`` as its config struct; what is written before load, programs read."""
    return config.from_buffer(obj.map(".rodata").initial_value())


class BpfCollector(ABC):
    """One packaged BPF object, attached from :meth:`start` and read one window per :meth:`drain`.

    The object's programs write into one of two map sets, picked by its
    ``control`` map, and count what happened in a PERCPU_ARRAY of u64s. A
    subclass names its object, counters and checked maps, and supplies only
    what is its own: the ``.rodata`` config, its programs, and how a window's
    records become a profile.
    """

    object_name: ClassVar[str]  # the packaged NAME.bpf.o
    event_type: ClassVar[EventType]
    not_running: ClassVar[str]  # drain()'s error before start()
    layouts: ClassVar[tuple[Layout, ...]]  # checked in this order, after load
    counters_map: ClassVar[str] = "counters"
    stat_names: ClassVar[tuple[str, ...]]  # the counters' slots, in order
    loss_names: ClassVar[tuple[str, ...]]  # those that mean data was lost

    def __init__(self) -> None:
        self._obj: BpfObject | None = None
        self._watcher: ProcessWatcher | None = None  # set by _attach() when the object has one
        self._window_start_ns = 0

    # -- what a subclass supplies ------------------------------------------
    @abstractmethod
    def _configure(self, obj: BpfObject) -> None:
        """Before load: the ``.rodata`` config (see :func:`rodata`) and map sizes."""

    @abstractmethod
    def _attach(self, obj: BpfObject) -> None:
        """After load and the layout checks: whatever reads the maps, then the programs."""

    @abstractmethod
    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        """Drain buffer ``idle``'s records into ``profile`` (its window is set already)."""

    def _release(self) -> None:
        """What a subclass holds besides the object: closed after the watcher, before it."""
        return None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Open, configure, load, check and attach; a failure closes what was opened."""
        obj = BpfObject(object_path(self.object_name))
        self._obj = obj
        try:
            self._configure(obj)
            obj.load()
            for name, key, value in self.layouts:
                check_layout(obj.map(name), key, value)
            self._buffers = DoubleBuffer(obj.map("control"))
            self._counters = PerCpuCounters(obj.map(self.counters_map), self.stat_names)
            self._attach(obj)
        except BaseException:
            self.close()
            raise
        self._window_start_ns = time.time_ns()
        if self._watcher is not None:
            self._watcher.start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._release()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    # -- reading -----------------------------------------------------------
    def sample_count(self) -> int:
        """Events counted so far (cheap: for progress display)."""
        return self._counters.read()[0]

    def drain(self) -> Profile:
        """Swap buffers, read the idle one, and return its window as a profile."""
        obj = self._require()
        end_ns = time.time_ns()
        idle = self._buffers.flip()
        profile = Profile(
            event_type=self.event_type,
            unit=value_unit(self.event_type),
            start_ns=self._window_start_ns,
            end_ns=end_ns,
        )
        self._window_start_ns = end_ns
        self._read(obj, idle, profile)
        return profile

    def _window_counters(self, profile: Profile) -> dict[str, int]:
        """Each counter's growth since the last call; the loss counters go to ``profile.losses``."""
        delta = self._counters.deltas()
        profile.losses = {n: delta[n] for n in self.loss_names}
        return delta

    def _require(self) -> BpfObject:
        if self._obj is None:
            raise UserError(self.not_running)
        return self._obj
