"""`make run` (tools/run.sh) next to another process on its ports: it stops with one
sentence and never points the agent at someone else's server.

The script runs from a copy of the checkout's layout in a temporary directory, with
the real aggregator and a stand-in agent that only records that it was started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from aggregator_proc import free_port

REPO = Path(__file__).resolve().parents[2]
AGENT = """#!/bin/sh
echo "$@" > agent-started
"""
# An aggregator that is not the one run.sh started: /readyz 200, another instance.
IMPOSTOR = f"""#!{sys.executable}
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

host, _, port = sys.argv[sys.argv.index("--admin-listen") + 1].rpartition(":")

class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("X-Aperture-Instance", "someone-else")
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer((host, int(port)), Ready).serve_forever()
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """tools/run.sh with .venv/bin holding the real aggregator and a stand-in agent."""
    if shutil.which("curl") is None:
        pytest.skip("curl is missing (run.sh's readiness check uses it)")
    (tmp_path / "tools").mkdir()
    shutil.copy2(REPO / "tools" / "run.sh", tmp_path / "tools" / "run.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "aperture-aggregator").symlink_to(REPO / ".venv" / "bin" / "aperture-aggregator")
    (bin_dir / "aperture-agent").write_text(AGENT)
    (bin_dir / "aperture-agent").chmod(0o755)
    return tmp_path


def run_sh(checkout: Path, http: int, grpc: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env["APERTURE_ADMIN_LISTEN"] = f"127.0.0.1:{http}"
    env["APERTURE_AGGREGATOR_LISTEN"] = f"127.0.0.1:{grpc}"
    return subprocess.run(
        [str(checkout / "tools" / "run.sh")],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=checkout,
    )


class ForeignReadyz:
    """Another program's HTTP server on a loopback port, answering /readyz with 200."""

    def __init__(self) -> None:
        class Ready(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Ready)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def foreign() -> Iterator[ForeignReadyz]:
    server = ForeignReadyz()
    yield server
    server.close()


def assert_one_sentence(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("make run: ") and lines[0].endswith("."), lines[0]
    assert text in lines[0], lines[0]


def test_http_port_answered_by_another_process(checkout: Path, foreign: ForeignReadyz) -> None:
    result = run_sh(checkout, foreign.port, free_port())
    assert_one_sentence(
        result,
        f"127.0.0.1:{foreign.port} is already in use by another process: stop it, or set "
        "APERTURE_ADMIN_LISTEN to a free address.",
    )
    assert not (checkout / "agent-started").exists()


def test_grpc_port_held_by_another_process(checkout: Path, foreign: ForeignReadyz) -> None:
    result = run_sh(checkout, free_port(), foreign.port)
    assert_one_sentence(
        result,
        f"127.0.0.1:{foreign.port} is already in use by another process: stop it, or set "
        "APERTURE_AGGREGATOR_LISTEN to a free address.",
    )
    assert not (checkout / "agent-started").exists()


def test_readyz_of_another_instance_is_not_taken_for_ready(checkout: Path) -> None:
    # The ports are free at the check, but what answers /readyz is not the process
    # run.sh started (as when another takes the port in between).
    aggregator = checkout / ".venv" / "bin" / "aperture-aggregator"
    aggregator.unlink()
    aggregator.write_text(IMPOSTOR)
    aggregator.chmod(0o755)
    http = free_port()
    result = run_sh(checkout, http, free_port())
    assert_one_sentence(
        result,
        f"another process answers at http://127.0.0.1:{http}, not the aggregator started here",
    )
    assert not (checkout / "agent-started").exists()


def test_starts_the_agent_against_its_own_aggregator(checkout: Path) -> None:
    grpc = free_port()
    result = run_sh(checkout, free_port(), grpc)
    assert result.returncode == 0, result.stderr
    assert "Aperture is running" in result.stdout
    started = (checkout / "agent-started").read_text()
    assert f"--aggregator http://127.0.0.1:{grpc} " in started
    assert "(instance make-run-" in result.stderr  # the aggregator's start line
