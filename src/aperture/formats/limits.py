"""How much one import request may make the aggregator build, summed over its profiles.

A few hundred kilobytes of gzip can name hundreds of thousands of distinct
samples, and every distinct sample becomes Python objects: each count is checked
against what is left of the request's :class:`Budget` before the objects it
stands for are built, and a request past a limit is refused whole (413) with one
sentence saying which. The limits are documented in docs/api.md and SECURITY.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ImportLimits:
    """The most one import request may carry (google/pprof's large.cpu, 240 s of a
    Go program, has 20,430 samples, 23,355 locations and 500,002 stack frames)."""

    inflated_bytes: int = 16 << 20  # its profiles un-gzipped (the routes: --max-message-bytes)
    profiles: int = 256  # pprof profiles (a Pyroscope push carries several)
    samples: int = 100_000  # pprof samples, or folded stack lines
    locations: int = 100_000
    functions: int = 100_000
    mappings: int = 10_000
    strings: int = 200_000  # string table entries
    lines: int = 400_000  # location lines (inlined functions)
    frames: int = 4_000_000  # stack frames over all samples, inlined ones included
    labels: int = 500_000  # sample labels


LIMITS = ImportLimits()

# How each limit reads in a refusal.
_NAMES = {
    "inflated_bytes": "bytes of profile data once inflated",
    "profiles": "profiles",
    "samples": "samples (stacks)",
    "locations": "locations",
    "functions": "functions",
    "mappings": "mappings",
    "strings": "strings",
    "lines": "location lines",
    "frames": "stack frames",
    "labels": "sample labels",
}


class TooLarge(ValueError):
    """A request past one of :class:`ImportLimits`; the message is one sentence for the sender."""


class Budget:
    """What is left of one request's :class:`ImportLimits`, spent as its profiles are read."""

    def __init__(self, limits: ImportLimits = LIMITS) -> None:
        self.limits = limits
        self.spent: Counter[str] = Counter()

    def left(self, what: str) -> int:
        return int(getattr(self.limits, what)) - self.spent[what]

    def spend(self, what: str, count: int) -> None:
        """Count ``count`` more of ``what``; :class:`TooLarge` past the limit."""
        limit = int(getattr(self.limits, what))
        total = self.spent[what] + count
        if total > limit:
            raise TooLarge(
                f"the request has more {_NAMES[what]} than the {limit:,} one import may have "
                f"({total:,} or more): send shorter profiles, or fewer per request"
            )
        self.spent[what] = total
