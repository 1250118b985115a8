"""A gRPC connection to an aggregator from an ``http(s)://HOST:PORT`` endpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from aperture.errors import UsageError, UserError
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.urls import parse_http_address

_T = TypeVar("_T")


def channel_for(endpoint: str, *, tls_ca: Path | None = None) -> grpc.Channel:
    """A channel for ``http://`` (plain) or ``https://`` (TLS) endpoints."""
    address = parse_http_address(endpoint, "--endpoint", 50051)
    target = address.target
    options = [("grpc.max_receive_message_length", 64 << 20)]
    if address.tls:
        root = None
        if tls_ca is not None:
            try:
                root = tls_ca.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read --tls-ca {tls_ca}: {exc.strerror}.") from None
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root), options)
    return grpc.insecure_channel(target, options)


def bearer(token: str | None) -> list[tuple[str, str]]:
    """Call metadata carrying the token (flag first, then APERTURE_AUTH_TOKEN)."""
    token = token or os.environ.get("APERTURE_AUTH_TOKEN")
    return [("authorization", f"Bearer {token}")] if token else []


def explain(error: grpc.RpcError, endpoint: str) -> UserError:
    """One sentence for a failed call, saying what to do."""
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return UserError(
            f"cannot reach the aggregator at {endpoint}: is it running? (check --endpoint)"
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UserError(
            f"the aggregator at {endpoint} rejected the token: set APERTURE_AUTH_TOKEN "
            "(or --token) to the aggregator's token."
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return UserError(f"the aggregator at {endpoint} refused the token: {error.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UserError(f"the aggregator at {endpoint} did not answer in time.")
    return UserError(f"the aggregator at {endpoint} answered {code.name}: {error.details()}")


class Client:
    """The Aggregator stub with the token attached and errors explained."""

    def __init__(
        self, endpoint: str, *, token: str | None = None, tls_ca: Path | None = None
    ) -> None:
        self.endpoint = endpoint
        self.channel = channel_for(endpoint, tls_ca=tls_ca)
        self.stub = aggregator_pb2_grpc.AggregatorStub(self.channel)  # type: ignore[no-untyped-call]
        self.metadata = bearer(token)

    def call(self, method: Callable[..., _T], request: Any, timeout: float = 30.0) -> _T:
        try:
            return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise explain(exc, self.endpoint) from None

    def close(self) -> None:
        self.channel.close()
