"""Profiles to and from the wire message ``aperture.v1.ProfileBatch``.

:func:`encode` interns strings, frames and stacks; :func:`decode` checks every
index and refuses a malformed batch with :class:`MalformedBatch` saying why,
so nothing half-valid is ever stored.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aperture.model import (
    EventType,
    Frame,
    FrameKind,
    LockStat,
    Profile,
    Sample,
    SyscallStat,
)
from aperture.proto.v1 import profile_pb2 as pb
from aperture.transforms import lock_samples

SCHEMA_VERSION = pb.SCHEMA_VERSION_1

_KIND_TO_PB = {
    FrameKind.USER: pb.FRAME_KIND_USER,
    FrameKind.KERNEL: pb.FRAME_KIND_KERNEL,
    FrameKind.JIT: pb.FRAME_KIND_JIT,
    FrameKind.UNKNOWN: pb.FRAME_KIND_UNKNOWN,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


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

    def string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._batch.strings)
            self._batch.strings.append(text)
        return index

    def frame(self, frame: Frame) -> int:
        index = self._frames.get(frame)
        if index is None:
            index = self._frames[frame] = len(self._batch.frames)
            self._batch.frames.add(
                name=self.string(frame.name),
                module=self.string(frame.module),
                kind=_KIND_TO_PB[frame.kind],
                offset=frame.offset,
            )
        return index

    def stack(self, stack: tuple[Frame, ...]) -> int:
        index = self._stacks.get(stack)
        if index is None:
            index = self._stacks[stack] = len(self._batch.stacks)
            self._batch.stacks.add(frames=[self.frame(f) for f in stack])
        return index


def encode(profiles: Iterable[Profile], identity: Identity, sequence: int) -> pb.ProfileBatch:
    """One batch carrying every given profile (at most one per event type)."""
    batch = pb.ProfileBatch(schema_version=SCHEMA_VERSION, sequence=sequence)
    batch.agent.agent_id = identity.agent_id
    batch.agent.host = identity.host
    batch.agent.version = identity.version
    batch.agent.labels.update(identity.labels)
    intern = _Interner(batch)
    starts, ends = [], []
    for profile in profiles:
        starts.append(profile.start_ns)
        ends.append(profile.end_ns)
        for name, lost in profile.losses.items():
            key = f"{profile.event_type}.{name}"
            batch.losses[key] = batch.losses.get(key, 0) + lost
        for key, value in profile.labels.items():
            batch.window_labels[f"{profile.event_type}.{key}"] = value
        if profile.event_type is EventType.CPU:
            batch.cpu.frequency_hz = profile.frequency_hz
            for s in profile.samples:
                batch.cpu.samples.add(
                    stack=intern.stack(s.stack),
                    count=s.value,
                    pid=s.pid,
                    tid=s.tid,
                    comm=intern.string(s.comm),
                    thread=intern.string(s.thread),
                )
        elif profile.event_type is EventType.LOCK:
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
    batch.window_start_ns = min(starts, default=0)
    batch.window_end_ns = max(ends, default=0)
    return batch


def _index(value: int, size: int, what: str) -> int:
    if value >= size:
        raise MalformedBatch(f"{what} refers to entry {value}, but the batch has {size}")
    return value


def decode(batch: pb.ProfileBatch) -> Decoded:
    """Check and unpack a batch; :class:`MalformedBatch` says what is wrong."""
    if batch.schema_version != SCHEMA_VERSION:
        raise MalformedBatch(
            f"schema version {batch.schema_version} is not supported (expected {SCHEMA_VERSION})"
        )
    if not batch.agent.agent_id:
        raise MalformedBatch("the batch has no agent_id")
    if batch.sequence == 0:
        raise MalformedBatch("the batch has no sequence number (they start at 1)")
    if batch.window_end_ns < batch.window_start_ns:
        raise MalformedBatch("the window ends before it starts")
    strings: Sequence[str] = batch.strings
    n_strings = len(strings)

    def text(i: int, what: str) -> str:
        return strings[_index(i, n_strings, what)]

    frames = []
    for i, f in enumerate(batch.frames):
        kind = _KIND_FROM_PB.get(f.kind)
        if kind is None:
            raise MalformedBatch(f"frame {i} has an unknown kind {f.kind}")
        frames.append(
            Frame(text(f.name, f"frame {i} name"), text(f.module, f"frame {i} module"), kind,
                  f.offset)
        )  # fmt: skip
    stacks = []
    for i, st in enumerate(batch.stacks):
        stacks.append(tuple(frames[_index(j, len(frames), f"stack {i}")] for j in st.frames))

    def stack(i: int, what: str) -> tuple[Frame, ...]:
        return stacks[_index(i, len(stacks), what)]

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
        cpu = window(EventType.CPU, "samples")
        cpu.frequency_hz = batch.cpu.frequency_hz
        cpu.samples = [
            Sample(
                stack=stack(s.stack, f"cpu sample {i}"),
                value=s.count,
                pid=s.pid,
                tid=s.tid,
                comm=text(s.comm, f"cpu sample {i} comm"),
                thread=text(s.thread, f"cpu sample {i} thread"),
            )
            for i, s in enumerate(batch.cpu.samples)
        ]
        profiles[EventType.CPU] = cpu
    if batch.HasField("lock"):
        lock = window(EventType.LOCK, "nanoseconds")
        lock.locks = [
            LockStat(
                pid=rec.pid,
                comm=text(rec.comm, f"lock {i} comm"),
                address=rec.address,
                stack=stack(rec.stack, f"lock {i}"),
                contentions=rec.contentions,
                wait_ns=rec.wait_ns,
                max_ns=rec.max_ns,
                eagain=rec.eagain,
                timeouts=rec.timeouts,
                timeout_ns=rec.timeout_ns,
                interrupted=rec.interrupted,
                hist=tuple(rec.hist),
            )
            for i, rec in enumerate(batch.lock.locks)
        ]
        lock.samples = lock_samples(lock.locks)
        profiles[EventType.LOCK] = lock
    if batch.HasField("syscall"):
        sys_profile = window(EventType.SYSCALL, "nanoseconds")
        sys_profile.syscalls = [
            SyscallStat(
                pid=rec.pid,
                comm=text(rec.comm, f"syscall {i} comm"),
                nr=rec.nr,
                name=text(rec.name, f"syscall {i} name"),
                count=rec.count,
                errors=rec.errors,
                total_ns=rec.total_ns,
                min_ns=rec.min_ns,
                max_ns=rec.max_ns,
                hist=tuple(rec.hist),
                errnos=dict(rec.errnos),
            )
            for i, rec in enumerate(batch.syscall.syscalls)
        ]
        profiles[EventType.SYSCALL] = sys_profile
    if not profiles:
        raise MalformedBatch("the batch carries no cpu, lock or syscall data")
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
        except (OSError, EOFError) as exc:
            raise MalformedBatch(f"the gzip data is damaged ({exc})") from None
        if len(data) > max_bytes:
            raise MalformedBatch(f"the batch inflates to more than {max_bytes} bytes")
    batch = pb.ProfileBatch()
    try:
        batch.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError variants
        raise MalformedBatch(f"not a ProfileBatch ({exc})") from None
    return batch
