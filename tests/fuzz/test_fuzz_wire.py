"""ProfileBatch: round trips, and every damaged batch refused with MalformedBatch."""

from __future__ import annotations

import gzip

from fuzz_batches import byte_edits, mutate_bytes, mutated_batches, profiles, valid_batches
from hypothesis import given
from hypothesis import strategies as st

from aperture.model import EventType, Profile
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Decoded, Identity, MalformedBatch, check, decode, encode, parse


def _outcome(data: bytes) -> Decoded | MalformedBatch:
    """parse + check + decode: a decoded batch or the refusal (any other exception fails)."""
    try:
        batch = parse(data)
        summary = check(batch)
    except MalformedBatch as exc:
        assert str(exc), "a refusal must say why"
        return exc
    decoded = decode(batch)  # whatever check() accepts must decode
    cpu = decoded.profiles.get(EventType.CPU)
    assert summary.cpu_samples == (sum(s.value for s in cpu.samples) if cpu else 0)
    return decoded


@given(valid_batches())
def test_encode_decode_round_trip(case: tuple[list[Profile], Identity, pb.ProfileBatch]) -> None:
    profiles_in, ident, batch = case
    decoded = decode(pb.ProfileBatch.FromString(batch.SerializeToString()))
    assert decoded.identity == ident
    assert decoded.sequence == batch.sequence
    for p in profiles_in:
        out = decoded.profiles[p.event_type]
        assert (out.start_ns, out.end_ns) == (p.start_ns, p.end_ns)
        if p.event_type is EventType.CPU:
            assert out.samples == p.samples
            assert out.frequency_hz == p.frequency_hz
        elif p.event_type is EventType.LOCK:
            assert out.locks == p.locks
        elif PROFILE_TYPES[p.event_type].wire == "stacks":
            assert out.samples == p.samples
        else:
            assert out.syscalls == p.syscalls
    # re-encoding the decoded batch gives the same bytes (interning is deterministic)
    again = encode(decoded.profiles.values(), decoded.identity, decoded.sequence)
    assert again.SerializeToString(deterministic=True) == batch.SerializeToString(
        deterministic=True
    )


@given(mutated_batches())
def test_mutated_batch_decodes_or_is_refused(batch: pb.ProfileBatch) -> None:
    _outcome(batch.SerializeToString())


@given(valid_batches(), byte_edits, st.booleans())
def test_damaged_bytes_decode_or_are_refused(
    case: tuple[list[Profile], Identity, pb.ProfileBatch],
    edits: list[tuple[int, int, int]],
    gzipped: bool,
) -> None:
    data = case[2].SerializeToString()
    if gzipped:
        data = gzip.compress(data)
    _outcome(mutate_bytes(data, edits))


@given(st.binary(max_size=512))
def test_random_bytes_decode_or_are_refused(data: bytes) -> None:
    _outcome(data)


@given(st.binary(max_size=64))
def test_gzip_of_random_bytes_is_refused_or_decoded(data: bytes) -> None:
    _outcome(gzip.compress(data))


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (8 << 20), compresslevel=9)  # ~8 KB that inflates to 8 MB
    try:
        parse(bomb, max_bytes=1 << 20)
    except MalformedBatch as exc:
        assert "inflates to more than" in str(exc)
    else:
        raise AssertionError("an 8 MB inflation passed a 1 MB limit")


@given(profiles())
def test_check_summary_matches_the_profiles(ps: list[Profile]) -> None:
    summary = check(encode(ps, Identity("a", "h"), 1))
    by_type = {p.event_type: p for p in ps}
    cpu = by_type.get(EventType.CPU)
    assert summary.cpu_samples == (sum(s.value for s in cpu.samples) if cpu else 0)
    calls = by_type.get(EventType.SYSCALL)
    assert summary.syscalls == (sum(c.count for c in calls.syscalls) if calls else 0)


def test_damaged_deflate_stream_is_a_malformed_batch() -> None:
    """Found by the fuzzer: a broken stored block raised zlib.error, not MalformedBatch."""
    data = bytearray(gzip.compress(b"x" * 100, compresslevel=0))
    data[13] ^= 0xFF  # the stored block's NLEN no longer complements LEN
    try:
        parse(bytes(data))
    except MalformedBatch as exc:
        assert "gzip data is damaged" in str(exc)
    else:
        raise AssertionError("a damaged deflate stream parsed")
