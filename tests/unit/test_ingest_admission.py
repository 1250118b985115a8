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
