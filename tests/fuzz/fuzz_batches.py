"""Hypothesis strategies: profiles, valid ProfileBatches, their mutations, pprof messages."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import strategies as st

from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.pprof import profile_pb2 as pp
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Identity, encode

_NOW = time.time_ns()
U32 = 2**32 - 1
U64 = 2**64 - 1
# A count summed over a batch (sample values, contentions, wait, calls): up to 8 of them
# stay within the MAX_TOTAL a batch may count; wire.check refuses more.
COUNT = 2**59
# protobuf strings are UTF-8: no lone surrogates
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
NAMES = st.sampled_from(["main", "a", "b", "", "ä", "x;y", "f(int, char*)"]) | TEXT

frames = st.builds(Frame, NAMES, NAMES, st.sampled_from(list(FrameKind)), st.integers(0, U64))
stacks = st.lists(frames, max_size=6).map(tuple)


def _samples() -> st.SearchStrategy[list[Sample]]:
    sample = st.builds(
        Sample,
        stacks,
        st.integers(0, COUNT),
        pid=st.integers(0, U32),
        tid=st.integers(0, U32),
        comm=NAMES,
        thread=NAMES,
    )
    return st.lists(sample, max_size=8)


locks = st.lists(
    st.builds(
        LockStat,
        st.integers(0, U32),
        NAMES,
        st.integers(0, U64),
        stacks,
        contentions=st.integers(0, COUNT),
        wait_ns=st.integers(0, 2**62),
        max_ns=st.integers(0, U64),
        hist=st.lists(st.integers(0, U64), max_size=4).map(tuple),
    ),
    max_size=5,
)
syscalls = st.lists(
    st.builds(
        SyscallStat,
        st.integers(0, U32),
        NAMES,
        st.integers(0, U32),
        NAMES,
        count=st.integers(0, COUNT),
        errors=st.integers(0, U64),
        hist=st.lists(st.integers(0, U64), max_size=4).map(tuple),
        errnos=st.dictionaries(st.integers(0, U32), st.integers(0, U64), max_size=3),
    ),
    max_size=5,
)


@st.composite
def profiles(draw: st.DrawFn) -> list[Profile]:
    """One to three profiles of distinct event types over one window."""
    # Mostly a window an aggregator takes (inside a 7-day retention, not ahead of its
    # clock), so that fuzzed batches reach the store; sometimes any time at all.
    end = draw(st.integers(_NOW - 6 * 86_400 * 10**9, _NOW) | st.integers(1, 2**62))
    start = draw(st.integers(0, end))
    types = draw(st.sets(st.sampled_from(list(EventType)), min_size=1))
    out = []
    for event_type in sorted(types):
        p = Profile(event_type, "samples", start_ns=start, end_ns=end)
        p.losses = draw(st.dictionaries(st.sampled_from(["ring", "maps"]), st.integers(0, 10**6)))
        if event_type is EventType.CPU:
            p.samples = draw(_samples())
            p.frequency_hz = draw(st.integers(0, U32))
        elif PROFILE_TYPES[event_type].wire == "stacks":  # off-CPU, ...: a StackSamples set
            p.samples = draw(_samples())
        elif event_type is EventType.LOCK:
            p.locks = draw(locks)
        else:
            p.syscalls = draw(syscalls)
        out.append(p)
    return out


identities = st.builds(
    Identity,
    TEXT.filter(bool),
    TEXT,
    st.dictionaries(TEXT, TEXT, max_size=3),
    TEXT,
)


@st.composite
def valid_batches(draw: st.DrawFn) -> tuple[list[Profile], Identity, pb.ProfileBatch]:
    ps, ident = draw(profiles()), draw(identities)
    return ps, ident, encode(ps, ident, draw(st.integers(1, U64)))


# Repeated integer columns a mutation may damage, by path from the batch.
_COLUMNS = [
    ("frames", "name"), ("frames", "module"), ("frames", "kind"), ("frames", "offset"),
    ("stacks", "frames"), ("stacks", "lengths"),
    ("cpu", "stack"), ("cpu", "count"), ("cpu", "pid"), ("cpu", "tid"), ("cpu", "comm"),
    ("cpu", "thread"),
]  # fmt: skip
_BIG = st.sampled_from([0, 1, 2, 255, 2**31 - 1, 2**31, U32])


@st.composite
def mutated_batches(draw: st.DrawFn) -> pb.ProfileBatch:
    """A valid batch with one to four structural mutations (indices, lengths, header)."""
    _, _, batch = draw(valid_batches())
    for _ in range(draw(st.integers(1, 4))):
        what = draw(
            st.sampled_from(["set", "append", "pop", "header", "lock", "syscall", "stack set"])
        )
        if what in ("set", "append", "pop"):
            msg, name = draw(st.sampled_from(_COLUMNS))
            column: Any = getattr(getattr(batch, msg), name)
            limit = U64 if name in ("offset", "count") else U32
            value = draw(_BIG | st.integers(0, limit))
            if name == "kind":
                value = draw(st.integers(0, 2**31 - 1))
            if what == "set" and len(column):
                column[draw(st.integers(0, len(column) - 1))] = value
            elif what == "append":
                column.append(value)
            elif len(column):
                column.pop()
        elif what == "header":
            field = draw(st.sampled_from(["schema_version", "sequence", "window", "agent"]))
            if field == "schema_version":
                batch.schema_version = draw(st.integers(0, 5))  # type: ignore[assignment]
            elif field == "sequence":
                batch.sequence = draw(st.integers(0, U64))
            elif field == "window":
                batch.window_start_ns = draw(st.integers(-(2**63), 2**63 - 1))
                batch.window_end_ns = draw(st.integers(-(2**63), 2**63 - 1))
            else:
                batch.agent.agent_id = draw(st.sampled_from(["", "a"]))
        elif what == "lock":
            lock = batch.lock.locks.add()
            lock.stack, lock.comm = draw(_BIG), draw(_BIG)
            lock.wait_ns = draw(st.integers(0, U64))
        elif what == "stack set":  # a type known or not, columns that may not agree
            added = batch.samples.add(type=draw(st.sampled_from(["offcpu", "cpu", "gpu", ""])))
            for column in (added.stack, added.value, added.pid, added.tid, added.comm,
                           added.thread):  # fmt: skip
                column.extend(draw(st.lists(_BIG, max_size=3)))
        else:
            call = batch.syscall.syscalls.add()
            call.comm, call.name = draw(_BIG), draw(_BIG)
            call.count = draw(st.integers(0, U64))
    return batch


def mutate_bytes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with byte edits (position, kind, value): overwrite, insert or delete."""
    out = bytearray(data)
    for position, kind, value in edits:
        if not out:
            out.append(value)
            continue
        at = position % len(out)
        if kind == 0:
            out[at] = value
        elif kind == 1:
            out.insert(at, value)
        else:
            del out[at]
    return bytes(out)


