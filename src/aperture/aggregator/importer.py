"""Profiles from other tools (pprof files, Pyroscope SDKs) stored like agent data.

Each distinct label set and event type becomes one ``ProfileBatch`` with an
identity of its own (``agent_id`` = ``SOURCE:SERVICE``) and a time-based,
unique sequence number, handed to :meth:`Ingest.push`: the same path, checks,
journal and buffer as a batch pushed by an agent, so the data is queryable the
same way (``label.KEY=VALUE`` matches the labels).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aperture.aggregator.ingest import Ingest, Outcome
from aperture.model import EventType, Profile
from aperture.transforms import merge
from aperture.wire import Identity, encode

# Identity labels are queryable; these are too many to be meant as labels.
MAX_LABELS = 64
MAX_LABEL_BYTES = 1024


class ImportRefused(Exception):
    """An import that stored nothing, with the HTTP status that says why."""

    def __init__(self, status: int, message: str, *, counted: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # Ingest.push already counted the outcome in aperture_pushes_total.
        self.counted = counted


@dataclass
class Stored:
    """What an import stored: a batch per profile."""

    batches: int = 0
    profiles: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"batches": self.batches, "profiles": self.profiles}


class _Sequence:
    """Unix ns, bumped past the last one handed out: unique across restarts too."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


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


def group(items: Iterable[Item]) -> list[Item]:
    """Profiles of the same service, labels, event type and unit merged into one."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...], EventType, str], list[Profile]] = {}
    for item in items:
        p = item.profile
        key = (item.service, tuple(sorted(item.labels.items())), p.event_type, p.unit)
        groups.setdefault(key, []).append(p)
    out = []
    for (service, labels, _, unit), profiles in groups.items():
        merged = merge(profiles)
        merged.unit = unit
        out.append(Item(service, dict(labels), merged))
    return out


class Importer:
    """Encodes imported profiles as batches and pushes them through :class:`Ingest`."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self._sequence = _Sequence()

    def store(self, source: str, items: Iterable[Item]) -> Stored:
        """Store every profile, or refuse before storing any (:class:`ImportRefused`).

        ``source`` (``pprof``, ``pyroscope``) and the service name make the agent id.
        """
        stored = Stored()
        encoded: list[bytes] = []
        now = time.time_ns()
        for item in group(items):
            labels, profile = item.labels, item.profile
            if not profile.samples and not profile.locks:
                continue
            # Clients name whole windows (Pyroscope's legacy ``until`` is the end of the
            # current 10 s slot): nothing was sampled after now, and a window ending later
            # would stay out of queries ending now.
            profile.end_ns = min(profile.end_ns, now)
            profile.start_ns = min(profile.start_ns, profile.end_ns)
            check_labels(labels)
            host = labels.get("host") or labels.get("hostname") or "import"
            agent_id = f"{source}:{item.service}"
            identity = Identity(agent_id, host, labels)
            data = encode([profile], identity, self._sequence()).SerializeToString()
            if len(data) > self.ingest.max_message_bytes:
                raise ImportRefused(
                    413,
                    f"the {profile.event_type} profile is {len(data)} bytes as a batch, over "
                    f"the aggregator's limit of {self.ingest.max_message_bytes}: send it in parts",
                )
            encoded.append(data)
            stored.profiles.append(
                {
                    "agent_id": agent_id,
                    "type": str(profile.event_type),
                    "unit": profile.unit,
                    "labels": labels,
                    "samples": len(profile.samples),
                    "total": profile.total,
                    "start_ns": profile.start_ns,
                    "end_ns": profile.end_ns,
                }
            )
        # Everything was converted and checked before this point: only the
        # aggregator itself (a journal write failing) can stop a later push.
        for data in encoded:
            result = self.ingest.push(data)
            if result.outcome is Outcome.UNAVAILABLE:
                raise ImportRefused(503, result.message, counted=True)
            if result.outcome not in (Outcome.ACCEPTED, Outcome.DUPLICATE):
                raise ImportRefused(400, result.message, counted=True)
            stored.batches += 1
        return stored
