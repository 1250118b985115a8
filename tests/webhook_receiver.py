"""A webhook receiver on loopback for the alert tests: a real HTTP server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Receiver:
    """A webhook on loopback that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, rule: str) -> list[str]:
        return [b["status"] for b in self.bodies if b["rule"]["name"] == rule]

    def wait_for(self, rule: str, statuses: list[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.statuses(rule) != statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.statuses(rule) == statuses
