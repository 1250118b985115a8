"""A push the store's bounded queue cannot take is refused, not acknowledged and shed."""

from __future__ import annotations

from typing import Any

from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.metrics import Metrics
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.storage.writer import StorageWriter
from aperture.wire import Identity, encode


def batch(sequence: int) -> bytes:
    frame = Frame("main", "app", FrameKind.USER, 0)
    profile = Profile(EventType.CPU, "samples", samples=[Sample((frame,), 3, pid=1, tid=1)],
                      start_ns=1, end_ns=2, frequency_hz=99)  # fmt: skip
    return encode([profile], Identity("a", "h"), sequence).SerializeToString()


def test_push_is_refused_while_the_store_queue_is_full_and_accepted_once_it_drains() -> None:
    room = [False]
    queued: list[bytes] = []
    ingest = Ingest(BatchBuffer(1 << 20), Metrics(), on_accept=lambda raw, _seg: queued.append(raw),
                    admit=lambda _size: room[0])  # fmt: skip
    refused = ingest.push(batch(7))
    assert refused.outcome is Outcome.UNAVAILABLE and refused.retry_after_ms > 0
    assert not queued and not ingest.buffer.snapshot()  # nothing acknowledged, nothing kept
    room[0] = True
    assert ingest.push(batch(7)).outcome is Outcome.ACCEPTED  # the retry is not a duplicate
    assert len(queued) == 1


def test_writer_has_room_until_its_byte_bound() -> None:
    store: Any = object()  # never started: submit only queues
    writer = StorageWriter(store, max_pending_bytes=100)
    assert writer.has_room(500)  # an empty queue takes any one batch
    writer.submit(b"x" * 80)
    assert writer.has_room(20)
    assert not writer.has_room(21)
    writer.submit(b"y" * 80)  # over the bound: kept, never shed
    assert writer.stats().pending_batches == 2


def test_agents_are_asked_to_slow_down_only_when_the_store_queue_is_nearly_full() -> None:
    """The old hint looked at the buffer, which drops its oldest by design and is full in
    steady state: every push was answered "slow down" once it had filled."""
    writer = StorageWriter(object(), max_pending_bytes=10 * len(batch(1)))  # type: ignore[arg-type]
    ingest = Ingest(BatchBuffer(4 * len(batch(1))), Metrics(), on_accept=writer.submit,
                    admit=writer.has_room, pressure=writer.fill)  # fmt: skip
    hints = [ingest.push(batch(seq)).retry_after_ms for seq in range(1, 11)]
    assert ingest.buffer.utilization > 0.9  # full from the fourth push on
    assert hints[:8] == [0] * 8  # the store's queue had room
    assert hints[-1] > 0  # ten batches queued of a bound of ten: nearly full


def test_without_a_store_a_full_buffer_asks_nothing_of_the_agents() -> None:
    ingest = Ingest(BatchBuffer(2 * len(batch(1))), Metrics())
    assert [ingest.push(batch(seq)).retry_after_ms for seq in range(1, 6)] == [0] * 5
