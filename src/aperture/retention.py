"""Which profile windows the aggregator takes: inside the store's retention, and not
ahead of its clock by more than a clock skew.

A window the store's TTL would drop at once (google/pprof's ``sample.cpu`` was
recorded in 2017) must be refused, not answered "stored" and then never found;
a window far in the future would escape the TTL and sit at the end of every
timeline. Both ends are checked against the aggregator's own clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

# How far ahead of the aggregator's clock a sender's may be (docs/reliability.md).
MAX_CLOCK_SKEW_NS = 10 * 60 * 10**9
DAY_NS = 86_400 * 10**9


class OutsideRetention(ValueError):
    """A window the store would not keep; its message is one sentence for the sender."""


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_window(
    start_ns: int, end_ns: int, *, retention_days: int | None, now_ns: int | None = None
) -> None:
    """Raise :class:`OutsideRetention` unless ``[start_ns, end_ns]`` may be stored now.

    ``retention_days`` None: no store (the buffer keeps what it is given), so
    only the future bound applies.
    """
    now = time.time_ns() if now_ns is None else now_ns
    if start_ns > now + MAX_CLOCK_SKEW_NS:
        raise OutsideRetention(
            f"the profile starts at {_day(start_ns)}, more than "
            f"{MAX_CLOCK_SKEW_NS // 60_000_000_000} minutes ahead of this aggregator's clock "
            f"({_day(now)}): check the sender's clock, or give the profile's real time"
        )
    if retention_days is not None and end_ns < now - retention_days * DAY_NS:
        raise OutsideRetention(
            f"the profile ends at {_day(end_ns)}, before the store's {retention_days}-day "
            f"retention, so it would be dropped at once: send recent profiles, "
            "or start the aggregator with a longer --retention"
        )
