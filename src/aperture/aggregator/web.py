"""The dashboard: the built React app (``ui/`` → ``web/``) served at ``/``.

Files under the build directory are served as they are; any other path that is
not an API route gets ``index.html`` so the app's own routes (``/flamegraph``,
``/diff?...``) survive a reload or a shared link.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

WEB_DIR = Path(__file__).with_name("web")

# Paths that belong to the server, never to the app: an unknown one is a JSON 404.
SERVER_PREFIXES = frozenset(
    {
        "api",
        "metrics",
        "healthz",
        "readyz",
        "openapi.json",
        "docs",
        "redoc",
        "ingest",
        "push.v1.PusherService",
    }
)

# Vite names built assets by content hash, so they never change under a URL.
_IMMUTABLE = "public, max-age=31536000, immutable"

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Aperture: dashboard not built</title>
<style>body{{font:15px system-ui,sans-serif;max-width:640px;margin:80px auto;color:#1f2328}}
code{{background:#f2f4f7;padding:2px 5px;border-radius:4px}}</style></head>
<body><h1>The dashboard was not built: run <code>make setup</code></h1>
<p>This aggregator is running and its API answers at <code>/api/v1</code>, but the web
dashboard's files are missing from <code>{directory}</code>.</p>
<p>Build them from a checkout with <code>make setup</code> (or <code>make ui</code>), which runs
<code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code>, then reload this page.</p>
</body></html>
"""


def _inside(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names under ``root``, or None if it escapes root or is not a file."""
    # no NUL, and no dotfiles (the build stamp, editor files) are served
    if "\x00" in relative or any(part.startswith(".") for part in relative.split("/")):
        return None
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def mount_ui(app: FastAPI, directory: Path) -> None:
    """Serve the built dashboard from ``directory`` at ``/`` (call after the API routes)."""
    root = directory.resolve()
    index = root / "index.html"

    def not_built() -> HTMLResponse:
        page = _NOT_BUILT.format(directory=html.escape(str(directory)))
        return HTMLResponse(page, status_code=503, headers={"Cache-Control": "no-store"})

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def dashboard(path: str, request: Request) -> Response:
        first = path.split("/", 1)[0]
        if first in SERVER_PREFIXES:
            raise HTTPException(status_code=404, detail=f"no route {request.url.path}")
        if not index.is_file():
            return not_built()
        if path:
            found = _inside(root, path)
            if found is not None:
                cache = _IMMUTABLE if path.startswith("assets/") else "no-cache"
                return FileResponse(found, headers={"Cache-Control": cache})
            if path.startswith("assets/") or "." in path.rsplit("/", 1)[-1]:
                # a missing file is a 404, not the app (a stale asset URL must not get HTML)
                raise HTTPException(status_code=404, detail=f"no file {request.url.path}")
        # the app's own routes: index.html, never cached so a rebuild shows at once
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
