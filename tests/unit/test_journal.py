"""The journal's trim rule: by size, but never past a segment the store has not written."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.aggregator.journal import Journal

RECORD = b"x" * 1000


def test_without_a_store_the_oldest_segments_go_past_the_size_bound(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=4000, segment_bytes=2000)
    journal.open()
    for _ in range(20):
        journal.append(RECORD)
    assert journal.size() <= 4000 + 2000
    journal.close()


def test_a_held_segment_and_every_newer_one_stay_until_released(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=4000, segment_bytes=2000)
    journal.open()
    segments = [journal.append(RECORD, hold=True) for _ in range(20)]
    assert journal.held() == 20 and journal.size() >= 20 * 1000
    journal.release(segments[:10])  # the store wrote the older half
    assert journal.held() == 10
    assert 10 * 1000 <= journal.size() <= 12 * 1000 + 2000
    journal.release(segments[10:])
    assert journal.held() == 0 and journal.size() <= 4000 + 2000
    journal.close()
    replayed = list(Journal(tmp_path, max_bytes=4000).replay())
    assert replayed and all(r.body == RECORD for r in replayed)
    assert [r.segment for r in replayed] == sorted(r.segment for r in replayed)


def test_replayed_records_are_held_again_by_segment(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1000, segment_bytes=2000)
    journal.open()
    for _ in range(6):
        journal.append(RECORD, hold=True)
    journal.close()
    again = Journal(tmp_path, max_bytes=1000, segment_bytes=2000)
    records = list(again.replay())
    assert len(records) == 6
    for r in records:
        again.hold(r.segment)
    again.open()
    for _ in range(4):
        again.append(RECORD)  # rotations: nothing held may go
    assert len(list(Journal(tmp_path, max_bytes=1000).replay())) == 6 + 4
    again.release([r.segment for r in records])
    assert again.size() <= 1000 + 2000
    again.close()


def test_a_segment_that_cannot_be_opened_leaves_the_current_one_in_use(tmp_path: Path) -> None:
    """The old code closed its segment before opening the next: when that open failed,
    the closed descriptor's number stayed recorded, and the next append wrote into (or
    closed) whatever file the process opened next under that number."""
    journal = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=1500)
    journal.open()
    journal.append(RECORD)
    blocker = tmp_path / "journal-00000002.log"
    blocker.mkdir()  # the next segment's name is taken: its open fails (EISDIR)
    with pytest.raises(OSError):
        journal.append(RECORD)
    bystander = tmp_path / "bystander"
    with open(bystander, "wb") as other:  # may reuse a closed descriptor's number
        journal.append(b"y" * 100)  # fits the current segment
        other.write(b"mine")
    assert bystander.read_bytes() == b"mine"
    blocker.rmdir()
    journal.append(RECORD)  # now the next segment opens
    journal.close()
    bodies = [r.body for r in Journal(tmp_path, max_bytes=1 << 20).replay()]
    assert bodies == [RECORD, b"y" * 100, RECORD]
