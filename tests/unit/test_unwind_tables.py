"""The x86_64 unwind-table builder, against readelf's interpreted CFI as the reference."""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from aperture.agent.unwind.tables import (
    CFA_NONE,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    CFA_SIGNAL,
    CFA_STOP,
    CFA_UNSUPPORTED,
    RBP_OFFSET,
    RBP_UNCHANGED,
    RBP_UNDEFINED,
    ROW_FORMAT,
    ROW_SIZE,
    Row,
    UnwindTable,
    build_table,
    build_table_from_bytes,
    unwind_step,
)

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
PYTHON = "/usr/bin/python3.11"

READELF = shutil.which("readelf")
needs_readelf = pytest.mark.skipif(READELF is None, reason="readelf (binutils) is not installed")


# --- readelf reference ----------------------------------------------------------------


@dataclass
class RefFde:
    begin: int
    end: int
    signal: bool
    rows: list[tuple[int, dict[str, str]]]  # (pc, column -> rule), from readelf


_HEAD = re.compile(r"^([0-9a-f]{8,16}) [0-9a-f]+ ([0-9a-f]+) (CIE|FDE)(.*)$")
_FDE_TAIL = re.compile(r" cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")
_TOKEN = re.compile(r"r\d+ \([a-z0-9]+\)|\S+")


def readelf_fdes(path: str) -> list[RefFde]:
    """FDEs of ``readelf --debug-dump=frames-interp``, each with its interpreted rows."""
    out = subprocess.run(
        [str(READELF), "--debug-dump=frames-interp", path],
        capture_output=True,
        text=True,
    ).stdout  # readelf exits 1 on some libraries after printing everything
    assert "FDE" in out, f"readelf printed no FDEs for {path}"
    cie_aug: dict[int, str] = {}
    cie_rows: dict[int, list[tuple[int, dict[str, str]]]] = {}
    fdes: list[RefFde] = []
    columns: list[str] = []
    rows: list[tuple[int, dict[str, str]]] = []
    current: tuple[str, int, RefFde | None] | None = None

    def close() -> None:
        if current is None:
            return
        kind, offset, fde = current
        if kind == "CIE":
            cie_rows[offset] = list(rows)
        elif fde is not None and rows:  # else it keeps its CIE's rows
            fde.rows = list(rows)

    for line in out.splitlines():
        head = _HEAD.match(line)
        if head:
            close()
            rows = []
            offset = int(head.group(1), 16)
            if head.group(3) == "CIE":
                aug = re.search(r'"([^"]*)"', head.group(4))
                cie_aug[offset] = aug.group(1) if aug else ""
                current = ("CIE", offset, None)
            else:
                tail = _FDE_TAIL.search(head.group(4))
                assert tail, line
                cie = int(tail.group(1), 16)
                fde = RefFde(
                    int(tail.group(2), 16), int(tail.group(3), 16), "S" in cie_aug[cie], []
                )
                fde.rows = cie_rows.get(cie, [])  # an FDE without instructions has none
                fdes.append(fde)
                current = ("FDE", offset, fde)
            continue
        stripped = line.strip()
        if stripped.startswith("LOC"):
            columns = stripped.split()[1:]
            continue
        if re.match(r"^[0-9a-f]{16} ", line):
            tokens = _TOKEN.findall(line)
            rows.append((int(tokens[0], 16), dict(zip(columns, tokens[1:], strict=False))))
    close()
    for fde in fdes:  # CIE rows apply at the FDE's start
        if fde.rows and fde.rows[0][0] != fde.begin:
            fde.rows = [(fde.begin, fde.rows[-1][1])]
    return fdes


def plt_ranges(path: str) -> list[tuple[int, int]]:
    out = subprocess.run(
        [str(READELF), "-S", "-W", path], capture_output=True, text=True, check=True
    ).stdout
    ranges = []
    for m in re.finditer(r"\] (\.plt\S*)\s+\S+\s+([0-9a-f]+) [0-9a-f]+ ([0-9a-f]+)", out):
        start = int(m.group(2), 16)
        ranges.append((start, start + int(m.group(3), 16)))
    return ranges


