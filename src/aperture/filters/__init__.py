"""WASM filters: sandboxed, batch-at-a-time filtering of profile records (docs/filters.md)."""

from aperture.filters.abi import ABI_VERSION, Record, decode_result, encode_batch
from aperture.filters.host import FilterError, FilterOptions, WasmFilter, apply_filter, parse_size

__all__ = [
    "ABI_VERSION",
    "FilterError",
    "FilterOptions",
    "Record",
    "WasmFilter",
    "apply_filter",
    "decode_result",
    "encode_batch",
    "parse_size",
]
