"""ProfileBatch messages to Arrow tables, one per ClickHouse table, column by column.

The batch is columnar already (frames, stacks and CPU samples are packed
arrays), so a batch becomes rows with numpy indexing and Arrow ``take``, never
a Python object per sample: that is what makes ingest cost microseconds per
thousand rows. Lock and syscall records are few per window and go through
plain lists.
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]  # no stubs or py.typed

from aperture import histogram
from aperture.model import LOCK_ROLES
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.v1 import profile_pb2 as pb
from aperture.storage import hashing
from aperture.unwind_stats import unwind_stats

_TS = pa.timestamp("ns", tz="UTC")
_LABELS = pa.map_(pa.string(), pa.string())
_HIST = pa.list_(pa.uint64())
_ERRNOS = pa.map_(pa.uint32(), pa.uint64())
_LOSSES = pa.map_(pa.string(), pa.uint64())
# Sample rows carry their type as an index into this (every type the registry knows).
_EVENT_NAMES = [str(t) for t in PROFILE_TYPES]
_EVENT = pa.array(_EVENT_NAMES)
CPU, LOCK = _EVENT_NAMES.index("cpu"), _EVENT_NAMES.index("lock")

I64 = npt.NDArray[np.int64]


def _np(values: Any, dtype: Any) -> Any:
    # protobuf (upb) repeated scalars expose the buffer protocol: no Python loop
    return np.array(values, dtype=dtype)


@dataclass
class _Batch:
    """One batch's per-batch values (repeated over its rows through ``take``)."""

    agent_id: str
    host: str
    labels: list[tuple[str, str]]
    start_ns: int
    end_ns: int


@dataclass
class _Chunks:
    """Column pieces of one table, concatenated once at the end."""

    columns: dict[str, list[Any]] = field(default_factory=dict)
    rows: int = 0

    def add(self, n: int, **pieces: Any) -> None:
        for name, piece in pieces.items():
            self.columns.setdefault(name, []).append(piece)
        self.rows += n

    def column(self, name: str, dtype: pa.DataType | None = None) -> pa.Array:
        pieces = self.columns[name]
        if isinstance(pieces[0], pa.Array):
            return pa.concat_arrays(pieces)
        if isinstance(pieces[0], np.ndarray):
            return pa.array(np.concatenate(pieces), type=dtype)
        return pa.array([v for piece in pieces for v in piece], type=dtype)


