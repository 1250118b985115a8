"""The offset tables, 3.13's _Py_DebugOffsets parser and the line-table decoders.

The 3.11+ location-table decoder is checked against ``co_positions()`` of every code
object this (3.11+) process can reach after importing a slice of the stdlib; the
3.10 decoder against ``co_lines()`` of code objects dumped by pyenv's 3.10.
"""

from __future__ import annotations

import ast
import gc
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from aperture.agent.python.linetable import NO_LINE, decode_locations, decode_pep626
from aperture.agent.python.offsets import (
    _DEBUG_OFFSETS_313,
    DEBUG_COOKIE,
    DEBUG_OFFSETS_SIZE_313,
    PyOffsets,
    UnsupportedPython,
    offsets_for,
    parse_debug_offsets,
)

_STDLIB = ["json", "email.parser", "asyncio", "http.client", "argparse", "typing", "inspect"]
_STDLIB += ["ast", "re", "pathlib", "unittest", "logging", "decimal", "difflib", "dataclasses"]


def _all_code() -> list[types.CodeType]:
    for name in _STDLIB:
        importlib.import_module(name)
    seen: dict[int, types.CodeType] = {}
    stack = [o.__code__ for o in gc.get_objects() if isinstance(o, types.FunctionType)]
    while stack:
        code = stack.pop()
        if id(code) not in seen:
            seen[id(code)] = code
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return list(seen.values())


def test_location_table_matches_co_positions() -> None:
    codes = _all_code()
    assert len(codes) > 3000
    bad = []
    for code in codes:
        ranges = decode_locations(code.co_linetable, code.co_firstlineno)
        want = [line or NO_LINE for line, *_ in code.co_positions()]
        got = [ranges.line_at(i, code.co_firstlineno) for i in range(len(want))]
        if got != want:
            bad.append(code)
    assert not bad, f"{len(bad)} of {len(codes)} differ, e.g. {bad[:3]}"


def test_location_table_negative_index_is_the_first_line() -> None:
    # 3.11 sets prev_instr one code unit before the first instruction on entry.
    code = test_location_table_matches_co_positions.__code__
    ranges = decode_locations(code.co_linetable, code.co_firstlineno)
    assert ranges.line_at(-1, code.co_firstlineno) == code.co_firstlineno


def test_truncated_tables_do_not_raise() -> None:
    code = _all_code()[0]
    for cut in range(len(code.co_linetable)):
        decode_locations(code.co_linetable[:cut], code.co_firstlineno)
        decode_pep626(code.co_linetable[:cut], code.co_firstlineno)
    decode_locations(b"\x7f\x00\xff", 1)  # no header bit first: no ranges
    decode_locations(b"\xf0\x7f", 1)  # a varint that never ends


def test_location_table_long_form() -> None:
    # Hand-built: code 14 (long form), length 2, line +300 (svarint 600 = 0x58 | 0x40, 9),
    # end line 0, columns 1 and 2; then code 15 (no location), length 1; then code 11
    # (one line, +1), length 3, columns 0 and 5.
    table = bytes(
        [0x80 | 14 << 3 | 1, 0x58 | 0x40, 9, 0, 1, 2, 0x80 | 15 << 3, 0x80 | 11 << 3 | 2, 0, 5]
    )
    r = decode_locations(table, 10)
    assert [r.line_at(i, 10) for i in range(7)] == [310, 310, NO_LINE, 311, 311, 311, NO_LINE]


_DUMP_310 = textwrap.dedent(
    """\
    import gc, importlib, json, types
    for name in ["json", "email.parser", "asyncio", "argparse", "typing", "decimal", "difflib"]:
        importlib.import_module(name)
    out, seen = [], set()
    stack = [o.__code__ for o in gc.get_objects() if isinstance(o, types.FunctionType)]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        out.append([c.co_linetable.hex(), c.co_firstlineno, len(c.co_code),
                    [list(r) for r in c.co_lines()]])
    print(json.dumps(out))
    """
)


