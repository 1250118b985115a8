"""Latency histograms as the BPF programs fill them.

Two layouts, told apart by length:
- coarse (syscalls; locks before fine buckets): 40 buckets, bucket i is [2^i, 2^(i+1)) ns;
- fine (locks): 160 buckets, 4 per power of two: bucket 4k+s is
  [2^k + s*2^(k-2), 2^k + (s+1)*2^(k-2)) ns for k >= 2, at most 25% wide, so a
  quantile is within 12.5%; values below 4 ns are in bucket 0 or 4.
Adding a coarse histogram to a fine one puts each coarse bucket's count in the
first fine bucket of its power of two (its lower bound, as a coarse quantile would).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BUCKETS = 40
FINE_BUCKETS = 160
PER_POWER = 4


def is_fine(hist: Sequence[int]) -> bool:
    return len(hist) > BUCKETS


def fine(hist: Sequence[int]) -> tuple[int, ...]:
    """The histogram in the fine layout (a coarse one's counts at each power's first bucket)."""
    if is_fine(hist) or not hist:
        return tuple(hist)
    out = [0] * FINE_BUCKETS
    for i, count in enumerate(hist):
        out[min(i * PER_POWER, FINE_BUCKETS - PER_POWER)] += count
    return tuple(out)


def add(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Bucket-wise sum of two histograms of possibly different lengths (and layouts)."""
    if is_fine(a) != is_fine(b) and a and b:
        a, b = fine(a), fine(b)
    n = max(len(a), len(b))
    return tuple((a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n))


def merge(histograms: Iterable[Sequence[int]]) -> tuple[int, ...]:
    """Bucket-wise sum of any number of histograms (as :func:`add`, pairwise)."""
    hists = [h for h in histograms if h]
    if not hists:
        return ()
    n, fine_layout = len(hists[0]), is_fine(hists[0])
    if all(len(h) == n and is_fine(h) == fine_layout for h in hists):
        return tuple(map(sum, zip(*hists, strict=True)))  # one layout: summed in one pass
    out: tuple[int, ...] = ()
    for hist in hists:
        out = add(out, hist)
    return out


def bucket_bounds(i: int) -> tuple[int, int]:
    """The [low, high) range in ns of coarse bucket i (bucket 0 also holds 0 ns)."""
    return (0 if i == 0 else 1 << i), 1 << (i + 1)


def fine_bounds(i: int) -> tuple[int, int]:
    """The [low, high) range in ns of fine bucket i."""
    k, s = divmod(i, PER_POWER)
    if k < 2:
        return bucket_bounds(k)
    step = 1 << (k - 2)
    return (1 << k) + s * step, (1 << k) + (s + 1) * step


def quantile(hist: Sequence[int], q: float, *, lo: int = 0, hi: int | None = None) -> float:
    """Estimate the q-quantile in ns, interpolating linearly inside the bucket.

    ``lo``/``hi`` (the exact min and max when known) clamp the estimate so a
    one-bucket histogram does not report a value outside what was observed.
    """
    total = sum(hist)
    if total == 0:
        return 0.0
    bounds = fine_bounds if is_fine(hist) else bucket_bounds
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            low, high = bounds(i)
            value = low + (high - low) * ((rank - seen) / count)
            if hi is not None:
                value = min(value, hi)
            return max(value, lo)
        seen += count
    return float(hi if hi is not None else bounds(len(hist) - 1)[1])
