"""speedscope's JSON file format (https://www.speedscope.app), one sampled profile per process.

Stacks here are not rooted at the process name: each process already is its own
profile, named "comm (pid N)", so a root frame would only add a full-width bar.

speedscope frames are functions (name and file), so a Python function's lines
make one frame, as in our flamegraph; its ``line`` is the function's hottest
line in the profile (the line with the most samples, the smallest on a tie).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from aperture import __version__
from aperture.model import Frame, Profile, Sample, hottest_line

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

# speedscope's FileFormat.ValueUnit; anything else is shown as a plain number.
_UNITS = frozenset({"none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"})
_UNIT_ALIASES = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds", "s": "seconds"}


def speedscope_unit(unit: str) -> str:
    """The speedscope value unit for a profile unit ("none" for sample counts)."""
    unit = _UNIT_ALIASES.get(unit.lower(), unit.lower())
    return unit if unit in _UNITS else "none"


def to_speedscope_dict(profile: Profile, *, name: str | None = None) -> dict[str, Any]:
    """The speedscope document for ``profile`` as JSON-ready data."""
    frame_index: dict[tuple[str, str], int] = {}
    frames: list[dict[str, Any]] = []
    lines: dict[tuple[str, str], Counter[int]] = {}
    for sample in profile.samples:
        for frame in sample.stack:
            if frame.line and sample.value > 0:
                lines.setdefault((frame.name, frame.module), Counter())[frame.line] += sample.value

    def intern(frame: Frame) -> int:
        # speedscope identifies a frame by what it shows: name and file.
        key = (frame.name, frame.module)
        index = frame_index.get(key)
        if index is None:
            index = frame_index[key] = len(frames)
            entry: dict[str, Any] = {"name": frame.name}
            if frame.module:
                entry["file"] = frame.module
            if key in lines:
                entry["line"] = hottest_line(lines[key])
            frames.append(entry)
        return index

    by_process: dict[tuple[int, str], list[Sample]] = {}
    for sample in profile.samples:
        if sample.value > 0:
            by_process.setdefault((sample.pid, sample.comm), []).append(sample)

    unit = speedscope_unit(profile.unit)
    weighed: list[tuple[int, dict[str, Any]]] = []
    for (pid, comm), samples in by_process.items():
        weights: dict[tuple[int, ...], int] = {}
        # Sorted by frame names so speedscope's time-order view groups equal stacks.
        for sample in sorted(samples, key=lambda s: [f.name for f in s.stack]):
            stack = tuple(intern(frame) for frame in sample.stack)
            weights[stack] = weights.get(stack, 0) + sample.value
        total = sum(weights.values())
        label = f"{comm or 'unknown'} (pid {pid})"
        weighed.append((total, _sampled(label, unit, list(weights), list(weights.values()))))
    # The heaviest process is the one speedscope opens first.
    weighed.sort(key=lambda item: -item[0])
    profiles = [p for _, p in weighed] or [_sampled("no samples", unit, [], [])]
    return {
        "$schema": SCHEMA_URL,
        # speedscope shows only time and byte units: the name says what the values are
        "name": name
        if name is not None
        else (f"Aperture {profile.event_type} profile ({profile.unit})"),
        "exporter": f"aperture@{__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": profiles,
    }


def to_speedscope(profile: Profile, *, name: str | None = None) -> str:
    """The speedscope document for ``profile`` as JSON text."""
    return json.dumps(to_speedscope_dict(profile, name=name), separators=(",", ":")) + "\n"


def _sampled(
    name: str, unit: str, stacks: list[tuple[int, ...]], weights: list[int]
) -> dict[str, Any]:
    return {
        "type": "sampled",
        "name": name,
        "unit": unit,
        "startValue": 0,
        "endValue": sum(weights),
        "samples": [list(stack) for stack in stacks],
        "weights": weights,
    }