class RowBuilder:
    """Accumulates batches (each added whole or not at all) into Arrow tables.

    ``known`` holds the hashes of stacks already stored (recently): only the
    others become ``stacks`` rows, each once per builder.
    """

    def __init__(self, known: Container[int]) -> None:
        self._known = known
        self._batches: list[_Batch] = []
        self._meta: list[dict[str, Any]] = []
        self._stack_seen: set[int] = set()
        self.new_stacks: list[int] = []
        self._stacks = _Chunks()
        self._samples = _Chunks()
        self._locks = _Chunks()
        self._syscalls = _Chunks()

    @property
    def batches(self) -> int:
        return len(self._batches)

    def add(self, batch: pb.ProfileBatch) -> None:
        """Add one checked batch; IndexError/ValueError leave the builder unchanged."""
        bi = len(self._batches)
        strings: Sequence[str] = batch.strings
        text = pa.array(strings, type=pa.string())
        stack_hash, new = self._stack_rows(batch, text)
        samples, locks, syscalls = _Chunks(), _Chunks(), _Chunks()
        if batch.HasField("cpu") and len(batch.cpu.stack):
            _sample_rows(batch.cpu, batch.cpu.count, CPU, bi, text, stack_hash, samples)
        for st in batch.samples:
            if len(st.stack):
                event = _EVENT_NAMES.index(st.type)  # check() let only known types through
                _sample_rows(st, st.value, event, bi, text, stack_hash, samples)
        if batch.HasField("lock") and len(batch.lock.locks):
            _lock_rows(batch, bi, strings, stack_hash, samples, locks)
        if batch.HasField("syscall") and len(batch.syscall.syscalls):
            _syscall_rows(batch, bi, strings, syscalls)
        # Everything above may raise on a malformed batch; nothing is kept until here.
        for target, part in ((self._samples, samples), (self._locks, locks),
                             (self._syscalls, syscalls), (self._stacks, new)):  # fmt: skip
            for name, pieces in part.columns.items():
                target.columns.setdefault(name, []).extend(pieces)
            target.rows += part.rows
        if new.rows:
            hashes = new.columns["stack_hash"][0].tolist()
            self._stack_seen.update(hashes)
            self.new_stacks.extend(hashes)
        agent = batch.agent
        self._batches.append(
            _Batch(agent.agent_id, agent.host, sorted(agent.labels.items()),
                   batch.window_start_ns, batch.window_end_ns)
        )  # fmt: skip
        types = [t for t in ("cpu", "lock", "syscall") if batch.HasField(t)]
        types += [st.type for st in batch.samples]
        mode, stats = unwind_stats(batch.window_labels)
        self._meta.append(
            {"sequence": batch.sequence, "version": agent.version,
             "frequency_hz": batch.cpu.frequency_hz, "event_types": types,
             "losses": sorted(batch.losses.items()), "window_stats": sorted(stats.items()),
             "unwind_mode": mode}
        )  # fmt: skip

    def _stack_rows(
        self, batch: pb.ProfileBatch, text: pa.Array
    ) -> tuple[npt.NDArray[np.uint64], _Chunks]:
        frames, stacks = batch.frames, batch.stacks
        out = _Chunks()
        lengths: I64 = _np(stacks.lengths, np.int64)
        if not len(lengths):
            return np.zeros(0, dtype=np.uint64), out
        names: I64 = _np(frames.name, np.int64)
        modules: I64 = _np(frames.module, np.int64)
        kinds = _np(frames.kind, np.int8)
        offsets = _np(frames.offset, np.uint64)
        # no line column (older agents, native-only batches): every line is 0
        lines = _np(frames.line, np.uint32) if len(frames.line) else np.zeros(len(names), np.uint32)
        flat: I64 = _np(stacks.frames, np.int64)
        if len({len(names), len(modules), len(kinds), len(offsets), len(lines)}) != 1:
            raise ValueError("frame columns differ in length")
        hashed = hashing.string_hashes(text)
        frame_h = hashing.frame_hashes(hashed[names], hashed[modules], kinds, offsets, lines)
        stack_h = hashing.stack_hashes(frame_h[flat], lengths)
        seen, known = self._stack_seen, self._known
        hashes = stack_h.tolist()
        mask = np.zeros(len(lengths), dtype=bool)
        if not _all_in(known, hashes):  # the steady state: every stack stored already
            local: set[int] = set()
            for i, h in enumerate(hashes):
                if h not in seen and h not in known and h not in local:
                    local.add(h)
                    mask[i] = True
        if mask.any():
            chosen = flat[np.repeat(mask, lengths)]
            out.add(
                int(mask.sum()),
                stack_hash=stack_h[mask],
                length=lengths[mask],
                names=text.take(pa.array(names[chosen])),
                modules=text.take(pa.array(modules[chosen])),
                kinds=kinds[chosen],
                offsets=offsets[chosen],
                lines=lines[chosen],
            )
        return stack_h, out

    def tables(self) -> dict[str, pa.Table]:
        """The non-empty tables, keyed by ClickHouse table name."""
        out: dict[str, pa.Table] = {}
        if not self._batches:
            return out
        if self._stacks.rows:
            out["stacks"] = self._stacks_table()
        for name, chunks, extra in (
            ("samples", self._samples, _SAMPLE_COLUMNS),
            ("lock_stats", self._locks, _LOCK_COLUMNS),
            ("syscall_stats", self._syscalls, _SYSCALL_COLUMNS),
        ):
            if chunks.rows:
                out[name] = self._table(chunks, extra)
        out["batches"] = self._batches_table()
        return out

    def _per_batch(self, index: npt.NDArray[np.int64]) -> dict[str, pa.Array]:
        b = self._batches
        take = pa.array(index)
        return {
            "ts": pa.array([x.end_ns for x in b], pa.int64()).take(take).cast(_TS),
            "window_start": pa.array([x.start_ns for x in b], pa.int64()).take(take).cast(_TS),
            "host": pa.array([x.host for x in b]).take(take),
            "agent_id": pa.array([x.agent_id for x in b]).take(take),
            "labels": pa.array([x.labels for x in b], _LABELS).take(take),
        }

    def _table(self, chunks: _Chunks, columns: dict[str, pa.DataType | None]) -> pa.Table:
        data = self._per_batch(np.concatenate(chunks.columns["batch"]))
        for name, dtype in columns.items():
            data[name] = chunks.column(name, dtype)
        if "event" in data:
            data["event_type"] = _EVENT.take(data.pop("event"))
        return pa.table(data)

    def _stacks_table(self) -> pa.Table:
        c = self._stacks
        lengths = np.concatenate(c.columns["length"])
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        now = pa.array(np.full(c.rows, int(time.time()), dtype=np.int64)).cast(pa.timestamp("s"))

        def lists(name: str, dtype: pa.DataType | None = None) -> pa.Array:
            return pa.ListArray.from_arrays(offsets, c.column(name, dtype))

        return pa.table(
            {
                "stack_hash": c.column("stack_hash", pa.uint64()),
                "names": lists("names"),
                "modules": lists("modules"),
                "kinds": lists("kinds", pa.int8()),
                "offsets": lists("offsets", pa.uint64()),
                "lines": lists("lines", pa.uint32()),
                "last_seen": now,
            }
        )

    def _batches_table(self) -> pa.Table:
        data = self._per_batch(np.arange(len(self._batches), dtype=np.int64))
        meta = self._meta
        data["sequence"] = pa.array([m["sequence"] for m in meta], pa.uint64())
        data["version"] = pa.array([m["version"] for m in meta], pa.string())
        data["frequency_hz"] = pa.array([m["frequency_hz"] for m in meta], pa.uint32())
        data["event_types"] = pa.array([m["event_types"] for m in meta], pa.list_(pa.string()))
        data["losses"] = pa.array([m["losses"] for m in meta], _LOSSES)
        data["window_stats"] = pa.array([m["window_stats"] for m in meta], _LOSSES)
        data["unwind_mode"] = pa.array([m["unwind_mode"] for m in meta], pa.string())
        return pa.table(data)


