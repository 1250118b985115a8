"""Profiles to and from the wire message ``aperture.v1.ProfileBatch``.

:func:`encode` interns strings, frames and stacks; :func:`decode` checks every
index and refuses a malformed batch with :class:`MalformedBatch` saying why,
so nothing half-valid is ever stored.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aperture.model import (
    LOCK_ROLES,
    EventType,
    Frame,
    FrameKind,
    LockStat,
    Profile,
    Sample,
    SyscallStat,
)
from aperture.profile_types import PROFILE_TYPES, by_name, known_names, value_unit
from aperture.proto.v1 import profile_pb2 as pb
from aperture.transforms import lock_samples

SCHEMA_VERSION = pb.SCHEMA_VERSION_1

_KIND_TO_PB = {
    FrameKind.USER: pb.FRAME_KIND_USER,
    FrameKind.KERNEL: pb.FRAME_KIND_KERNEL,
    FrameKind.JIT: pb.FRAME_KIND_JIT,
    FrameKind.UNKNOWN: pb.FRAME_KIND_UNKNOWN,
    FrameKind.PYTHON: pb.FRAME_KIND_PYTHON,
}
_MAX_KIND = max(_KIND_TO_PB.values())
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


# Identity strings are kept per agent and exported as metric labels, so a batch
# past these is refused (docs/api.md "Ingest limits", SECURITY.md). The agent's
# own checks (--agent-id 1-128 characters, --label keys 63 and values 256) are
# well inside them.
MAX_IDENTITY_BYTES = 256  # agent_id, host, version (UTF-8)
MAX_LABELS = 64
MAX_LABEL_KEY_BYTES = 256
MAX_LABEL_VALUE_BYTES = 1024
MAX_LABELS_BYTES = 4096  # keys and values of one batch's labels together
# The most a batch may count in all of one kind (samples, wait ns, calls): sums of
# batches are signed 64-bit in the store and the API.
MAX_TOTAL = 2**63 - 1


class MalformedBatch(ValueError):
    """A batch that cannot be decoded; the message says what is wrong."""


@dataclass(frozen=True)
class Identity:
    agent_id: str
    host: str
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""


@dataclass
class Decoded:
    """A decoded batch: who sent it, which window, and a profile per event type."""

    identity: Identity
    sequence: int
    start_ns: int
    end_ns: int
    profiles: dict[EventType, Profile]
    losses: dict[str, int]


class _Interner:
    def __init__(self, batch: pb.ProfileBatch) -> None:
        self._batch = batch
        self._strings: dict[str, int] = {"": 0}
        batch.strings.append("")
        self._frames: dict[Frame, int] = {}
        self._stacks: dict[tuple[Frame, ...], int] = {}
        # Columns are built in Python lists and handed to protobuf once (much
        # faster than appending to repeated fields one value at a time).
        self.frame_name: list[int] = []
        self.frame_module: list[int] = []
        self.frame_kind: list[Any] = []  # FrameKind enum values
        self.frame_offset: list[int] = []
        self.frame_line: list[int] = []
        self.stack_frames: list[int] = []
        self.stack_lengths: list[int] = []

    def string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._batch.strings)
            self._batch.strings.append(text)
        return index

    def frame(self, frame: Frame) -> int:
        index = self._frames.get(frame)
        if index is None:
            index = self._frames[frame] = len(self.frame_name)
            self.frame_name.append(self.string(frame.name))
            self.frame_module.append(self.string(frame.module))
            self.frame_kind.append(_KIND_TO_PB[frame.kind])
            self.frame_offset.append(frame.offset)
            self.frame_line.append(frame.line)
        return index

    def stack(self, stack: tuple[Frame, ...]) -> int:
        index = self._stacks.get(stack)
        if index is None:
            index = self._stacks[stack] = len(self.stack_lengths)
            self.stack_frames.extend(self.frame(f) for f in stack)
            self.stack_lengths.append(len(stack))
        return index

    def finish(self) -> None:
        b = self._batch
        b.frames.name.extend(self.frame_name)
        b.frames.module.extend(self.frame_module)
        b.frames.kind.extend(self.frame_kind)
        b.frames.offset.extend(self.frame_offset)
        if any(self.frame_line):  # native-only batches stay as before: no line column
            b.frames.line.extend(self.frame_line)
        b.stacks.frames.extend(self.stack_frames)
        b.stacks.lengths.extend(self.stack_lengths)


def encode(profiles: Iterable[Profile], identity: Identity, sequence: int) -> pb.ProfileBatch:
    """One batch carrying every given profile (at most one per event type)."""
    batch = pb.ProfileBatch(schema_version=SCHEMA_VERSION, sequence=sequence)
    batch.agent.agent_id = identity.agent_id
    batch.agent.host = identity.host
    batch.agent.version = identity.version
    batch.agent.labels.update(identity.labels)
    intern = _Interner(batch)
    starts, ends = [], []
    order = list(PROFILE_TYPES)  # one order whatever the caller's: the same batch, byte for byte
    for profile in sorted(profiles, key=lambda p: order.index(p.event_type)):
        starts.append(profile.start_ns)
        ends.append(profile.end_ns)
        for name, lost in profile.losses.items():
            key = f"{profile.event_type}.{name}"
            batch.losses[key] = batch.losses.get(key, 0) + lost
        for key, value in profile.labels.items():
            batch.window_labels[f"{profile.event_type}.{key}"] = value
        shape = PROFILE_TYPES[profile.event_type].wire
        if shape in ("cpu", "stacks"):
            samples = profile.samples
            if shape == "cpu":
                out: pb.CpuSamples | pb.StackSamples = batch.cpu
                batch.cpu.frequency_hz = profile.frequency_hz
                batch.cpu.count.extend([s.value for s in samples])
            else:
                out = batch.samples.add(type=str(profile.event_type))
                out.value.extend([s.value for s in samples])
            out.stack.extend([intern.stack(s.stack) for s in samples])
            out.pid.extend([s.pid for s in samples])
            out.tid.extend([s.tid for s in samples])
            out.comm.extend([intern.string(s.comm) for s in samples])
            out.thread.extend([intern.string(s.thread) for s in samples])
        elif shape == "lock":
            batch.lock.SetInParent()
            for lock in profile.locks:
                batch.lock.locks.add(
                    stack=intern.stack(lock.stack),
                    pid=lock.pid,
                    comm=intern.string(lock.comm),
                    address=lock.address,
                    contentions=lock.contentions,
                    wait_ns=lock.wait_ns,
                    max_ns=lock.max_ns,
                    eagain=lock.eagain,
                    timeouts=lock.timeouts,
                    timeout_ns=lock.timeout_ns,
                    interrupted=lock.interrupted,
                    hist=lock.hist,
                    kind=intern.string(lock.kind),
                    role=LOCK_ROLES.index(lock.role),
                    releases=lock.releases,
                )
        else:
            batch.syscall.SetInParent()
            for call in profile.syscalls:
                rec = batch.syscall.syscalls.add(
                    pid=call.pid,
                    comm=intern.string(call.comm),
                    nr=call.nr,
                    name=intern.string(call.name),
                    count=call.count,
                    errors=call.errors,
                    total_ns=call.total_ns,
                    min_ns=call.min_ns,
                    max_ns=call.max_ns,
                    hist=call.hist,
                )
                rec.errnos.update(call.errnos)
    intern.finish()
    batch.window_start_ns = min(starts, default=0)
    batch.window_end_ns = max(ends, default=0)
    return batch


@dataclass(frozen=True)
class Summary:
    """What :func:`check` learns of a valid batch without decoding it."""

    cpu_samples: int = 0
    lock_contentions: int = 0
    lock_wait_ns: int = 0
    syscalls: int = 0
    stacks: int = 0
    # samples (records) of each StackSamples set, by type name
    records: tuple[tuple[str, int], ...] = ()


def _within(values: Sequence[int], size: int, what: str) -> None:
    if values and max(values) >= size:
        bad = next(i for i, v in enumerate(values) if v >= size)
        raise MalformedBatch(
            f"{what} {bad} refers to entry {values[bad]}, but the batch has {size}"
        )


def _size(text: str) -> int:
    return len(text.encode())


def check_identity(agent: pb.AgentIdentity) -> None:
    """Refuse an identity past the limits above; the message names the field and limit."""
    if not agent.agent_id:
        raise MalformedBatch("the batch has no agent_id")
    for what, text in (("agent_id", agent.agent_id), ("host", agent.host),
                       ("agent version", agent.version)):  # fmt: skip
        if _size(text) > MAX_IDENTITY_BYTES:
            raise MalformedBatch(
                f"the {what} is {_size(text)} bytes, over the limit of {MAX_IDENTITY_BYTES}: "
                "send a shorter one"
            )
    labels = agent.labels
    if len(labels) > MAX_LABELS:
        raise MalformedBatch(
            f"the agent has {len(labels)} labels, over the limit of {MAX_LABELS}: drop some"
        )
    total = 0
    for key, value in labels.items():
        key_bytes, value_bytes = _size(key), _size(value)
        if key_bytes > MAX_LABEL_KEY_BYTES:
            raise MalformedBatch(
                f"the label key {key[:40]!r}... is {key_bytes} bytes, over the limit of "
                f"{MAX_LABEL_KEY_BYTES}: use a shorter key"
            )
        if value_bytes > MAX_LABEL_VALUE_BYTES:
            raise MalformedBatch(
                f"the value of label {key!r} is {value_bytes} bytes, over the limit of "
                f"{MAX_LABEL_VALUE_BYTES}: use a shorter value"
            )
        total += key_bytes + value_bytes
    if total > MAX_LABELS_BYTES:
        raise MalformedBatch(
            f"the agent's labels are {total} bytes in all, over the limit of "
            f"{MAX_LABELS_BYTES}: drop some or shorten them"
        )


def check(batch: pb.ProfileBatch) -> Summary:
    """Validate every index and the header without building objects (the ingest path)."""
    if batch.schema_version != SCHEMA_VERSION:
        raise MalformedBatch(
            f"schema version {batch.schema_version} is not supported (expected {SCHEMA_VERSION})"
        )
    check_identity(batch.agent)
    if batch.sequence == 0:
        raise MalformedBatch("the batch has no sequence number")
    if batch.window_end_ns < batch.window_start_ns:
        raise MalformedBatch("the window ends before it starts")
    if not (batch.HasField("cpu") or batch.HasField("lock") or batch.HasField("syscall")
            or len(batch.samples)):  # fmt: skip
        raise MalformedBatch(f"the batch carries no profile data (of {known_names()})")
    n_strings = len(batch.strings)
    frames, stacks = batch.frames, batch.stacks
    n_frames = len(frames.name)
    if not len(frames.module) == len(frames.kind) == len(frames.offset) == n_frames:
        raise MalformedBatch("the frame columns have different lengths")
    if frames.line and len(frames.line) != n_frames:
        raise MalformedBatch(f"the batch has {len(frames.line)} frame lines for {n_frames} frames")
    _within(frames.name, n_strings, "frame name")
    _within(frames.module, n_strings, "frame module")
    if frames.kind and (min(frames.kind) < 1 or max(frames.kind) > _MAX_KIND):
        raise MalformedBatch("a frame has an unknown kind")
    _within(stacks.frames, n_frames, "stack frame")
    if sum(stacks.lengths) != len(stacks.frames):
        raise MalformedBatch("the stack lengths do not add up to the stack frames")
    n_stacks = len(stacks.lengths)
    cpu_total = 0
    if batch.HasField("cpu"):
        cpu = batch.cpu
        n = len(cpu.stack)
        if (
            not len(cpu.count) == len(cpu.pid) == len(cpu.tid) == len(cpu.comm) == n
            or len(cpu.thread) != n
        ):
            raise MalformedBatch("the cpu sample columns have different lengths")
        _within(cpu.stack, n_stacks, "cpu sample")
        _within(cpu.comm, n_strings, "cpu sample comm of")
        _within(cpu.thread, n_strings, "cpu sample thread of")
        cpu_total = sum(cpu.count)
    values, records = _check_stack_sets(batch.samples, n_stacks, n_strings)
    contentions = wait = 0
    for i, lock in enumerate(batch.lock.locks):
        if lock.stack >= n_stacks:
            raise MalformedBatch(
                f"lock {i} refers to stack {lock.stack}, but the batch has {n_stacks}"
            )
        if lock.comm >= n_strings or lock.kind >= n_strings:
            raise MalformedBatch(
                f"lock {i} comm or kind refers to a string past the {n_strings} in the batch"
            )
        if lock.role >= len(LOCK_ROLES):
            raise MalformedBatch(
                f"lock {i} has role {lock.role}, which this aggregator does not know "
                f"(it knows {', '.join(LOCK_ROLES)}): upgrade the aggregator"
            )
        if lock.role == 0:  # the other roles are views of the same waits
            contentions += lock.contentions
            wait += lock.wait_ns
    calls = 0
    for i, call in enumerate(batch.syscall.syscalls):
        if call.comm >= n_strings or call.name >= n_strings:
            raise MalformedBatch(
                f"syscall {i} refers to a string past the {n_strings} in the batch"
            )
        calls += call.count
    for what, total in (("cpu sample counts", cpu_total), ("lock contentions", contentions),
                        ("lock wait_ns", wait), ("syscall counts", calls),
                        *((f"{name} values", v) for name, v in values)):  # fmt: skip
        if total > MAX_TOTAL:
            raise MalformedBatch(
                f"the batch's {what} add up to {total}, past the {MAX_TOTAL} a batch may "
                "count: send the true counts"
            )
    return Summary(cpu_total, contentions, wait, calls, n_stacks, records)


def _check_stack_sets(
    sets: Sequence[pb.StackSamples], n_stacks: int, n_strings: int
) -> tuple[list[tuple[str, int]], tuple[tuple[str, int], ...]]:
    """Each set names a known stack type once, and its columns agree and index the batch.

    Returns each set's values in all and its number of samples, by type name.
    """
    totals: dict[str, int] = {}
    records: dict[str, int] = {}
    for s in sets:
        kind = by_name(s.type)
        if kind is None:
            raise MalformedBatch(
                f"the batch carries samples of profile type {s.type[:64]!r}, which this "
                f"aggregator does not know (it knows {known_names()}): upgrade the aggregator"
            )
        if kind.wire != "stacks":
            raise MalformedBatch(
                f"{s.type} data has a message of its own and cannot come as stack samples"
            )
        if s.type in totals:
            raise MalformedBatch(f"the batch carries two sets of {s.type} samples")
        n = len(s.stack)
        if not len(s.value) == len(s.pid) == len(s.tid) == len(s.comm) == len(s.thread) == n:
            raise MalformedBatch(f"the {s.type} sample columns have different lengths")
        _within(s.stack, n_stacks, f"{s.type} sample")
        _within(s.comm, n_strings, f"{s.type} sample comm of")
        _within(s.thread, n_strings, f"{s.type} sample thread of")
        totals[s.type] = sum(s.value)
        records[s.type] = n
    return list(totals.items()), tuple(records.items())


def decode(batch: pb.ProfileBatch) -> Decoded:
    """Check and unpack a batch; :class:`MalformedBatch` says what is wrong."""
    check(batch)
    strings: Sequence[str] = batch.strings
    names = [strings[i] for i in batch.frames.name]
    modules = [strings[i] for i in batch.frames.module]
    # An absent line column (older agents, native-only batches) means line 0 throughout.
    lines: Sequence[int] = batch.frames.line or [0] * len(names)
    frames = [
        Frame(name, module, _KIND_FROM_PB[kind], offset, line)
        for name, module, kind, offset, line in zip(
            names, modules, batch.frames.kind, batch.frames.offset, lines, strict=True
        )
    ]
    stacks: list[tuple[Frame, ...]] = []
    flat = list(batch.stacks.frames)
    pos = 0
    for length in batch.stacks.lengths:
        stacks.append(tuple(frames[j] for j in flat[pos : pos + length]))
        pos += length

    profiles: dict[EventType, Profile] = {}

    def window(event_type: EventType, unit: str) -> Profile:
        prefix = f"{event_type}."
        return Profile(
            event_type=event_type,
            unit=unit,
            start_ns=batch.window_start_ns,
            end_ns=batch.window_end_ns,
            losses={k[len(prefix) :]: v for k, v in batch.losses.items() if k.startswith(prefix)},
            labels={
                k[len(prefix) :]: v for k, v in batch.window_labels.items() if k.startswith(prefix)
            },
        )

    if batch.HasField("cpu"):
        cpu = window(EventType.CPU, value_unit(EventType.CPU))
        c = batch.cpu
        cpu.frequency_hz = c.frequency_hz
        cpu.samples = [
            Sample(stacks[st], count, pid=pid, tid=tid, comm=strings[comm], thread=strings[thr])
            for st, count, pid, tid, comm, thr in zip(
                c.stack, c.count, c.pid, c.tid, c.comm, c.thread, strict=True
            )
        ]
        profiles[EventType.CPU] = cpu
    if batch.HasField("lock"):
        lock = window(EventType.LOCK, value_unit(EventType.LOCK))
        lock.locks = [
            LockStat(
                pid=rec.pid,
                comm=strings[rec.comm],
                address=rec.address,
                stack=stacks[rec.stack],
                contentions=rec.contentions,
                wait_ns=rec.wait_ns,
                max_ns=rec.max_ns,
                eagain=rec.eagain,
                timeouts=rec.timeouts,
                timeout_ns=rec.timeout_ns,
                interrupted=rec.interrupted,
                hist=tuple(rec.hist),
                kind=strings[rec.kind],
                role=LOCK_ROLES[rec.role],
                releases=rec.releases,
            )
            for rec in batch.lock.locks
        ]
        lock.samples = lock_samples(lock.locks)
        profiles[EventType.LOCK] = lock
    if batch.HasField("syscall"):
        sys_profile = window(EventType.SYSCALL, value_unit(EventType.SYSCALL))
        sys_profile.syscalls = [
            SyscallStat(
                pid=rec.pid,
                comm=strings[rec.comm],
                nr=rec.nr,
                name=strings[rec.name],
                count=rec.count,
                errors=rec.errors,
                total_ns=rec.total_ns,
                min_ns=rec.min_ns,
                max_ns=rec.max_ns,
                hist=tuple(rec.hist),
                errnos=dict(rec.errnos),
            )
            for rec in batch.syscall.syscalls
        ]
        profiles[EventType.SYSCALL] = sys_profile
    for st in batch.samples:
        event_type = EventType(st.type)
        profile = window(event_type, value_unit(event_type))
        profile.samples = [
            Sample(stacks[i], value, pid=pid, tid=tid, comm=strings[comm], thread=strings[thr])
            for i, value, pid, tid, comm, thr in zip(
                st.stack, st.value, st.pid, st.tid, st.comm, st.thread, strict=True
            )
        ]
        profiles[event_type] = profile
    agent = batch.agent
    return Decoded(
        identity=Identity(agent.agent_id, agent.host, dict(agent.labels), agent.version),
        sequence=batch.sequence,
        start_ns=batch.window_start_ns,
        end_ns=batch.window_end_ns,
        profiles=profiles,
        losses=dict(batch.losses),
    )


def parse(data: bytes, *, max_bytes: int = 64 << 20) -> pb.ProfileBatch:
    """Bytes (gzip or raw protobuf) to a batch; :class:`MalformedBatch` otherwise."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error is no OSError
            raise MalformedBatch(f"the gzip data is damaged ({exc})") from None
        if len(data) > max_bytes:
            raise MalformedBatch(f"the batch inflates to more than {max_bytes} bytes")
    batch = pb.ProfileBatch()
    try:
        batch.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError variants
        raise MalformedBatch(f"not a ProfileBatch ({exc})") from None
    return batch
