"""Fuzzing fixtures: the hypothesis profiles and one real aggregator for the HTTP properties.

``make test`` runs the ``ci`` profile (20 examples per property, the whole
directory well under 90 s); ``APERTURE_FUZZ=1`` selects the ``fuzz`` profile that
``reliability/fuzz.py`` runs, with ``APERTURE_FUZZ_EXAMPLES`` examples per property.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_server import Aggregator
from hypothesis import HealthCheck, settings

from aggregator_proc import AggregatorProcess

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=_QUIET, derandomize=False
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("APERTURE_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=_QUIET,
)
settings.load_profile("fuzz" if os.environ.get("APERTURE_FUZZ") == "1" else "ci")


@pytest.fixture(scope="session")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    """One real aggregator (embedded store, token "test-token") for every HTTP property."""
    proc = AggregatorProcess(Path(tmp_path_factory.mktemp("fuzz")) / "agg").start()
    agg = Aggregator(proc)
    try:
        yield agg
    finally:
        agg.client.close()
        agg.anonymous.close()
        assert proc.stop() == 0, proc.log.read_text()[-4000:]
