"""log2 latency histograms as the BPF programs fill them: bucket i is [2^i, 2^(i+1)) ns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BUCKETS = 40


def add(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Bucket-wise sum of two histograms of possibly different lengths."""
    n = max(len(a), len(b))
    return tuple((a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n))


def merge(histograms: Iterable[Sequence[int]]) -> tuple[int, ...]:
    out: tuple[int, ...] = ()
    for hist in histograms:
        out = add(out, hist)
    return out


def bucket_bounds(i: int) -> tuple[int, int]:
    """The [low, high) range in ns of bucket i (bucket 0 also holds 0 ns)."""
    return (0 if i == 0 else 1 << i), 1 << (i + 1)


def quantile(hist: Sequence[int], q: float, *, lo: int = 0, hi: int | None = None) -> float:
    """Estimate the q-quantile in ns, interpolating linearly inside the bucket.

    ``lo``/``hi`` (the exact min and max when known) clamp the estimate so a
    one-bucket histogram does not report a value outside what was observed.
    """
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            low, high = bucket_bounds(i)
            value = low + (high - low) * ((rank - seen) / count)
            if hi is not None:
                value = min(value, hi)
            return max(value, lo)
        seen += count
    return float(hi if hi is not None else bucket_bounds(len(hist) - 1)[1])
