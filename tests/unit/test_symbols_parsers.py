"""Symbolization parts on fixtures: kallsyms, perf maps, demangling, maps, debuglink."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from aperture.agent import native
from aperture.agent.symbols import ElfSymbols, KernelSymbols, PerfMap, Symbolizer, demangle
from aperture.agent.symbols.debuginfo import parse_debuglink
from aperture.agent.symbols.demangle import available as demangler_available
from aperture.agent.symbols.elf import Segment
from aperture.agent.symbols.process import parse_maps
from aperture.model import Frame, FrameKind

KALLSYMS = (
    "ffffffff81000000 T _stext\n"
    "ffffffff81001000 t do_one\n"
    "ffffffff81001100 D some_data\n"
    "ffffffff81002000 W weak_fn\n"
    "ffffffffc0001000 t mod_fn\t[mymod]\n"
    "ffffffffc0000800 t mod_early\t[mymod]\n"
    "ffffffffc0100000 t bpf_prog_6deef7357e7b4530_sd_fw_egress\t[bpf]\n"
)


def test_kallsyms_fixture() -> None:
    ks = KernelSymbols.parse(KALLSYMS)
    assert len(ks) == 6  # the data symbol is not text
    assert ks.resolve(0xFFFFFFFF81001004) == Frame(
        "do_one", "[kernel]", FrameKind.KERNEL, 0xFFFFFFFF81001004
    )
    assert ks.resolve(0xFFFFFFFF81001150).name == "do_one"  # data symbols do not end text
    assert ks.resolve(0xFFFFFFFF81002000).name == "weak_fn"
    assert ks.resolve(0xFFFFFFFFC0000900) == Frame(
        "mod_early", "[mymod]", FrameKind.KERNEL, 0xFFFFFFFFC0000900
    )
    assert ks.resolve(0xFFFFFFFFC0001010).module == "[mymod]"
    assert ks.resolve(0xFFFFFFFFC0100010).module == "[bpf]"
    below = ks.resolve(0xFFFF800000000000)
    assert (below.name, below.module) == ("[kernel]+0xffff800000000000", "[kernel]")
    assert ks.resolve(0xFFFFFFFFC0100000 + 0x5000).name == "[kernel]+0xffffffffc0105000"


def test_the_hosts_kallsyms_held_compactly_answers_like_a_plain_parse() -> None:
    """Every 50th text symbol of this host: its start resolves to its name and module."""
    text = Path("/proc/kallsyms").read_text(errors="replace")
    ks = KernelSymbols.parse(text)
    if len(ks) == 0:
        pytest.skip("/proc/kallsyms shows no addresses here (kptr_restrict)")
    names: dict[int, set[tuple[str, str]]] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and parts[1] in "tTwW":
            mod = parts[3].strip() if len(parts) > 3 else "[kernel]"
            names.setdefault(int(parts[0], 16), set()).add((parts[2], mod))
    for addr in sorted(names)[::50]:
        found = ks.lookup(addr)
        assert found is not None and found[2] == addr
        # aliases share an address: any of them, with its module, is the answer
        assert (found[0], found[1]) in names[addr]


def _answers(ks: KernelSymbols, text: str) -> list[tuple[str, str, int] | None]:
    """What ``ks`` answers for every address in ``text``, a byte past it and 2 KiB on."""
    hexdigits = set("0123456789abcdef")
    addrs = [int(line[:16], 16) for line in text.splitlines() if set(line[:16]) <= hexdigits]
    return [ks.lookup(a + d) for a in addrs for d in (0, 1, 2048)]


def test_kallsyms_read_a_block_at_a_time_holds_what_a_whole_parse_holds(tmp_path: Path) -> None:
    # 1.8 MB in order (several 256 KiB blocks, lines cut at block ends), the fixture (out
    # of order, as BPF programs' symbols are), and a line whose address is not hex
    # (parsed again whole)
    module = {0: "\t[m]"}
    in_order = "".join(
        f"{0xFFFFFFFF81000000 + 16 * i:016x} {'tTwWD'[i % 5]} fn_{i}{module.get(i % 7, '')}\n"
        for i in range(60_000)
    )
    not_hex = KALLSYMS.replace("ffffffff81001000", "zzzzzzzz81001000")
    path = tmp_path / "kallsyms"
    control = in_order.replace("fn_7\n", "fn_7\x0c\n")  # a line break to Python
    for text in (in_order, KALLSYMS, not_hex, control):
        path.write_text(text)
        loaded, parsed = KernelSymbols.load(str(path)), KernelSymbols.parse(text)
        assert len(loaded) == len(parsed) > 0
        assert _answers(loaded, text) == _answers(parsed, text)
        with path.open("rb") as f:
            blocks = KernelSymbols._load_blocks(f)
        if blocks is not None:  # the Python reader, where the library is not built
            assert _answers(blocks, text) == _answers(parsed, text)
    assert len(KernelSymbols.load(str(path))) == 60_000 * 4 // 5
    path.write_text(not_hex)
    assert len(KernelSymbols.load(str(path))) == 5  # the bad line is dropped


def test_kallsyms_read_by_the_agents_library_when_it_is_built(tmp_path: Path) -> None:
    """The C reader gives the Python reader's columns, BPF programs' tail sorted alike."""
    if not native.available():
        pytest.skip("the agent's native library is not built here (make native)")
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    with path.open("rb") as f:
        fast = KernelSymbols._load_native(f)
        f.seek(0)
        slow = KernelSymbols._load_blocks(f)
    assert fast is not None and slow is not None
    assert fast._text == slow._text and fast._ends == slow._ends
    assert fast._addrs == slow._addrs and fast._order == slow._order
    assert fast._order is not None, "the fixture's tail is out of order"


def test_the_hosts_kallsyms_loads_without_holding_its_text_as_lines() -> None:
    # Whole, this host's 121k text symbols peaked at 32 MB of Python objects for 4 MB
    # held (the agent's peak RSS at its first drain); 256 KiB at a time, 9 MB.
    tracemalloc.start()
    try:
        ks = KernelSymbols.load()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if len(ks) == 0:
        pytest.skip("/proc/kallsyms shows no addresses here (kptr_restrict)")
    assert peak - held < 12 << 20, f"peak {peak >> 20} MB for {held >> 20} MB held"


def test_kallsyms_hidden_addresses_give_no_symbols(tmp_path: Path) -> None:
    hidden = re.sub(r"^[0-9a-f]{16}", "0" * 16, KALLSYMS, flags=re.M)
    assert len(KernelSymbols.parse(hidden)) == 0
    assert len(KernelSymbols.parse("")) == 0
    assert len(KernelSymbols.load(str(tmp_path / "missing"))) == 0
    (tmp_path / "hidden").write_text(hidden)
    assert len(KernelSymbols.load(str(tmp_path / "hidden"))) == 0
    assert KernelSymbols.parse(hidden).resolve(0x10).name == "[kernel]+0x10"


def test_kernel_frames_adjust_return_addresses(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    sym = Symbolizer(kallsyms_path=str(path))
    # Leaf first; a return address at weak_fn's first byte belongs to the call in do_one.
    frames = sym.kernel_frames([0xFFFFFFFF81002000, 0xFFFFFFFF81002000, 0x1])
    assert [f.name for f in frames] == ["weak_fn", "do_one", "[kernel]+0x1"]
    assert [f.offset for f in frames] == [0xFFFFFFFF81002000, 0xFFFFFFFF81002000, 0x1]
    stats = sym.stats()
    assert (stats.kernel_resolved, stats.kernel_unresolved) == (2, 1)


def test_real_kallsyms() -> None:
    with open("/proc/kallsyms") as f:
        text = f.read()
    match = re.search(r"^([0-9a-f]+) T vfs_read$", text, re.M)
    if match is None or int(match.group(1), 16) == 0:
        pytest.skip("/proc/kallsyms hides addresses here (kptr_restrict; run as root)")
    addr = int(match.group(1), 16)
    start = time.perf_counter()
    ks = KernelSymbols.load()
    elapsed = time.perf_counter() - start
    assert ks.resolve(addr + 4) == Frame("vfs_read", "[kernel]", FrameKind.KERNEL, addr + 4)
    module = re.search(r"^([0-9a-f]+) [tT] (\S+)\t\[(\S+)\]$", text, re.M)
    if module is not None:
        found = ks.lookup(int(module.group(1), 16))
        assert found is not None and found[1] == f"[{module.group(3)}]"
    # Measured ≈0.2 s for 120k lines (0.07 s of it is the kernel producing the
    # text); this bound only catches a return to per-line regex or split parsing.
    assert elapsed < 1.5, f"kallsyms took {elapsed:.2f} s"


def test_perf_map_parsing_and_growth(tmp_path: Path) -> None:
    path = tmp_path / "perf-1.map"
    path.write_text(
        "7f0000001000 100 LazyCompile:*foo /app/x.js:1:1\n"
        "0x7f0000002000 0x40 py::bar:/app/y.py\n"
        "not a line\n"
        "7f0000003000 0 zero_size\n"
        "7f0000001000 80 Recompiled foo\n"
    )
    pm = PerfMap(str(path))
    assert len(pm) == 2
    assert pm.lookup(0x7F0000001010) == ("Recompiled foo", 0x7F0000001000)  # later entry wins
    assert pm.lookup(0x7F0000001090) is None
    assert pm.lookup(0x7F000000203F) == ("py::bar:/app/y.py", 0x7F0000002000)
    assert pm.resolve(0x7F0000002001) == Frame(
        "py::bar:/app/y.py", "[jit]", FrameKind.JIT, 0x7F0000002001
    )
    assert pm.lookup(0x7F0000005000) is None
    with path.open("a") as f:
        f.write("7f0000005000 20 JS:*late\n")  # the JIT keeps appending
    assert pm.lookup(0x7F0000005010) == ("JS:*late", 0x7F0000005000)
    assert not pm.refresh()  # unchanged: not re-read


def test_demangle_rust_legacy_and_others() -> None:
    if not demangler_available():
        pytest.skip("libstdc++.so.6 is not installed: demangling is the identity")
    assert demangle("_ZN2ns4funcEi") == "ns::func(int)"
    assert demangle("_ZN3std2rt10lang_start17h5f2b0e7e0c6d6a1fE") == "std::rt::lang_start"
    legacy = (
        "_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$"
        "..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE"
    )
    assert demangle(legacy) == "core::ptr::drop_in_place<std::rt::lang_start<()>::{{closure}}>"
    assert demangle("_RNvCs1234_7mycrate3foo") == "mycrate::foo"
    assert demangle("main") == "main"
    assert demangle("_Znot_valid") == "_Znot_valid"


def test_parse_maps() -> None:
    text = (
        "00400000-00401000 r--p 00000000 fe:01 131 /usr/bin/prog\n"
        "00401000-00402000 r-xp 00001000 fe:01 131 /usr/bin/prog\n"
        "7f0000000000-7f0000001000 r-xp 00002000 00:1f 77 /opt/my app/lib x.so (deleted)\n"
        "7f0000100000-7f0000200000 rwxp 00000000 00:00 0 \n"
        "7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                  [vdso]\n"
        "garbage line\n"
    )
    maps = parse_maps(text)
    assert [m.start for m in maps] == [0x401000, 0x7F0000000000, 0x7F0000100000, 0x7FFC00000000]
    prog, lib, anon, vdso = maps
    assert (prog.pgoff, prog.dev, prog.inode) == (0x1000, os.makedev(0xFE, 1), 131)
    assert lib.deleted and lib.file_path == "/opt/my app/lib x.so" and lib.is_file
    assert anon.is_anonymous and not anon.is_file
    assert vdso.path == "[vdso]" and not vdso.is_file and not vdso.is_anonymous


def test_debuglink_section_parsing() -> None:
    assert parse_debuglink(b"prog.debug\0\0" + (0x12345678).to_bytes(4, "little")) == (
        "prog.debug",
        0x12345678,
    )
    assert parse_debuglink(b"abc\0" + b"\x01\0\0\0") == ("abc", 1)
    assert parse_debuglink(b"no terminator") is None
    assert parse_debuglink(b"\0\0\0\0\0\0\0\0") is None


def test_non_elf_files_have_no_symbols(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_text("hello")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(Path("/bin/sh").read_bytes()[:100])
    for path in (text, truncated, tmp_path / "missing", tmp_path):
        elf = ElfSymbols.load(str(path))
        assert len(elf) == 0 and elf.lookup(0x1000) is None
    assert ElfSymbols.from_bytes(b"\x7fELFjunk", "[x]").lookup(0) is None


def test_32bit_elf_symbols() -> None:
    lib = Path("/lib32/libc.so.6")
    if not lib.exists() or shutil.which("nm") is None:
        pytest.skip("no 32-bit libc (/lib32/libc.so.6) or no nm to check it against")
    elf = ElfSymbols.load(str(lib))
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True)
    qsort = next(int(ln.split()[0], 16) for ln in out.stdout.splitlines() if " T qsort@" in ln)
    found = elf.lookup(qsort + 1)
    assert found is not None and found[0] == "qsort"


def fake_process(
    root: Path, pid: int, maps: str, *, ns_pid: int, start_time: int = 99, uid: int | None = None
) -> None:
    """A /proc/PID directory with what the symbolizer reads (``uid``: ours by default)."""
    proc = root / str(pid)
    (proc / "root").mkdir(parents=True, exist_ok=True)
    (proc / "maps").write_text(maps)
    fields = ["S"] + ["0"] * 18 + [str(start_time)] + ["0"] * 10
    (proc / "stat").write_text(f"{pid} (fake (app)) {' '.join(fields)}\n")
    uid = os.getuid() if uid is None else uid
    (proc / "status").write_text(
        f"Name:\tfake\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpid:\t{pid}\t{ns_pid}\n"
    )


def test_jit_maps_refresh_and_namespaced_perf_map(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: this test builds a binary")
    src = tmp_path / "p.c"
    src.write_text("int aperture_gamma(int x) { return x + 1; }\nint main(void) { return 0; }\n")
    procfs = tmp_path / "proc"
    binary = procfs / "4242" / "root" / "bin" / "prog"
    binary.parent.mkdir(parents=True)
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", str(binary), str(src)], check=True)
    out = subprocess.run(["nm", str(binary)], check=True, capture_output=True, text=True).stdout
    gamma = next(
        int(ln.split()[0], 16) for ln in out.splitlines() if ln.endswith(" aperture_gamma")
    )
    anon = "70000000-70010000 rwxp 00000000 00:00 0\n"
    fake_process(procfs, 4242, anon, ns_pid=7)
    perf_map = procfs / "4242" / "root" / "tmp" / "perf-7.map"  # named by the in-namespace pid
    perf_map.parent.mkdir()
    perf_map.write_text("70000000 40 JS:*hot\n")

    now = [0.0]
    sym = Symbolizer(proc_root=str(procfs), clock=lambda: now[0], maps_refresh_interval=10)
    assert sym.user_frames(4242, [0x70000010]) == [
        Frame("JS:*hot", "[jit]", FrameKind.JIT, 0x70000010)
    ]
    assert sym.user_frames(4242, [0x70000100])[0].name == "[jit]+0x70000100"
    assert sym.user_frames(4242, [gamma])[0].name == "[unknown]"

    # The program dlopen()s: the snapshot is refreshed on a miss, at most every 10 s.
    inode = binary.stat().st_ino
    (procfs / "4242" / "maps").write_text(
        f"00400000-00500000 r-xp 00000000 00:00 {inode} /bin/prog\n" + anon
    )
    assert sym.user_frames(4242, [gamma])[0].name == "[unknown]"
    now[0] = 11.0
    assert sym.user_frames(4242, [gamma])[0] == Frame(
        "aperture_gamma", "prog", FrameKind.USER, gamma
    )

    # Same pid, another process (start time changed): the old snapshot is dropped.
    fake_process(procfs, 4242, anon, ns_pid=7, start_time=100)
    assert sym.remember(4242)
    assert sym.user_frames(4242, [gamma])[0].name == "[unknown]"


def test_perf_map_created_after_first_look(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    fake_process(procfs, 77, "70000000-70010000 rwxp 00000000 00:00 0\n", ns_pid=77)
    now = [0.0]
    sym = Symbolizer(proc_root=str(procfs), clock=lambda: now[0], maps_refresh_interval=10)
    assert sym.user_frames(77, [0x70000010])[0].name == "[jit]+0x70000010"
    perf_map = procfs / "77" / "root" / "tmp" / "perf-77.map"
    perf_map.parent.mkdir()
    perf_map.write_text("70000000 40 py::work:/app/w.py\n")
    assert sym.user_frames(77, [0x70000010])[0].name == "[jit]+0x70000010"  # not re-looked yet
    now[0] = 10.0
    assert sym.user_frames(77, [0x70000010])[0].name == "py::work:/app/w.py"
    assert sym.stats().user_resolved == 1 and sym.stats().user_unresolved == 2


def test_segment_arithmetic() -> None:
    elf = ElfSymbols(
        "lib.so",
        segments=[Segment(0, 0x400000, 0x1000), Segment(0x1CF8D0, 0x1D08D0, 0x200)],
        is_elf=True,
    )
    assert elf.vaddr(0x7F0000000010, 0x7F0000000000, 0) == 0x400010
    assert elf.offset_to_vaddr(0x1CF900) == 0x1D0900
    # The page holding an unaligned p_offset is mapped from its page boundary.
    assert elf.offset_to_vaddr(0x1CF000) == 0x1D0000
    assert elf.offset_to_vaddr(0x500000) is None


def test_build_id_from_program_headers_matches_the_section_headers() -> None:
    """file_build_id reads PT_NOTE from the first page (a few reads); the section headers,
    parsed whole by pyelftools, must name the same build-id for every binary tried."""
    from elftools.elf.elffile import ELFFile

    from aperture.agent.symbols.elf import _Elf, file_build_id

    libdir = Path(f"/usr/lib/{os.uname().machine}-linux-gnu")
    paths = [Path("/usr/bin/python3.11"), Path("/usr/bin/bash"), *sorted(libdir.glob("*.so*"))[:80]]
    checked = 0
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
            f.seek(0)
            slow = _Elf(ELFFile(f)).build_id()
        assert file_build_id(str(path)) == slow, path
        checked += slow is not None
    assert checked >= 20, f"only {checked} binaries with a build-id found"
