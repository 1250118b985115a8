"""Brendan Gregg's folded stacks: one ``root;...;leaf COUNT`` line per distinct stack."""

from __future__ import annotations

import re
from collections import Counter

from aperture.model import Profile, fold

# The count is the last space-separated field; frame names may themselves contain
# spaces (``operator new(unsigned long)``), so only the final field is parsed.
_COUNT = re.compile(r"[0-9]+")


def sanitize_frame(name: str) -> str:
    """Make a frame name safe for one field of a folded line."""
    if not name:
        # An empty field would read back as "a;;b", which no folded tool emits.
        return "[unknown]"
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def fold_sanitized(profile: Profile) -> Counter[tuple[str, ...]]:
    """:func:`aperture.model.fold` with every name sanitized, rooted at the process name."""
    folded: Counter[tuple[str, ...]] = Counter()
    for path, value in fold(profile, with_process=True).items():
        if value > 0:
            # Two names can sanitize to the same text; their values then add up.
            folded[tuple(sanitize_frame(name) for name in path)] += value
    return folded


def to_collapsed(profile: Profile) -> str:
    """Folded stack lines, sorted by stack, each ending in a newline."""
    lines = sorted(f"{';'.join(path)} {value}" for path, value in fold_sanitized(profile).items())
    return "".join(f"{line}\n" for line in lines)


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """Parse folded stack lines into ``{path: count}``; blank lines are skipped."""
    folded: Counter[tuple[str, ...]] = Counter()
    # One str per distinct name, not one per line it is on (a folded file repeats its roots).
    names: dict[str, str] = {}
    # Split on "\n" only: str.splitlines() would also break on \x0b, \x1c, \u2028, ...
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        stack, sep, count = line.rpartition(" ")
        if not sep or not _COUNT.fullmatch(count):
            raise ValueError(
                f"folded stacks line {number}: expected 'frame;frame;... COUNT' with a"
                f" non-negative integer count, got {_preview(line)}"
            )
        path = tuple([names.setdefault(name, name) for name in stack.split(";")])
        if not all(path):
            raise ValueError(f"folded stacks line {number}: empty frame name in {_preview(line)}")
        folded[path] += int(count)
    return folded


def _preview(line: str, limit: int = 80) -> str:
    """The line quoted for an error message, shortened if long."""
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")
