"""What the answers ask of a source of profiles: the buffer's batches or the store's SQL.

Each source does only what differs between them (selecting and summing); every
answer is then built once, from these, by :mod:`aperture.query.answers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aperture.model import EventType, LockStat, Profile, SyscallStat
from aperture.query.filter import QueryFilter
from aperture.query.stacks import Stack
from aperture.query.tree import PathIndex, Row
from aperture.unwind_stats import UnwindTotals

GROUP_BY = (None, "host", "comm", "pid")


@dataclass(frozen=True, slots=True)
class WeightedStacks:
    """Per side, ``(comm, pid if comm is empty else 0, stack id, value)`` rows summed over
    the side's filter; the stacks every id names; the path index the ids are interned in."""

    sides: list[list[Row]]
    stacks: Mapping[int, Stack]
    index: PathIndex


class StackSource(Protocol):
    def weighted_stacks(self, sides: Sequence[QueryFilter]) -> WeightedStacks:
        """The stacks of each filter (one for a flamegraph or top, two for a diff)."""
        ...

    def series(
        self, f: QueryFilter, step_s: int, group_by: str | None
    ) -> dict[str, list[tuple[int, int]]]:
        """Per key (host, comm, pid or ``all``): (bucket start ns, value) of each bucket
        with data, buckets of window ends; syscalls count calls, the rest stack values."""
        ...

    def window(self, f: QueryFilter) -> tuple[int, int] | None:
        """First window start and last window end of the batches ``f`` selects."""
        ...

    def frequency_hz(self, f: QueryFilter) -> int:
        """The highest CPU sampling rate of the batches ``f`` selects (0: none sampled)."""
        ...

    def syscall_stats(self, f: QueryFilter) -> list[SyscallStat]:
        """The syscall records ``f`` selects."""
        ...

    def lock_stats(self, f: QueryFilter, limit: int | None) -> list[LockStat]:
        """The lock records ``f`` selects: at least those of its ``limit`` top locks."""
        ...

    def unwind(self, f: QueryFilter) -> UnwindTotals:
        """Unwinding counted over the CPU batches ``f`` selects (pid and comm do not apply)."""
        ...

    def types_present(self, f: QueryFilter) -> set[EventType]:
        """The types of the batches ``f`` selects, whatever its own type."""
        ...

    def export_profile(self, f: QueryFilter) -> Profile:
        """Everything ``f`` selects merged into one profile."""
        ...
