"""WASM filters: random bytes, modules that trap, spin, grow memory or break the ABI.

A module is refused at load with FilterError, or each batch ends in keep flags for
every record or a counted failure (``keep`` returns None): never another exception,
never a hang (fuel stops loops), never memory past the limit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aperture.filters import FilterError, FilterOptions, Record, WasmFilter
from aperture.model import EventType, Frame

pytest.importorskip("wasmtime", reason="wasmtime is in the filters extra (make setup)")

SMALL_FUEL = FilterOptions(fuel=200_000, memory_bytes=1 << 20)
RECORDS = [Record(EventType.CPU, i, i, "app", i + 1, (Frame("main"), Frame(f"f{i}")))
           for i in range(5)]  # fmt: skip
I32 = st.sampled_from([0, 1, 8, 1024, 65535, 65536, -1, 2**31 - 1, -(2**31)]) | st.integers(
    -(2**31), 2**31 - 1
)
VALUE_TYPES = ["i32", "i64", "f32", "f64"]
GROW = "(loop $g (br_if $g (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))"


@st.composite
def bodies(draw: st.DrawFn, results: list[str]) -> str:
    """A function body ending in values of ``results``, after some misbehaviour."""
    prefix = draw(
        st.lists(
            st.sampled_from([
                "unreachable",
                "(loop $l (br $l))",
                GROW,
                "(drop (i32.div_u (i32.const 1) (i32.const 0)))",
                "(drop (i32.load (i32.const -1)))",
                "(i32.store8 (i32.const 1024) (i32.const 1))",
                "(memory.fill (i32.const 1024) (i32.const 1) (i32.const 64))",
            ]),
            max_size=2,
        )
    )  # fmt: skip
    values = []
    for t in results:
        if t == "i32":
            values.append(f"(i32.const {draw(I32)})")
        else:
            values.append(f"({t}.const {draw(st.integers(-5, 70000))})")
    return " ".join(prefix + values)


@st.composite
def modules(draw: st.DrawFn) -> str:
    """A WAT module with the filter exports, more or less as docs/filters.md wants them."""
    parts = []
    if draw(st.integers(0, 9)) == 0:
        parts.append('(import "env" "f" (func))')
    memory_kind = draw(st.sampled_from(["memory", "memory", "memory", "global", "none"]))
    pages = draw(st.integers(0, 20))
    maximum = draw(st.none() | st.integers(pages, 40))
    limits = f"{pages}" + (f" {maximum}" if maximum is not None else "")
    if memory_kind == "memory":
        parts.append(f'(memory (export "memory") {limits})')
    else:
        parts.append(f"(memory {limits})")
        if memory_kind == "global":
            parts.append('(global (export "memory") i32 (i32.const 0))')
    for name, default_params in (("aperture_alloc", ["i32"]), ("aperture_filter", ["i32", "i32"])):
        if draw(st.integers(0, 14)) == 0:
            continue  # the export is missing
        params = draw(st.just(default_params) | st.lists(st.sampled_from(VALUE_TYPES), max_size=3))
        results = draw(st.just(["i32"]) | st.lists(st.sampled_from(VALUE_TYPES), max_size=2))
        sig = "".join(f" (param {p})" for p in params) + "".join(f" (result {r})" for r in results)
        parts.append(f'(func (export "{name}"){sig} {draw(bodies(results))})')
    if draw(st.integers(0, 5)) == 0:
        parts.append(f"(func $start {draw(bodies([]))}) (start $start)")
    return "(module " + " ".join(parts) + ")"


def _run(path: Path, options: FilterOptions = SMALL_FUEL) -> tuple[WasmFilter | None, object]:
    try:
        flt = WasmFilter(path, options)
    except FilterError as exc:
        assert str(exc)
        return None, exc
    started = time.monotonic()
    flags = flt.keep(RECORDS)
    assert time.monotonic() - started < 20, "a filter batch ran for more than 20 s"
    if flags is None:
        assert sum(flt.stats.failures.values()) == 1 and flt.stats.last_error
    else:
        assert len(flags) == len(RECORDS)
    return flt, flags


def _write(data: bytes | str, suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(f.name)


@given(modules())
def test_generated_modules_load_or_fail_per_batch(wat: str) -> None:
    path = _write(wat, ".wat")
    try:
        _run(path)
    finally:
        path.unlink()


@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_are_refused(data: bytes, with_magic: bool) -> None:
    path = _write((b"\0asm\x01\0\0\0" if with_magic else b"") + data, ".wasm")
    try:
        flt, _ = _run(path)
    finally:
        path.unlink()
    assert flt is None or not data


def _module(tmp_path: Path, filter_body: str, memory: str = "1", start: str = "") -> Path:
    wat = f"""(module (memory (export "memory") {memory})
      (func (export "aperture_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "aperture_filter") (param i32 i32) (result i32) {filter_body})
      {start})"""
    path = tmp_path / "m.wat"
    path.write_text(wat)
    return path


def test_an_endless_loop_is_stopped_by_fuel(tmp_path: Path) -> None:
    flt, flags = _run(_module(tmp_path, "(loop $l (br $l)) (i32.const 0)"), FilterOptions())
    assert flags is None and flt is not None and flt.stats.failures["fuel"] == 1


def test_an_endless_start_function_is_refused_at_load(tmp_path: Path) -> None:
    path = _module(tmp_path, "(i32.const 0)", start="(func $s (loop $l (br $l))) (start $s)")
    with pytest.raises(FilterError, match="cannot start"):
        WasmFilter(path, SMALL_FUEL)


def test_memory_growth_stops_at_the_limit(tmp_path: Path) -> None:
    # grows until memory.grow fails, then keeps every record: the limit held
    body = f"{GROW} (memory.fill (i32.const 1024) (i32.const 1) (i32.const 5)) (i32.const 1024)"
    options = FilterOptions(fuel=50_000_000, memory_bytes=4 << 20)
    _, flags = _run(_module(tmp_path, body), options)
    assert flags == [True] * len(RECORDS)


def test_a_module_larger_than_the_limit_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="cannot start"):
        WasmFilter(_module(tmp_path, "(i32.const 0)", memory="100"), SMALL_FUEL)


@pytest.mark.parametrize("result", ["0", "-1", "65535", "65534"])
def test_results_outside_memory_are_abi_failures(tmp_path: Path, result: str) -> None:
    flt, flags = _run(_module(tmp_path, f"(i32.const {result})"))
    assert flags is None and flt is not None and flt.stats.failures["abi"] == 1


def test_a_trap_is_a_counted_failure(tmp_path: Path) -> None:
    flt, flags = _run(_module(tmp_path, "unreachable"))
    assert flags is None and flt is not None and flt.stats.failures["trap"] == 1


@pytest.mark.parametrize(
    ("export", "message"),
    [
        ('(func (export "aperture_alloc") (param f32) (result i32) (i32.const 1024))',
         r"aperture_alloc\(f32\) -> \(i32\), not aperture_alloc\(i32\) -> i32"),
        ('(func (export "aperture_alloc") (param i32) (result i32 i32) (i32.const 1) (i32.const 2))',  # noqa: E501
         r"aperture_alloc\(i32\) -> \(i32, i32\)"),
        ('(global (export "aperture_alloc") i32 (i32.const 0))',
         "aperture_alloc as something other than a function"),
    ],
)  # fmt: skip
def test_wrong_export_signatures_are_refused_at_load(
    tmp_path: Path, export: str, message: str
) -> None:
    """Found by the fuzzer: an alloc taking f32 raised TypeError out of WasmFilter.keep."""
    path = tmp_path / "m.wat"
    path.write_text(f"""(module (memory (export "memory") 1) {export}
      (func (export "aperture_filter") (param i32 i32) (result i32) (i32.const 1024)))""")
    with pytest.raises(FilterError, match=message):
        WasmFilter(path, SMALL_FUEL)
