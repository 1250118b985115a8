"""WASM filters: the ABI layout (probed from C and WAT), the examples, the sandbox."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

wasmtime = pytest.importorskip("wasmtime", reason="wasmtime is in the filters extra (make setup)")

from aperture.filters import FilterError, FilterOptions, Record, WasmFilter, apply_filter  # noqa: E402
from aperture.filters.abi import HEADER, MAGIC, RECORD, encode_batch  # noqa: E402
from aperture.model import EventType, Frame, LockStat, Profile, Sample  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "src/aperture/filters/examples"
C_FLAGS = ["--target=wasm32", "-O2", "-Wall", "-Werror", "-nostdlib", "-Wl,--no-entry",
           "-Wl,--export=aperture_alloc", "-Wl,--export=aperture_filter"]  # fmt: skip

ALLOC_WAT = """
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 1024))
  (func $alloc (export "aperture_alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $size)))
    (if (i32.gt_u (global.get $top) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (i32.sub (global.get $top)
        (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)) (i32.const 1))))))
    (local.get $ptr))
"""

# The layout probe keeps a record when value == pid + tid, it has 2 frames, and the
# leaf frame's module string is 4 bytes long: pid, tid, value, stack offset/length and
# the string table all have to be where docs/filters.md says.
PROBE_C = r"""
#include "aperture_filter.h"
u8 *aperture_filter(const u8 *b, u32 len) {
    (void)len;
    const struct ap_header *h = ap_header(b);
    u8 *keep = ap_result(b);
    if (h->magic != APERTURE_MAGIC || h->header_size != 32) __builtin_trap();
    const struct ap_record *r = ap_records(b);
    for (u32 i = 0; i < h->record_count; i++) {
        const struct ap_frame *f = ap_stack(b, &r[i]);
        keep[i] = r[i].value == (u64)r[i].pid + r[i].tid && r[i].stack_length == 2
                  && r[i].event_type == APERTURE_CPU && ap_string(b, f[1].module)->length == 4;
    }
    return keep;
}
"""
PROBE_WAT = (
    "(module"
    + ALLOC_WAT
    + """
  (func (export "aperture_filter") (param $b i32) (param $len i32) (result i32)
    (local $n i32) (local $out i32) (local $i i32) (local $rec i32) (local $leaf i32)
    (if (i32.ne (i32.load (local.get $b)) (i32.const 0x46545041)) (then unreachable))
    (local.set $n (i32.load offset=8 (local.get $b)))
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const 1))))
    (local.set $rec (i32.add (local.get $b) (i32.load offset=20 (local.get $b))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      ;; leaf frame = b + stack_offset + 8; its module index at +4
      (local.set $leaf (i32.add (i32.add (local.get $b) (i32.load offset=24 (local.get $rec)))
                                (i32.const 8)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
        (i32.and (i32.and
          (i64.eq (i64.load offset=16 (local.get $rec))
                  (i64.add (i64.extend_i32_u (i32.load offset=4 (local.get $rec)))
                           (i64.extend_i32_u (i32.load offset=8 (local.get $rec)))))
          (i32.eq (i32.load offset=28 (local.get $rec)) (i32.const 2)))
          (i32.eq (i32.load offset=4 (i32.add (i32.add (local.get $b)
                    (i32.load offset=16 (local.get $b)))
                    (i32.shl (i32.load offset=4 (local.get $leaf)) (i32.const 3))))
                  (i32.const 4))))
      (local.set $rec (i32.add (local.get $rec) (i32.const 32)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $out)))
"""
)


def _wasm(tmp: Path, name: str, source: str) -> Path:
    (tmp / f"{name}.c").write_text(source)
    out = tmp / f"{name}.wasm"
    subprocess.run(["clang", *C_FLAGS, f"-I{EXAMPLES}", "-o", str(out), str(tmp / f"{name}.c")],
                   check=True, capture_output=True)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C examples (and the probe) compiled as `make filters` does."""
    if shutil.which("clang") is None or shutil.which("wasm-ld") is None:
        pytest.skip("clang and lld (wasm-ld) are needed to build filters: `make setup`")
    tmp = tmp_path_factory.mktemp("filters")
    out = {src.stem: _wasm(tmp, src.stem, src.read_text()) for src in EXAMPLES.glob("*.c")}
    out["probe"] = _wasm(tmp, "probe", PROBE_C)
    return out


def _wat(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.wat"
    path.write_text(text)
    return path


def frames(*names: str, module: str = "app") -> tuple[Frame, ...]:
    return tuple(Frame(n, module) for n in names)


def cpu_profile() -> Profile:
    """A CPU window as the agent drains it (with --include-idle)."""
    return Profile(
        EventType.CPU,
        "samples",
        samples=[
            Sample(
                frames("secondary_startup_64", "do_idle", "default_idle", module="[kernel]"),
                40,
                pid=0,
                tid=0,
                comm="swapper/1",
            ),
            Sample(frames("_start", "main", "hot_a"), 30, pid=101, tid=101, comm="cpu_ratio"),
            Sample(frames("_start", "main", "hot_b"), 10, pid=101, tid=102, comm="cpu_ratio"),
            Sample(
                frames("_start", "main", "poll", "do_syscall_64"), 5, pid=7, tid=7, comm="nginx"
            ),
            Sample(frames("_start", "serve", "hot_a"), 3, pid=8, tid=9, comm="nginx: worker"),
        ],
    )


def run(path: Path, profile: Profile, arg: str = "", **kw: object) -> Profile:
    return apply_filter(WasmFilter(path, FilterOptions(arg=arg.encode(), **kw)), profile)  # type: ignore[arg-type]


# -- layout ------------------------------------------------------------------------------


def test_header_layout_is_the_documented_one() -> None:
    rec = Record(EventType.CPU, 5, 6, "comm", 11, (Frame("f", "mod"),))
    data = encode_batch([rec], b"arg")
    magic, version, hsize, count, nstr, soff, roff, aoff, alen = HEADER.unpack_from(data)
    assert (magic, version, hsize, count, nstr) == (MAGIC, 1, 32, 1, 3)
    assert data[:4] == b"APTF" and data[aoff : aoff + alen] == b"arg"
    et, pid, tid, comm, value, stoff, stlen = RECORD.unpack_from(data, roff)
    assert (et, pid, tid, value, stlen) == (1, 5, 6, 11, 1)
    strings = []
    for i in range(nstr):
        off, n = struct.unpack_from("<II", data, soff + 8 * i)
        strings.append(data[off : off + n].decode())
    assert strings[comm] == "comm"
    name, module = struct.unpack_from("<II", data, stoff)
    assert (strings[name], strings[module]) == ("f", "mod")


def _probe_records() -> tuple[Profile, list[int]]:
    samples, expect = [], []
    for i in range(300):
        pid, tid = 1000 + i, 2000 + 3 * i
        ok_value, two, four = i % 2 == 0, i % 3 != 0, i % 5 != 0
        stack = (Frame("root", "exe"), Frame(f"leaf{i % 7}", "libc" if four else "libc.so"))
        if not two:
            stack = (*stack, Frame("extra", "exe"))
        value = pid + tid if ok_value else pid + tid + 1
        samples.append(Sample(stack, value, pid=pid, tid=tid, comm=f"c{i % 11}"))
        if ok_value and two and four:
            expect.append(i)
    return Profile(EventType.CPU, "samples", samples=samples), expect


def test_layout_probe_in_c(built: dict[str, Path]) -> None:
    profile, expect = _probe_records()
    kept = run(built["probe"], profile)
    assert [profile.samples.index(s) for s in kept.samples] == expect


def test_layout_probe_in_wat(tmp_path: Path) -> None:
    profile, expect = _probe_records()
    kept = run(_wat(tmp_path, PROBE_WAT), profile)
    assert [profile.samples.index(s) for s in kept.samples] == expect


# -- the examples ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["c", "wat"])
def test_drop_idle(kind: str, built: dict[str, Path]) -> None:
    path = built["drop_idle"] if kind == "c" else EXAMPLES / "drop_idle.wat"
    kept = run(path, cpu_profile())
    assert [s.comm for s in kept.samples] == ["cpu_ratio", "cpu_ratio", "nginx", "nginx: worker"]
    assert kept.total == 48


@pytest.mark.parametrize("kind", ["c", "wat"])
def test_comm_prefix_from_the_arg(kind: str, built: dict[str, Path]) -> None:
    path = built["comm_prefix"] if kind == "c" else EXAMPLES / "comm_prefix.wat"
    assert {s.comm for s in run(path, cpu_profile(), "nginx").samples} == {
        "nginx",
        "nginx: worker",
    }
    assert {s.comm for s in run(path, cpu_profile(), "cpu_").samples} == {"cpu_ratio"}
    assert run(path, cpu_profile(), "nothing").samples == []


def test_drop_function(built: dict[str, Path]) -> None:
    kept = run(built["drop_function"], cpu_profile(), "hot_a")
    assert all("hot_a" not in {f.name for f in s.stack} for s in kept.samples)
    assert len(kept.samples) == 3
    # an exact name: "hot" matches no frame
    assert len(run(built["drop_function"], cpu_profile(), "hot").samples) == 5


def _fnv_keep(s: Sample, n: int) -> bool:
    x = 2166136261
    data = struct.pack("<II", s.pid, s.tid) + s.comm.encode()
    data += b"".join(f.name.encode() for f in s.stack)
    for byte in data:
        x = ((x ^ byte) * 16777619) & 0xFFFFFFFF
    return x % n == 0


def test_sample_one_in_n_is_deterministic(built: dict[str, Path]) -> None:
    samples = [
        Sample(frames("main", f"f{i % 37}"), 1, pid=i, tid=i * 7, comm=f"p{i % 5}")
        for i in range(4000)
    ]
    profile = Profile(EventType.CPU, "samples", samples=samples)
    first = run(built["sample_1_in_n"], profile, "10")
    again = run(built["sample_1_in_n"], profile, "10")
    assert first.samples == again.samples
    assert first.samples == [s for s in samples if _fnv_keep(s, 10)]
    assert 300 < len(first.samples) < 500
    assert len(run(built["sample_1_in_n"], profile, "1").samples) == 4000


def test_lock_profile_filters_lock_records(built: dict[str, Path]) -> None:
    locks = [
        LockStat(
            pid=5, comm="db", address=1, stack=frames("main", "lock"), contentions=2, wait_ns=100
        ),
        LockStat(
            pid=6, comm="web", address=2, stack=frames("main", "lock"), contentions=1, wait_ns=50
        ),
    ]
    profile = Profile(EventType.LOCK, "nanoseconds", locks=locks)
    kept = run(built["comm_prefix"], profile, "db")
    assert [k.comm for k in kept.locks] == ["db"]
    assert [(s.comm, s.value) for s in kept.samples] == [("db", 100)]


# -- the sandbox -------------------------------------------------------------------------

LOOP_WAT = (
    "(module"
    + ALLOC_WAT
    + """(func (export "aperture_filter") (param i32 i32) (result i32)
       (loop $forever (br $forever)) (i32.const 0)))"""
)
GROW_WAT = (
    "(module"
    + ALLOC_WAT
    + """(func (export "aperture_filter") (param i32 i32) (result i32)
       (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable))
       (i32.const 512)))"""
)


def test_infinite_loop_runs_out_of_fuel_and_is_contained(tmp_path: Path) -> None:
    warnings: list[str] = []
    flt = WasmFilter(
        _wat(tmp_path, LOOP_WAT), FilterOptions(fuel=100_000), on_failure=warnings.append
    )
    profile = cpu_profile()
    assert apply_filter(flt, profile).samples == profile.samples  # open: unfiltered
    assert flt.stats.failures["fuel"] == 1 and "fuel" in warnings[0]
    closed = WasmFilter(_wat(tmp_path, LOOP_WAT), FilterOptions(fuel=100_000, failure="closed"))
    assert apply_filter(closed, profile).samples == []
    assert apply_filter(closed, profile).samples == []  # the next batch runs again
    assert closed.stats.failures["fuel"] == 2 and closed.stats.batches == 2


def test_memory_grow_past_the_limit_is_contained(tmp_path: Path) -> None:
    path = _wat(tmp_path, GROW_WAT)
    flt = WasmFilter(path, FilterOptions(memory_bytes=1 << 20, failure="closed"))
    assert apply_filter(flt, cpu_profile()).samples == []
    assert flt.stats.failures["trap"] == 1
    assert "unreachable" in flt.summary()
    # the same module with room to grow runs (and keeps nothing: its result is zeros)
    roomy = WasmFilter(path, FilterOptions(memory_bytes=128 << 20))
    assert apply_filter(roomy, cpu_profile()).samples == []
    assert not roomy.stats.failures


TRAP_WAT = (
    "(module"
    + ALLOC_WAT
    + """(func (export "aperture_filter") (param i32 i32) (result i32)
       (i32.load (i32.const 0x7ffffff0))))"""
)
TRAP_AFTER_CHDB = """
import sys
from pathlib import Path
from aperture.filters import WasmFilter, FilterOptions, apply_filter
from aperture.model import EventType, Frame, Profile, Sample

profile = Profile(EventType.CPU, "samples", samples=[Sample((Frame("main", "app"),), 1)])
flt = WasmFilter(Path(sys.argv[1]), FilterOptions(failure="closed"))
apply_filter(flt, profile)
import chdb  # the aggregator's embedded store installs signal handlers of its own
chdb.query("SELECT 1")
apply_filter(flt, profile)
print(flt.stats.failures["trap"])
"""


def test_a_trap_after_the_store_loaded_is_still_contained(tmp_path: Path) -> None:
    # In one process with chDB (the aggregator's --ingest-filter), a filter's
    # out-of-bounds load killed the process with SIGSEGV when traps used signals.
    pytest.importorskip("chdb", reason="chdb comes with the aggregator extra")
    path = _wat(tmp_path, TRAP_WAT)
    run = subprocess.run([sys.executable, "-c", TRAP_AFTER_CHDB, str(path)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "2"


def test_a_batch_larger_than_the_memory_limit_is_contained(built: dict[str, Path]) -> None:
    many = [Sample(frames("main", f"f{i}"), 1, pid=i, comm="x" * 40) for i in range(5000)]
    flt = WasmFilter(built["drop_idle"], FilterOptions(memory_bytes=256 << 10))
    assert len(apply_filter(flt, Profile(EventType.CPU, "samples", samples=many)).samples) == 5000
    assert flt.stats.failures["memory"] == 1


def test_a_module_with_a_wasi_import_is_refused(tmp_path: Path) -> None:
    text = (
        '(module (import "wasi_snapshot_preview1" "fd_write" '
        "(func (param i32 i32 i32 i32) (result i32)))" + ALLOC_WAT + ")"
    )
    with pytest.raises(FilterError, match=r"imports wasi_snapshot_preview1\.fd_write") as err:
        WasmFilter(_wat(tmp_path, text))
    assert "\n" not in str(err.value)


def test_garbage_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.wasm"
    path.write_bytes(b"\x7fELF not a wasm module at all")
    with pytest.raises(FilterError, match="is not a valid WASM module") as err:
        WasmFilter(path)
    assert "\n" not in str(err.value)


def test_missing_exports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="does not export aperture_alloc, aperture_filter"):
        WasmFilter(_wat(tmp_path, '(module (memory (export "memory") 1))'))


def test_a_module_larger_than_the_memory_limit_is_refused(tmp_path: Path) -> None:
    text = "(module" + ALLOC_WAT.replace('(memory (export "memory") 1)',
                                        '(memory (export "memory") 100)') + """
      (func (export "aperture_filter") (param i32 i32) (result i32) (i32.const 0)))"""  # fmt: skip
    with pytest.raises(FilterError, match="cannot start"):
        WasmFilter(_wat(tmp_path, text), FilterOptions(memory_bytes=1 << 20))