_SAMPLE_COLUMNS: dict[str, pa.DataType | None] = {
    "event": pa.int8(), "pid": pa.uint32(), "tid": pa.uint32(), "comm": None, "thread": None,
    "stack_hash": pa.uint64(), "value": pa.uint64(),
}  # fmt: skip
_LOCK_COLUMNS: dict[str, pa.DataType | None] = {
    "pid": pa.uint32(), "comm": pa.string(), "address": pa.uint64(), "kind": pa.string(),
    "role": pa.string(), "stack_hash": pa.uint64(), "contentions": pa.uint64(),
    "wait_ns": pa.uint64(), "max_ns": pa.uint64(),
    "eagain": pa.uint64(), "timeouts": pa.uint64(), "timeout_ns": pa.uint64(),
    "interrupted": pa.uint64(), "hist": _HIST, "releases": pa.uint64(),
}  # fmt: skip
_SYSCALL_COLUMNS: dict[str, pa.DataType | None] = {
    "pid": pa.uint32(), "comm": pa.string(), "nr": pa.uint32(), "name": pa.string(),
    "count": pa.uint64(), "errors": pa.uint64(), "total_ns": pa.uint64(), "min_ns": pa.uint64(),
    "max_ns": pa.uint64(), "hist": _HIST, "errnos": _ERRNOS,
}  # fmt: skip


def _all_in(known: Container[int], hashes: list[int]) -> bool:
    if isinstance(known, set | frozenset):
        return known.issuperset(hashes)  # one C loop
    return all(h in known for h in hashes)


