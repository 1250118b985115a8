"""Files other users control, as the agent reads them (as root).

FIFOs, links, files of another owner, huge sparse files and decompression bombs:
each is refused or read only up to its bound, quickly, and counted. The cases that
could block or exhaust memory run in a child interpreter with a timeout and a
2 GiB address-space limit, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import lzma
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from test_symbols import build, nm, strip_with_debuglink
from test_symbols_parsers import fake_process

from aperture.agent.symbols import ElfSymbols, PerfMap, ProcessMaps, Symbolizer
from aperture.agent.symbols.debuginfo import build_id_path
from aperture.agent.untrusted import MAX_DEBUGDATA_BYTES, MAX_PERF_MAP_LINE, MAX_SECTION_BYTES
from aperture.agent.unwind.tables import build_table_from_bytes

ANON = "70000000-70010000 rwxp 00000000 00:00 0\n"
OTHER_UID = 12345
HUGE = 100 << 30  # a sparse 100 GB file: costs its maker nothing
NO_DEBUG = ["/nonexistent-debug-dir"]
# Above any pid_max (at most 2**22): no real process has this pid.
NO_SUCH_PID = 4194400


def in_child(code: str, *args: str, timeout: float = 30.0) -> str:
    """Run ``code`` in a fresh interpreter (2 GiB of address space at most); its stdout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout:.0f} s: it blocked or read without bound")
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it gives files to another uid, as the agent meets them")


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed: this test builds an ELF file with it")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "perf-1.map"
    os.mkfifo(fifo)
    # No writer ever opens it: a plain open() of it never returns.
    out = in_child(
        "import sys\n"
        "from aperture.agent.symbols import ElfSymbols, PerfMap\n"
        "from aperture.agent.symbols.elf import file_build_id\n"
        "from aperture.agent.unwind.segments import read_load_segments\n"
        "from aperture.agent.unwind.tables import build_table\n"
        "path = sys.argv[1]\n"
        "pm = PerfMap(path)\n"
        "print(len(pm), pm.refusals, pm.refused)\n"
        "print(ElfSymbols.load(path).refused)\n"
        "print(file_build_id(path), read_load_segments(path), build_table(path).reason)\n",
        str(fifo),
        timeout=20,
    )
    perf_map, elf, others = out.splitlines()
    assert perf_map.startswith("0 1 ") and "is not a regular file" in perf_map
    assert "is not a regular file" in elf
    assert others.startswith("None [] refused") and "is not a regular file" in others


def test_links_are_refused(tmp_path: Path) -> None:
    # A container's /tmp/perf-N.map linking to a host file: absolute links resolve in
    # the agent's root, not the container's.
    procfs = tmp_path / "proc"
    fake_process(procfs, 4242, ANON, ns_pid=7)
    planted = tmp_path / "host-file.map"
    planted.write_text("70000000 40 JS:*planted\n")
    link = procfs / "4242" / "root" / "tmp" / "perf-7.map"
    link.parent.mkdir()
    link.symlink_to(planted)
    sym = Symbolizer(proc_root=str(procfs))
    assert sym.user_frames(4242, [0x70000010])[0].name == "[jit]+0x70000010"
    assert sym.stats().files_refused == 1
    assert PerfMap(str(planted)).lookup(0x70000010) == ("JS:*planted", 0x70000000)  # a real map

    binary = tmp_path / "true"
    shutil.copy("/bin/true", binary)
    (tmp_path / "true-link").symlink_to(binary)
    assert ElfSymbols.load(str(binary), debug_dirs=NO_DEBUG).is_elf
    linked = ElfSymbols.load(str(tmp_path / "true-link"), debug_dirs=NO_DEBUG)
    assert not linked.is_elf and linked.refused and "symbolic link" in linked.refused


def test_perf_map_of_another_owner_is_refused(tmp_path: Path) -> None:
    _need_root()
    procfs = tmp_path / "proc"
    for pid, uid in ((4242, 0), (4243, OTHER_UID)):
        fake_process(procfs, pid, ANON, ns_pid=7, uid=uid)
        perf_map = procfs / str(pid) / "root" / "tmp" / "perf-7.map"
        perf_map.parent.mkdir()
        perf_map.write_text("70000000 40 JS:*hot\n")
        os.chown(perf_map, OTHER_UID, OTHER_UID)
    sym = Symbolizer(proc_root=str(procfs))
    # Process 4242 runs as root: a file of uid 12345 is someone else's.
    assert sym.user_frames(4242, [0x70000010])[0].name == "[jit]+0x70000010"
    assert sym.stats().files_refused == 1
    # Process 4243 runs as uid 12345: its own map.
    assert sym.user_frames(4243, [0x70000010])[0].name == "JS:*hot"


