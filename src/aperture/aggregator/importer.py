"""Profiles from other tools (pprof files, Pyroscope SDKs) stored like agent data.

Each distinct label set and event type becomes one ``ProfileBatch`` (a part)
with an identity of its own (``agent_id`` = ``SOURCE:SERVICE``), handed to
:meth:`Ingest.push`: the same path, checks, journal and buffer as a batch pushed
by an agent, so the data is queryable the same way (``label.KEY=VALUE`` matches
the labels).

An import is stored whole or not at all, as far as can be known before storing:
every part is converted, placed in time (inside the store's retention, not ahead
of the aggregator's clock: :func:`aperture.retention.check_window`), encoded and
checked, and the store's queue asked for room for all of them, before the first
is pushed. A part's sequence number is a digest of the request and the part, so
when the aggregator fails between parts anyway (a journal write), sending the
same request again stores the parts already stored as duplicates, not twice.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aperture.aggregator.ingest import Ingest, Outcome
from aperture.model import EventType, Frame, Profile
from aperture.profile_types import PROFILE_TYPES
from aperture.retention import DAY_NS, OutsideRetention, check_window
from aperture.transforms import merge
from aperture.wire import Identity, check, encode

# Identity labels are queryable; these are too many to be meant as labels.
MAX_LABELS = 64
MAX_LABEL_BYTES = 1024


class ImportRefused(Exception):
    """An import that stored nothing, with the HTTP status that says why."""

    def __init__(
        self, status: int, message: str, *, counted: bool = False, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # Ingest.push already counted the outcome in aperture_pushes_total.
        self.counted = counted
        # How aperture_pushes_total counts it when the status alone does not say
        # (a 422 is a window outside retention unless this says otherwise).
        self.reason = reason


@dataclass
class Stored:
    """What an import stored: a batch per profile, some maybe by an earlier try of it."""

    batches: int = 0
    already_stored: int = 0
    profiles: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "already_stored": self.already_stored,
            "profiles": self.profiles,
        }


def sequence_of(request_key: bytes, *part: object) -> int:
    """A part's sequence number: the same for the same request and part, nonzero, < 2^63."""
    digest = hashlib.blake2b(repr((request_key, part)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1 or 1


def check_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise ImportRefused(400, f"{len(labels)} labels is more than the {MAX_LABELS} allowed")
    for key, value in labels.items():
        if not key or len(key) + len(value) > MAX_LABEL_BYTES:
            raise ImportRefused(400, f"label {key[:40]!r} is empty or longer than allowed")


@dataclass(frozen=True)
class Item:
    """One imported profile: the service it is from and the labels to store it under."""

    service: str
    labels: dict[str, str]
    profile: Profile
    source: str = ""  # the column of the file it came from ("alloc_space/bytes")
    columns: tuple[int, ...] = ()  # the file's value columns it stands for


def group(items: Iterable[Item]) -> list[Item]:
    """Profiles of the same service, labels, event type and unit merged into one."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...], EventType, str], list[Item]] = {}
    for item in items:
        p = item.profile
        key = (item.service, tuple(sorted(item.labels.items())), p.event_type, p.unit)
        groups.setdefault(key, []).append(item)
    out = []
    for (service, labels, _, unit), same in groups.items():
        profiles = [i.profile for i in same]
        merged = profiles[0] if len(profiles) == 1 else merge(profiles)
        merged.unit = unit
        out.append(Item(service, dict(labels), merged, same[0].source, same[0].columns))
    return out


def subtract(items: list[Item], before: list[Item]) -> list[Item]:
    """``items`` less ``before`` (the same cumulative profile, taken earlier), per stack.

    Summed types become what happened between the two; a gauge (bytes in use) is
    kept as the later value; lock records are kept whole (no tool sends them so).
    """
    earlier: dict[tuple[str, tuple[tuple[str, str], ...], EventType], Counter[_Key]] = {}
    for item in before:
        key = (item.service, tuple(sorted(item.labels.items())), item.profile.event_type)
        acc = earlier.setdefault(key, Counter())
        for s in item.profile.samples:
            acc[(s.pid, s.tid, s.comm, s.thread, s.stack)] += s.value
    out = []
    for item in items:
        p = item.profile
        old = earlier.get((item.service, tuple(sorted(item.labels.items())), p.event_type))
        if old is None or p.locks or PROFILE_TYPES[p.event_type].aggregation != "sum":
            out.append(item)
            continue
        samples = []
        for s in p.samples:
            left = s.value - old[(s.pid, s.tid, s.comm, s.thread, s.stack)]
            if left > 0:
                samples.append(replace(s, value=left))
        p.samples = samples
        out.append(item)
    return out


_Key = tuple[int, int, str, str, tuple[Frame, ...]]


@dataclass
class _Part:
    """One batch of an import, encoded and checked, and what the answer says of it."""

    agent_id: str
    sequence: int
    data: bytes
    summary: dict[str, Any]


class Importer:
    """Encodes imported profiles as batches and pushes them through :class:`Ingest`.

    ``retention_days``: the store's (None: no store, only the clock bound applies).
    """

    def __init__(self, ingest: Ingest, *, retention_days: int | None = None) -> None:
        self.ingest = ingest
        self.retention_days = retention_days

    def store(
        self,
        source: str,
        items: Iterable[Item],
        *,
        request_key: bytes,
        at_ns: int | None = None,
        hint: str = "",
    ) -> Stored:
        """Store every profile, or refuse before storing any (:class:`ImportRefused`).

        ``source`` (``pprof``, ``pyroscope``) and the service name make the agent id.
        ``request_key``: a digest of the request (its body and parameters), from
        which each part's sequence number is made. ``at_ns``: move the profiles'
        windows to end there (their recorded times are kept in the answer).
        ``hint``: what the sender may do about a window outside retention.
        """
        now = time.time_ns()
        parts = [i for i in group(items) if i.profile.samples or i.profile.locks]
        recorded = [(i.profile.start_ns, i.profile.end_ns) for i in parts]
        if at_ns is not None and parts:
            shift = at_ns - max(end for _, end in recorded)
            for item in parts:
                item.profile.start_ns += shift
                item.profile.end_ns += shift
        # A moved import is one a day: the same file moved to now again tomorrow is stored
        # again (the first copy may have left the store by then), a retry today is not.
        moved_day = None if at_ns is None else at_ns // DAY_NS
        encoded = [
            self._part(source, item, window, now, request_key, hint, moved_day)
            for item, window in zip(parts, recorded, strict=True)
        ]
        fresh = [p for p in encoded if not self.ingest.deduper.contains(p.agent_id, p.sequence)]
        admit = self.ingest.admit
        if fresh and admit is not None and not admit(sum(len(p.data) for p in fresh)):
            self.ingest.metrics.pushes.labels(Outcome.UNAVAILABLE.value).inc()
            raise ImportRefused(
                503,
                "the store is behind (its queue has no room for this import): nothing was "
                "stored, retry later",
                counted=True,
            )
        stored = Stored(profiles=[p.summary for p in encoded])
        # Every part was converted and checked, and the store had room for them all:
        # only the aggregator itself (a journal write failing, another push taking the
        # room first) can stop a later push, and a retry of this request then stores
        # the parts already stored as duplicates.
        for part in encoded:
            result = self.ingest.push(part.data)
            if result.outcome is Outcome.DUPLICATE:
                stored.already_stored += 1
            elif result.outcome is not Outcome.ACCEPTED:
                status = 503 if result.outcome is Outcome.UNAVAILABLE else 400
                message = result.message
                if stored.batches:
                    message = (
                        f"{message}; {stored.batches} of the {len(encoded)} parts of this "
                        "import were stored before it, and sending the same request again "
                        "stores the rest (the stored ones are not stored twice)"
                    )
                raise ImportRefused(status, message, counted=True)
            stored.batches += 1
        return stored

    def _part(
        self,
        source: str,
        item: Item,
        recorded: tuple[int, int],
        now: int,
        request_key: bytes,
        hint: str,
        moved_day: int | None,
    ) -> _Part:
        labels, profile = item.labels, item.profile
        try:
            check_window(
                profile.start_ns, profile.end_ns, retention_days=self.retention_days, now_ns=now
            )
        except OutsideRetention as exc:
            raise ImportRefused(422, f"{exc}{'' if moved_day is not None else hint}") from None
        # Clients name whole windows (Pyroscope's legacy ``until`` is the end of the
        # current 10 s slot): nothing was sampled after now, and a window ending later
        # would stay out of queries ending now.
        profile.end_ns = min(profile.end_ns, now)
        profile.start_ns = min(profile.start_ns, profile.end_ns)
        check_labels(labels)
        host = labels.get("host") or labels.get("hostname") or "import"
        agent_id = f"{source}:{item.service}"
        sequence = sequence_of(
            request_key, agent_id, host, sorted(labels.items()), str(profile.event_type),
            profile.unit, sorted(profile.labels.items()), recorded, moved_day,
        )  # fmt: skip
        batch = encode([profile], Identity(agent_id, host, labels), sequence)
        check(batch)  # what Ingest.push checks, so no later part is refused for it
        data = batch.SerializeToString()
        if len(data) > self.ingest.max_message_bytes:
            raise ImportRefused(
                413,
                f"the {profile.event_type} profile is {len(data)} bytes as a batch, over "
                f"the aggregator's limit of {self.ingest.max_message_bytes}: send it in parts",
            )
        summary: dict[str, Any] = {
            "agent_id": agent_id,
            "type": str(profile.event_type),
            "unit": profile.unit,
            "labels": labels,
            "samples": len(profile.samples),
            "total": profile.total,
            "start_ns": profile.start_ns,
            "end_ns": profile.end_ns,
        }
        if item.source:
            summary["from"] = item.source
            summary["columns"] = list(item.columns)
        if moved_day is not None:
            summary["recorded_start_ns"], summary["recorded_end_ns"] = recorded
        return _Part(agent_id, sequence, data, summary)
