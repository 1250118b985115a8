"""aperture.aggregator.web: static files, SPA fallback, no traversal, not-built page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aperture.aggregator.web import mount_ui


@pytest.fixture
def built(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text('<!doctype html><div id="root"></div>')
    (web / "assets" / "index-abc.js").write_text("console.log(1)")
    (web / ".built").write_text("")
    (tmp_path / "secret.txt").write_text("do not serve")
    return web


def app_with(directory: Path) -> TestClient:
    app = FastAPI()

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    mount_ui(app, directory)
    return TestClient(app)


def test_serves_the_app_and_its_routes(built: Path) -> None:
    client = app_with(built)
    for path in ("/", "/flamegraph", "/diff", "/locks/anything"):
        r = client.get(path, params={"from": "-1h"})
        assert r.status_code == 200, path
        assert 'id="root"' in r.text
        assert r.headers["cache-control"] == "no-cache"
    js = client.get("/assets/index-abc.js")
    assert js.status_code == 200 and js.text == "console.log(1)"
    assert "immutable" in js.headers["cache-control"]
    assert "javascript" in js.headers["content-type"]
    assert client.head("/").status_code == 200


def test_api_routes_win_and_unknown_ones_stay_json(built: Path) -> None:
    client = app_with(built)
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    for path in ("/api/v1/nope", "/metrics/x", "/openapi.json/x"):
        r = client.get(path)
        assert r.status_code == 404 and "detail" in r.json(), path
    missing = client.get("/assets/index-old.js")
    assert missing.status_code == 404 and "detail" in missing.json()


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/.built", "/a/%00"],
)
def test_no_path_traversal_or_dotfiles(built: Path, path: str) -> None:
    r = app_with(built).get(path)
    assert "do not serve" not in r.text
    assert r.status_code in (200, 404)  # the app itself, or nothing
    if r.status_code == 200:
        assert 'id="root"' in r.text


def test_a_missing_build_says_how_to_build_it(tmp_path: Path) -> None:
    client = app_with(tmp_path / "nothing-here")
    r = client.get("/flamegraph")
    assert r.status_code == 503
    assert "the dashboard was not built: run <code>make setup</code>" in r.text.lower()
    assert client.get("/api/v1/health").status_code == 200
