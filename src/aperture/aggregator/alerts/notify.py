"""Notifications: the log always, a webhook (JSON POST, retried with backoff) when set."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("aperture.alerts")


@dataclass(frozen=True)
class Attempt:
    target: str
    attempt: int
    ok: bool
    error: str | None = None


class Notifier:
    """Sends one notification to each target; returns every attempt for the history."""

    def __init__(
        self,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep

    def send(self, payload: dict[str, Any], webhook: str | None) -> list[Attempt]:
        level = logging.WARNING if payload["status"] == "firing" else logging.INFO
        log.log(level, "alert %s", payload["summary"])
        attempts = [Attempt("log", 1, True)]
        if webhook:
            attempts += self._webhook(webhook, payload)
        return attempts

    def _webhook(self, url: str, payload: dict[str, Any]) -> list[Attempt]:
        attempts: list[Attempt] = []
        for n in range(1, self.retries + 1):
            try:
                response = httpx.post(url, json=payload, timeout=self.timeout_s)
                if response.status_code < 300:
                    return [*attempts, Attempt(url, n, True)]
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            attempts.append(Attempt(url, n, False, error))
            log.warning("webhook %s attempt %d failed: %s", url, n, error)
            if n < self.retries:
                self._sleep(self.backoff_s * 2 ** (n - 1))
        return attempts
