"""Flame graph SVG in the manner of flamegraph.pl: self-contained, zoomable, searchable.

Orientation is flame (root at the bottom). Colours follow flamegraph.pl's
``--color=java`` families: user code red, kernel orange, JIT green, unknown grey,
and Python functions (ours) aqua, with a per-name shade from a stable hash so a
function keeps its colour across graphs. Frames merge by name, as in
flamegraph.pl; a Python frame's tooltip shows ``file:line`` with its hottest
line in the profile (the line with the most samples, the smallest on a tie).
Frames narrower than :data:`MIN_FRAME_PX` are left out (their value stays in
the parent's width): at most ~12,000 frames per level at 1200 px, however large
the profile.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from xml.sax.saxutils import escape

from aperture.formats.humanize import describe_value
from aperture.formats.svg_assets import CSS, SCRIPT
from aperture.model import FrameKind, Profile, fold, hottest_line, iter_frames
from aperture.profile_types import PROFILE_TYPES

WIDTH = 1200
FRAME_HEIGHT = 16
FONT_SIZE = 12
# Average glyph width relative to the font size (Verdana), as in flamegraph.pl.
FONT_WIDTH = 0.59
XPAD = 10
YPAD_TOP = 56  # title, subtitle and buttons
YPAD_BOTTOM = 30  # hover details and "Matched"
MIN_FRAME_PX = 0.1

# Frame kinds beyond model.FrameKind: the synthetic root and the per-process frames.
_ROOT = "root"
_PROCESS = "process"

# Characters XML 1.0 forbids even when escaped; symbol names from arbitrary binaries
# (or surrogate-escaped bytes) can contain them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class _Box:
    """One frame to draw: ``offset`` and ``value`` in profile units."""

    name: str
    kind: str
    depth: int
    offset: int
    value: int
    where: str = ""  # file:line of a Python function


def to_svg(profile: Profile, *, title: str | None = None, width: int = WIDTH) -> str:
    """Render ``profile`` as a flame graph SVG document."""
    paths = sorted((path, value) for path, value in fold(profile).items() if value > 0)
    total = sum(value for _, value in paths)
    heading = title if title is not None else PROFILE_TYPES[profile.event_type].flamegraph_title
    subtitle = _subtitle(profile, total)
    if total <= 0:
        return _empty_svg(heading, subtitle, width)
    usable = width - 2 * XPAD
    px_per_unit = usable / total
    boxes = _layout(paths, _frame_kinds(profile), MIN_FRAME_PX / px_per_unit, _places(profile))
    height = YPAD_TOP + (max(b.depth for b in boxes) + 1) * FRAME_HEIGHT + YPAD_BOTTOM
    parts = [
        _header(width, height, heading, subtitle),
        f'<text id="unzoom" class="btn hide" x="{XPAD}" y="24">Reset Zoom</text>\n',
        f'<text id="search" class="btn" x="{width - XPAD - 100}" y="24">Search</text>\n',
        f'<text id="details" x="{XPAD}" y="{height - 12}"></text>\n',
        f'<text id="matched" x="{width - XPAD}" y="{height - 12}"></text>\n',
        f'<g id="frames" data-total="{total}" data-xpad="{XPAD}" data-usable="{usable}"'
        f' data-char-width="{FONT_SIZE * FONT_WIDTH:.3f}">\n',
    ]
    for box in boxes:
        parts.append(_frame(box, profile, total, px_per_unit, height))
    parts.append("</g>\n")
    parts.append(f"<script><![CDATA[\n{SCRIPT}]]></script>\n</svg>\n")
    return "".join(parts)


def _frame_kinds(profile: Profile) -> dict[str, str]:
    """The kind of each frame name (flame graphs merge frames by name)."""
    return {frame.name: str(frame.kind) for frame in iter_frames(profile.samples)}


def _places(profile: Profile) -> dict[str, str]:
    """``file:line`` of each Python function name, with its hottest line (``file`` if none)."""
    files: dict[str, str] = {}
    lines: dict[str, Counter[int]] = {}
    for sample in profile.samples:
        for frame in sample.stack:
            if frame.kind is FrameKind.PYTHON:
                files.setdefault(frame.name, frame.module)
                counts = lines.setdefault(frame.name, Counter())
                if frame.line and sample.value > 0:
                    counts[frame.line] += sample.value
    return {
        name: f"{file}:{line}" if (line := hottest_line(lines[name])) else file
        for name, file in files.items()
    }


def _layout(
    paths: list[tuple[tuple[str, ...], int]],
    kinds: dict[str, str],
    min_value: float,
    places: dict[str, str] | None = None,
) -> list[_Box]:
    """Frames at least ``min_value`` wide, from folded paths sorted by name.

    As in flamegraph.pl, a sweep over sorted paths: a frame opens where a path departs
    from the previous one and closes when a later path departs above it, so its value
    is the distance travelled meanwhile and no frame tree is ever built.
    """
    boxes: list[_Box] = []
    open_frames: list[tuple[str, int]] = []  # (name, offset where it opened), root first
    offset = 0

    def close_to(depth: int) -> None:
        while len(open_frames) > depth:
            name, start = open_frames.pop()
            if offset - start >= min_value:
                level = len(open_frames)
                kind = _PROCESS if level == 0 else kinds.get(name, FrameKind.UNKNOWN)
                where = (places or {}).get(name, "") if level else ""
                boxes.append(_Box(name, kind, level + 1, start, offset - start, where))

    for path, value in paths:
        shared = 0
        for (name, _), step in zip(open_frames, path, strict=False):
            if name != step:
                break
            shared += 1
        close_to(shared)
        open_frames.extend((name, offset) for name in path[shared:])
        offset += value
    close_to(0)
    boxes.append(_Box("all", _ROOT, 0, 0, offset))
    # Level by level from the root, each left to right: the document reads like the graph.
    boxes.sort(key=lambda b: (b.depth, b.offset))
    return boxes


def _frame(box: _Box, profile: Profile, total: int, px_per_unit: float, height: int) -> str:
    x, width = XPAD + box.offset * px_per_unit, box.value * px_per_unit
    y = height - YPAD_BOTTOM - (box.depth + 1) * FRAME_HEIGHT
    value = describe_value(box.value, profile.unit, profile.event_type)
    where = f"{box.where}, " if box.where else ""
    tooltip = f"{box.name} ({where}{value}, {100 * box.value / total:.2f}%)"
    r, g, b = frame_color(box.name, box.kind)
    return (
        f"<g><title>{_text(tooltip)}</title>"
        f'<rect x="{_px(x)}" y="{y}" width="{_px(width)}" height="{FRAME_HEIGHT - 1}"'
        f' fill="rgb({r},{g},{b})" rx="2" ry="2" data-x="{box.offset}" data-v="{box.value}"/>'
        f'<text x="{_px(x + 3)}" y="{y + 10.5}">{_text(fit_label(box.name, width))}'
        "</text></g>\n"
    )


def fit_label(name: str, width_px: float) -> str:
    """The frame label that fits ``width_px``: the name, cut with "..", or nothing."""
    fit = int(width_px / (FONT_SIZE * FONT_WIDTH))
    if fit < 3:
        return ""
    return name if len(name) <= fit else name[: fit - 2] + ".."


def frame_color(name: str, kind: str) -> tuple[int, int, int]:
    """A deterministic colour: the hue family from the kind, the shade from the name."""
    h = zlib.crc32(name.encode("utf-8", "surrogatepass"))
    v1, v2 = (h & 0xFFFF) / 0xFFFF, (h >> 16) / 0xFFFF
    if kind == FrameKind.KERNEL:
        return 205 + int(50 * v1), 95 + int(60 * v2), int(40 * v1)
    if kind == FrameKind.JIT:
        return 50 + int(60 * v1), 185 + int(60 * v2), 50 + int(60 * v1)
    if kind == FrameKind.USER:
        return 205 + int(50 * v1), 55 + int(80 * v2), 55 + int(80 * v2)
    if kind == FrameKind.PYTHON:
        return 40 + int(50 * v1), 160 + int(50 * v2), 200 + int(50 * v1)
    if kind == _PROCESS:
        return 150 + int(40 * v1), 150 + int(40 * v1), 205 + int(40 * v2)
    # Unknown frames and the root.
    grey = 170 + int(40 * v1)
    return grey, grey, grey


def _subtitle(profile: Profile, total: int) -> str:
    parts = [f"Event: {profile.event_type}"]
    if profile.end_ns > profile.start_ns:
        parts.append(f"Duration: {profile.duration_s:.1f} s")
    if profile.frequency_hz:
        parts.append(f"{profile.frequency_hz} Hz")
    parts.append(f"Total: {describe_value(total, profile.unit, profile.event_type)}")
    if host := profile.labels.get("host"):
        parts.append(f"Host: {host}")
    lost = ", ".join(f"{name} {count:,}" for name, count in sorted(profile.losses.items()) if count)
    if lost:
        parts.append(f"Lost: {lost}")
    return " · ".join(parts)


def _header(width: int, height: int, title: str, subtitle: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}">\n'
        f"<style>\n{CSS}</style>\n"
        '<defs><linearGradient id="background" y1="0" y2="1" x1="0" x2="0">'
        '<stop stop-color="#eeeeee" offset="5%"/><stop stop-color="#eeeeb0" offset="95%"/>'
        "</linearGradient></defs>\n"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="url(#background)"/>\n'
        f'<text id="title" x="{width / 2:g}" y="24">{_text(title)}</text>\n'
        f'<text id="subtitle" x="{width / 2:g}" y="42">{_text(subtitle)}</text>\n'
    )


def _empty_svg(title: str, subtitle: str, width: int) -> str:
    height = 120
    return (
        _header(width, height, title, subtitle)
        + f'<text id="empty" x="{width / 2:g}" y="84" text-anchor="middle">no samples</text>\n'
        "</svg>\n"
    )


def _text(s: str) -> str:
    """``s`` as XML character data."""
    return escape(_NOT_XML.sub("\ufffd", s))


def _px(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")