def _sample_rows(
    cols: pb.CpuSamples | pb.StackSamples,
    values: Sequence[int],
    event: int,
    bi: int,
    text: pa.Array,
    stack_h: npt.NDArray[np.uint64],
    out: _Chunks,
) -> None:
    """Rows of one set of weighted stacks (CPU samples, or any registry type's)."""
    n = len(cols.stack)
    out.add(
        n,
        batch=np.full(n, bi, dtype=np.int64),
        event=np.full(n, event, dtype=np.int8),
        pid=_np(cols.pid, np.uint32),
        tid=_np(cols.tid, np.uint32),
        comm=text.take(pa.array(_np(cols.comm, np.int64))),
        thread=text.take(pa.array(_np(cols.thread, np.int64))),
        stack_hash=stack_h[_np(cols.stack, np.int64)],
        value=_np(values, np.uint64),
    )


def _lock_rows(
    batch: pb.ProfileBatch,
    bi: int,
    strings: Sequence[str],
    stack_h: npt.NDArray[np.uint64],
    samples: _Chunks,
    out: _Chunks,
) -> None:
    recs = batch.lock.locks
    n = len(recs)
    hashes = stack_h[np.array([r.stack for r in recs], dtype=np.int64)]
    comms = [strings[r.comm] for r in recs]
    wait = np.array([r.wait_ns for r in recs], dtype=np.uint64)
    pids = np.array([r.pid for r in recs], dtype=np.uint32)
    out.add(
        n,
        batch=np.full(n, bi, dtype=np.int64),
        pid=pids,
        comm=comms,
        address=np.array([r.address for r in recs], dtype=np.uint64),
        kind=[strings[r.kind] for r in recs],
        role=[LOCK_ROLES[r.role] for r in recs],
        stack_hash=hashes,
        contentions=np.array([r.contentions for r in recs], dtype=np.uint64),
        wait_ns=wait,
        max_ns=np.array([r.max_ns for r in recs], dtype=np.uint64),
        eagain=np.array([r.eagain for r in recs], dtype=np.uint64),
        timeouts=np.array([r.timeouts for r in recs], dtype=np.uint64),
        timeout_ns=np.array([r.timeout_ns for r in recs], dtype=np.uint64),
        interrupted=np.array([r.interrupted for r in recs], dtype=np.uint64),
        hist=[list(histogram.fine(r.hist)) for r in recs],  # old agents: coarse
        releases=np.array([r.releases for r in recs], dtype=np.uint64),
    )
    # The lock flamegraph's samples: wait-weighted waiter stacks (as transforms.lock_samples).
    waited = (wait > 0) & (np.array([r.role for r in recs], dtype=np.int64) == 0)
    k = int(waited.sum())
    if k:
        samples.add(
            k,
            batch=np.full(k, bi, dtype=np.int64),
            event=np.full(k, LOCK, dtype=np.int8),
            pid=pids[waited],
            tid=np.zeros(k, dtype=np.uint32),
            comm=pa.array([c for c, w in zip(comms, waited.tolist(), strict=True) if w]),
            thread=pa.array([""] * k),
            stack_hash=hashes[waited],
            value=wait[waited],
        )


def _syscall_rows(batch: pb.ProfileBatch, bi: int, strings: Sequence[str], out: _Chunks) -> None:
    recs = batch.syscall.syscalls
    n = len(recs)
    out.add(
        n,
        batch=np.full(n, bi, dtype=np.int64),
        pid=np.array([r.pid for r in recs], dtype=np.uint32),
        comm=[strings[r.comm] for r in recs],
        nr=np.array([r.nr for r in recs], dtype=np.uint32),
        name=[strings[r.name] for r in recs],
        count=np.array([r.count for r in recs], dtype=np.uint64),
        errors=np.array([r.errors for r in recs], dtype=np.uint64),
        total_ns=np.array([r.total_ns for r in recs], dtype=np.uint64),
        min_ns=np.array([r.min_ns for r in recs], dtype=np.uint64),
        max_ns=np.array([r.max_ns for r in recs], dtype=np.uint64),
        hist=[list(r.hist) for r in recs],
        errnos=[sorted(r.errnos.items()) for r in recs],
    )