def expected(rule: dict[str, str], in_plt: bool) -> tuple[int, int, int, int]:
    """(cfa_type, rbp_type, cfa_offset, rbp_offset) that a readelf row maps to."""
    unsupported = (CFA_UNSUPPORTED, RBP_UNCHANGED, 0, 0)
    ra = rule.get("ra", "u")
    if ra == "u":
        return (CFA_STOP, RBP_UNCHANGED, 0, 0)
    if ra != "c-8":
        return unsupported
    cfa = rule["CFA"]
    m = re.fullmatch(r"(rsp|rbp)\+(-?\d+)", cfa)
    if m:
        cfa_type, cfa_off = (CFA_RSP if m.group(1) == "rsp" else CFA_RBP), int(m.group(2))
        if not -0x8000 <= cfa_off < 0x8000:
            return unsupported
    elif cfa == "exp" and in_plt:
        cfa_type, cfa_off = CFA_PLT, -1  # threshold checked separately
    else:
        return unsupported
    rbp = rule.get("rbp", "u")
    if rbp in ("u", "s"):
        return (cfa_type, RBP_UNCHANGED, cfa_off, 0)
    m = re.fullmatch(r"c([+-]\d+)", rbp)
    if m:
        off = int(m.group(1))
        if not -0x8000 <= off < 0x8000:
            return unsupported
        return (cfa_type, RBP_OFFSET, cfa_off, off)
    return (cfa_type, RBP_UNDEFINED, cfa_off, 0)


def compare(path: str) -> dict[str, int]:
    table = build_table(path)
    assert table.reason == "", table.reason
    fdes = sorted((f for f in readelf_fdes(path) if f.end > f.begin), key=lambda f: f.begin)
    plt = plt_ranges(path)
    rng = random.Random(1234)
    stats = dict.fromkeys(
        ("checked", "supported", "agree", "unsupported", "gaps", "overlapping", "signal", "plt"), 0
    )
    mismatches = []
    for i, fde in enumerate(fdes):
        nxt = fdes[i + 1].begin if i + 1 < len(fdes) else None
        if (i and fdes[i - 1].end > fde.begin) or (nxt is not None and nxt < fde.end):
            stats["overlapping"] += 1
            continue  # overlapping FDEs: resolved by a documented rule, not readelf's
        for j, (pc, rule) in enumerate(fde.rows):
            stop = fde.rows[j + 1][0] if j + 1 < len(fde.rows) else fde.end
            if pc >= fde.end:
                continue
            samples = {pc, stop - 1, rng.randrange(pc, stop)}
            in_plt = any(lo <= pc < hi for lo, hi in plt)
            want = (CFA_SIGNAL, RBP_UNCHANGED, 0, 0) if fde.signal else expected(rule, in_plt)
            for addr in samples:
                got = table.lookup(addr)
                assert got is not None
                stats["checked"] += 1
                have = (got.cfa_type, got.rbp_type, got.cfa_offset, got.rbp_offset)
                if want[0] == CFA_PLT:
                    ok = got.cfa_type == CFA_PLT and 0 < got.cfa_offset < 16
                    ok = ok and have[1:2] + have[3:] == want[1:2] + want[3:]
                else:
                    ok = have == want
                stats["signal"] += want[0] == CFA_SIGNAL
                stats["plt"] += want[0] == CFA_PLT
                if want[0] == CFA_UNSUPPORTED:
                    stats["unsupported"] += 1
                else:
                    stats["supported"] += 1
                stats["agree"] += ok
                assert got.ra_offset == 0
                if not ok:
                    mismatches.append((hex(addr), rule, want, have))
        if nxt != fde.end:
            got = table.lookup(fde.end)
            stats["gaps"] += 1
            if got is None or got.cfa_type != CFA_NONE:
                mismatches.append((hex(fde.end), "gap", CFA_NONE, got))
    assert not mismatches, mismatches[:20]
    return stats


@needs_readelf
@pytest.mark.parametrize("path", [LIBC, PYTHON])
def test_agrees_with_readelf(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} is not on this machine")
    stats = compare(path)
    assert stats["agree"] == stats["checked"] > 1000
    assert stats["plt"] > 0
    if path == LIBC:
        assert stats["signal"] > 0  # __restore_rt
    print(path, stats)


# --- synthetic binaries ---------------------------------------------------------------

