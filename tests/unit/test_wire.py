"""ProfileBatch encoding round-trips exactly, and malformed batches are refused with a reason."""

from __future__ import annotations

import gzip

import pytest

from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample, SyscallStat
from aperture.proto.v1 import profile_pb2 as pb
from aperture.transforms import lock_samples
from aperture.wire import Identity, MalformedBatch, check, decode, encode, parse

MAIN = Frame("main", "app", FrameKind.USER, 0x1130)
HOT = Frame("hot", "app", FrameKind.USER, 0x1200)
VFS = Frame("vfs_read", "[kernel]", FrameKind.KERNEL, 0xFFFFFFFF81234567)
IDENT = Identity("agent-1", "host-a", {"kernel": "6.18"}, "0.1.0")


def cpu_profile() -> Profile:
    return Profile(
        EventType.CPU,
        "samples",
        samples=[
            Sample((MAIN, HOT), 75, pid=10, tid=11, comm="app", thread="worker"),
            Sample((MAIN, VFS), 25, pid=10, tid=10, comm="app", thread="app"),
        ],
        start_ns=1_000,
        end_ns=2_000,
        frequency_hz=99,
        losses={"user_stack_collisions": 3},
        labels={"idle_samples": "7"},
    )


def lock_profile() -> Profile:
    locks = [
        LockStat(10, "app", 0x7F00, (MAIN, HOT), contentions=4, wait_ns=9000, max_ns=5000,
                 eagain=1, timeouts=2, timeout_ns=300, interrupted=0, hist=(0, 1, 3)),
    ]  # fmt: skip
    return Profile(EventType.LOCK, "nanoseconds", samples=lock_samples(locks), start_ns=1_000,
                   end_ns=2_000, locks=locks, losses={"stack_collisions": 0})  # fmt: skip


def syscall_profile() -> Profile:
    calls = [SyscallStat(10, "app", 0, "read", count=5, errors=2, total_ns=500, min_ns=50,
                         max_ns=200, hist=(0, 0, 5), errnos={2: 2})]  # fmt: skip
    return Profile(EventType.SYSCALL, "nanoseconds", start_ns=1_000, end_ns=2_000, syscalls=calls,
                   losses={"stats_map_full": 0})  # fmt: skip


def offcpu_profile() -> Profile:
    """A registry type without a message of its own: it travels as a StackSamples set."""
    return Profile(
        EventType.OFFCPU,
        "nanoseconds",
        samples=[
            Sample((MAIN, VFS), 30_000_000, pid=10, tid=11, comm="app", thread="worker"),
            Sample((MAIN, HOT, VFS), 10_000_000, pid=10, tid=10, comm="app", thread="app"),
        ],
        start_ns=1_000,
        end_ns=2_000,
        losses={"sampled_out": 4},
        labels={"min_block_ns": "1000"},
    )


def test_round_trip_every_event_type() -> None:
    profiles = [cpu_profile(), lock_profile(), syscall_profile(), offcpu_profile()]
    batch = encode(profiles, IDENT, sequence=7)
    wire = pb.ProfileBatch.FromString(gzip.decompress(gzip.compress(batch.SerializeToString())))
    decoded = decode(wire)
    assert decoded.identity == IDENT
    assert decoded.sequence == 7
    for original in profiles:
        assert decoded.profiles[original.event_type] == original
    # strings, frames and stacks are interned once
    assert len(wire.strings) == len(set(wire.strings))
    assert len(wire.frames.name) == 3


def test_parse_accepts_gzip_and_raw() -> None:
    raw = encode([cpu_profile()], IDENT, 1).SerializeToString()
    assert parse(gzip.compress(raw)) == parse(raw)


def corrupt(mutate: object) -> pb.ProfileBatch:
    batch = encode([cpu_profile(), lock_profile()], IDENT, 1)
    assert callable(mutate)
    mutate(batch)
    return batch


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.frames.name.__setitem__(0, 999), "frame name 0 refers to entry 999"),
        (lambda b: b.stacks.frames.__setitem__(0, 50), "stack frame 0 refers to entry 50"),
        (lambda b: b.stacks.lengths.__setitem__(0, 7), "lengths do not add up"),
        (lambda b: b.cpu.stack.__setitem__(0, 9), "cpu sample 0 refers to entry 9"),
        (lambda b: b.cpu.comm.__setitem__(1, 10**6), "cpu sample comm of 1 refers"),
        (lambda b: b.cpu.pid.append(1), "cpu sample columns have different lengths"),
        (lambda b: b.frames.kind.__setitem__(0, 9), "unknown kind"),
        (lambda b: setattr(b.lock.locks[0], "stack", 9), "lock 0 refers to stack 9"),
        (lambda b: setattr(b, "schema_version", 2), "schema version 2"),
        (lambda b: setattr(b, "sequence", 0), "no sequence"),
        (lambda b: b.agent.ClearField("agent_id"), "no agent_id"),
        (lambda b: setattr(b, "window_end_ns", 1), "ends before it starts"),
        (lambda b: (b.ClearField("cpu"), b.ClearField("lock")), "carries no profile data"),
        # Each count fits its uint64 field, their sum does not: the old check took it, and
        # GET /api/v1/batches then failed (500) building its uint64 summary.
        (
            lambda b: (
                b.cpu.count.extend([2**63, 2**63])
                or b.cpu.stack.extend([0, 0])
                or b.cpu.pid.extend([1, 1])
                or b.cpu.tid.extend([1, 1])
                or b.cpu.comm.extend([0, 0])
                or b.cpu.thread.extend([0, 0])
            ),
            "cpu sample counts add up to",
        ),
        (lambda b: setattr(b.lock.locks[0], "wait_ns", 2**64 - 1), "lock wait_ns add up to"),
    ],
)
def test_malformed_batches_are_refused_with_a_reason(mutate: object, reason: str) -> None:
    with pytest.raises(MalformedBatch, match=reason):
        decode(corrupt(mutate))


