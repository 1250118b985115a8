"""Symbolization of real ELF binaries built here with gcc, in real processes.

Each workload prints the runtime addresses of its functions, then blocks on stdin
until the test closes it: no sleeping, and the test decides when it exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aperture.agent.symbols import ElfSymbols, ProcessMaps, Symbolizer
from aperture.agent.symbols.debuginfo import build_id_path
from aperture.model import FrameKind

PROGRAM = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int aperture_alpha(int x) { return x * 3 + 1; }
__attribute__((noinline)) int aperture_beta(int x) { return aperture_alpha(x) + 7; }
int main(void) {
    printf("%p %p\n", (void *)aperture_alpha, (void *)aperture_beta);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}  /* block until the test closes stdin */
    return aperture_beta(1) == 11 ? 0 : 1;
}
"""

CXX_PROGRAM = r"""
#include <cstdio>
#include <unistd.h>
namespace ns {
__attribute__((noinline)) int func(int x) { return x + 42; }
}
int main() {
    std::printf("%p %p\n", (void *)&ns::func, (void *)&ns::func);
    std::fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return ns::func(0) == 42 ? 0 : 1;
}
"""

JS_PROGRAM = r"""
function apertureHot(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s; }
for (let i = 0; i < 2000; i++) apertureHot(10000);
console.log("ready");
process.stdin.on("data", () => {}).on("end", () => process.exit(0));
"""


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed: this test builds or runs it")


def build(tmp: Path, *flags: str, source: str = PROGRAM, compiler: str = "gcc") -> Path:
    """Compile ``source`` with frame pointers into ``tmp/prog``."""
    _need(compiler)
    suffix = ".cc" if compiler == "g++" else ".c"
    src = tmp / f"prog{suffix}"
    src.write_text(source)
    out = tmp / "prog"
    cmd = [compiler, "-O1", "-g", "-fno-omit-frame-pointer", *flags, "-o", str(out), str(src)]
    subprocess.run(cmd, check=True)
    return out


def nm(path: Path) -> dict[str, tuple[int, int]]:
    """``{name: (value, size)}`` of the defined functions, from binutils' nm."""
    out = subprocess.run(
        ["nm", "-S", "--defined-only", str(path)], check=True, capture_output=True, text=True
    ).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return syms


def elf_type(path: Path) -> str:
    out = subprocess.run(["readelf", "-h", str(path)], check=True, capture_output=True, text=True)
    return next(line.split()[1] for line in out.stdout.splitlines() if "Type:" in line)


