"""Browser tests: a real aggregator fed through real gRPC ingest, Debian's chromium
driven by Playwright. Skipped, with the reason, when chromium, Playwright or the
built dashboard is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_session import Session, wait_stored

from aggregator_proc import AggregatorProcess

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
WEB = REPO / "src" / "aperture" / "aggregator" / "web"
CHROMIUM = os.environ.get("APERTURE_CHROMIUM", "/usr/bin/chromium")
# flags for a closed network: no background fetches, no sandbox as root
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}


def browser_unavailable_reason() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"chromium is not installed ({CHROMIUM}): `make setup` installs Debian's chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python playwright package is missing: `make setup` installs the dev extras"
    if not (WEB / "index.html").exists():
        return "the dashboard is not built (src/aperture/aggregator/web/): run `make ui`"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    """One aggregator with the standard data set (seed.py), shared by the view tests."""
    from ui_seed import seed

    proc = AggregatorProcess(tmp_path_factory.mktemp("e2e") / "agg").start()
    try:
        seed(proc.grpc_target, proc.token)
        wait_stored(proc)
        yield proc
    finally:
        assert proc.stop() == 0, proc.log.read_text()


@pytest.fixture
def ui(browser: Any, agg: AggregatorProcess, artifacts: Path) -> Iterator[Session]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.add_init_script(f"sessionStorage.setItem('aperture.token', {agg.token!r})")
    page = context.new_page()
    session = Session(page, agg, artifacts)
    yield session
    context.close()
    assert not session.errors, f"JavaScript errors on the page: {session.errors}"
