"""Bearer tokens and their scopes, checked in constant time for gRPC and HTTP alike.

Three kinds of token: the admin token (``--token``, may do everything), ingest
tokens (push only) and read tokens (reads only). Which requests need which is
the table in :mod:`aperture.aggregator.access`. A missing or unknown token is a
401 (gRPC UNAUTHENTICATED); a known token of the wrong scope a 403
(PERMISSION_DENIED); both answer with one sentence naming the token needed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from aperture.aggregator.access import (
    ALLOWED,
    BASIC_AUTH_PATHS,
    NEEDED,
    Access,
    Scope,
    grpc_access,
    http_access,
)

# What each access class lets a caller do, for the 403 sentence.
_VERBS = {
    Access.INGEST: "push profiles",
    Access.READ: "read from the aggregator",
    Access.ADMIN: "change or evaluate alert rules",
}
_CONNECT_PATH = "/push.v1.PusherService/Push"
_SCOPE_KEY = "aperture_token_scope"


def is_admin(request: Request) -> bool:
    """Whether a request came with the admin token, or auth is off (no token at all)."""
    if _SCOPE_KEY not in request.scope.get("state", {}):
        return True  # HttpAuth did not run: no token is configured
    return request.scope["state"][_SCOPE_KEY] is Scope.ADMIN


@dataclass(frozen=True)
class Denied:
    """A refused request: 401 (no or unknown token) or 403 (wrong scope)."""

    status: int
    message: str


class Tokens:
    """The configured tokens and their scopes; no token at all means auth is off."""

    def __init__(
        self, admin: str | None, ingest: Sequence[str] = (), read: Sequence[str] = ()
    ) -> None:
        pairs = [(admin, Scope.ADMIN)] if admin else []
        pairs += [(t, Scope.INGEST) for t in ingest if t]
        pairs += [(t, Scope.READ) for t in read if t]
        self._tokens = [(token.encode(), scope) for token, scope in pairs]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def has_admin(self) -> bool:
        return any(scope is Scope.ADMIN for _, scope in self._tokens)

    def scope_of(self, token: str) -> Scope | None:
        """The scope of ``token``, or None; every configured token is compared, in full."""
        given = token.encode()
        found = None
        for secret, scope in self._tokens:
            if hmac.compare_digest(given, secret):
                found = scope
        return found

    def scope_of_header(self, header: str | None, *, basic: bool = False) -> Scope | None:
        """The scope of an ``authorization`` value: a bearer, or (``basic``) a password."""
        if not header:
            return None
        if header.startswith("Bearer "):
            return self.scope_of(header[len("Bearer ") :].strip())
        if basic and header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            _user, sep, password = decoded.partition(":")
            return self.scope_of(password) if sep else None
        return None

    def check(self, header: str | None, access: Access, *, basic: bool = False) -> Denied | None:
        """None if a request with this ``authorization`` value may go on, else why not."""
        if access is Access.OPEN or not self.enabled:
            return None
        scope = self.scope_of_header(header, basic=basic)
        if scope is None:
            how = "a bearer or the basic-auth password" if basic else "'Authorization: Bearer'"
            return Denied(401, f"missing or unknown token: send {NEEDED[access]} as {how}.")
        if scope not in ALLOWED[access]:
            article = "a" if scope is Scope.READ else "an"
            return Denied(
                403,
                f"{article} {scope.value} token may not {_VERBS[access]}: use {NEEDED[access]}.",
            )
        return None


# Called with (transport, status, access) for each refused request, for the metrics.
OnDenied = Callable[[str, int, Access], None]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a gRPC call before its handler unless its token's scope allows the method."""

    def __init__(self, tokens: Tokens, on_denied: OnDenied) -> None:
        self._tokens = tokens
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        access = grpc_access(details.method)
        header = dict(details.invocation_metadata or ()).get("authorization")
        denied = self._tokens.check(header if isinstance(header, str) else None, access)
        if denied is None:
            return await continuation(details)
        self._on_denied("grpc", denied.status, access)
        code = grpc.StatusCode.UNAUTHENTICATED
        if denied.status == 403:
            code = grpc.StatusCode.PERMISSION_DENIED

        async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(code, denied.message)

        return grpc.unary_unary_rpc_method_handler(
            deny, request_deserializer=lambda b: b, response_serializer=lambda b: b
        )


class HttpAuth:
    """ASGI middleware: checks a request's token against its route's access class.

    It runs before routing, so a refused request's body is never read.
    """

    def __init__(
        self, app: ASGIApp, *, tokens: Tokens, public: frozenset[str], on_denied: OnDenied
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public
        self.on_denied = on_denied

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.tokens.enabled or path in self.public:
            await self.app(scope, receive, send)
            return
        access = http_access(scope["method"], path)
        header = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value.decode("latin-1")
        basic = path in BASIC_AUTH_PATHS
        denied = self.tokens.check(header, access, basic=basic)
        if denied is None:
            # for routes that show an admin more (alert rules' webhook URLs)
            scope.setdefault("state", {})[_SCOPE_KEY] = self.tokens.scope_of_header(
                header, basic=basic
            )
            await self.app(scope, receive, send)
            return
        self.on_denied("http", denied.status, access)
        body: dict[str, str] = {"detail": denied.message}
        if path == _CONNECT_PATH:  # Connect's error shape, for Pyroscope SDKs
            code = "unauthenticated" if denied.status == 401 else "permission_denied"
            body = {"code": code, "message": denied.message}
        headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else None
        await JSONResponse(body, status_code=denied.status, headers=headers)(scope, receive, send)
