"""Live mode: new data shows up without a reload (one refresh: about 10 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_seed import Host, Pusher, cpu_profile, f
from ui_session import Session, wait_stored

from aggregator_proc import AggregatorProcess

HOST = Host("agent-live", "live-1", 999, {})


@pytest.fixture(scope="module")
def live_agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("e2e-live") / "agg").start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log.read_text()


def test_live_refresh_shows_new_samples(
    browser: Any, live_agg: AggregatorProcess, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('aperture.token', {live_agg.token!r})")
    ui = Session(context.new_page(), live_agg, artifacts)
    try:
        page = ui.open("/flamegraph?live=1&from=-15m")
        page.get_by_test_id("empty").wait_for()
        assert page.get_by_label("Live").is_checked()
        now = time.time_ns()
        stack = (f("main"), f("fresh_work"))
        pusher = Pusher(live_agg.grpc_target, live_agg.token)
        pusher.push(HOST, 1, [cpu_profile({stack: 100}, HOST, now - 10**10, now)])
        pusher.close()
        wait_stored(live_agg)
        # no reload: the next live tick (every 10 s) fetches it
        page.wait_for_function(
            "() => { const c = document.querySelector('[data-testid=flame-main] canvas');"
            " return c && c.apertureFrames().some(f => f.name === 'fresh_work'); }",
            timeout=15_000,
        )
        assert "100.00%" in ui.hover("fresh_work")
    finally:
        context.close()
    assert not ui.errors, ui.errors
