"""The pprof bodies of issue 17, for the import-limit tests and bench/import_amplification.py."""

from __future__ import annotations

import gzip

from aperture.proto.pprof import profile_pb2 as pb


def distinct_pids(count: int, *, labels: int = 0) -> pb.Profile:
    """``count`` one-frame samples, each of its own pid (and ``labels`` string labels)."""
    strings = ["", "samples", "count", "pid", "main"] + (["k", "v"] if labels else [])
    p = pb.Profile(string_table=strings)
    p.sample_type.add(type=1, unit=2)
    p.function.add(id=1, name=4)
    p.location.add(id=1).line.add(function_id=1)
    for pid in range(1, count + 1):
        sample = p.sample.add(location_id=[1], value=[1])
        sample.label.add(key=3, num=pid)
        for _ in range(labels):
            sample.label.add(key=5, str=6)
    return p


def distinct_pids_gzip(count: int) -> bytes:
    """The issue's body: :func:`distinct_pids` gzipped (300,000: 4.8 MB inflated, 491 KB)."""
    return gzip.compress(distinct_pids(count).SerializeToString())


def empty_samples_gzip(count: int) -> bytes:
    """A parse bomb: a sample type and ``count`` empty samples (two bytes each), gzipped."""
    p = pb.Profile(string_table=["", "samples", "count"])
    p.sample_type.add(type=1, unit=2)
    return gzip.compress(p.SerializeToString() + b"\x12\x00" * count, compresslevel=9)