C_SOURCE = r"""
#include <stdio.h>
__attribute__((noinline)) long leaf(long x) { return x * 3 + 1; }
__attribute__((noinline)) long big(long n) {
    volatile char buf[4096];
    for (long i = 0; i < n && i < 4096; i++) buf[i] = (char)i;
    return buf[n % 4096] + leaf(n);
}
__attribute__((noinline)) long framed(long n) {
    char *p = __builtin_alloca(n + 16);
    for (long i = 0; i < n + 16; i++) p[i] = (char)i;
    return big(p[n]) + p[n + 3];
}
int main(int argc, char **argv) {
    (void)argv;
    printf("%ld\n", framed(argc) + leaf(argc));
    return 0;
}
"""


def compile_c(tmp: Path, compiler: str, name: str) -> Path:
    src = tmp / "prog.c"
    src.write_text(C_SOURCE)
    out = tmp / name
    subprocess.run(
        [compiler, "-O2", "-fomit-frame-pointer", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return out


def symbols(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            syms[parts[2]] = int(parts[0], 16)
    return syms


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_compiled_program(tmp_path: Path, compiler: str) -> None:
    if shutil.which(compiler) is None or shutil.which("nm") is None:
        pytest.skip(f"{compiler} or nm is not installed")
    binary = compile_c(tmp_path, compiler, f"prog-{compiler}")
    table = build_table(str(binary))
    assert table.reason == "" and table.fde_errors == 0 and table.sources == (".eh_frame",)
    syms = symbols(binary)
    for name in ("leaf", "big", "framed", "main"):
        row = table.lookup(syms[name])
        assert row is not None, name  # (its row may begin in the function before)
        assert row.cfa_type == CFA_RSP and row.cfa_offset == 8, (name, row)
    # alloca makes framed() switch its CFA to rbp at some point
    rows = [table.row(i) for i in range(len(table))]
    framed_end = min(a for a in syms.values() if a > syms["framed"])
    assert any(
        r.cfa_type == CFA_RBP and r.rbp_type == RBP_OFFSET
        for r in rows
        if syms["framed"] <= r.pc < framed_end
    )
    # big()'s 4 KiB buffer: some row with a CFA beyond the frame
    assert any(r.cfa_type == CFA_RSP and r.cfa_offset > 4096 for r in rows)
    start = table.lookup(syms["_start"])
    assert start is not None and start.cfa_type == CFA_STOP
    assert any(r.cfa_type == CFA_NONE for r in rows)
    assert rows[-1].cfa_type == CFA_NONE
    assert [r.pc for r in rows] == sorted({r.pc for r in rows})
    # consecutive rows always differ (merged)
    keys = [r[1:] for r in rows]
    assert all(a != b for a, b in itertools.pairwise(keys))
    # the PLT stub rule, where the binary has a lazy-binding .plt with CFI
    for r in rows:
        if r.cfa_type == CFA_PLT:
            assert r.cfa_offset in (10, 11)


DEBUG_FRAME_SOURCE = r"""
__attribute__((noinline)) long leaf(long x) { return x * 3 + 1; }
__attribute__((noinline)) long twice(long x) {
    volatile long a[64];
    a[x & 63] = x;
    return leaf(a[1]) + leaf(x);
}
int main(int argc, char **argv) { (void)argv; return (int)twice(argc); }
"""


@needs_readelf
def test_debug_frame(tmp_path: Path) -> None:
    """Code without .eh_frame CFI: rows come from .debug_frame, in the file or its debug file."""
    if shutil.which("gcc") is None or shutil.which("objcopy") is None:
        pytest.skip("gcc or objcopy is not installed")
    src = tmp_path / "d.c"
    src.write_text(DEBUG_FRAME_SOURCE)
    binary = tmp_path / "d"
    flags = ["-O2", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]
    subprocess.run(["gcc", *flags, "-o", str(binary), str(src)], check=True)
    syms = symbols(binary)
    # .eh_frame holds only the C runtime's FDEs (_start); main and leaf are in .debug_frame
    table = build_table(str(binary), debug_dirs=[])
    assert table.sources == (".eh_frame", ".debug_frame")
    stats = compare(str(binary))
    assert stats["agree"] == stats["checked"] > 10
    for name in ("leaf", "twice", "main"):
        row = table.lookup(syms[name])
        assert row is not None and row.cfa_type == CFA_RSP and row.cfa_offset == 8, name
    assert any(table.row(i).cfa_offset > 64 * 8 for i in range(len(table)))

    # stripped, with the debug file found by build-id under a debug dir
    stripped = tmp_path / "d.stripped"
    debug_dir = tmp_path / "debug"
    subprocess.run(
        ["objcopy", "--only-keep-debug", str(binary), str(tmp_path / "d.dbg")], check=True
    )
    subprocess.run(["objcopy", "--strip-debug", str(binary), str(stripped)], check=True)
    build_id = build_table(str(stripped), debug_dirs=[]).build_id
    assert build_id
    target = debug_dir / ".build-id" / build_id[:2] / (build_id[2:] + ".debug")
    target.parent.mkdir(parents=True)
    shutil.copy(tmp_path / "d.dbg", target)
    without = build_table(str(stripped), debug_dirs=[])
    assert without.sources == (".eh_frame",)
    none = without.lookup(syms["main"])
    assert none is not None and none.cfa_type == CFA_NONE
    found = build_table(str(stripped), debug_dirs=[str(debug_dir)])
    assert found.sources == (".eh_frame", ".debug_frame")
    assert found.rows == table.rows


def reference_rows(path: str, table: UnwindTable) -> list[tuple[int, ...]]:
    """The rows a table of ``path`` should hold, the plain way: every FDE readelf prints,
    sorted and cut not to overlap, each readelf row mapped by :func:`expected`, equal
    neighbours merged and NONE rows over the gaps. (Only the PLT threshold, which
    readelf prints as "exp", is taken from ``table``.)
    """
    plt = plt_ranges(path)
    fdes: list[RefFde] = []
    for fde in sorted((f for f in readelf_fdes(path) if f.end > f.begin), key=lambda f: f.begin):
        if fdes and fde.begin == fdes[-1].begin:
            continue  # the first in the section wins
        if fdes and fde.begin < fdes[-1].end:
            fdes[-1].end = fde.begin
        fdes.append(fde)
    rows: list[tuple[int, ...]] = []
    for i, fde in enumerate(fdes):
        for pc, rule in fde.rows:
            if pc >= fde.end:
                continue
            in_plt = any(lo <= pc < hi for lo, hi in plt)
            want = (CFA_SIGNAL, RBP_UNCHANGED, 0, 0) if fde.signal else expected(rule, in_plt)
            if want[0] == CFA_PLT:
                got = table.lookup(pc)
                assert got is not None and got.cfa_type == CFA_PLT and got.cfa_offset in (10, 11)
                want = (CFA_PLT, want[1], got.cfa_offset, want[3])
            if not rows or rows[-1][1:] != want:
                rows.append((pc, *want))
        if (i + 1 == len(fdes) or fdes[i + 1].begin != fde.end) and rows[-1][1] != CFA_NONE:
            rows.append((fde.end, CFA_NONE, RBP_UNCHANGED, 0, 0))
    return rows


@needs_readelf
@pytest.mark.parametrize("kind", ["gcc", "clang", "debug_frame", "libc"])
def test_rows_equal_reference(tmp_path: Path, kind: str) -> None:
    """Every row, not samples: the streamed table equals the plain reference exactly."""
    if kind == "libc":
        if not os.path.exists(LIBC):
            pytest.skip(f"{LIBC} is not on this machine")
        path = LIBC
    elif shutil.which("gcc" if kind == "debug_frame" else kind) is None:
        pytest.skip(f"{kind} is not installed")
    elif kind == "debug_frame":
        (tmp_path / "d.c").write_text(DEBUG_FRAME_SOURCE)
        path = str(tmp_path / "d")
        flags = ["-O2", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]
        subprocess.run(["gcc", *flags, "-o", path, str(tmp_path / "d.c")], check=True)
    else:
        path = str(compile_c(tmp_path, kind, f"prog-{kind}"))
    table = build_table(path, debug_dirs=[])
    assert table.reason == ""
    assert (".debug_frame" in table.sources) == (kind == "debug_frame")
    assert rows_of(table) == reference_rows(path, table)


def test_vdso() -> None:
    maps = Path("/proc/self/maps").read_text().splitlines()
    vdso = [line for line in maps if line.endswith("[vdso]")]
    if not vdso:
        pytest.skip("this process has no vDSO mapping")
    start, end = (int(x, 16) for x in vdso[0].split()[0].split("-"))
    with open("/proc/self/mem", "rb") as f:
        f.seek(start)
        image = f.read(end - start)
    table = build_table_from_bytes(image, "[vdso]")
    assert table.reason == "" and len(table) > 0 and table.fdes > 0
    assert table.sources == (".eh_frame",)


# --- bad input ------------------------------------------------------------------------


def test_bad_files(tmp_path: Path) -> None:
    cases = {
        "text": b"hello, this is not an ELF file\n" * 10,
        "empty": b"",
        "truncated": Path(LIBC).read_bytes()[:200] if os.path.exists(LIBC) else b"\x7fELF\2\1",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        table = build_table(str(path))
        assert len(table) == 0 and table.reason, name
    missing = build_table(str(tmp_path / "does-not-exist"))
    assert len(missing) == 0 and "cannot read" in missing.reason
    directory = build_table(str(tmp_path))
    assert len(directory) == 0 and directory.reason


def test_32_bit_and_other_machines(tmp_path: Path) -> None:
    header = bytearray(Path(LIBC).read_bytes()[:64])
    header[4] = 1  # ELFCLASS32
    assert "64-bit" in build_table_from_bytes(bytes(header), "x32").reason
    header[4] = 2
    struct.pack_into("<H", header, 18, 183)  # EM_AARCH64
    assert "x86_64" in build_table_from_bytes(bytes(header), "arm64").reason
    if shutil.which("gcc"):
        src = tmp_path / "m32.c"
        src.write_text("int main(void) { return 0; }\n")
        built = subprocess.run(
            ["gcc", "-m32", "-o", str(tmp_path / "m32"), str(src)], capture_output=True
        )
        if built.returncode == 0:
            table = build_table(str(tmp_path / "m32"))
            assert len(table) == 0 and "64-bit" in table.reason


def _section(path: Path, name: str) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True)
    m = re.search(rf"\] {re.escape(name)}\s+\S+\s+[0-9a-f]+ ([0-9a-f]+) ([0-9a-f]+)", out.stdout)
    assert m, out.stdout
    return int(m.group(1), 16), int(m.group(2), 16)


@needs_readelf
def test_scrambled_eh_frame(tmp_path: Path) -> None:
    if not os.path.exists(LIBC):
        pytest.skip("no libc to copy")
    offset, size = _section(Path(LIBC), ".eh_frame")
    data = bytearray(Path(LIBC).read_bytes())
    rng = random.Random(7)
    intact = build_table(LIBC)
    # a few flipped bytes: some FDEs fail to decode, the rest still give rows
    for _ in range(200):
        data[offset + rng.randrange(size)] = rng.randrange(256)
    table = build_table_from_bytes(bytes(data), "libc-flipped")
    assert table.fdes + table.fde_errors > 0
    assert len(table) > 0 or table.reason
    assert table.fdes <= intact.fdes
    # all random: no exception, zero rows or errors counted
    data[offset : offset + size] = rng.randbytes(size)
    path = tmp_path / "libc-random"
    path.write_bytes(data)
    table = build_table(str(path))
    assert len(table) == 0 or table.fde_errors > 0 or table.fdes < 20
    # truncated inside .eh_frame
    cut = build_table_from_bytes(bytes(data[: offset + size // 2]), "libc-cut")
    assert len(cut) == 0 and cut.reason


# --- serialization and the reference step ---------------------------------------------


def test_round_trip() -> None:
    table = build_table(LIBC)
    again = UnwindTable.from_bytes(table.to_bytes())
    assert again == table and again.rows == table.rows
    assert again.lookup(0x30000) == table.lookup(0x30000)
    for garbage in (b"", b"junk", b"APUW\x63\x00" + b"\0" * 20, table.to_bytes()[:-5]):
        with pytest.raises(ValueError):
            UnwindTable.from_bytes(garbage)
    assert struct.calcsize(ROW_FORMAT) == ROW_SIZE
    assert len(table.rows) == len(table) * ROW_SIZE


def test_lookup_edges() -> None:
    rows = b"".join(
        struct.pack(ROW_FORMAT, *r)
        for r in [
            (0x1000, CFA_RSP, 0, 8, 0, 0),
            (0x1004, CFA_RSP, 1, 16, -16, 0),
            (0x1010, 0, 0, 0, 0, 0),
        ]
    )
    table = UnwindTable(rows, None, "", 1, 0, 0, (".eh_frame",))
    assert table.lookup(0xFFF) is None
    assert table.lookup(0x1000) == Row(0x1000, CFA_RSP, 0, 8, 0, 0)
    assert table.lookup(0x1003) == table.row(0)
    assert table.lookup(0x1004) == table.row(1)
    assert table.lookup(0x9999) == table.row(2)
    with pytest.raises(IndexError):
        table.row(3)


def test_unwind_step() -> None:
    memory = {0x7000: 0x4444, 0x7008: 0x5555, 0x6FF0: 0x1234}

    def read(addr: int) -> int | None:
        return memory.get(addr)

    regs = {"rip": 0x1000, "rsp": 0x6FF8, "rbp": 0x99}
    # CFA = rsp+16 = 0x7008; RA at 0x7000; rbp saved at CFA-24 = 0x6FF0
    row = Row(0x1000, CFA_RSP, RBP_OFFSET, 16, -24, 0)
    assert unwind_step(row, regs, read) == {"rip": 0x4444, "rsp": 0x7008, "rbp": 0x1234}
    row = Row(0x1000, CFA_RBP, RBP_UNCHANGED, 0x7008 - 0x99, 0, 0)
    assert unwind_step(row, regs, read) == {"rip": 0x4444, "rsp": 0x7008, "rbp": 0x99}
    # PLT: (rip & 15) = 0 < 11 -> CFA = rsp + 8
    plt = Row(0x1000, CFA_PLT, RBP_UNCHANGED, 11, 0, 0)
    assert unwind_step(plt, {"rip": 0x1000, "rsp": 0x7000, "rbp": 1}, read) == {
        "rip": 0x4444,
        "rsp": 0x7008,
        "rbp": 1,
    }
    assert unwind_step(plt, {"rip": 0x100B, "rsp": 0x6FF8, "rbp": 1}, read)["rsp"] == 0x7008  # type: ignore[index]
    undefined = Row(0x1000, CFA_RSP, RBP_UNDEFINED, 16, 0, 0)
    assert unwind_step(undefined, regs, read) == {"rip": 0x4444, "rsp": 0x7008}
    for kind in (CFA_NONE, CFA_STOP, CFA_UNSUPPORTED):
        assert unwind_step(Row(0, kind, 0, 0, 0, 0), regs, read) is None
    assert unwind_step(Row(0, CFA_RSP, 0, 0x100, 0, 0), regs, read) is None  # failed read
    sig = {0x8000 + 40 + 80: 0xB, 0x8000 + 40 + 120: 0xC, 0x8000 + 40 + 128: 0xD}
    step = unwind_step(Row(0, CFA_SIGNAL, 0, 0, 0, 0), {"rip": 1, "rsp": 0x8000}, sig.get)
    assert step == {"rip": 0xD, "rsp": 0xC, "rbp": 0xB}


# --- hand-made .eh_frame ------------------------------------------------------------

EH_ADDR = 0x2000
CIE_INSTR = b"\x0c\x07\x08\x90\x01"  # def_cfa rsp+8; offset rip at cfa-8


def eh_frame(
    fdes: list[tuple[int, int, bytes]], aug: bytes = b"zR", eh_addr: int = EH_ADDR
) -> bytes:
    """One CIE (pcrel sdata4 FDE pointers) and FDEs ``(begin, size, instructions)``."""
    cie = b"\0\0\0\0\x01" + aug + b"\0\x01\x78\x10\x01\x1b" + CIE_INSTR
    out = bytearray(struct.pack("<I", len(cie)) + cie)
    for begin, size, instructions in fdes:
        at = len(out)
        field = eh_addr + at + 8  # address of the initial_location field
        body = struct.pack("<IiI", at + 4, begin - field, size) + b"\0" + instructions
        out += struct.pack("<I", len(body)) + body
    return bytes(out + b"\0\0\0\0")


def tiny_elf(eh: bytes, text: tuple[int, int] = (0x1000, 0x1000), eh_addr: int = EH_ADDR) -> bytes:
    names = b"\0.eh_frame\0.text\0.shstrtab\0"
    shoff = 64 + len(eh) + len(names)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 4, 3)
    sections = [
        (0, 0, 0, 0, 0, 0),
        (1, 1, 2, eh_addr, 64, len(eh)),
        (11, 1, 6, text[0], 0, text[1]),
        (17, 3, 0, 0, 64 + len(eh), len(names)),
    ]
    shdrs = b"".join(struct.pack("<IIQQQQIIQQ", *s, 0, 0, 1, 0) for s in sections)
    return header + eh + names + shdrs


def rows_of(table: UnwindTable) -> list[tuple[int, ...]]:
    return [tuple(table.row(i))[:5] for i in range(len(table))]


def test_handmade_rules() -> None:
    plt = b"\x0f\x0b\x77\x08\x80\x00\x3f\x1a\x3a\x2a\x33\x24\x22"  # lit10
    plt_bad = plt.replace(b"\x77\x08", b"\x77\x10")
    fdes = [
        # push rbp; mov rsp,rbp; ...; remember; pop -> rsp+8; restore
        (0x1000, 0x20, b"\x41\x0e\x10\x86\x02\x43\x0d\x06\x4a\x0a\x0c\x07\x08\x41\x0b"),
        (0x1020, 0x10, plt),
        (0x1040, 0x10, plt_bad + b"\x42\x0e\x10"),
        (0x1050, 0x10, b"\x2e\x10\x42\x07\x10"),  # args_size; undefined rip
        (0x1060, 0x10, b"\x42\x0c\x05\x00"),  # CFA from rdi
        (0x1070, 0x10, b"\x42\x3f"),  # unknown opcode: the FDE is skipped
    ]
    table = build_table_from_bytes(tiny_elf(eh_frame(fdes)), "tiny")
    assert table.reason == "" and table.fdes == 5 and table.fde_errors == 1
    assert rows_of(table) == [
        (0x1000, CFA_RSP, RBP_UNCHANGED, 8, 0),
        (0x1001, CFA_RSP, RBP_OFFSET, 16, -16),
        (0x1004, CFA_RBP, RBP_OFFSET, 16, -16),
        (0x100E, CFA_RSP, RBP_OFFSET, 8, -16),
        (0x100F, CFA_RBP, RBP_OFFSET, 16, -16),
        (0x1020, CFA_PLT, RBP_UNCHANGED, 10, 0),
        (0x1030, CFA_NONE, RBP_UNCHANGED, 0, 0),
        (0x1040, CFA_UNSUPPORTED, RBP_UNCHANGED, 0, 0),
        (0x1050, CFA_RSP, RBP_UNCHANGED, 8, 0),
        (0x1052, CFA_STOP, RBP_UNCHANGED, 0, 0),
        (0x1060, CFA_RSP, RBP_UNCHANGED, 8, 0),
        (0x1062, CFA_UNSUPPORTED, RBP_UNCHANGED, 0, 0),
        (0x1070, CFA_NONE, RBP_UNCHANGED, 0, 0),
    ]
    assert table.unsupported_rows == 2
    assert dict(table.unsupported_causes) == {
        "PLT expression with rsp offset other than 8": 1,
        "CFA from register rdi": 1,
    }


def test_handmade_overlap_signal_and_range() -> None:
    # an FDE nested in another: the outer one is cut where the inner begins
    fdes = [(0x1000, 0x40, b"\x41\x0e\x10"), (0x1010, 0x10, b"\x41\x0e\x20")]
    table = build_table_from_bytes(tiny_elf(eh_frame(fdes)), "overlap")
    assert rows_of(table) == [
        (0x1000, CFA_RSP, RBP_UNCHANGED, 8, 0),
        (0x1001, CFA_RSP, RBP_UNCHANGED, 16, 0),
        (0x1010, CFA_RSP, RBP_UNCHANGED, 8, 0),
        (0x1011, CFA_RSP, RBP_UNCHANGED, 32, 0),
        (0x1020, CFA_NONE, RBP_UNCHANGED, 0, 0),
    ]
    signal = build_table_from_bytes(tiny_elf(eh_frame([(0x1000, 8, b"")], b"zRS")), "sig")
    assert rows_of(signal) == [(0x1000, CFA_SIGNAL, 0, 0, 0), (0x1008, CFA_NONE, 0, 0, 0)]
    at = 0xFFFF_0000
    high = tiny_elf(eh_frame([(at, 0x10_0000, b"")], eh_addr=at), (at, 0x10_0000), at)
    table = build_table_from_bytes(high, "high")
    assert len(table) == 0 and "4 GiB" in table.reason
