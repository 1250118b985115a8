"""The frame model: Python frames, lines, and what grouping keys on."""

from __future__ import annotations

import dataclasses

from aperture.model import Frame, FrameKind, function_key


def test_python_frame_fields_in_positional_order() -> None:
    frame = Frame("Encoder.encode", "/usr/lib/python3.11/json/encoder.py", FrameKind.PYTHON, 0, 200)
    assert [f.name for f in dataclasses.fields(Frame) if f.init] == [  # the constructor's order
        "name",
        "module",
        "kind",
        "offset",
        "line",
    ]
    assert frame.line == 200 and frame.kind == "python"


def test_native_frames_default_to_line_zero() -> None:
    assert Frame("malloc", "libc.so.6").line == 0


def test_lines_distinguish_frames_but_not_functions() -> None:
    a = Frame("hot_a", "/app/main.py", FrameKind.PYTHON, 0, 10)
    b = Frame("hot_a", "/app/main.py", FrameKind.PYTHON, 0, 12)
    assert a != b
    assert function_key(a) == function_key(b)
    assert function_key(a) != function_key(Frame("hot_a", "/app/other.py", FrameKind.PYTHON))