def test_huge_sparse_perf_map_is_read_to_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "perf-1.map"
    first = b"70000000 40 JS:*first\n"
    with path.open("wb") as f:
        f.write(first)
        f.truncate(HUGE)
    out = in_child(
        "import sys, time\n"
        "from aperture.agent.symbols import PerfMap\n"
        "started = time.monotonic()\n"
        "pm = PerfMap(sys.argv[1])\n"
        "print(time.monotonic() - started)\n"
        "print(len(pm), pm.bytes_skipped, pm.lookup(0x70000010))\n",
        str(path),
    )
    seconds, found = out.splitlines()
    assert float(seconds) < 5, f"{seconds} s to read a bounded perf map"
    # One entry, and everything else skipped and counted.
    assert found == f"1 {HUGE - len(first)} ('JS:*first', {0x70000000})"


def test_long_perf_map_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "perf-1.map"
    long_line = b"71000000 40 " + b"x" * MAX_PERF_MAP_LINE + b"\n"
    path.write_bytes(b"70000000 40 JS:*before\n" + long_line + b"72000000 40 JS:*after\n")
    pm = PerfMap(str(path))
    assert pm.lookup(0x70000010) == ("JS:*before", 0x70000000)
    assert pm.lookup(0x71000010) is None
    assert pm.lookup(0x72000010) == ("JS:*after", 0x72000000)
    assert pm.bytes_skipped == len(long_line)


