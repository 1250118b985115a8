"""Questions asked of a set of profiles: top functions, folded stacks, diffs."""

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


@dataclass(frozen=True)
class DiffStat:
    name: str
    baseline: int
    comparison: int
    baseline_share: float
    comparison_share: float

    @property
    def delta_share(self) -> float:
        return self.comparison_share - self.baseline_share


def diff_functions(
    baseline: Iterable[Profile], comparison: Iterable[Profile], *, limit: int = 100
) -> tuple[int, int, list[DiffStat]]:
    """Self value per function on both sides, each normalized to its side's total."""
    sides = []
    totals = []
    for profiles in (baseline, comparison):
        counts: Counter[str] = Counter()
        grand = 0
        for profile in profiles:
            for sample in profile.samples:
                grand += sample.value
                if sample.stack:
                    counts[sample.stack[-1].name] += sample.value
        sides.append(counts)
        totals.append(grand)
    base, comp = sides
    rows = [
        DiffStat(
            name,
            base[name],
            comp[name],
            base[name] / totals[0] if totals[0] else 0.0,
            comp[name] / totals[1] if totals[1] else 0.0,
        )
        for name in set(base) | set(comp)
    ]
    rows.sort(key=lambda r: (-abs(r.delta_share), r.name))
    return totals[0], totals[1], rows[:limit]
