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
