"""The scope table: every route and RPC classified, and token checks without a server."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts

from aperture.aggregator.access import (
    GRPC_METHODS,
    GRPC_SERVICE,
    HTTP_ROUTES,
    Access,
    Scope,
    grpc_access,
    http_access,
)
from aperture.aggregator.api import create_app
from aperture.aggregator.auth import Tokens
from aperture.aggregator.cli import build_parser, settings_from
from aperture.aggregator.grpc_service import OTLP_PROFILES, SERVICE
from aperture.aggregator.server import Aggregator, Settings
from aperture.errors import UsageError
from aperture.proto.otlp import profiles_service_pb2 as otlp_pb
from aperture.proto.v1 import aggregator_pb2 as apb


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path template) of every route the real app registers."""
    settings = Settings(token="a", storage=None, journal=False, data_dir=tmp_path)
    app = create_app(Aggregator(settings).state)
    routes = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None
        for method in route.methods or ():
            if method != "HEAD":
                routes.add((method, route.path))
    return routes


def test_every_http_route_has_an_access_class(tmp_path: Path) -> None:
    unclassified = app_routes(tmp_path) - set(HTTP_ROUTES)
    assert not unclassified, f"classify these in aperture/aggregator/access.py: {unclassified}"


def test_every_table_entry_resolves_to_itself() -> None:
    # A concrete path of each template finds its own entry, not an earlier one.
    for (method, template), access in HTTP_ROUTES.items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        assert http_access(method, path) is access, (method, template)
    assert http_access("HEAD", "/api/v1/flamegraph") is Access.READ


def test_unclassified_requests_need_the_admin_token() -> None:
    assert http_access("GET", "/api/v1/not-a-route") is Access.ADMIN
    assert http_access("POST", "/api/v1/flamegraph") is Access.ADMIN
    assert http_access("GET", "/ingest") is Access.ADMIN
    # the dashboard's own routes and files are open
    for path in ("/", "/flamegraph", "/assets/index-abc.js", "/diff"):
        assert http_access("GET", path) is Access.OPEN, path


def test_every_rpc_has_an_access_class() -> None:
    assert SERVICE == GRPC_SERVICE
    methods = apb.DESCRIPTOR.services_by_name["Aggregator"].methods
    otlp = otlp_pb.DESCRIPTOR.services_by_name["ProfilesService"].methods
    assert {f"/{SERVICE}/{m.name}" for m in methods} | {
        f"/{OTLP_PROFILES}/{m.name}" for m in otlp} == set(GRPC_METHODS)  # fmt: skip
    assert grpc_access(f"/{OTLP_PROFILES}/Export") is Access.INGEST
    assert grpc_access(f"/{SERVICE}/Push") is Access.INGEST
    assert grpc_access(f"/{SERVICE}/Query") is Access.READ
    assert grpc_access("/grpc.health.v1.Health/Check") is Access.OPEN
    assert grpc_access(f"/{SERVICE}/Unknown") is Access.ADMIN


TOKENS = Tokens("admin-t", ingest=("ingest-1", "ingest-2"), read=("read-t",))


def test_token_scopes() -> None:
    assert TOKENS.scope_of("admin-t") is Scope.ADMIN
    assert TOKENS.scope_of("ingest-2") is Scope.INGEST
    assert TOKENS.scope_of("read-t") is Scope.READ
    assert TOKENS.scope_of("read") is None
    assert TOKENS.scope_of("") is None
    assert not Tokens(None).enabled and Tokens(None, read=("r",)).enabled


@pytest.mark.parametrize(
    ("token", "access", "status"),
    [
        ("admin-t", Access.ADMIN, None),
        ("admin-t", Access.INGEST, None),
        ("admin-t", Access.READ, None),
        ("ingest-1", Access.INGEST, None),
        ("ingest-1", Access.READ, 403),
        ("ingest-1", Access.ADMIN, 403),
        ("read-t", Access.READ, None),
        ("read-t", Access.INGEST, 403),
        ("read-t", Access.ADMIN, 403),
        ("wrong", Access.READ, 401),
        (None, Access.INGEST, 401),
        (None, Access.OPEN, None),
    ],
)
def test_check(token: str | None, access: Access, status: int | None) -> None:
    denied = TOKENS.check(f"Bearer {token}" if token else None, access)
    assert (denied.status if denied else None) == status


def test_messages_name_the_token_needed() -> None:
    denied = TOKENS.check("Bearer read-t", Access.ADMIN)
    assert denied is not None
    assert denied.message == (
        "a read token may not change or evaluate alert rules: "
        "use the admin token (APERTURE_AUTH_TOKEN)."
    )
    denied = TOKENS.check(None, Access.INGEST)
    assert denied is not None and "APERTURE_INGEST_TOKEN" in denied.message


def test_basic_auth_password_only_where_allowed() -> None:
    header = "Basic " + base64.b64encode(b"user:ingest-1").decode()
    assert TOKENS.check(header, Access.INGEST, basic=True) is None
    denied = TOKENS.check(header, Access.INGEST)
    assert denied is not None and denied.status == 401


def test_tokens_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APERTURE_INGEST_TOKEN", "e1, e2")
    monkeypatch.delenv("APERTURE_READ_TOKEN", raising=False)
    monkeypatch.delenv("APERTURE_AUTH_TOKEN", raising=False)
    args = build_parser().parse_args(["--read-token", "r1,r2", "--read-token", "r3"])
    settings = settings_from(args)
    assert isinstance(settings, Settings)
    assert settings.ingest_tokens == ("e1", "e2")
    assert settings.read_tokens == ("r1", "r2", "r3")
    assert settings.token is None
    args = build_parser().parse_args(["--token", "same", "--ingest-token", "same"])
    with pytest.raises(UsageError, match="give each scope its own tokens"):
        settings_from(args)
