"""pprof import: any bytes, and any structurally odd Profile message, import or are refused
(MalformedPprof, or UnknownSampleType for a column no type of ours stands for).

And within any limits: what an import builds never exceeds its budget, and the
counts read off the wire are the parsed message's.
"""

from __future__ import annotations

import gzip

from fuzz_batches import byte_edits, mutate_bytes, pprof_messages, stacks
from hypothesis import given
from hypothesis import strategies as st

from aperture.formats.limits import Budget, ImportLimits
from aperture.formats.pprof import (
    MalformedPprof,
    PprofTooLarge,
    UnknownSampleType,
    from_pprof,
    inflate,
    read_pprof,
    to_pprof,
)
from aperture.formats.protoscan import count_fields
from aperture.model import EventType, Profile, Sample
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.pprof import profile_pb2 as pp


def _import(data: bytes) -> None:
    try:
        imported = from_pprof(data, comm="svc", now_ns=10**18)
    except (MalformedPprof, UnknownSampleType) as exc:
        assert str(exc)
        return
    for one in imported:
        # the type a column stands for, with stacks: never one a column is not
        assert PROFILE_TYPES[one.profile.event_type].has_stacks
        assert all(s.value > 0 for s in one.profile.samples)


@given(pprof_messages())
def test_odd_pprof_messages_import_or_are_refused(p: pp.Profile) -> None:
    _import(p.SerializeToString())


@given(pprof_messages(), st.booleans())
def test_pprof_messages_gzipped_import_or_are_refused(p: pp.Profile, twice: bool) -> None:
    data = gzip.compress(p.SerializeToString())
    _import(gzip.compress(data) if twice else data)


@given(st.lists(st.tuples(stacks, st.integers(1, 2**30)), max_size=6), byte_edits, st.booleans())
def test_damaged_pprof_files_import_or_are_refused(
    samples: list[tuple[tuple[object, ...], int]],
    edits: list[tuple[int, int, int]],
    gunzip: bool,
) -> None:
    profile = Profile(EventType.CPU, "samples", start_ns=1, end_ns=2, frequency_hz=99)
    profile.samples = [Sample(stack, v) for stack, v in samples]  # type: ignore[arg-type]
    data = to_pprof(profile)
    if gunzip:
        data = gzip.decompress(data)
    _import(mutate_bytes(data, edits))


@given(st.binary(max_size=400))
def test_random_bytes_are_refused_or_imported(data: bytes) -> None:
    _import(data)
    _import(b"\x1f\x8b" + data)


@given(st.lists(st.tuples(stacks, st.integers(1, 2**30)), max_size=6))
def test_pprof_round_trip_keeps_every_sample(samples: list[tuple[tuple[object, ...], int]]) -> None:
    profile = Profile(EventType.CPU, "samples", start_ns=10**9, end_ns=2 * 10**9, frequency_hz=100)
    profile.samples = [Sample(stack, v, comm="svc") for stack, v in samples]  # type: ignore[arg-type]
    imported = from_pprof(to_pprof(profile), comm="svc")
    got = sum(s.value for one in imported for s in one.profile.samples)
    assert got == sum(v for _, v in samples)


def test_pprof_inflation_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (4 << 20), compresslevel=9)
    try:
        inflate(bomb, max_bytes=1 << 20)
    except MalformedPprof as exc:
        assert "inflates to more than" in str(exc)
    else:
        raise AssertionError("a 4 MB inflation passed a 1 MB limit")


def test_message_level_import_refuses_short_value_lists() -> None:
    p = pp.Profile(string_table=["", "samples", "count"])
    p.sample_type.add(type=1, unit=2)
    p.sample.add(value=[])
    try:
        from_pprof(p.SerializeToString())
    except MalformedPprof as exc:
        assert "values for 1 sample types" in str(exc)
    else:
        raise AssertionError("a sample without values imported")


@given(st.lists(st.tuples(stacks, st.integers(1, 2**64 - 1)), min_size=1, max_size=4))
def test_export_of_any_counts_round_trips_or_says_why(
    samples: list[tuple[tuple[object, ...], int]],
) -> None:
    """Found by the fuzzer: counts past int64 (x the period) raised "Value out of range"."""
    profile = Profile(EventType.CPU, "samples", start_ns=1, end_ns=2, frequency_hz=99)
    profile.samples = [Sample(stack, v) for stack, v in samples]  # type: ignore[arg-type]
    try:
        data = to_pprof(profile)
    except ValueError as exc:
        assert "does not fit pprof's signed 64-bit values" in str(exc)
        return
    imported = from_pprof(data)
    assert sum(s.value for one in imported for s in one.profile.samples) == sum(
        v for _, v in samples
    )


small_limits = st.builds(
    ImportLimits,
    inflated_bytes=st.integers(0, 600),
    samples=st.integers(0, 8),
    locations=st.integers(0, 5),
    functions=st.integers(0, 5),
    mappings=st.integers(0, 4),
    strings=st.integers(0, 12),
    lines=st.integers(0, 10),
    frames=st.integers(0, 20),
    labels=st.integers(0, 10),
)


@given(pprof_messages(), small_limits, st.booleans())
def test_imports_stay_within_any_limits(p: pp.Profile, limits: ImportLimits, gz: bool) -> None:
    data = p.SerializeToString()
    budget = Budget(limits)
    try:
        message = read_pprof(gzip.compress(data) if gz else data, budget=budget)
    except PprofTooLarge as exc:
        assert "one import may have" in str(exc)
        return
    except MalformedPprof:
        return
    for what, spent in budget.spent.items():
        assert spent <= getattr(limits, what), what
    assert len(message.sample) <= limits.samples and len(message.location) <= limits.locations
    assert len(message.string_table) <= limits.strings
    assert sum(len(s.label) for s in message.sample) <= limits.labels


@given(pprof_messages(), st.integers(0, 8))
def test_wire_counts_are_the_parsed_counts(p: pp.Profile, limit: int) -> None:
    data = p.SerializeToString()
    counts = count_fields(data, {2: limit, 4: 10**6, 6: 10**6})
    if counts[2] <= limit:  # not stopped early: every count is exact
        assert counts == {2: len(p.sample), 4: len(p.location), 6: len(p.string_table)}
    else:
        assert counts[2] == limit + 1 and len(p.sample) > limit


@given(st.binary(max_size=200), st.dictionaries(st.integers(0, 20), st.integers(0, 5)))
def test_wire_counts_of_any_bytes_stay_within_their_limits_plus_one(
    data: bytes, limits: dict[int, int]
) -> None:
    for field, count in count_fields(data, limits).items():
        assert count <= limits[field] + 1