byte_edits = st.lists(
    st.tuples(st.integers(0, 2**16), st.integers(0, 2), st.integers(0, 255)), max_size=8
)


I64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.integers(0, 6)  # indices and ids: mostly in range, sometimes not
WORDS = st.sampled_from(["", "samples", "count", "cpu", "nanoseconds", "contentions", "delay",
                         "pid", "thread", "comm", "main", "libc.so.6", "[kernel]"])  # fmt: skip


@st.composite
def pprof_messages(draw: st.DrawFn) -> pp.Profile:
    """A Profile message whose references may or may not resolve."""
    p = pp.Profile()
    p.string_table.extend(draw(st.lists(WORDS | st.text(max_size=5), max_size=10)))
    for _ in range(draw(st.integers(0, 3))):
        p.sample_type.add(type=draw(SMALL), unit=draw(SMALL))
    p.period_type.type, p.period_type.unit = draw(SMALL), draw(SMALL)
    p.period = draw(I64)
    p.time_nanos, p.duration_nanos = draw(I64), draw(I64)
    for _ in range(draw(st.integers(0, 3))):
        p.mapping.add(id=draw(SMALL), filename=draw(SMALL))
    for _ in range(draw(st.integers(0, 4))):
        p.function.add(id=draw(SMALL), name=draw(SMALL), filename=draw(SMALL))
    for _ in range(draw(st.integers(0, 4))):
        loc = p.location.add(id=draw(SMALL), mapping_id=draw(SMALL), address=draw(SMALL))
        for _ in range(draw(st.integers(0, 3))):
            loc.line.add(function_id=draw(SMALL), line=draw(I64))
    for _ in range(draw(st.integers(0, 6))):
        sample = p.sample.add()
        sample.location_id.extend(draw(st.lists(SMALL, max_size=5)))
        sample.value.extend(draw(st.lists(I64 | SMALL, max_size=3)))
        for _ in range(draw(st.integers(0, 2))):
            sample.label.add(key=draw(SMALL), str=draw(SMALL), num=draw(I64))
    return p
