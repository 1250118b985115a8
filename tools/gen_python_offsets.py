#!/usr/bin/env python3
"""Print the ``PyOffsets`` table of CPython builds, read from their DWARF with gdb.

    tools/gen_python_offsets.py [LIBPYTHON ...]

With no argument it reads the pyenv builds of 3.10-3.13 (``pyenv root``). Each
field is asked of gdb as an expression (``&((T *)0)->field``, ``sizeof``), so
gdb's own reading of the DWARF does the layout work. The output is the literal
``_TABLES`` dict pasted into ``src/aperture/agent/python/offsets.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

# The fields of PyOffsets, per minor version: (field, gdb expression) where the
# expression is an offset (``off``), a size (``size``) or -1 (absent).


@dataclass(frozen=True)
class Spec:
    kind: str  # "off" | "size" | "none"
    expr: str = ""


def off(expr: str) -> Spec:
    return Spec("off", expr)


def size(expr: str) -> Spec:
    return Spec("size", expr)


NONE = Spec("none")


def specs(minor: int) -> dict[str, Spec]:
    """What each PyOffsets field is in CPython 3.<minor>'s headers."""
    frame = "PyFrameObject" if minor == 10 else "_PyInterpreterFrame"
    s: dict[str, Spec] = {
        "runtime_interpreters_head": off("_PyRuntimeState, interpreters.head"),
        "interp_threads_head": off(
            "PyInterpreterState, tstate_head" if minor == 10 else "PyInterpreterState, threads.head"
        ),
        "tstate_next": off("PyThreadState, next"),
        "tstate_interp": off("PyThreadState, interp"),
        "tstate_thread_id": off("PyThreadState, thread_id"),
        "tstate_native_thread_id": NONE if minor == 10 else off("PyThreadState, native_thread_id"),
        "tstate_frame": off(
            {
                10: "PyThreadState, frame",
                11: "PyThreadState, cframe",
                12: "PyThreadState, cframe",
            }.get(minor, "PyThreadState, current_frame")
        ),
        "cframe_current_frame": off("_PyCFrame, current_frame") if minor in (11, 12) else NONE,
        "frame_code": off(f"{frame}, f_code" if minor < 13 else f"{frame}, f_executable"),
        "frame_previous": off(f"{frame}, f_back" if minor == 10 else f"{frame}, previous"),
        "frame_instr": off(
            {10: f"{frame}, f_lasti", 11: f"{frame}, prev_instr", 12: f"{frame}, prev_instr"}.get(
                minor, f"{frame}, instr_ptr"
            )
        ),
        "frame_instr_size": size(
            {10: f"{frame}, f_lasti", 11: f"{frame}, prev_instr", 12: f"{frame}, prev_instr"}.get(
                minor, f"{frame}, instr_ptr"
            )
        ),
        "frame_is_entry": off(f"{frame}, is_entry") if minor == 11 else NONE,
        "frame_owner": off(f"{frame}, owner") if minor >= 12 else NONE,
        "code_name": off("PyCodeObject, co_name"),
        "code_qualname": NONE if minor == 10 else off("PyCodeObject, co_qualname"),
        "code_filename": off("PyCodeObject, co_filename"),
        "code_firstlineno": off("PyCodeObject, co_firstlineno"),
        "code_linetable": off("PyCodeObject, co_linetable"),
        "code_adaptive": NONE if minor == 10 else off("PyCodeObject, co_code_adaptive"),
        "code_code": off("PyCodeObject, co_code") if minor == 10 else NONE,
        "code_argcount": off("PyCodeObject, co_argcount"),
        "unicode_state": off("PyASCIIObject, state"),
        "unicode_ascii_data": size("PyASCIIObject"),
        "unicode_compact_data": size("PyCompactUnicodeObject"),
        "bytes_size": off("PyBytesObject, ob_base.ob_size"),
        "bytes_data": off("PyBytesObject, ob_sval"),
    }
    return s


# Offsets code.py takes as fixed (OB_TYPE, VAR_SIZE, TP_NAME, TP_FLAGS, UNICODE_LENGTH).
FIXED = [
    ("PyObject, ob_type", 8),
    ("PyVarObject, ob_size", 16),
    ("PyTypeObject, tp_name", 24),
    ("PyTypeObject, tp_flags", 168),
    ("PyASCIIObject, length", 16),
]


