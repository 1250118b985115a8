"""The unwind tables and process mappings in real BPF maps: bounds, eviction, cache, exits."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aperture.agent.collectors.bpfobj import object_path
from aperture.agent.collectors.cpu import CpuConfig
from aperture.agent.libbpf import BpfObject
from aperture.agent.symbols.process import ProcessMaps
from aperture.agent.unwind import kernel_maps
from aperture.agent.unwind.kernel_maps import (
    KERNEL_ROW_BYTES,
    MAP_OVERHEAD_BYTES,
    SMALL_FILE,
    KernelTables,
    ProcessRegistry,
    ProcMappings,
)
from aperture.agent.unwind.segments import read_load_segments
from aperture.agent.unwind.tables import build_table

pytestmark = pytest.mark.usefixtures("bpf")

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
PYTHON = "/usr/bin/python3.11"


@pytest.fixture
def cpu_object() -> Iterator[BpfObject]:
    """The CPU object loaded in auto mode (nothing attached): its maps are real."""
    obj = BpfObject(object_path("cpu"))
    config = CpuConfig.from_buffer(obj.map(".rodata").initial_value())
    config.unwind_mode = 2
    obj.load()
    yield obj
    obj.close()


def _sleeper(exe: str = sys.executable) -> subprocess.Popen[bytes]:
    """A process with every library it will have mapped (it has said so)."""
    proc = subprocess.Popen(
        [exe, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _kernel_size(path: str) -> int:
    return len(build_table(path)) * KERNEL_ROW_BYTES + MAP_OVERHEAD_BYTES


def _entry(obj: BpfObject, pid: int) -> ProcMappings | None:
    value = ProcMappings()
    return value if obj.map("proc_mappings").lookup(ctypes.c_uint32(pid), value) else None


def _file_id(obj: BpfObject, pid: int, path: str) -> int:
    """The file id the registered entry of ``pid`` gives its mapping of ``path``."""
    maps = ProcessMaps.read(pid)
    entry = _entry(obj, pid)
    assert maps is not None and entry is not None
    start = next(m.start for m in maps.mappings if m.file_path == path)
    return next(entry.m[i].file_id for i in range(entry.count) if entry.m[i].start == start)


def test_registration_writes_every_executable_mapping_with_its_load_bias(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = _sleeper(PYTHON)
    spawn.append(proc)
    tables = KernelTables(cpu_object.map("unwind_tables"))
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
    try:
        assert registry.register(proc.pid, build=True)
        assert registry.wait_idle(30)
        entry = _entry(cpu_object, proc.pid)
        assert entry is not None
        # The walker's clock (CLOCK_MONOTONIC): no re-read is asked for within 1 s.
        assert 0 <= time.monotonic_ns() - entry.refresh_requested_ns < 30 * 10**9
        maps = ProcessMaps.read(proc.pid)
        assert maps is not None
        user = [m for m in maps.mappings if m.start < 1 << 47]  # not [vsyscall]
        assert len(user) < len(maps.mappings), "every x86_64 process maps [vsyscall]"
        assert entry.count == len(user)
        rows = {(m.start, m.end) for m in user}
        assert {(entry.m[i].start, entry.m[i].end) for i in range(entry.count)} == rows
        # The executable's text: runtime address - bias is the ELF vaddr of the same byte.
        exe = next(m for m in maps.mappings if m.file_path == PYTHON)
        e = next(entry.m[i] for i in range(entry.count) if entry.m[i].start == exe.start)
        segment = next(
            s for s in read_load_segments(PYTHON) if s.offset <= exe.pgoff < s.offset + s.filesz
        )
        assert exe.start - e.bias == segment.vaddr + (exe.pgoff - segment.offset)
        assert e.file_id != 0
        stats = tables.stats()
        assert stats.loaded >= 2 and stats.queued == 0  # python3.11, libc, ld.so, [vdso]...
        assert cpu_object.map("unwind_tables").lookup(ctypes.c_uint32(e.file_id), ctypes.c_uint32())
    finally:
        registry.close()


def test_tables_stay_under_the_memory_limit_evicting_the_least_recently_used(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    libc, python = _kernel_size(LIBC), _kernel_size(PYTHON)
    # Room for python3.11's table and a little more, not for libc's beside it.
    limit = python + libc // 2
    tables = KernelTables(cpu_object.map("unwind_tables"), memory_limit=limit, table_share=1)
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
    procs = [_sleeper(PYTHON), _sleeper(PYTHON)]
    spawn.extend(procs)
    try:
        for proc in procs:
            assert registry.register(proc.pid, build=True)
            assert registry.wait_idle(30)
            stats = tables.stats()
            assert stats.kernel_bytes <= limit, stats
        stats = tables.stats()
        assert stats.evicted >= 1, stats
        assert stats.limit_bytes == limit
        # A table larger than the whole limit is refused and counted, never loaded.
        small = KernelTables(cpu_object.map("unwind_tables"), memory_limit=libc // 4, table_share=1)
        small_registry = ProcessRegistry(cpu_object.map("proc_mappings"), small)
        try:
            assert small_registry.register(procs[0].pid, build=True)
            assert small_registry.wait_idle(30)
            assert small.stats().too_large >= 2  # libc and python3.11 at least
            assert small.stats().kernel_bytes <= libc // 4
        finally:
            small_registry.close()
    finally:
        registry.close()


def test_a_cache_directory_spares_the_next_agent_the_parse(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = _sleeper(PYTHON)
    spawn.append(proc)
    built: list[int] = []
    for _run in range(2):
        tables = KernelTables(cpu_object.map("unwind_tables"), cache_dir=tmp_path)
        registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
        try:
            assert registry.register(proc.pid, build=True)
            assert registry.wait_idle(30)
            stats = tables.stats()
            built.append(stats.built)
        finally:
            registry.close()
    assert built[0] >= 2  # python3.11, libc, ld.so (build-ids), and the vDSO
    # Second run: only the vDSO (no build-id to cache it by) is parsed again.
    assert built[1] <= 1, built
    assert list((tmp_path / "unwind").glob("*.table"))


def test_exited_processes_are_forgotten_and_announced_again_if_the_pid_returns(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    procs_map = cpu_object.map("procs")
    tables = KernelTables(cpu_object.map("unwind_tables"))
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables, procs=procs_map)
    proc = _sleeper()
    spawn.append(proc)
    try:
        assert registry.register(proc.pid, build=True)
        procs_map.update(ctypes.c_uint32(proc.pid), (ctypes.c_char * 16)())
        assert registry.prune() == 0
        assert _entry(cpu_object, proc.pid) is not None
        proc.kill()
        proc.wait()
        assert registry.prune() == 1
        assert _entry(cpu_object, proc.pid) is None
        assert not procs_map.lookup(ctypes.c_uint32(proc.pid), (ctypes.c_char * 16)())
        assert registry.stats().processes == 0
        # A process that is gone before it can be registered is counted, not written.
        assert not registry.register(proc.pid, build=True)
        assert registry.stats().gone == 1
    finally:
        registry.close()


def test_tables_are_built_when_a_sample_asks_and_the_ask_is_cleared_when_loaded(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    misses = cpu_object.map("table_misses")
    tables = KernelTables(cpu_object.map("unwind_tables"), misses=misses)
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
    proc = _sleeper(PYTHON)
    spawn.append(proc)
    try:
        assert registry.register(proc.pid)
        assert registry.wait_idle(30)
        assert tables.stats().built == 0, "nothing is parsed before a sample needs it"
        file_id = _file_id(cpu_object, proc.pid, PYTHON)
        # What the walker does on the first sample there: count it, then ask.
        misses.update(ctypes.c_uint32(file_id), ctypes.c_uint64(1))
        registry.on_event(2, file_id)  # PROC_EVENT_TABLE_WANTED
        assert registry.wait_idle(30)
        stats = tables.stats()
        assert stats.built == 1 and stats.loaded == 1, stats
        assert cpu_object.map("unwind_tables").lookup(ctypes.c_uint32(file_id), ctypes.c_uint32())
        assert not misses.lookup(ctypes.c_uint32(file_id), ctypes.c_uint64())
        registry.on_event(2, file_id)  # asked again: nothing to do
        assert registry.wait_idle(30) and tables.stats().built == 1
    finally:
        registry.close()


def test_one_binary_may_take_a_quarter_of_the_limit_and_is_refused_before_parsing(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    python = _kernel_size(PYTHON)
    # python3.11's table (about 1 MB) is more than a quarter of this, libc's less.
    tables = KernelTables(cpu_object.map("unwind_tables"), memory_limit=python * 3)
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
    proc = _sleeper(PYTHON)
    spawn.append(proc)
    try:
        assert registry.register(proc.pid, build=True)
        assert registry.wait_idle(30)
        stats = tables.stats()
        assert stats.too_large == 1, stats
        assert stats.loaded >= 2  # libc and ld.so fit
        # Judged from the .eh_frame size: the refused table was never parsed.
        assert stats.built == stats.loaded + stats.no_table, stats
    finally:
        registry.close()


@pytest.fixture
def walker_registers(cpu_object: BpfObject) -> BpfObject:
    """The CPU object with the programs that register new processes from the kernel."""
    for name in ("forget_mappings", "mapped", "protected", "forked", "exited"):
        cpu_object.keep(cpu_object.program(name).attach())
    return cpu_object


def _user_mappings(pid: int) -> list[tuple[int, int, int, int, int, str]]:
    maps = ProcessMaps.read(pid)
    assert maps is not None
    return [
        (m.start, m.end, m.pgoff, m.dev, m.inode, m.path)
        for m in maps.mappings
        if m.start < 1 << 47  # not [vsyscall]
    ]


def test_a_new_process_of_known_binaries_is_adopted_from_the_walkers_registration(
    walker_registers: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Its maps are what /proc says, vDSO included, without reading /proc/PID/maps."""
    obj = walker_registers
    procs_map = obj.map("procs")
    tables = KernelTables(obj.map("unwind_tables"), files=obj.map("file_codes"))
    registry = ProcessRegistry(obj.map("proc_mappings"), tables, procs=procs_map)
    try:
        first = _sleeper(PYTHON)
        spawn.append(first)
        assert registry.adopt(first.pid) is None, "its files were not known yet"
        assert registry.register(first.pid)  # from /proc: its files get their ids
        second = _sleeper(PYTHON)
        spawn.append(second)
        maps = registry.adopt(second.pid)
        assert maps is not None
        got = [(m.start, m.end, m.pgoff, m.dev, m.inode, m.path) for m in maps.mappings]
        assert got == _user_mappings(second.pid)
        assert "[vdso]" in {m.path for m in maps.mappings}
        assert maps.sees_our_tmp
        assert registry.stats().adopted == 1
        entry = _entry(obj, second.pid)
        assert entry is not None and entry.source == 1, "the walker's entry is kept as it is"
        # At its exit the walker keeps its entry until the agent's next prune (a process
        # announced as it exits is still adopted from it), and the announcement too:
        # samples in the exit path must not announce it again.
        procs_map.update(ctypes.c_uint32(second.pid), (ctypes.c_char * 16)())
        second.kill()
        second.wait()
        assert _entry(obj, second.pid) is not None
        assert procs_map.lookup(ctypes.c_uint32(second.pid), (ctypes.c_char * 16)())
        registry.prune()
        assert _entry(obj, second.pid) is None
        assert registry.stats().processes == 1  # the first, registered from /proc
    finally:
        registry.close()


