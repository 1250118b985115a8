"""The engine as the aggregator builds it: persistence picked by whether there is a store."""

from __future__ import annotations

from pathlib import Path

from aperture.aggregator.alerts.engine import AlertEngine
from aperture.aggregator.alerts.persist import (
    AlertPersistence,
    JsonFilePersistence,
    StorePersistence,
)
from aperture.aggregator.alerts.sources import Sources
from aperture.aggregator.ingest import Ingest
from aperture.aggregator.storage_link import StorageLink
from aperture.errors import UserError
from aperture.query.source import StackSource


def build_engine(
    ingest: Ingest,
    source: StackSource,
    storage: StorageLink | None,
    data_dir: Path,
    *,
    webhook: str | None = None,
    renotify_s: float = 0.0,
) -> AlertEngine:
    persistence: AlertPersistence
    path = data_dir / "alerts.json"
    try:
        if storage is not None:
            persistence = StorePersistence(storage.store)
        else:
            persistence = JsonFilePersistence(path)
        return AlertEngine(
            Sources(ingest, source, storage),
            persistence,
            ingest.metrics.registry,
            webhook=webhook,
            renotify_s=renotify_s,
        )
    except Exception as exc:  # a corrupt file, an unreachable store
        where = "the store's alert tables" if storage is not None else str(path)
        raise UserError(
            f"cannot load the alert rules from {where} ({exc}): repair or move it aside."
        ) from None