@contextmanager
def running(*argv: str | Path, ready: str | None = None) -> Iterator[tuple[int, list[int]]]:
    """Start a workload; yield its pid and the addresses on its first line."""
    proc = subprocess.Popen(
        [str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        addrs = [] if ready else [int(word, 16) for word in line.split()]
        yield proc.pid, addrs
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("flags", "etype"), [(("-no-pie",), "EXEC"), (("-fPIE", "-pie"), "DYN")])
def test_live_process_functions_resolve(tmp_path: Path, flags: tuple[str, ...], etype: str) -> None:
    prog = build(tmp_path, *flags)
    assert elf_type(prog) == etype
    syms = nm(prog)
    alpha_vaddr, alpha_size = syms["aperture_alpha"]
    with running(prog) as (pid, (alpha, beta)):
        sym = Symbolizer(debug_dirs=[str(tmp_path / "none")])
        assert sym.remember(pid)
        # Leaf first; the return address just past aperture_alpha's last byte is a
        # caller frame, looked up at addr - 1, so it still names aperture_alpha.
        frames = sym.user_frames(pid, [alpha, beta + 1, alpha + alpha_size])
    assert [f.name for f in frames] == ["aperture_alpha", "aperture_beta", "aperture_alpha"]
    assert {f.module for f in frames} == {"prog"}
    assert {f.kind for f in frames} == {FrameKind.USER}
    assert frames[0].offset == alpha_vaddr
    assert frames[1].offset == syms["aperture_beta"][0] + 1
    assert frames[2].offset == alpha_vaddr + alpha_size
    if etype == "DYN":
        assert alpha != alpha_vaddr  # really relocated: the mapping arithmetic mattered
    assert sym.stats().user_resolved == 3


def test_leaf_address_is_not_adjusted(tmp_path: Path) -> None:
    prog = build(tmp_path, "-no-pie")
    alpha_size = nm(prog)["aperture_alpha"][1]
    with running(prog) as (pid, (alpha, _)):
        end = alpha + alpha_size
        leaf, caller = Symbolizer().user_frames(pid, [end, end])
    assert caller.name == "aperture_alpha"
    assert leaf.name != "aperture_alpha"


def strip_with_debuglink(prog: Path, debug: Path) -> None:
    """The Debian way: keep the debug info aside, strip, link the two by name + CRC."""
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", str(prog)], check=True)
    subprocess.run(
        ["objcopy", f"--add-gnu-debuglink={debug}", str(prog)], check=True, cwd=debug.parent
    )


def test_stripped_binary_resolves_through_debuglink(tmp_path: Path) -> None:
    prog = build(tmp_path, "-fPIE", "-pie", "-Wl,--build-id=none")
    syms = nm(prog)
    debug_dir = tmp_path / ".debug"
    debug_dir.mkdir()
    strip_with_debuglink(prog, debug_dir / "prog.debug")
    assert "aperture_alpha" not in nm(prog)  # really stripped
    alpha = syms["aperture_alpha"][0]

    elf = ElfSymbols.load(str(prog), debug_dirs=[str(tmp_path / "none")])
    assert elf.debug_file == str(debug_dir / "prog.debug")
    assert elf.lookup(alpha + 2) == ("aperture_alpha", alpha)

    # Without the debug file the function is gone: the lookup above was not luck.
    (debug_dir / "prog.debug").rename(tmp_path / "elsewhere.debug")
    bare = ElfSymbols.load(str(prog), debug_dirs=[str(tmp_path / "none")])
    assert bare.debug_file is None
    assert bare.lookup(alpha + 2) is None


def test_debuglink_with_wrong_crc_is_ignored(tmp_path: Path) -> None:
    prog = build(tmp_path, "-Wl,--build-id=none")
    debug = tmp_path / "prog.debug"
    strip_with_debuglink(prog, debug)
    with debug.open("ab") as f:
        f.write(b"\0")  # any change breaks the CRC gdb (and we) check
    elf = ElfSymbols.load(str(prog), debug_dirs=[str(tmp_path / "none")])
    assert elf.debug_file is None
    assert elf.lookup(nm_before_strip(tmp_path)["aperture_alpha"][0]) is None


def nm_before_strip(tmp: Path) -> dict[str, tuple[int, int]]:
    twin = tmp / "twin"
    twin.mkdir()
    return nm(build(twin, "-Wl,--build-id=none"))


def test_build_id_debug_file_in_injected_root(tmp_path: Path) -> None:
    prog = build(tmp_path, "-fPIE", "-pie", "-Wl,--build-id=sha1")
    syms = nm(prog)
    root = tmp_path / "debugroot"
    debug = tmp_path / "prog.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", str(prog)], check=True)
    build_id = ElfSymbols.load(str(prog)).build_id
    assert build_id is not None and len(build_id) == 40
    target = Path(build_id_path(str(root), build_id))
    target.parent.mkdir(parents=True)
    debug.rename(target)

    with running(prog) as (pid, (alpha, beta)):
        sym = Symbolizer(debug_dirs=[str(root)])
        frames = sym.user_frames(pid, [alpha + 1, beta + 1])
        without = Symbolizer(debug_dirs=[str(tmp_path / "none")]).user_frames(pid, [alpha + 1])
    assert [f.name for f in frames] == ["aperture_alpha", "aperture_beta"]
    assert frames[0].offset == syms["aperture_alpha"][0] + 1
    # Unresolved frames are module+0xoffset with the ELF-relative offset.
    vaddr = syms["aperture_alpha"][0] + 1
    assert without[0].name == f"prog+0x{vaddr:x}"
    assert (without[0].module, without[0].offset, without[0].kind) == ("prog", vaddr, "user")


def test_unknown_addresses_and_processes(tmp_path: Path) -> None:
    prog = build(tmp_path)
    with running(prog) as (pid, _):
        sym = Symbolizer()
        frames = sym.user_frames(pid, [0x10, 0xDEAD])
    assert [(f.name, f.module, f.kind) for f in frames] == [
        ("[unknown]", "[unknown]", "unknown")
    ] * 2
    dead = Symbolizer(proc_root=str(tmp_path / "noproc")).user_frames(4242, [0x401000])
    assert dead[0].name == "[unknown]"
    assert sym.stats().user_unknown == 2
    assert sym.stats().unresolved_fraction == 1.0