def test_a_process_that_exited_before_its_announcement_was_read_is_still_adopted(
    walker_registers: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Its maps come from the walker's entry, kept past the exit (it was announced):
    /proc has nothing. One never announced loses its entry at its exit."""
    obj = walker_registers
    procs_map = obj.map("procs")
    tables = KernelTables(obj.map("unwind_tables"), files=obj.map("file_codes"))
    registry = ProcessRegistry(obj.map("proc_mappings"), tables, procs=procs_map)
    try:
        first = _sleeper(PYTHON)
        spawn.append(first)
        assert registry.register(first.pid)
        second, never = _sleeper(PYTHON), _sleeper(PYTHON)
        spawn += [second, never]
        expected = _user_mappings(second.pid)
        procs_map.update(ctypes.c_uint32(second.pid), (ctypes.c_char * 16)())  # announced
        procs_map.delete(ctypes.c_uint32(never.pid))
        for proc in (second, never):
            proc.kill()
            proc.wait()
        assert _entry(obj, never.pid) is None, "never announced: dropped at its exit"
        assert ProcessMaps.read(second.pid) is None
        maps = registry.adopt(second.pid)
        assert maps is not None
        assert [
            (m.start, m.end, m.pgoff, m.dev, m.inode, m.path) for m in maps.mappings
        ] == expected
        registry.prune()
        assert _entry(obj, second.pid) is None, "pruned once its process is gone"
    finally:
        registry.close()


def test_a_process_sampled_in_the_dynamic_loader_is_left_to_the_walker_until_it_has_started(
    walker_registers: BpfObject, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Not read from /proc twice: announced again, then adopted with its libraries."""
    obj = walker_registers
    procs_map = obj.map("procs")
    tables = KernelTables(obj.map("unwind_tables"), files=obj.map("file_codes"))
    registry = ProcessRegistry(obj.map("proc_mappings"), tables, procs=procs_map)
    fifo = tmp_path / "preload"
    os.mkfifo(fifo)
    try:
        first = _sleeper(PYTHON)
        spawn.append(first)
        assert registry.register(first.pid)  # its files get their ids
        # The dynamic loader blocks opening the library it was told to preload.
        held = subprocess.Popen(
            [PYTHON, "-c", "import time; time.sleep(60)"],
            env={**os.environ, "LD_PRELOAD": str(fifo)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        spawn.append(held)
        deadline = time.monotonic() + 10
        while _entry(obj, held.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        procs_map.update(ctypes.c_uint32(held.pid), (ctypes.c_char * 16)())  # announced
        maps = registry.adopt(held.pid)
        assert maps is not None, "its snapshot so far, for the sample that announced it"
        names = {os.path.basename(m.path) for m in maps.mappings}
        assert not any(n.startswith("libc.so") for n in names)
        assert registry.stats().deferred == 1
        assert registry.stats().adopted == 0
        assert not procs_map.lookup(ctypes.c_uint32(held.pid), (ctypes.c_char * 16)()), (
            "its announcement is dropped so that its next sample announces it again"
        )
        with open(fifo, "wb"):
            pass  # the loader reads nothing, ignores the preload and goes on
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            maps = ProcessMaps.read(held.pid)
            if maps and any("libc.so" in m.path for m in maps.mappings):
                break
            time.sleep(0.01)
        adopted = registry.adopt(held.pid)
        assert adopted is not None
        assert [(m.start, m.end, m.pgoff, m.dev, m.inode, m.path) for m in adopted.mappings] == (
            _user_mappings(held.pid)
        )
        assert registry.stats().adopted == 1
    finally:
        registry.close()


def test_a_process_with_code_the_walker_cannot_name_is_read_from_proc(
    walker_registers: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """Anonymous executable memory (JIT code, perf maps) or an unseen file: not adopted."""
    obj = walker_registers
    tables = KernelTables(obj.map("unwind_tables"), files=obj.map("file_codes"))
    registry = ProcessRegistry(obj.map("proc_mappings"), tables)
    try:
        first = _sleeper(PYTHON)
        spawn.append(first)
        assert registry.register(first.pid)
        jit = subprocess.Popen(
            [
                PYTHON,
                "-c",
                "import mmap, time; m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | "
                "mmap.PROT_WRITE | mmap.PROT_EXEC); print('ready', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
        )
        spawn.append(jit)
        assert jit.stdout is not None and jit.stdout.readline() == b"ready\n"
        entry = _entry(obj, jit.pid)
        assert entry is not None and entry.source == 1
        assert registry.adopt(jit.pid) is None
        other = _sleeper()  # another interpreter build: files never registered
        spawn.append(other)
        assert registry.adopt(other.pid) is None
        assert registry.stats().adopted == 0
        # An adopted process still alive at a drain is registered from /proc.
        plain = _sleeper(PYTHON)
        spawn.append(plain)
        assert registry.adopt(plain.pid) is not None
        registry.prune()
        entry = _entry(obj, plain.pid)
        assert entry is not None and entry.source == 0
    finally:
        registry.close()


def test_a_pid_used_again_is_announced_again(
    walker_registers: BpfObject, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """The announcement is dropped when a process is forked with a pid that had one."""
    procs_map = walker_registers.map("procs")
    last_pid = Path("/proc/sys/kernel/ns_last_pid")
    for _ in range(5):  # another process on the host may take the pid first
        pid = int(last_pid.read_text()) + 500
        procs_map.update(ctypes.c_uint32(pid), (ctypes.c_char * 16)())
        last_pid.write_text(str(pid - 1))
        proc = subprocess.Popen(["sleep", "30"])
        spawn.append(proc)
        if proc.pid == pid:
            break
        procs_map.delete(ctypes.c_uint32(pid))
    else:
        pytest.fail("no fork got the pid asked for through ns_last_pid")
    assert not procs_map.lookup(ctypes.c_uint32(pid), (ctypes.c_char * 16)())


def test_a_small_programs_table_is_not_held_up_by_a_larger_build(
    cpu_object: BpfObject, spawn: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 43 KB program's table comes while a 6.8 MB interpreter's is still being built.

    The interpreter's build is under way, and held until the small table is in the
    kernel, so the order is the builders' and not the machine's speed: on one thread
    for both, the small table would wait for ever.
    """
    assert os.path.getsize(PYTHON) > SMALL_FILE
    started, release = threading.Event(), threading.Event()
    real_build = kernel_maps.build_table

    def build(path: str, **kwargs: Any) -> Any:
        if os.path.realpath(path) == os.path.realpath(PYTHON):
            started.set()
            release.wait(20)
        return real_build(path, **kwargs)

    monkeypatch.setattr(kernel_maps, "build_table", build)
    outer = cpu_object.map("unwind_tables")
    tables = KernelTables(outer)
    registry = ProcessRegistry(cpu_object.map("proc_mappings"), tables)
    big = _sleeper(PYTHON)
    small = subprocess.Popen(["sleep", "60"])
    spawn += [big, small]
    try:
        time.sleep(0.1)  # sleep past its dynamic loader

        assert registry.register(big.pid, build=True)
        assert started.wait(10), "the interpreter's build never started"
        assert registry.register(small.pid, build=True)
        big_id = _file_id(cpu_object, big.pid, PYTHON)
        small_id = _file_id(cpu_object, small.pid, "/usr/bin/sleep")
        deadline = time.monotonic() + 10
        while not outer.lookup(ctypes.c_uint32(small_id), ctypes.c_uint32()):
            assert time.monotonic() < deadline, "the small program's table waited for the large"
            time.sleep(0.01)
        assert not outer.lookup(ctypes.c_uint32(big_id), ctypes.c_uint32())
        release.set()
        assert registry.wait_idle(30)
        assert outer.lookup(ctypes.c_uint32(big_id), ctypes.c_uint32())
    finally:
        release.set()
        registry.close()


def test_a_table_written_through_the_maps_memory_reads_as_one_written_in_batches() -> None:
    """The mmap path (the agent's library) and the batch path (without it) give the
    walker the same elements: header, bucket index and every row."""
    import random

    from aperture.agent.libbpf import (
        BPF_F_INNER_MAP,
        BPF_F_MMAPABLE,
        BPF_MAP_TYPE_ARRAY,
        create_map,
        lib,
    )
    from aperture.agent.unwind.layout import kernel_layout, kernel_prefix
    from aperture.agent.unwind.tables import ROW_SIZE

    rows = build_table(LIBC).rows
    prefix = kernel_prefix(rows)
    elements = (len(prefix) + len(rows)) // ROW_SIZE
    flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE
    mapped = create_map(BPF_MAP_TYPE_ARRAY, "unwind_table", 4, ROW_SIZE, elements, flags)
    batched = create_map(BPF_MAP_TYPE_ARRAY, "unwind_table", 4, ROW_SIZE, elements, flags)
    try:
        if not kernel_maps._write_mapped(mapped, elements, (prefix, rows)):
            pytest.skip("the agent's native library is not built here (make native)")
        kernel_maps._write_rows(batched, 0, prefix)
        kernel_maps._write_rows(batched, len(prefix) // ROW_SIZE, rows)
        expected = kernel_layout(rows)
        picks = [0, 1, 2, elements - 1, *random.Random(7).sample(range(elements), 2000)]
        for index in picks:
            got = []
            for fd in (mapped, batched):
                value = ctypes.create_string_buffer(ROW_SIZE)
                key = ctypes.c_uint32(index)
                assert lib().bpf_map_lookup_elem(fd, ctypes.byref(key), value) == 0
                got.append(value.raw)
            assert got[0] == got[1] == expected[index * ROW_SIZE : (index + 1) * ROW_SIZE]
    finally:
        os.close(mapped)
        os.close(batched)
