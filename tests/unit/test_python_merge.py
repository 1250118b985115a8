"""Python runs put in place of the eval-loop frames, and past a native walk that stopped early."""

from __future__ import annotations

from aperture.agent.python.merge import (
    PY_LAST_BIT,
    PY_STATUS_OK,
    PY_STATUS_TRUNCATED,
    PyEntry,
    decode_entries,
    merge,
)
from aperture.model import Frame, FrameKind

EVAL = (0x1000, 0x2000)  # _PyEval_EvalFrameDefault's addresses
LEAF, EVAL_A, CALL, EVAL_B, MAIN = 0x5000, 0x1100, 0x6000, 0x1200, 0x7000
NAMES = {
    LEAF: "PyObject_Free",
    EVAL_A: "_PyEval_EvalFrameDefault",
    CALL: "PyObject_Call",
    EVAL_B: "_PyEval_EvalFrameDefault",
    MAIN: "main",
}
CODE = {0xA: "hot_a", 0xB: "main", 0xC: "<module>", 0xD: "callback"}


def native(*addrs: int) -> list[Frame]:
    return [
        Frame(NAMES[a], "python3", FrameKind.USER, a)
        if a in NAMES
        else Frame("[unknown]", "[unknown]", FrameKind.UNKNOWN, a)
        for a in addrs
    ]


def entries(*runs: list[int]) -> list[PyEntry]:
    raw = []
    for run in runs:
        raw += [code for code in run[:-1]] + [run[-1] | PY_LAST_BIT]
    return decode_entries(raw)


def resolve(entry: PyEntry) -> Frame | None:
    name = CODE.get(entry.code)
    return Frame(name, "hot.py", FrameKind.PYTHON, 0, 1) if name else None


def names(frames: list[Frame] | None) -> list[str] | None:
    return None if frames is None else [f.name for f in frames]


def test_runs_replace_their_eval_loop_frames() -> None:
    addrs = [LEAF, EVAL_A, CALL, EVAL_B, MAIN]
    got = merge(native(*addrs), addrs, EVAL, entries([0xD], [0xA, 0xB, 0xC]), PY_STATUS_OK, resolve)
    assert names(got) == [
        "PyObject_Free",
        "callback",
        "PyObject_Call",
        "hot_a",
        "main",
        "<module>",
        "main",
    ]


def test_counts_that_do_not_pair_keep_the_native_stack() -> None:
    addrs = [LEAF, EVAL_A, MAIN]
    py = entries([0xD], [0xA, 0xB, 0xC])
    assert merge(native(*addrs), addrs, EVAL, py, PY_STATUS_OK, resolve) is None
    # a Python walk that recorded every frame cannot have fewer runs than eval frames
    addrs = [LEAF, EVAL_A, CALL, EVAL_B, MAIN]
    one = entries([0xA, 0xB, 0xC])
    assert merge(native(*addrs), addrs, EVAL, one, PY_STATUS_OK, resolve) is None
    assert (
        merge(native(*addrs), addrs, EVAL, one, PY_STATUS_OK, resolve, native_complete=False)
        is None
    )


def test_runs_past_a_native_walk_that_stopped_early_go_rootward_of_a_gap() -> None:
    # no table for the interpreter yet: the walk stopped at the leaf
    got = merge(
        native(LEAF),
        [LEAF],
        EVAL,
        entries([0xA, 0xB, 0xC]),
        PY_STATUS_OK,
        resolve,
        native_complete=False,
    )
    assert names(got) == ["PyObject_Free", "[unknown]", "hot_a", "main", "<module>"]
    # it reached the inner eval loop, then broke into no mapping: the outer run goes past it
    addrs = [LEAF, EVAL_A, CALL, 0xDEAD0000, 0xBEEF0000]
    got = merge(
        native(*addrs),
        addrs,
        EVAL,
        entries([0xD], [0xA, 0xB, 0xC]),
        PY_STATUS_OK,
        resolve,
        native_complete=False,
    )
    assert names(got) == [
        "PyObject_Free",
        "callback",
        "PyObject_Call",
        "[unknown]",
        "hot_a",
        "main",
        "<module>",
    ]
    assert [f.offset for f in got or [] if f.kind is FrameKind.UNKNOWN] == [0xDEAD0000]


def test_a_complete_native_walk_never_gets_runs_it_has_no_place_for() -> None:
    got = merge(
        native(LEAF, MAIN), [LEAF, MAIN], EVAL, entries([0xA, 0xB, 0xC]), PY_STATUS_OK, resolve
    )
    assert got is None


def test_a_python_walk_cut_short_fills_the_innermost_eval_frames() -> None:
    addrs = [LEAF, EVAL_A, CALL, EVAL_B, MAIN]
    py = decode_entries([0xD | PY_LAST_BIT, 0xA])  # the second run has no closing mark
    got = merge(native(*addrs), addrs, EVAL, py, PY_STATUS_TRUNCATED, resolve)
    assert names(got) == ["PyObject_Free", "callback", "PyObject_Call", "hot_a", "main"]


def test_an_unresolvable_code_object_keeps_the_native_stack() -> None:
    got = merge(
        native(LEAF), [LEAF], EVAL, entries([0xE]), PY_STATUS_OK, resolve, native_complete=False
    )
    assert got is None