def test_container_process_never_gets_the_host_tmp_perf_map(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    fake_process(procfs, NO_SUCH_PID, ANON, ns_pid=NO_SUCH_PID)  # no ns/mnt: not ours
    host_map = Path(f"/tmp/perf-{NO_SUCH_PID}.map")  # any host user can create it
    host_map.write_text("70000000 40 JS:*planted_on_the_host\n")
    try:
        frame = Symbolizer(proc_root=str(procfs)).user_frames(NO_SUCH_PID, [0x70000010])[0]
        assert frame.name == "[jit]+0x70000010"
        maps = ProcessMaps.read(NO_SUCH_PID, str(procfs))
        assert maps is not None and not maps.sees_our_tmp
        assert maps.perf_map_paths() == [maps.in_root(f"/tmp/perf-{NO_SUCH_PID}.map")]
    finally:
        host_map.unlink()


def test_only_a_process_sharing_our_mounts_and_root_sees_our_tmp() -> None:
    own = subprocess.Popen(["sleep", "30"])
    try:
        maps = ProcessMaps.read(own.pid)
        assert maps is not None and maps.sees_our_tmp
        assert maps.perf_map_paths()[1] == f"/tmp/perf-{own.pid}.map"
    finally:
        own.kill()
        own.wait()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a process in another mount namespace")
    other = subprocess.Popen(["unshare", "--mount", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        ours = os.stat("/proc/self/ns/mnt").st_ino
        while os.stat(f"/proc/{other.pid}/ns/mnt").st_ino == ours:
            assert time.monotonic() < deadline, "unshare did not enter a new mount namespace"
            time.sleep(0.01)
        maps = ProcessMaps.read(other.pid)
        assert maps is not None and not maps.sees_our_tmp
        assert maps.perf_map_paths() == [f"/proc/{other.pid}/root/tmp/perf-{other.pid}.map"]
    finally:
        other.kill()
        other.wait()


def _elf_header(*, shoff: int, shnum: int, shstrndx: int = 0) -> bytes:
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, version 1
    # e_type EXEC, e_machine x86_64, e_version, e_entry, e_phoff, e_shoff, e_flags,
    # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    return struct.pack(
        "<16sHHIQQQIHHHHHH", ident, 2, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64, shnum, shstrndx
    )


def _section_header(sh_type: int, offset: int, size: int, *, flags: int = 0) -> bytes:
    return struct.pack("<IIQQQQIIQQ", 0, sh_type, flags, 0, offset, size, 0, 0, 1, 0)


def test_elf_header_counts_are_bounded(tmp_path: Path) -> None:
    # e_shnum 0: the count is section 0's sh_size, here 2**40, over a 100 GB file of
    # zeros (each a valid empty header).
    path = tmp_path / "sparse.so"
    with path.open("wb") as f:
        f.write(_elf_header(shoff=64, shnum=0) + _section_header(0, 0, 1 << 40))
        f.truncate(HUGE)
    out = in_child(
        "import sys, time\n"
        "from aperture.agent.symbols import ElfSymbols\n"
        "from aperture.agent.symbols.elf import file_build_id\n"
        "from aperture.agent.unwind.tables import build_table\n"
        "started = time.monotonic()\n"
        "elf = ElfSymbols.load(sys.argv[1], debug_dirs=[])\n"
        "build_id, table = file_build_id(sys.argv[1]), build_table(sys.argv[1])\n"
        "print(elf.refused, '|', build_id, '|', table.reason)\n"
        "print(time.monotonic() - started)\n",
        str(path),
        timeout=20,
    )
    refused, seconds = out.splitlines()
    assert refused.count(f"{1 << 40} section headers (at most 65536)") == 2
    assert "| None |" in refused
    assert float(seconds) < 5


def _xz_zeros(size: int) -> bytes:
    compressor = lzma.LZMACompressor(preset=0)
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


def test_minidebuginfo_is_inflated_within_its_bound(tmp_path: Path) -> None:
    _need("objcopy")
    prog = build(tmp_path, "-no-pie", "-Wl,--build-id=none")
    alpha = nm(prog)["aperture_alpha"][0]
    # Fedora's MiniDebugInfo: the symbol table, xz-compressed into .gnu_debugdata.
    mini = tmp_path / "mini"
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(mini)], check=True)
    packed = tmp_path / "mini.xz"
    packed.write_bytes(lzma.compress(mini.read_bytes()))
    subprocess.run(["objcopy", "--strip-all", str(prog)], check=True)
    good = tmp_path / "good"
    subprocess.run(
        ["objcopy", f"--add-section=.gnu_debugdata={packed}", str(prog), str(good)], check=True
    )
    elf = ElfSymbols.load(str(good), debug_dirs=NO_DEBUG)
    assert elf.lookup(alpha + 1) == ("aperture_alpha", alpha)

    bomb = tmp_path / "bomb.xz"
    bomb.write_bytes(_xz_zeros(4 * MAX_DEBUGDATA_BYTES))  # 256 MiB in ~40 KB
    bombed = tmp_path / "bombed"
    subprocess.run(
        ["objcopy", f"--add-section=.gnu_debugdata={bomb}", str(prog), str(bombed)], check=True
    )
    tracemalloc.start()
    try:
        elf = ElfSymbols.load(str(bombed), debug_dirs=NO_DEBUG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The bound inflated, held twice while its blocks are joined; never the 256 MiB.
    assert peak < 3 * MAX_DEBUGDATA_BYTES, f"{peak >> 20} MiB allocated"
    assert elf.is_elf and elf.refused is not None
    assert f".gnu_debugdata inflates to more than {MAX_DEBUGDATA_BYTES} bytes" in elf.refused


def test_compressed_section_is_inflated_within_its_bound() -> None:
    # A zlib-compressed .debug_frame (SHF_COMPRESSED) that inflates to 4x the bound.
    size = 4 * MAX_SECTION_BYTES
    compressor = zlib.compressobj(1)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()
    chdr = struct.pack("<IIQQ", 1, 0, size, 1)  # ELFCOMPRESS_ZLIB, size, alignment
    names = b"\0.debug_frame\0.shstrtab\0"
    body_at = 64 + 3 * 64
    data = chdr + bomb
    sections = (
        _section_header(0, 0, 0)
        + struct.pack("<IIQQQQIIQQ", 1, 1, 0x800, 0, body_at, len(data), 0, 0, 1, 0)
        + struct.pack("<IIQQQQIIQQ", 13, 3, 0, 0, body_at + len(data), len(names), 0, 0, 1, 0)
    )
    image = _elf_header(shoff=64, shnum=3, shstrndx=2) + sections + data + names
    tracemalloc.start()
    try:
        table = build_table_from_bytes(image, "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "section .debug_frame inflates to more than" in table.reason
    # The bound inflated, held twice while its blocks are joined; never all 512 MiB.
    assert peak < 2 * MAX_SECTION_BYTES + (32 << 20), f"{peak >> 20} MiB allocated"


def test_debug_files_of_another_owner_or_outside_the_debug_dir_are_refused(
    tmp_path: Path,
) -> None:
    _need_root()
    _need("objcopy")
    # Next to the binary (as in /tmp): a debuglink target planted by another user.
    prog = build(tmp_path, "-no-pie", "-Wl,--build-id=none")
    alpha = nm(prog)["aperture_alpha"][0]
    debug = tmp_path / "prog.debug"
    strip_with_debuglink(prog, debug)
    assert ElfSymbols.load(str(prog), debug_dirs=NO_DEBUG).lookup(alpha) is not None
    os.chown(debug, OTHER_UID, OTHER_UID)
    elf = ElfSymbols.load(str(prog), debug_dirs=NO_DEBUG)
    assert elf.lookup(alpha) is None and elf.debug_file is None
    assert elf.refused is not None and f"owned by uid {OTHER_UID}" in elf.refused

    # Under a debug dir, by build-id: a relative link inside the dir is followed (as
    # Fedora's .build-id entries are), an absolute one is not.
    twin = tmp_path / "twin"
    twin.mkdir()
    prog = build(twin, "-no-pie", "-Wl,--build-id=sha1")
    debug_dir = tmp_path / "debug"
    stored = debug_dir / "usr" / "bin" / "prog.debug"
    stored.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(stored)], check=True)
    subprocess.run(["objcopy", "--strip-all", str(prog)], check=True)
    build_id = ElfSymbols.load(str(prog)).build_id
    assert build_id is not None
    entry = Path(build_id_path(str(debug_dir), build_id))
    entry.parent.mkdir(parents=True)
    entry.symlink_to(Path("../../usr/bin/prog.debug"))
    elf = ElfSymbols.load(str(prog), debug_dirs=[str(debug_dir)])
    assert elf.debug_file == str(stored) and elf.lookup(alpha) is not None
    entry.unlink()
    entry.symlink_to(stored)  # absolute: in a container's root it names a host file
    elf = ElfSymbols.load(str(prog), debug_dirs=[str(debug_dir)])
    assert elf.debug_file is None and elf.lookup(alpha) is None
    assert elf.refused is not None and "links to an absolute path" in elf.refused