# Widths the BPF reader relies on: checked, not printed.
def checks(minor: int) -> list[tuple[str, int]]:
    frame = "PyFrameObject" if minor == 10 else "_PyInterpreterFrame"
    out = [
        ("PyThreadState, thread_id", 8),
        ("PyCodeObject, co_firstlineno", 4),
        ("PyCodeObject, co_argcount", 4),
        ("PyBytesObject, ob_base.ob_size", 8),
        ("PyObject, ob_type", 8),
    ]
    if minor == 11:
        out.append((f"{frame}, is_entry", 1))
    if minor >= 12:
        out.append((f"{frame}, owner", 1))
    return out


def _gdb_expr(spec: Spec) -> str:
    if spec.kind == "off":
        typ, _, field = spec.expr.partition(", ")
        return f"p/d (long)&(({typ} *)0)->{field}"
    typ, _, field = spec.expr.partition(", ")
    if field:
        return f"p/d sizeof((({typ} *)0)->{field})"
    return f"p/d sizeof({typ})"


def run_gdb(lib: str, exprs: list[str]) -> list[int]:
    """Evaluate gdb print commands against ``lib``'s DWARF, one integer each."""
    cmd = ["gdb", "-nx", "-batch", "-ex", "set max-value-size unlimited"]
    for e in exprs:
        cmd += ["-ex", e]
    out = subprocess.run([*cmd, lib], capture_output=True, text=True, check=True)
    values = [int(m) for m in re.findall(r"^\$\d+ = (-?\d+)$", out.stdout, re.M)]
    if len(values) != len(exprs):
        raise SystemExit(f"{lib}: gdb answered {len(values)} of {len(exprs)}:\n{out.stderr}")
    return values


def unicode_state_bits(lib: str) -> str:
    """The ``state`` bitfield as gdb lays it out (kind/compact/ascii must be bits 2-4/5/6)."""
    out = subprocess.run(
        ["gdb", "-nx", "-batch", "-ex", "ptype /o PyASCIIObject", lib],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bits = re.findall(r"/\*\s+\d+:\s*(\d+)\s*\|\s*\d+ \*/\s+unsigned int (\w+) :", out)
    return ",".join(f"{name}@{bit}" for bit, name in bits)


def table(lib: str, minor: int) -> dict[str, int]:
    fields = specs(minor)
    wanted = [(name, s) for name, s in fields.items() if s.kind != "none"]
    checked = checks(minor)
    values = run_gdb(
        lib,
        [_gdb_expr(s) for _, s in wanted]
        + [_gdb_expr(size(e)) for e, _ in checked]
        + [_gdb_expr(off(e)) for e, _ in FIXED],
    )
    fixed = values[len(wanted) + len(checked) :]
    values = values[: len(wanted) + len(checked)]
    for (expr, at), got in zip(FIXED, fixed, strict=True):
        if got != at:
            raise SystemExit(f"{lib}: offset of {expr} is {got}, code.py assumes {at}")
    for (expr, width), got in zip(checked, values[len(wanted) :], strict=True):
        if got != width:
            raise SystemExit(f"{lib}: sizeof {expr} is {got}, the reader assumes {width}")
    bits = unicode_state_bits(lib)
    for bit in ("kind@2", "compact@5", "ascii@6"):
        if bit not in bits:
            raise SystemExit(f"{lib}: PyASCIIObject.state is {bits}, the reader assumes {bit}")
    found = dict(zip([n for n, _ in wanted], values, strict=False))
    return {name: found.get(name, -1) for name in fields}


def pyenv_libs() -> list[tuple[str, int]]:
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout
    versions = os.path.join(root.strip(), "versions")
    out = []
    for name in sorted(os.listdir(versions)):
        m = re.fullmatch(r"3\.(\d+)\.\d+", name)
        if m and 10 <= int(m.group(1)) <= 13:
            lib = os.path.join(versions, name, "lib", f"libpython3.{m.group(1)}.so.1.0")
            if os.path.exists(lib):
                out.append((lib, int(m.group(1))))
    return out


def main(argv: list[str]) -> int:
    if argv:
        libs = []
        for lib in argv:
            m = re.search(r"libpython3\.(\d+)", lib)
            if not m:
                print(f"{lib}: cannot tell the minor version from the name", file=sys.stderr)
                return 2
            libs.append((lib, int(m.group(1))))
    else:
        libs = pyenv_libs()
    print("_TABLES: dict[int, dict[str, int]] = {")
    for lib, minor in libs:
        t = table(lib, minor)
        print(f"    # {lib}")
        print(f"    {minor}: {{")
        for name, value in t.items():
            print(f'        "{name}": {value},')
        print("    },")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
