"""A real aggregator under fuzzing, and the checks every HTTP property makes."""

from __future__ import annotations

import httpx

from aggregator_proc import AggregatorProcess


class Aggregator:
    """A running aggregator with an HTTP client that sends the token."""

    def __init__(self, proc: AggregatorProcess) -> None:
        self.proc = proc
        self.client = httpx.Client(base_url=proc.http, headers=proc.headers(), timeout=30)
        self.anonymous = httpx.Client(base_url=proc.http, timeout=30)

    def assert_healthy(self) -> None:
        """The process is alive and its health endpoints answer."""
        assert self.proc.proc is not None and self.proc.proc.poll() is None, "aggregator died"
        assert self.anonymous.get("/healthz").status_code == 200
        assert self.client.get("/api/v1/health").status_code == 200


def refused_or_ok(response: httpx.Response) -> None:
    """No 5xx, and a 4xx says why (``detail`` or Connect's ``message``)."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        message = body.get("detail") or body.get("message")
        assert message, f"a refusal without a reason: {body}"
