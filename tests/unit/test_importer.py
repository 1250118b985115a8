"""Imports placed in time and stored whole: refused outside retention, never half-stored.

Real parts throughout: an Ingest with its buffer, the store's StorageWriter
(never started, so what it is given stays queued) for the queue's bound, a
Journal on disk, and google/pprof's sample.cpu (recorded in 2017).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.importer import Importer, ImportRefused, Item
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.formats.pprof import from_pprof
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.retention import MAX_CLOCK_SKEW_NS
from aperture.storage.writer import StorageWriter
from aperture.wire import Identity, encode
from interop_files import INTEROP, needs_interop

SAMPLE_CPU = INTEROP / "pprof" / "sample.cpu"
S = 10**9
MAIN = Frame("main", "app", FrameKind.USER, 0x10)


def sample_cpu() -> list[Item]:
    return [Item("sample", {"service": "sample", **one.labels}, one.profile)
            for one in from_pprof(SAMPLE_CPU.read_bytes(), comm="sample")]  # fmt: skip


def profile(end_ns: int, *, stacks: int = 3) -> Profile:
    samples = [Sample((MAIN, Frame(f"f{i}", "app")), 1 + i, pid=1) for i in range(stacks)]
    return Profile(EventType.CPU, "samples", samples=samples, start_ns=end_ns - 10 * S,
                   end_ns=end_ns, frequency_hz=99)  # fmt: skip


def two_parts(end_ns: int) -> list[Item]:
    """One import of two label sets: two batches."""
    return [Item("svc", {"zone": zone}, profile(end_ns, stacks=40)) for zone in ("a", "b")]


def imported(ingest: Ingest) -> list[Any]:
    return [b for b in ingest.buffer.snapshot() if b.agent_id.startswith("pprof:")]


@needs_interop
def test_a_profile_before_retention_is_refused_with_what_to_do() -> None:
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    importer = Importer(ingest, retention_days=7)
    with pytest.raises(ImportRefused) as refused:
        importer.store("pprof", sample_cpu(), request_key=b"k", hint=", or import it with at=now")
    assert refused.value.status == 422
    assert refused.value.message == (
        "the profile ends at 2017-09-29 20:58:01 UTC, before the store's 7-day retention, so "
        "it would be dropped at once: send recent profiles, or start the aggregator with a "
        "longer --retention, or import it with at=now"
    )
    assert not ingest.buffer.snapshot()  # the old code answered "stored ... 176 samples"


@needs_interop
def test_at_moves_an_old_profile_to_now_and_says_where_it_was() -> None:
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    now = time.time_ns()
    stored = Importer(ingest, retention_days=7).store(
        "pprof", sample_cpu(), request_key=b"k", at_ns=now
    )
    [part] = stored.profiles
    assert part["total"] == 176 and part["end_ns"] == now
    assert part["end_ns"] - part["start_ns"] == 2_002_012_950  # its recorded duration
    assert part["recorded_start_ns"] == 1_506_718_679_257_235_370
    [batch] = imported(ingest)
    assert batch.end_ns == now and batch.cpu_samples == 176


def test_a_profile_ahead_of_the_clock_is_refused_within_the_skew_taken() -> None:
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    importer = Importer(ingest, retention_days=None)  # no store: only the clock bound
    now = time.time_ns()
    far = profile(now + 30 * 86_400 * S)
    with pytest.raises(ImportRefused) as refused:
        importer.store("pprof", [Item("svc", {}, far)], request_key=b"far")
    assert refused.value.status == 422 and "minutes ahead of this aggregator's clock" in str(
        refused.value
    )
    near = profile(now + MAX_CLOCK_SKEW_NS // 2, stacks=1)  # a 10 s slot ending soon
    [part] = Importer(ingest).store("pprof", [Item("svc", {}, near)], request_key=b"n").profiles
    assert part["end_ns"] <= time.time_ns()  # cut at its arrival, as before
    old = profile(now - 400 * 86_400 * S)  # no store: the buffer keeps what it is given
    assert Importer(ingest).store("pprof", [Item("o", {}, old)], request_key=b"o").batches == 1


def test_an_import_the_store_queue_cannot_take_whole_stores_nothing_then_once() -> None:
    writer = StorageWriter(object(), max_pending_bytes=0)  # type: ignore[arg-type]
    ingest = Ingest(BatchBuffer(1 << 20), Metrics(), on_accept=writer.submit,
                    admit=writer.has_room)  # fmt: skip
    agent = encode([profile(time.time_ns())], Identity("agent", "h"), 1).SerializeToString()
    assert ingest.push(agent).outcome is Outcome.ACCEPTED  # the queue holds one batch
    end = time.time_ns()
    scratch = Ingest(BatchBuffer(1 << 20), Metrics())
    Importer(scratch).store("pprof", two_parts(end), request_key=b"req")
    first, second = (b.size for b in imported(scratch))
    writer.max_pending_bytes = len(agent) + first + second - 1  # room for the first part only
    importer = Importer(ingest, retention_days=7)
    with pytest.raises(ImportRefused) as refused:
        importer.store("pprof", two_parts(end), request_key=b"req")
    assert refused.value.status == 503 and "nothing was stored" in refused.value.message
    # The old code pushed the first part, then got UNAVAILABLE for the second.
    assert imported(ingest) == [] and writer.stats().pending_batches == 1
    writer.max_pending_bytes = 1 << 20  # the store caught up
    stored = importer.store("pprof", two_parts(end), request_key=b"req")
    assert stored.batches == 2 and stored.already_stored == 0
    again = importer.store("pprof", two_parts(end), request_key=b"req")
    assert again.batches == 2 and again.already_stored == 2
    assert len(imported(ingest)) == 2 and writer.stats().pending_batches == 3


def test_a_retry_after_a_journal_failure_between_parts_stores_each_part_once(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    journal.open()
    closed = []

    def fail_after_first(*_: object) -> None:
        if not closed:
            closed.append(True)
            journal.close()  # the disk goes away between two parts

    ingest = Ingest(BatchBuffer(1 << 20), Metrics(), journal=journal, on_accept=fail_after_first)
    importer = Importer(ingest, retention_days=7)
    end = time.time_ns()
    with pytest.raises(ImportRefused) as refused:
        importer.store("pprof", two_parts(end), request_key=b"req")
    assert refused.value.status == 503
    assert "1 of the 2 parts of this import were stored before it" in refused.value.message
    assert len(imported(ingest)) == 1
    journal.open()
    stored = importer.store("pprof", two_parts(end), request_key=b"req")
    assert stored.batches == 2 and stored.already_stored == 1
    # The old code gave the retry new sequence numbers: zone a was stored twice.
    zones = sorted(b.data for b in imported(ingest))
    assert len(zones) == 2 and len(set(zones)) == 2
    journal.close()
    assert len(list(Journal(tmp_path / "journal", max_bytes=1 << 20).replay())) == 2


def test_the_same_request_is_one_import_another_is_another() -> None:
    ingest = Ingest(BatchBuffer(1 << 20), Metrics())
    importer = Importer(ingest, retention_days=7)
    end = time.time_ns()
    assert importer.store("pprof", two_parts(end), request_key=b"one").already_stored == 0
    assert importer.store("pprof", two_parts(end), request_key=b"one").already_stored == 2
    assert importer.store("pprof", two_parts(end), request_key=b"two").already_stored == 0
    assert len(imported(ingest)) == 4
