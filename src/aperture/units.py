"""Parsing the human units users type on the command line."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h|d)?\s*$")
_SCALE = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h``, ``500ms``, ``20us``, ``1d`` or plain seconds (``45``)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration: use seconds or a number with us, ms, s, m, h or d "
            "(e.g. 30s, 5m, 1h)"
        )
    seconds = float(match.group(1)) * _SCALE[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``45s``, ``2m05s``, ``1h02m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_SCALE = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(text: str) -> int:
    """Bytes in ``256MiB``, ``64M``, ``1GiB``, ``4096`` (KiB/MiB/GiB are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with KiB, MiB, GiB")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    if "I" in unit:
        scale = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        scale = _SIZE_SCALE[unit.rstrip("B") if unit != "B" else "B"]
    return int(number * scale)