def _pyenv_310() -> Path | None:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
        base = Path(root.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        base = Path.home() / ".pyenv"
    exe = base / "versions" / "3.10.13" / "bin" / "python3.10"
    return exe if os.access(exe, os.X_OK) else None


def test_pep626_table_matches_co_lines_of_310() -> None:
    exe = _pyenv_310()
    if exe is None:
        pytest.skip("pyenv's CPython 3.10.13 is not installed")
    dumped = json.loads(
        subprocess.run([str(exe), "-c", _DUMP_310], capture_output=True, check=True).stdout
    )
    assert len(dumped) > 2000
    bad = 0
    for table_hex, firstlineno, code_len, lines in dumped:
        want = [NO_LINE] * (code_len // 2)
        for start, end, line in lines:
            for unit in range(start // 2, end // 2):
                want[unit] = line if line is not None else NO_LINE
        ranges = decode_pep626(bytes.fromhex(table_hex), firstlineno)
        if [ranges.line_at(i, firstlineno) for i in range(len(want))] != want:
            bad += 1
    assert bad == 0, f"{bad} of {len(dumped)} 3.10 line tables decode differently"


def test_tables_cover_every_field() -> None:
    for minor in (10, 11, 12, 13):
        o = offsets_for(minor)
        assert o.frame_instr_size == (4 if minor == 10 else 8)
        assert (o.frame_is_entry >= 0) == (minor == 11)
        assert (o.frame_owner >= 0) == (minor >= 12)
        assert (o.cframe_current_frame >= 0) == (minor in (11, 12))
        assert (o.code_code >= 0) == (minor == 10)
        assert (o.code_adaptive >= 0) == (minor >= 11)
        assert (o.bytes_size, o.bytes_data) == (16, 32)
        assert o.unicode_ascii_data == (48 if minor < 12 else 40)
    with pytest.raises(UnsupportedPython):
        offsets_for(9)
    with pytest.raises(UnsupportedPython):
        offsets_for(14)


def test_table_matches_this_interpreter() -> None:
    """What this process can see of its own layout agrees with its minor's table."""
    minor = sys.version_info[1]
    if not 10 <= minor <= 13:
        pytest.skip(f"no table for 3.{minor}")
    o = offsets_for(minor)
    # sys.getsizeof of an empty ASCII str is sizeof(PyASCIIObject) + 1 (the NUL).
    assert sys.getsizeof("") == o.unicode_ascii_data + 1
    assert sys.getsizeof(b"") == o.bytes_data + 1


def _debug_blob(**overrides: int) -> bytes:
    """A 3.13 _Py_DebugOffsets with the DWARF table's values (and overrides)."""
    o = offsets_for(13)
    values = {name: getattr(o, name) for name in _DEBUG_OFFSETS_313 if hasattr(o, name)}
    values |= {"version": 0x030D00F0, "free_threaded": 0, "runtime_size": 1000}
    values |= {"interp_size": 8000, "tstate_size": 304, "frame_size": 80, "code_size": 208}
    values |= {"bytes_size_": 33, "unicode_size": 40}
    values |= overrides
    blob = bytearray(DEBUG_OFFSETS_SIZE_313)
    blob[:8] = DEBUG_COOKIE
    for name, at in _DEBUG_OFFSETS_313.items():
        struct.pack_into("<Q", blob, at, values[name])
    return bytes(blob)


def test_parse_debug_offsets() -> None:
    assert parse_debug_offsets(_debug_blob()) == offsets_for(13)
    moved = parse_debug_offsets(_debug_blob(tstate_frame=64, tstate_thread_id=144))
    assert (moved.tstate_frame, moved.tstate_thread_id) == (64, 144)
    assert isinstance(moved, PyOffsets)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"xdebugpy" + bytes(100), "cookie"),
        (b"notpython" + bytes(DEBUG_OFFSETS_SIZE_313), "cookie"),
        (_debug_blob(version=0x030E00F0), "3.14"),
        (_debug_blob(free_threaded=1), "free-threaded"),
        (_debug_blob(tstate_frame=4000), "tstate_frame"),
    ],
)
def test_parse_debug_offsets_rejects(blob: bytes, match: str) -> None:
    with pytest.raises(UnsupportedPython, match=match):
        parse_debug_offsets(blob)


def test_generated_table_is_the_committed_one() -> None:
    """tools/gen_python_offsets.py, run on the pyenv builds, prints the committed table."""
    tool = Path(__file__).parents[2] / "tools" / "gen_python_offsets.py"
    if shutil.which("gdb") is None or _pyenv_310() is None:
        pytest.skip("needs gdb and the pyenv builds")
    out = subprocess.run(
        [sys.executable, str(tool)], capture_output=True, text=True, check=True
    ).stdout
    generated = ast.literal_eval(out.split("=", 1)[1].strip())
    for minor, table in generated.items():
        assert PyOffsets(**table) == offsets_for(minor), minor


def test_a_line_table_whose_deltas_go_below_line_1_gives_no_line() -> None:
    """A table read from a process as it changed can be garbage: a line below 1 is
    unknown (0), never negative (the wire's lines are unsigned)."""
    from aperture.agent.python.linetable import NO_LINE, decode_pep626

    # 3 instructions on line 5, then a delta of -100 (0x9c as a signed byte)
    ranges = decode_pep626(bytes([6, 0, 4, 0x9C]), 5)
    assert ranges.line_at(0, 5) == 5
    assert ranges.line_at(3, 5) == NO_LINE == 0
