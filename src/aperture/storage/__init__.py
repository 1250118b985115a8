"""Profile storage in ClickHouse (embedded chDB or a server): schema, store, writer, queries.

Aggregator-only: needs the ``aggregator`` extra (clickhouse-connect, chdb, pyarrow).
"""

from __future__ import annotations

from aperture.storage.backend import StoreBackend
from aperture.storage.pathlock import StoreError, StoreInUse
from aperture.storage.store import DEFAULT_DSN, InsertResult, Store
from aperture.storage.writer import StorageWriter, WriterStats

__all__ = [
    "DEFAULT_DSN",
    "InsertResult",
    "StorageWriter",
    "Store",
    "StoreBackend",
    "StoreError",
    "StoreInUse",
    "WriterStats",
]