def stack_set(batch: pb.ProfileBatch, name: str, n: int = 1) -> pb.StackSamples:
    st = batch.samples.add(type=name)
    for column in (st.stack, st.value, st.pid, st.tid, st.comm, st.thread):
        column.extend([0] * n)
    return st


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        # a type this aggregator does not know is refused, never filed under another
        (lambda b: stack_set(b, "gpu_launch"), "'gpu_launch', which this aggregator does not know"),
        (lambda b: stack_set(b, "lock"), "lock data has a message of its own"),
        (lambda b: (stack_set(b, "offcpu"), stack_set(b, "offcpu")), "two sets of offcpu"),
        (lambda b: stack_set(b, "offcpu").pid.append(1), "offcpu sample columns have different"),
        (lambda b: stack_set(b, "offcpu").stack.__setitem__(0, 99), "offcpu sample 0 refers"),
        (lambda b: stack_set(b, "offcpu").thread.__setitem__(0, 10**6), "thread of 0 refers"),
        (lambda b: stack_set(b, "offcpu", 2).value.extend([2**63, 2**63]) or None, "different"),
        (lambda b: setattr_values(stack_set(b, "offcpu", 2), [2**63, 2**63]), "offcpu values add"),
    ],
)
def test_stack_sets_of_unknown_or_malformed_types_are_refused(mutate: object, reason: str) -> None:
    with pytest.raises(MalformedBatch, match=reason):
        decode(corrupt(mutate))


def setattr_values(st: pb.StackSamples, values: list[int]) -> None:
    del st.value[:]
    st.value.extend(values)


def test_a_batch_of_only_a_stack_type_is_accepted_and_counted() -> None:
    batch = encode([offcpu_profile()], IDENT, 3)
    assert not batch.HasField("cpu") and [s.type for s in batch.samples] == ["offcpu"]
    summary = check(batch)
    assert summary.records == (("offcpu", 2),) and summary.cpu_samples == 0
    assert decode(batch).profiles == {EventType.OFFCPU: offcpu_profile()}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x1f\x8b\x08garbage", "gzip data is damaged"),
        (b"\xff\xff\xff\xff\xff", "not a ProfileBatch"),
    ],
)
def test_garbage_bytes_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedBatch, match=reason):
        parse(data)


def test_gzip_bomb_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (2 << 20))
    with pytest.raises(MalformedBatch, match="inflates to more than"):
        parse(bomb, max_bytes=1 << 20)


PY_MAIN = Frame("main", "/app/run.py", FrameKind.PYTHON, 0, 12)
PY_HOT = Frame("Worker.hot", "/app/run.py", FrameKind.PYTHON, 0, 40)
EVAL = Frame("PyObject_Call", "libpython3.11.so.1.0", FrameKind.USER, 0x5000)


def python_profile() -> Profile:
    hot_41 = Frame("Worker.hot", "/app/run.py", FrameKind.PYTHON, 0, 41)
    return Profile(
        EventType.CPU,
        "samples",
        samples=[
            Sample((EVAL, PY_MAIN, PY_HOT), 5, pid=10, tid=10, comm="python3"),
            Sample((EVAL, PY_MAIN, hot_41), 3, pid=10, tid=10, comm="python3"),
        ],
        start_ns=1_000,
        end_ns=2_000,
        frequency_hz=99,
    )


def test_python_frames_round_trip_with_kind_and_line() -> None:
    batch = pb.ProfileBatch.FromString(encode([python_profile()], IDENT, 3).SerializeToString())
    assert pb.FRAME_KIND_PYTHON in batch.frames.kind
    assert sorted(batch.frames.line) == [0, 12, 40, 41]
    assert decode(batch).profiles[EventType.CPU] == python_profile()


def test_native_batches_carry_no_line_column_and_decode_as_line_zero() -> None:
    # What an agent from before lines sends: the same bytes, no field 5 in Frames.
    batch = encode([cpu_profile()], IDENT, 1)
    assert len(batch.frames.line) == 0
    old = pb.ProfileBatch.FromString(batch.SerializeToString())
    frames = {f for s in decode(old).profiles[EventType.CPU].samples for f in s.stack}
    assert {f.line for f in frames} == {0}


def test_a_line_column_of_the_wrong_length_is_refused() -> None:
    batch = encode([python_profile()], IDENT, 1)
    batch.frames.line.append(7)
    with pytest.raises(MalformedBatch, match="frame lines for 4 frames"):
        decode(batch)
