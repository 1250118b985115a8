"""What the analysis API asks of recent batches and of the store, in one place.

So far its filter (:class:`QueryFilter`), shared by the buffer's answers
(``aggregator.backend``), the store's SQL (``storage.queries``), the REST and gRPC
routes and the alert sources.
"""

from aperture.query.filter import MAX_NS, QueryFilter

__all__ = ["MAX_NS", "QueryFilter"]
