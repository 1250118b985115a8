"""Profile storage in ClickHouse (embedded chDB or a server): schema, store, writer, source.

Aggregator-only: needs the ``aggregator`` extra (clickhouse-connect, chdb, pyarrow).
"""

from __future__ import annotations

from aperture.storage.pathlock import StoreError, StoreInUse
from aperture.storage.source import StoreSource
from aperture.storage.store import DEFAULT_DSN, InsertResult, Store
from aperture.storage.writer import StorageWriter, WriterStats

__all__ = [
    "DEFAULT_DSN",
    "InsertResult",
    "StorageWriter",
    "Store",
    "StoreError",
    "StoreInUse",
    "StoreSource",
    "WriterStats",
]
