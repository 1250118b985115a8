"""Python frames put in place of the eval-loop frames that ran them.

The BPF walker records a thread's native frames and, apart, its Python frames
innermost first, each run of them (the frames one call of
``_PyEval_EvalFrameDefault`` ran) ending with a marked frame. The k-th
innermost eval-loop native frame ran the k-th run, so each is replaced by its
run; a C function called from Python (``_json``'s encoder under ``json.dumps``)
stays where it was, under the Python function that called it.

When the counts cannot be matched (a sample taken while a call of the eval
loop was being entered or left, a build whose eval loop has a split-off cold
part) the native stack is kept whole: a short or native-only stack is better
than Python functions put under the wrong caller.

A native walk that stopped early (a library whose table is still being built,
a caller without one) reached only the innermost eval-loop frames, if any: the
runs it did not reach belong to calls further out, so they go rootward of what
it did reach, behind an ``[unknown]`` frame for the native frames in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from aperture.agent.collectors.unwind import kept_frames
from aperture.model import Frame, FrameKind

# user_stack.py entries (aperture.h)
PY_LAST_BIT = 1 << 63
PY_INSTR_SHIFT = 47
PY_INSTR_MAX = 0xFFFF
PY_ADDR_MASK = (1 << 47) - 1
NOT_CALL_BIT = 1 << 63  # on native addresses (symbolizer.NOT_CALL_BIT)
_NATIVE_MARKS = (1 << 63) | (1 << 62)
# The native frames a walk that stopped early did not reach (as symbolizer.UNKNOWN)
GAP = Frame("[unknown]", "[unknown]", FrameKind.UNKNOWN)

# enum py_status
PY_STATUS_NONE = 0
PY_STATUS_OK = 1
PY_STATUS_NO_THREAD = 2
PY_STATUS_READ_ERROR = 3
PY_STATUS_TRUNCATED = 4


class PyEntry(NamedTuple):
    code: int
    instr: int
    last: bool


def decode_entries(raw: Sequence[int]) -> list[PyEntry]:
    """The walker's Python frame entries, innermost first."""
    return [
        PyEntry(e & PY_ADDR_MASK, (e >> PY_INSTR_SHIFT) & PY_INSTR_MAX, bool(e & PY_LAST_BIT))
        for e in raw
    ]


def runs(entries: Sequence[PyEntry]) -> list[list[PyEntry]]:
    """Entries split into one list per call of the eval loop, innermost first.

    A last run without its closing mark (the walk was cut short) is kept as is.
    """
    out: list[list[PyEntry]] = []
    current: list[PyEntry] = []
    for entry in entries:
        current.append(entry)
        if entry.last:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def eval_positions(addrs: Sequence[int], eval_start: int, eval_end: int) -> list[int]:
    """Indexes (leaf first) of the native frames inside ``_PyEval_EvalFrameDefault``."""
    out = []
    for i, raw in enumerate(addrs):
        addr = raw & ~_NATIVE_MARKS
        # a return address points after its call: look at the call itself
        at = addr - 1 if i and not raw & NOT_CALL_BIT and addr else addr
        if eval_start <= at < eval_end:
            out.append(i)
    return out


def merge(
    native: Sequence[Frame],
    addrs: Sequence[int],
    eval_range: tuple[int, int],
    entries: Sequence[PyEntry],
    status: int,
    resolve: Callable[[PyEntry], Frame | None],
    *,
    native_complete: bool = True,
) -> list[Frame] | None:
    """Leaf-first frames with the Python runs in place, or None when they do not fit.

    ``native`` and ``addrs`` are the same frames, leaf first (the frames and their
    raw addresses); ``status`` is the walk's py_status: with every Python frame
    recorded (OK) the runs and eval-loop frames must pair up exactly; a walk cut
    short fills the innermost eval-loop frames it reached and leaves the outer
    ones native. ``native_complete``: the native walk reached the entry point;
    when it did not, the native frames are cut after the first one in no mapping
    (the frame-pointer chain broke there) and the runs past them follow one
    ``[unknown]`` frame: the list is then final, nothing in it to be trimmed.
    """
    groups = runs(entries)
    if not groups:
        return None
    if not native_complete:
        kept = kept_frames(native)
        native, addrs = native[:kept], addrs[:kept]
    positions = eval_positions(addrs, *eval_range)
    placed = len(groups)
    if status == PY_STATUS_OK and (len(groups) < len(positions) or not groups[-1][-1].last):
        return None
    if len(groups) > len(positions):
        if native_complete:
            return None
        placed = len(positions)
    resolved: list[list[Frame]] = []
    for group in groups:
        frames = []
        for entry in group:
            frame = resolve(entry)
            if frame is None:
                return None
            frames.append(frame)
        resolved.append(frames)
    at = dict(zip(positions, resolved[:placed], strict=False))
    out: list[Frame] = []
    for i, frame in enumerate(native):
        run = at.get(i)
        if run is None:
            out.append(frame)
        else:
            out.extend(run)
    if placed < len(resolved):
        if not out or out[-1].kind is not FrameKind.UNKNOWN:
            out.append(GAP)
        for run in resolved[placed:]:
            out.extend(run)
    return out
