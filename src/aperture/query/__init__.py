"""The one query engine of the analysis API, over two sources of profiles.

:class:`QueryFilter` says what a question selects; a
:class:`~aperture.query.source.StackSource` (the buffer's decoded batches,
``aggregator.buffer_source``, or the store's SQL, ``storage.source``) selects
and sums; :mod:`aperture.query.answers` builds each answer once, as the typed
models of :mod:`aperture.query.models`, with the one tree of
:mod:`aperture.query.tree`.
"""

from aperture.query.filter import MAX_NS, QueryFilter

__all__ = ["MAX_NS", "QueryFilter"]
