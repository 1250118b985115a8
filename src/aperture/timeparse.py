"""Times users type in queries: RFC 3339, unix nanoseconds, or relative to now."""

from __future__ import annotations

import re
import time
from datetime import datetime

from aperture.units import parse_duration

_RELATIVE = re.compile(r"^-\s*(\d.*)$")


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """Unix ns of ``now``, ``-15m``/``-1h``/``-7d``, an integer of ns, or RFC 3339."""
    now = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    if value == "now":
        return now
    match = _RELATIVE.match(value)
    if match:
        try:
            return now - int(parse_duration(match.group(1)) * 1e9)
        except ValueError:
            pass
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use RFC 3339 (2026-11-25T10:00:00Z), unix ns, "
            "or a relative time such as -15m, -1h, now"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return int(parsed.timestamp() * 1_000_000_000)
