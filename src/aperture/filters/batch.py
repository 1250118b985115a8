"""Filtering a wire ``ProfileBatch`` at ingest: decode, filter, re-encode."""

from __future__ import annotations

from aperture.filters.host import WasmFilter, apply_filter
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Summary, check, decode, encode


def filter_batch(flt: WasmFilter, batch: pb.ProfileBatch) -> tuple[pb.ProfileBatch, Summary]:
    """The batch with only the CPU samples and lock records ``flt`` keeps, and its summary.

    Identity, sequence, window, loss counters and window labels are carried over as sent;
    syscall records pass unchanged.
    """
    decoded = decode(batch)
    profiles = [apply_filter(flt, p) for p in decoded.profiles.values()]
    out = encode(profiles, decoded.identity, decoded.sequence)
    out.schema_version = batch.schema_version
    out.window_start_ns = batch.window_start_ns
    out.window_end_ns = batch.window_end_ns
    out.losses.clear()
    out.losses.update(batch.losses)
    out.window_labels.clear()
    out.window_labels.update(batch.window_labels)
    return out, check(out)
