"""The collectors' shared lifecycle (BpfCollector) on a fake object: no kernel needed."""

from __future__ import annotations

import ctypes
from ctypes import c_uint32, c_uint64
from pathlib import Path
from typing import Any

import pytest

from aperture.agent.collectors import base, bpfobj
from aperture.agent.collectors.base import BpfCollector
from aperture.agent.libbpf import BpfObject
from aperture.errors import UserError
from aperture.model import EventType, Profile

NCPU = 2


class FakeMap:
    def __init__(self, name: str, key_size: int = 4, value_size: int = 8) -> None:
        self.name, self.key_size, self.value_size = name, key_size, value_size
        self.per_cpu: list[int] = [0, 0]  # the counters' slots, all on CPU 0
        self.updates: list[int] = []

    def lookup(self, key: c_uint32, values: Any) -> bool:
        values[0], values[1] = self.per_cpu[key.value], 0
        return True

    def update(self, key: c_uint32, value: c_uint32) -> None:
        self.updates.append(value.value)


class FakeObject:
    def __init__(self, path: Path, log: list[str], maps: dict[str, FakeMap]) -> None:
        self.path, self.log, self.maps = path, log, maps

    def map(self, name: str) -> FakeMap:
        return self.maps[name]

    def load(self) -> None:
        self.log.append("load")

    def close(self) -> None:
        self.log.append("close object")


class FakeWatcher:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def start(self) -> None:
        self.log.append("start watcher")

    def close(self) -> None:
        self.log.append("close watcher")


class Toy(BpfCollector):
    object_name = "toy"
    event_type = EventType.SYSCALL
    not_running = "the toy is not running"
    layouts = (("stats0", c_uint32, c_uint64),)
    stat_names = ("events", "lost")
    loss_names = ("lost",)

    def __init__(self, log: list[str], fail_attach: bool = False) -> None:
        super().__init__()
        self.log, self.fail_attach = log, fail_attach
        self.idles: list[int] = []

    def _configure(self, obj: BpfObject) -> None:
        self.log.append("configure")

    def _attach(self, obj: BpfObject) -> None:
        self._watcher = FakeWatcher(self.log)  # type: ignore[assignment]
        self.log.append("attach")
        if self.fail_attach:
            raise OSError("attach failed")

    def _release(self) -> None:
        self.log.append("release")

    def _read(self, obj: BpfObject, idle: int, profile: Profile) -> None:
        self.idles.append(idle)
        profile.labels = {"events": str(self._window_counters(profile)["events"])}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], dict[str, FakeMap]]:
    log: list[str] = []
    maps = {name: FakeMap(name) for name in ("stats0", "control", "counters")}
    monkeypatch.setattr(base, "object_path", lambda name: Path(f"/x/{name}.bpf.o"))
    monkeypatch.setattr(base, "BpfObject", lambda path: FakeObject(path, log, maps))
    monkeypatch.setattr(bpfobj, "num_possible_cpus", lambda: NCPU)
    clock = iter(range(100, 10_000, 100))
    monkeypatch.setattr(base.time, "time_ns", lambda: next(clock))
    return log, maps


def test_windows_follow_each_other_with_counter_deltas(
    fake: tuple[list[str], dict[str, FakeMap]],
) -> None:
    log, maps = fake
    toy = Toy(log)
    toy.start()
    assert log == ["configure", "load", "attach", "start watcher"]
    maps["counters"].per_cpu = [5, 1]
    first = toy.drain()
    maps["counters"].per_cpu = [8, 4]
    second = toy.drain()
    assert (first.start_ns, first.end_ns, second.start_ns, second.end_ns) == (100, 200, 200, 300)
    assert (first.losses, first.labels) == ({"lost": 1}, {"events": "5"})
    assert (second.losses, second.labels) == ({"lost": 3}, {"events": "3"})
    assert toy.idles == [0, 1] and maps["control"].updates == [1, 0]
    assert toy.sample_count() == 8
    toy.close()
    assert log[-3:] == ["close watcher", "release", "close object"]


def test_a_failed_attach_closes_what_was_opened(
    fake: tuple[list[str], dict[str, FakeMap]],
) -> None:
    log, _ = fake
    toy = Toy(log, fail_attach=True)
    with pytest.raises(OSError, match="attach failed"):
        toy.start()
    assert log == ["configure", "load", "attach", "close watcher", "release", "close object"]
    with pytest.raises(UserError, match="the toy is not running"):
        toy.drain()


def test_a_drifted_layout_fails_before_attaching(
    fake: tuple[list[str], dict[str, FakeMap]],
) -> None:
    log, maps = fake
    maps["stats0"].value_size = ctypes.sizeof(c_uint32)
    with pytest.raises(UserError, match="map stats0: key/value sizes 4/4 do not match"):
        Toy(log).start()
    assert log == ["configure", "load", "release", "close object"]
