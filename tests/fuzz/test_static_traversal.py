"""Static dashboard serving: no request target reaches a file outside the web directory.

A real uvicorn server (the product's ``mount_ui`` over a temporary build) gets raw
request lines over a socket, so no client normalizes the path first; the running
aggregator gets the same attempts against its real dashboard.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import uvicorn
from fastapi import FastAPI
from fuzz_server import Aggregator
from hypothesis import given
from hypothesis import strategies as st

from aggregator_proc import free_port
from aperture.aggregator.web import mount_ui

SECRET = "SECRET-7f3a-do-not-serve"


def raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    """Send ``GET target HTTP/1.1`` as given; (status, body), status 0 when refused outright."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    base = Path(tmp_path_factory.mktemp("static"))
    web = base / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><div id=root></div>")
    (web / "assets" / "app-1.js").write_text("console.log(1)")
    (web / ".env").write_text(SECRET)
    (base / "secret.txt").write_text(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    (web / "link-out.txt").symlink_to(base / "secret.txt")
    (web / "dir-out").symlink_to(base / "outside")
    (web / "link-in.js").symlink_to(web / "assets" / "app-1.js")
    app = FastAPI()
    mount_ui(app, web)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the static server did not start"
        time.sleep(0.05)
    yield port, base
    server.should_exit = True
    thread.join(10)


def _attempts(base: Path) -> list[bytes]:
    absolute = str(base / "secret.txt")
    out = [
        "/../secret.txt", "/../../secret.txt", "/assets/../../secret.txt",
        "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt", "/..%2Fsecret.txt",
        "/%2e%2e%2fsecret.txt", "/%252e%252e%252fsecret.txt", "/..%252fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt", "/..\\secret.txt", "/..%5csecret.txt",
        "/....//secret.txt", "/.../secret.txt", "/%c0%ae%c0%ae/secret.txt",
        "/%uff0e%uff0e/secret.txt", "/\u2024\u2024/secret.txt",
        "/" + absolute, "//" + absolute.lstrip("/"), "/" + quote(absolute, safe=""),
        "/link-out.txt", "/dir-out/secret.txt", "/dir-out/../secret.txt", "/.env", "/%2eenv",
        "/assets/.%2e/.%2e/secret.txt", "/index.html%00/../../secret.txt", "/%00",
        "/secret.txt%00.js", "http://x/../secret.txt", "/;/../secret.txt", "/?/../secret.txt",
        "/#/../secret.txt", "/.%00./secret.txt", "/assets/..;/..;/secret.txt",
    ]  # fmt: skip
    return [a.encode("utf-8") for a in out]


def test_traversal_attempts_never_serve_outside_files(site: tuple[int, Path]) -> None:
    port, base = site
    for target in _attempts(base):
        status, body = raw_get(port, target)
        assert SECRET.encode() not in body, target
        assert status in (0, 200, 400, 404), (target, status)
    # what is inside is served (the checks above are not passing for a dead server)
    assert raw_get(port, b"/assets/app-1.js") == (200, b"console.log(1)")
    assert raw_get(port, b"/link-in.js") == (200, b"console.log(1)")


SEGMENTS = st.sampled_from(["..", ".", "%2e%2e", "%2e", "..%2f", "%2f", "%5c", "%00", "assets",
                            "secret.txt", "dir-out", "link-out.txt", ".env", "%252e", "/", "\\",
                            "index.html", "outside", "%c0%af"])  # fmt: skip


@given(st.lists(SEGMENTS, min_size=1, max_size=8), st.sampled_from(["/", "//", "/./"]))
def test_generated_paths_never_serve_outside_files(
    site: tuple[int, Path], segments: list[str], lead: str
) -> None:
    port, _ = site
    status, body = raw_get(port, (lead + "/".join(segments)).encode())
    assert SECRET.encode() not in body
    assert status in (0, 200, 400, 404), status


def test_the_aggregator_serves_no_file_outside_its_dashboard(aggregator: Aggregator) -> None:
    port = aggregator.proc.http_port
    for target in (b"/../../../../etc/passwd", b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                   b"/..%2f..%2f..%2f..%2fetc%2fpasswd", b"//etc/passwd", b"/%2fetc%2fpasswd",
                   b"/assets/../../../../../../etc/passwd", b"/%252e%252e/etc/passwd",
                   b"/../pyproject.toml", b"/../../../../pyproject.toml", b"/../__init__.py",
                   b"/../web.py", b"/%2e%2e/web.py"):  # fmt: skip
        status, body = raw_get(port, target)
        assert b"root:x:0:0" not in body and b"[build-system]" not in body, target
        assert b"def mount_ui" not in body, target
        assert status in (0, 200, 400, 404, 503), (target, status)
    aggregator.assert_healthy()
