"""A real aggregator process for tests: free loopback ports, a data dir, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AggregatorProcess:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        token: str | None = "test-token",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.tls = tls
        if tls is not None:
            self.args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.token = token
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "aggregator.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        verify: ssl.SSLContext | bool = True
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.tls[0]))
        return httpx.get(self.http + path, verify=verify, timeout=5, **kwargs)  # type: ignore[arg-type]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 30.0) -> AggregatorProcess:
        env = dict(os.environ)
        for variable in ("APERTURE_AUTH_TOKEN", "APERTURE_INGEST_TOKEN", "APERTURE_READ_TOKEN"):
            env.pop(variable, None)  # scoped tokens come as flags in args
        if self.token:
            env["APERTURE_AUTH_TOKEN"] = self.token
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aperture.aggregator.cli",
             "--listen", self.grpc_target, "--admin-listen", f"127.0.0.1:{self.http_port}",
             "--data-dir", str(self.data_dir), *self.args],
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aggregator exited: {self.log.read_text()}")
            try:
                if self.get("/readyz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"aggregator not ready in {timeout}s: {self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait: the exit code of a graceful shutdown."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def wait_stored(self, timeout: float = 30.0) -> None:
        """Wait until the store holds every accepted batch (queries read the store)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.get("/api/v1/health", headers=self.headers()).json()
            storage = health.get("storage")
            if storage is None or storage["pending_batches"] == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the store still has pending batches after {timeout}s")

    def metric(self, series: str) -> float:
        """One series' value, named as exposed: ``aperture_pushes_total{status="accepted"}``."""
        text = self.get("/metrics", headers=self.headers()).text
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        raise KeyError(series)
