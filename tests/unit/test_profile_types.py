"""The profile-type registry knows every event type the wire and the store carry."""

from __future__ import annotations

from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.buffer_source import BufferSource
from aperture.model import EventType
from aperture.profile_types import PROFILE_TYPES, series_unit, value_unit
from aperture.query import QueryFilter, answers


def test_every_event_type_is_registered_with_its_units() -> None:
    assert set(PROFILE_TYPES) == set(EventType)
    assert value_unit(EventType.CPU) == series_unit(EventType.CPU) == "samples"
    assert value_unit(EventType.LOCK) == series_unit(EventType.LOCK) == "nanoseconds"
    assert (value_unit(EventType.SYSCALL), series_unit(EventType.SYSCALL)) == (
        "nanoseconds",
        "calls",
    )


def test_answers_state_the_registered_units_even_when_empty() -> None:
    source = BufferSource(BatchBuffer(1 << 20))
    for event_type in EventType:
        f = QueryFilter(event_type)
        assert answers.timeline(source, f, 10, None).unit == series_unit(event_type)
        assert source.export_profile(f).unit == value_unit(event_type)
        if event_type is not EventType.SYSCALL:
            assert answers.flamegraph(source, f, 100).unit == value_unit(event_type)


def test_pprof_exports_name_their_values_by_the_registered_sample_types() -> None:
    from aperture.formats.pprof import to_pprof_message
    from aperture.model import Frame, FrameKind, LockStat, Profile, Sample

    main = Frame("main", "app", FrameKind.USER, 0x10)
    cpu = Profile(EventType.CPU, "samples", frequency_hz=99, samples=[Sample((main,), 3, pid=1)])
    waits = [LockStat(1, "app", 0x1000, (main,), contentions=2, wait_ns=500)]
    lock = Profile(EventType.LOCK, "nanoseconds", locks=waits)
    for profile in (cpu, lock):
        kind = PROFILE_TYPES[profile.event_type]
        out = to_pprof_message(profile)
        s = out.string_table
        assert [(s[v.type], s[v.unit]) for v in out.sample_type] == [
            (v.type, v.unit) for v in kind.pprof
        ]
        assert kind.pprof_period is not None
        assert (s[out.period_type.type], s[out.period_type.unit]) == (
            kind.pprof_period.type,
            kind.pprof_period.unit,
        )
        assert s[out.default_sample_type] == kind.pprof_default
    assert [list(x.value) for x in to_pprof_message(lock).sample] == [[2, 500]]
    assert [list(x.value) for x in to_pprof_message(cpu).sample] == [[3, 3 * round(1e9 / 99)]]


def test_the_profile_types_answer_is_the_registry_and_stack_questions_follow_it() -> None:
    listed = {t.type: t for t in answers.profile_types().types}
    assert set(listed) == set(PROFILE_TYPES)
    for event_type, kind in PROFILE_TYPES.items():
        info = listed[event_type]
        assert (info.label, info.value_unit, info.series_unit, info.has_stacks) == (
            kind.label, kind.value_unit, kind.series_unit, kind.has_stacks)  # fmt: skip
    assert listed[EventType.LOCK].pprof_sample_types == ["contentions/count", "delay/nanoseconds"]
    assert not listed[EventType.SYSCALL].has_stacks
