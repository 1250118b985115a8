"""Which token scope every HTTP route and gRPC method needs: the one table to extend.

A request no entry of :data:`HTTP_ROUTES` matches needs the admin token (fail
closed), and ``tests/unit/test_access.py`` fails until a new route is classified here.
"""

from __future__ import annotations

import enum
import re

from starlette.routing import compile_path

from aperture.aggregator.web import SERVER_PREFIXES


class Access(enum.Enum):
    """What a request does, hence which tokens may make it."""

    OPEN = "open"  # probes and the dashboard's static files: no token
    INGEST = "ingest"  # push profiles
    READ = "read"  # read profiles, agents, metrics, alert state
    ADMIN = "admin"  # change alert rules, evaluate (sends notifications)


class Scope(enum.Enum):
    """The kind of token a request carried."""

    ADMIN = "admin"
    INGEST = "ingest"
    READ = "read"


# Which scopes satisfy each access class; the admin token satisfies all.
ALLOWED: dict[Access, frozenset[Scope]] = {
    Access.OPEN: frozenset(Scope),
    Access.INGEST: frozenset({Scope.INGEST, Scope.ADMIN}),
    Access.READ: frozenset({Scope.READ, Scope.ADMIN}),
    Access.ADMIN: frozenset({Scope.ADMIN}),
}

# What to tell a caller whose token is missing, unknown or of the wrong scope.
NEEDED: dict[Access, str] = {
    Access.INGEST: "an ingest token (APERTURE_INGEST_TOKEN) or the admin token "
    "(APERTURE_AUTH_TOKEN)",
    Access.READ: "a read token (APERTURE_READ_TOKEN) or the admin token (APERTURE_AUTH_TOKEN)",
    Access.ADMIN: "the admin token (APERTURE_AUTH_TOKEN)",
}

# (method, path template as FastAPI registers it) -> access. HEAD is looked up as GET.
HTTP_ROUTES: dict[tuple[str, str], Access] = {
    # probes, the API schema, the dashboard's files (its data comes from /api/v1)
    ("GET", "/healthz"): Access.OPEN,
    ("GET", "/readyz"): Access.OPEN,
    ("GET", "/openapi.json"): Access.OPEN,
    ("GET", "/docs"): Access.OPEN,
    ("GET", "/docs/oauth2-redirect"): Access.OPEN,
    ("GET", "/redoc"): Access.OPEN,
    ("GET", "/{path:path}"): Access.OPEN,  # only outside SERVER_PREFIXES
    # Prometheus: open with --metrics-public
    ("GET", "/metrics"): Access.READ,
    # reads: the dashboard and `aperture` need nothing more
    ("GET", "/api/v1/health"): Access.READ,
    ("GET", "/api/v1/batches"): Access.READ,
    ("GET", "/api/v1/agents"): Access.READ,
    ("GET", "/api/v1/flamegraph"): Access.READ,
    ("GET", "/api/v1/wallclock"): Access.READ,
    ("GET", "/api/v1/top"): Access.READ,
    ("GET", "/api/v1/diff"): Access.READ,
    ("GET", "/api/v1/timeline"): Access.READ,
    ("GET", "/api/v1/syscalls"): Access.READ,
    ("GET", "/api/v1/locks"): Access.READ,
    ("GET", "/api/v1/unwind"): Access.READ,
    ("GET", "/api/v1/export"): Access.READ,
    ("GET", "/api/v1/profile-types"): Access.READ,
    ("GET", "/api/v1/alerts"): Access.READ,
    ("GET", "/api/v1/alerts/metrics"): Access.READ,
    ("GET", "/api/v1/alerts/history"): Access.READ,
    ("GET", "/api/v1/alerts/rules"): Access.READ,
    ("GET", "/api/v1/alerts/rules/{rule_id}"): Access.READ,
    # rule writes carry webhook URLs, and evaluate sends notifications: admin only
    ("POST", "/api/v1/alerts/rules"): Access.ADMIN,
    ("PUT", "/api/v1/alerts/rules/{rule_id}"): Access.ADMIN,
    ("DELETE", "/api/v1/alerts/rules/{rule_id}"): Access.ADMIN,
    ("POST", "/api/v1/alerts/evaluate"): Access.ADMIN,
    # ingest of other tools' profiles
    ("POST", "/api/v1/ingest/pprof"): Access.INGEST,
    ("POST", "/push.v1.PusherService/Push"): Access.INGEST,
    ("POST", "/ingest"): Access.INGEST,
    ("POST", "/v1development/profiles"): Access.INGEST,
}

# Pyroscope SDKs send the token as the basic-auth password on these.
BASIC_AUTH_PATHS = frozenset({"/push.v1.PusherService/Push", "/ingest"})

GRPC_SERVICE = "aperture.v1.Aggregator"
GRPC_METHODS: dict[str, Access] = {
    f"/{GRPC_SERVICE}/Push": Access.INGEST,
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export": (Access.INGEST),
    f"/{GRPC_SERVICE}/Query": Access.READ,
    f"/{GRPC_SERVICE}/Aggregate": Access.READ,
    f"/{GRPC_SERVICE}/Diff": Access.READ,
}
# Health checks stay open so probes work without a token.
OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/",)


_DASHBOARD = ("GET", "/{path:path}")
_PATTERNS: list[tuple[str, re.Pattern[str], Access]] = [
    (method, compile_path(template)[0], access)
    for (method, template), access in HTTP_ROUTES.items()
    if (method, template) != _DASHBOARD
]


def http_access(method: str, path: str) -> Access:
    """The access class of a request; one no entry matches needs the admin token.

    The dashboard's catch-all only covers paths outside the server's prefixes, so
    an unclassified API route is never open.
    """
    method = "GET" if method == "HEAD" else method
    for route_method, pattern, access in _PATTERNS:
        if route_method == method and pattern.match(path):
            return access
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    if method == "GET" and first not in SERVER_PREFIXES:
        return HTTP_ROUTES[_DASHBOARD]
    return Access.ADMIN


def grpc_access(method: str) -> Access:
    """The access class of a gRPC method; an unclassified one needs the admin token."""
    if method.startswith(OPEN_GRPC_PREFIXES):
        return Access.OPEN
    return GRPC_METHODS.get(method, Access.ADMIN)
