"""Questions asked of a set of profiles: top functions and folded stacks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aperture.model import Profile, fold


@dataclass(frozen=True)
class FunctionStat:
    name: str
    module: str
    self_value: int
    total_value: int


@dataclass(frozen=True)
class Aggregate:
    total: int
    unit: str
    functions: list[FunctionStat]
    stacks: Counter[tuple[str, ...]]


def aggregate(profiles: Iterable[Profile], *, limit: int = 100) -> Aggregate:
    """Top functions by self value (total counted once per stack) and folded stacks."""
    self_: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    stacks: Counter[tuple[str, ...]] = Counter()
    unit = ""
    grand = 0
    for profile in profiles:
        unit = unit or profile.unit
        stacks.update(fold(profile))
        for sample in profile.samples:
            grand += sample.value
            if not sample.stack:
                continue
            leaf = sample.stack[-1]
            self_[(leaf.name, leaf.module)] += sample.value
            for key in {(f.name, f.module) for f in sample.stack}:
                total[key] += sample.value
    ranked = sorted(total, key=lambda k: (-self_[k], -total[k], k))[:limit]
    return Aggregate(
        total=grand,
        unit=unit,
        functions=[FunctionStat(n, m, self_[(n, m)], total[(n, m)]) for n, m in ranked],
        stacks=stacks,
    )
