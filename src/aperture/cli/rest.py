"""The aggregator's REST API (``--api http://HOST:9090``) for commands that need it."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from aperture.errors import UsageError, UserError
from aperture.urls import parse_http_address

DEFAULT_API = "http://127.0.0.1:9090"


def add_api_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        default=DEFAULT_API,
        help=f"the aggregator's HTTP address (default: {DEFAULT_API})",
    )


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` for ``--label``, or a UsageError."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--label {text!r} is not KEY=VALUE.")
    return key.strip(), value


class RestClient:
    """GET/POST under ``/api/v1`` with the token attached and failures in one sentence."""

    def __init__(self, api: str, *, token: str | None = None, tls_ca: Path | None = None) -> None:
        parse_http_address(api, "--api", 9090)
        self.api = api.rstrip("/")
        token = token or os.environ.get("APERTURE_AUTH_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = True
        if tls_ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(tls_ca))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot read --tls-ca {tls_ca}: {exc}.") from None
        self._http = httpx.Client(base_url=self.api, headers=headers, verify=verify, timeout=120)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise UserError(
                f"cannot reach the aggregator's HTTP API at {self.api}: is it running? "
                "(check --api)"
            ) from None
        except httpx.TimeoutException:
            raise UserError(f"the aggregator at {self.api} did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise UserError(f"the request to {self.api} failed: {exc}") from None
        if response.status_code == 401:
            raise UserError(
                f"the aggregator at {self.api} rejected the token: set APERTURE_AUTH_TOKEN "
                "(or --token) to the aggregator's token."
            )
        if response.status_code == 403:
            raise UserError(f"the aggregator at {self.api} refused the token: {_detail(response)}")
        if response.status_code >= 400:
            raise UserError(
                f"the aggregator at {self.api} answered {response.status_code}: {_detail(response)}"
            )
        return response

    def close(self) -> None:
        self._http.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # FastAPI validation errors
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                for d in detail
                if isinstance(d, dict)
            )
        return str(detail)
    return response.text.strip()[:300]
