"""WASM filters: sandboxed, batch-at-a-time filtering of profile records (docs/filters.md)."""

from aperture.filters.abi import ABI_VERSION, Record, decode_result, encode_batch
from aperture.filters.host import Filter, FilterError, FilterOptions, apply_filter, parse_size

__all__ = [
    "ABI_VERSION",
    "Filter",
    "FilterError",
    "FilterOptions",
    "Record",
    "apply_filter",
    "decode_result",
    "encode_batch",
    "parse_size",
]
