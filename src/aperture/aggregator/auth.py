"""Bearer-token checks shared by gRPC and HTTP, in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

# Health checks stay open so probes work without the token.
OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenCheck:
    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check_header(self, value: str | None) -> bool:
        """Whether an ``authorization`` header value carries the token."""
        if self._token is None:
            return True
        if not value or not value.startswith("Bearer "):
            return False
        return hmac.compare_digest(value[len("Bearer ") :].strip().encode(), self._token)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every gRPC call without the token with UNAUTHENTICATED, before the handler."""

    def __init__(self, check: TokenCheck, on_failure: Callable[[str], None]) -> None:
        self._check = check
        self._on_failure = on_failure

        async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong token: send the aggregator's APERTURE_AUTH_TOKEN as a bearer",
            )

        self._deny = grpc.unary_unary_rpc_method_handler(
            deny, request_deserializer=lambda b: b, response_serializer=lambda b: b
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        if details.method.startswith(OPEN_GRPC_PREFIXES):
            return await continuation(details)
        header = dict(details.invocation_metadata or ()).get("authorization")
        if self._check.check_header(header if isinstance(header, str) else None):
            return await continuation(details)
        self._on_failure(details.method)
        return self._deny
