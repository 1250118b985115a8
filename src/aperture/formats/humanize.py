"""Human-readable values in a profile's unit ("75 samples", "1.23 ms of wait")."""

from __future__ import annotations

from aperture.model import EventType
from aperture.profile_types import PROFILE_TYPES

# Units whose values are plain event counts.
COUNT_UNITS = frozenset({"", "none", "count", "counts", "sample", "samples"})


def is_count_unit(unit: str) -> bool:
    """Whether values in ``unit`` are sample counts."""
    return unit.lower() in COUNT_UNITS


def format_duration_ns(ns: float) -> str:
    """A duration with three significant digits in the largest fitting unit."""
    for scale, suffix in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if abs(ns) >= scale:
            return f"{_three_digits(ns / scale)} {suffix}"
    return f"{ns:.0f} ns"


def _three_digits(x: float) -> str:
    # Fixed-point, not "%.3g": that prints 999.95 as "1e+03".
    if abs(x) < 10:
        return f"{x:.2f}"
    if abs(x) < 100:
        return f"{x:.1f}"
    return f"{x:.0f}"


def describe_value(value: int, unit: str, event_type: EventType) -> str:
    """``value`` in words: "1,234 samples", "1.23 ms of wait", "512 bytes"."""
    if is_count_unit(unit):
        return f"{value:,} sample" if value == 1 else f"{value:,} samples"
    if unit.lower() in ("ns", "nanoseconds"):
        return f"{format_duration_ns(value)} {PROFILE_TYPES[event_type].time_phrase}"
    return f"{value:,} {unit}"
