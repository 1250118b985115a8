"""The one filter every query takes: event type, time range and exact matches."""

from __future__ import annotations

from dataclasses import dataclass, field

from aperture.model import EventType

MAX_NS = 2**63 - 1


@dataclass(frozen=True)
class QueryFilter:
    """Event type, event-time range ``[from_ns, to_ns)`` of window ends, exact matches."""

    event_type: EventType = EventType.CPU
    from_ns: int = 0
    to_ns: int = MAX_NS
    host: str | None = None
    agent: str | None = None
    pid: int | None = None
    comm: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    address: int | None = None  # one lock (lock profiles)
    # Lock records of one role (wait, hold, wake): whose stacks a lock flamegraph weighs.
    # None: every role in lock lists, the waits in flamegraphs.
    lock_role: str | None = None
