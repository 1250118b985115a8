"""Acknowledged means durable until stored: with a journal smaller than a store outage's
backlog, no acknowledged batch is trimmed away before the store has written it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("chdb", reason="the storage tests need the aggregator extra (chdb)")

from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.aggregator.storage_link import StorageLink, StorageSettings
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.storage import StorageWriter
from aperture.wire import Identity, encode

S = 10**9
AGENT = "durable"
BATCHES = 150
JOURNAL_BYTES = 64 << 10  # the journal's --buffer-bytes share: a fraction of the outage
SEGMENT_BYTES = 16 << 10


def batch(sequence: int) -> bytes:
    """About 1.6 KB: 60 distinct stacks."""
    now = time.time_ns()
    samples = [
        Sample((Frame("main", "app"), Frame(f"work_{sequence}_{i}", "app", FrameKind.USER, i)),
               i + 1, pid=10, tid=10, comm="app")
        for i in range(60)
    ]  # fmt: skip
    profile = Profile(EventType.CPU, "samples", samples=samples, start_ns=now - 10 * S,
                      end_ns=now, frequency_hz=99)  # fmt: skip
    return encode([profile], Identity(AGENT, "h"), sequence).SerializeToString()


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_store_outage_longer_than_the_journal_loses_nothing_across_a_crash(
    tmp_path: Path,
) -> None:
    jdir = tmp_path / "journal"
    journal = Journal(jdir, max_bytes=JOURNAL_BYTES, segment_bytes=SEGMENT_BYTES)
    link = StorageLink(StorageSettings(dsn=f"chdb://{tmp_path / 'store'}"), Metrics(), journal)
    store = link.store
    ingest = Ingest(BatchBuffer(JOURNAL_BYTES), Metrics(), journal=journal,
                    on_accept=link.submit, admit=link.has_room)  # fmt: skip
    ingest.replay()  # opens the journal
    store.command(f"DETACH TABLE {store.database}.samples")  # the store fails every write
    try:
        for sequence in range(1, BATCHES + 1):
            assert ingest.push(batch(sequence)).outcome is Outcome.ACCEPTED
        assert wait_for(lambda: link.writer.stats().flush_failed > 0), "the outage was not real"
        assert journal.held() == BATCHES
        assert journal.size() > 2 * JOURNAL_BYTES, "the journal must keep what is not stored"
        # The aggregator dies: what its writer queued is gone, the journal is not.
        link.writer.drain(0)
        journal.close()
    finally:
        store.command(f"ATTACH TABLE {store.database}.samples")

    journal = Journal(jdir, max_bytes=JOURNAL_BYTES, segment_bytes=SEGMENT_BYTES)

    def stored(tags: list[object]) -> None:
        journal.release([t for t in tags if isinstance(t, int)])

    writer = StorageWriter(store, flush_interval_s=0.05, on_done=stored).start()
    ingest = Ingest(BatchBuffer(JOURNAL_BYTES), Metrics(), journal=journal,
                    on_accept=writer.submit, admit=writer.has_room)  # fmt: skip
    assert ingest.replay() == BATCHES
    assert writer.flush(60.0)
    keys = [(AGENT, s) for s in range(1, BATCHES + 1)]
    assert len(store.stored(keys)) == BATCHES, "every acknowledged batch is stored"
    assert journal.held() == 0
    # Stored, the old segments go at the next rotation: the journal shrinks to its bound.
    for sequence in range(BATCHES + 1, BATCHES + 10):
        assert ingest.push(batch(sequence)).outcome is Outcome.ACCEPTED
    assert writer.drain(30.0)
    assert journal.size() <= JOURNAL_BYTES + SEGMENT_BYTES
    journal.close()
    store.close()