def test_short_lived_process_resolves_after_exit(tmp_path: Path) -> None:
    prog = build(tmp_path, "-fPIE", "-pie")
    proc = subprocess.Popen([str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    alpha, beta = (int(w, 16) for w in proc.stdout.readline().split())
    sym = Symbolizer()
    assert sym.remember(proc.pid)
    stop(proc)
    assert proc.returncode == 0
    prog.unlink()  # gone from disk too: only what remember() kept can answer
    assert not Path(f"/proc/{proc.pid}/maps").exists()
    frames = sym.user_frames(proc.pid, [alpha, beta + 1])
    assert [f.name for f in frames] == ["aperture_alpha", "aperture_beta"]
    assert sym.remember(proc.pid)  # a gone process keeps its snapshot
    # An exiting process's maps are empty (its memory released): they do not
    # replace what was snapshotted while it ran.
    assert sym.keep(proc.pid, ProcessMaps(proc.pid, []))
    assert [f.name for f in sym.user_frames(proc.pid, [alpha])] == ["aperture_alpha"]
    sym.forget(proc.pid)
    assert sym.user_frames(proc.pid, [alpha])[0].name == "[unknown]"


def test_exited_processes_are_forgotten_one_sweep_after_they_are_found_gone(
    tmp_path: Path,
) -> None:
    prog = build(tmp_path)
    sym = Symbolizer()
    with running(prog) as (alive, (alpha_alive, _)):
        gone_proc = subprocess.Popen(
            [str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert gone_proc.stdout is not None
        alpha_gone = int(gone_proc.stdout.readline().split()[0], 16)
        assert sym.remember(alive) and sym.remember(gone_proc.pid)
        stop(gone_proc)
        assert not Path(f"/proc/{gone_proc.pid}").exists()
        # Found gone: its samples in the windows still open resolve until the next sweep.
        assert sym.sweep_exited() == 0
        assert sym.user_frames(gone_proc.pid, [alpha_gone])[0].name == "aperture_alpha"
        assert sym.sweep_exited() == 1
        assert sym.stats().processes == 1
        assert sym.user_frames(gone_proc.pid, [alpha_gone])[0].name == "[unknown]"
        assert sym.user_frames(alive, [alpha_alive])[0].name == "aperture_alpha"
        assert sym.sweep_exited() == 0  # the live one stays


def test_a_pid_seen_again_after_it_was_found_gone_keeps_its_new_snapshot(
    tmp_path: Path,
) -> None:
    prog = build(tmp_path)
    sym = Symbolizer()
    with running(prog) as (pid, (alpha, _)):
        maps = ProcessMaps.read(pid)
        assert maps is not None
    sym.keep(pid, maps)
    sym.sweep_exited()  # gone: marked
    sym.keep(pid, ProcessMaps(pid, list(maps.mappings), start_time=maps.start_time + 1))
    assert sym.sweep_exited() == 0  # a new process under the old pid (reuse)
    assert sym.user_frames(pid, [alpha])[0].name == "aperture_alpha"


def test_processes_kept_are_bounded(tmp_path: Path) -> None:
    prog = build(tmp_path)
    sym = Symbolizer(max_processes=1)
    with running(prog) as (first, (alpha1, _)), running(prog) as (second, (alpha2, _)):
        sym.remember(first)
        loaded = sym.stats().files_loaded
        # the executable now; libc and the loader stay on disk, so they load lazily
        assert loaded >= 1
        sym.remember(second)
        assert sym.stats().processes == 1
        assert sym.stats().files_loaded == loaded  # files are shared, not loaded twice
    # The first was evicted and has exited: nothing left to resolve it with.
    assert sym.user_frames(first, [alpha1])[0].name == "[unknown]"
    assert sym.user_frames(second, [alpha2])[0].name == "aperture_alpha"


LIB_PROGRAM = r"""
#include <stdio.h>
#include <unistd.h>
int aperture_lib_fn(int x);
int main(void) {
    printf("%p\n", (void *)aperture_lib_fn);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return aperture_lib_fn(1) == 2 ? 0 : 1;
}
"""


def _build_lib(tmp: Path, name: str, out: Path) -> None:
    """A one-function shared library whose function is called ``name``; with
    ``aperture_lib_fn`` as an alias, so the program links against either build."""
    src = tmp / f"{name}.c"
    src.write_text(
        f"__attribute__((noinline)) int {name}(int x) {{ return x + 1; }}\n"
        f'int aperture_lib_fn(int x) __attribute__((alias("{name}")));\n'
    )
    tmp_out = out.with_suffix(".new")
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(tmp_out), str(src)], check=True)
    tmp_out.replace(out)  # a new file (new inode) at the path, as a package upgrade does


def test_a_library_replaced_after_it_was_found_on_disk_never_misnames_a_frame(
    tmp_path: Path,
) -> None:
    """A library found at its path is not read while the process runs (it can be read
    later); that verdict is remembered for a few seconds per file. A library
    replaced in those seconds leaves the frames of a process that mapped the old
    one unnamed, never named from the new file; once the verdict has expired, the
    old file is read while the process lives."""
    _need("gcc")
    lib = tmp_path / "libaperture_t.so"
    _build_lib(tmp_path, "aperture_old_fn", lib)
    (tmp_path / "prog.c").write_text(LIB_PROGRAM)
    prog = tmp_path / "prog"
    link = [f"-L{tmp_path}", "-laperture_t", f"-Wl,-rpath,{tmp_path}"]
    subprocess.run(["gcc", "-O1", "-o", str(prog), str(tmp_path / "prog.c"), *link], check=True)
    now = [0.0]
    sym = Symbolizer(clock=lambda: now[0])
    with running(prog) as (third, (fn3,)):
        with running(prog) as (first, _), running(prog) as (second, (fn2,)):
            assert sym.remember(first)  # the library is on disk: found there, not read
            _build_lib(tmp_path, "aperture_new_fn", lib)
            assert sym.remember(second)  # within the verdict's life: not looked at again
        # Gone, and the path names the new library: the old one is out of reach.
        unnamed = sym.user_frames(second, [fn2])[0].name
        assert unnamed.startswith(f"{lib.name}+0x"), unnamed  # unnamed, not misnamed
        now[0] += 60.0
        assert sym.remember(third)  # expired: looked at again, the old file read now
    assert sym.user_frames(third, [fn3])[0].name == "aperture_old_fn"


def test_cxx_names_are_demangled(tmp_path: Path) -> None:
    prog = build(tmp_path, source=CXX_PROGRAM, compiler="g++")
    with running(prog) as (pid, (func, _)):
        frame = Symbolizer().user_frames(pid, [func + 1])[0]
    assert frame.name == "ns::func(int)"


def test_libc_resolves_with_its_debug_file(tmp_path: Path) -> None:
    prog = build(tmp_path)
    with running(prog) as (pid, _):
        maps = ProcessMaps.read(pid)
        assert maps is not None
        libc = next(m for m in maps.mappings if os.path.basename(m.path) == "libc.so.6")
        if ElfSymbols.load(libc.path).debug_file is None:
            pytest.skip("libc has no debug file here (Debian: apt install libc6-dbg)")
        dynamic = subprocess.run(
            ["nm", "-D", "--defined-only", libc.path], check=True, capture_output=True, text=True
        ).stdout
        exported = {
            ln.split()[2]: int(ln.split()[0], 16) for ln in dynamic.splitlines() if "@@" in ln
        }
        # libc's file offsets equal its vaddrs. malloc has aliases (__libc_malloc,
        # __malloc): the plain name wins, as in perf.
        base = libc.start - libc.pgoff
        qsort, malloc = (
            base + exported["qsort@@GLIBC_2.2.5"],
            base + exported["malloc@@GLIBC_2.2.5"],
        )
        frames = Symbolizer().user_frames(pid, [qsort, qsort + 5, malloc + 1])
    assert [f.name for f in frames] == ["qsort", "qsort", "malloc"]
    assert frames[0].module == "libc.so.6"


def test_node_jit_frames_come_from_its_perf_map(tmp_path: Path) -> None:
    _need("node")
    script = tmp_path / "hot.js"
    script.write_text(JS_PROGRAM)
    with running("node", "--perf-basic-prof", script, ready="ready") as (pid, _):
        perf_map = Path(f"/tmp/perf-{pid}.map")
        try:
            lines = perf_map.read_text().splitlines()
            start, size, name = next(
                (int(a, 16), int(b, 16), n)
                for a, b, n in (ln.split(maxsplit=2) for ln in lines)
                if n.startswith("JS:*apertureHot")  # optimized machine code, not bytecode
            )
            frames = Symbolizer().user_frames(pid, [start + size // 2])
        finally:
            perf_map.unlink(missing_ok=True)
    assert frames[0].name == name
    assert (frames[0].module, frames[0].kind) == ("[jit]", FrameKind.JIT)


ASM_LABELS = r"""
__asm__(
    ".text\n"
    ".globl aperture_outer\n.type aperture_outer, @function\naperture_outer:\n nop\n nop\n"
    ".globl aperture_in1\n.type aperture_in1, @function\naperture_in1:\n nop\n nop\n"
    ".globl aperture_in2\n.type aperture_in2, @function\naperture_in2:\n nop\n ret\n"
    ".size aperture_outer, .-aperture_outer\n"
);
int main(void) { return 0; }
"""


def test_zero_size_symbols_are_rejected(tmp_path: Path) -> None:
    # Unsized FUNC labels inside a sized function (hand-written assembly) must not
    # hide the function that contains them.
    prog = build(tmp_path, "-no-pie", source=ASM_LABELS)
    out = subprocess.run(["nm", str(prog)], check=True, capture_output=True, text=True).stdout
    addr = {ln.split()[2]: int(ln.split()[0], 16) for ln in out.splitlines() if "aperture_" in ln}
    elf = ElfSymbols.load(str(prog))
    assert elf.lookup(addr["aperture_in2"] + 1) == ("aperture_outer", addr["aperture_outer"])
    assert elf.lookup(addr["aperture_in1"]) == ("aperture_outer", addr["aperture_outer"])
