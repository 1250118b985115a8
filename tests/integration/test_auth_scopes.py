"""Token scopes on a real aggregator: admin, ingest and read tokens over HTTP and gRPC.

Every route of the scope table is requested with every kind of token, and the
stolen-token stories of SECURITY.md are played out: what an ingest token and a
read token can and cannot do.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator_client import raw_push
from aggregator_proc import AggregatorProcess
from aperture.aggregator.access import ALLOWED, HTTP_ROUTES, Access, Scope
from aperture.formats.pprof import to_pprof
from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode
from webhook_receiver import Receiver

ADMIN, INGEST, INGEST_2, READ = "admin-secret", "ingest-secret", "ingest-rotated", "read-secret"
TOKENS: dict[str, Scope | None] = {
    ADMIN: Scope.ADMIN,
    INGEST: Scope.INGEST,
    INGEST_2: Scope.INGEST,
    READ: Scope.READ,
    "not-a-token": None,
}
SEQUENCE = count(1)
HOT = (Frame("main", "app"), Frame("hot", "app"))


def profile() -> Profile:
    now = time.time_ns()
    return Profile(EventType.CPU, "samples", samples=[Sample(HOT, 10, pid=42, comm="app")],
                   start_ns=now - 10**9, end_ns=now, frequency_hz=99)  # fmt: skip


def batch() -> bytes:
    return encode([profile()], Identity("scoped", "host-1"), next(SEQUENCE)).SerializeToString()


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(
        tmp_path_factory.mktemp("scopes") / "agg",
        "--ingest-token", f"{INGEST},{INGEST_2}", "--read-token", READ,
        "--alert-interval", "1h",
        token=ADMIN,
    ).start()  # fmt: skip
    yield proc
    assert proc.stop() == 0, proc.log.read_text()


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def request(
    agg: AggregatorProcess, method: str, path: str, token: str | None, **kwargs: Any
) -> httpx.Response:
    return httpx.request(method, agg.http + path, headers=bearer(token), timeout=30, **kwargs)


# What each table entry is sent, so an allowed request gets past its handler's checks.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/v1/export"): {"params": {"format": "collapsed"}},
    ("POST", "/api/v1/alerts/evaluate"): {"json": {"dry_run": True}},
    ("POST", "/api/v1/alerts/rules"): {"json": {}},
    ("PUT", "/api/v1/alerts/rules/{rule_id}"): {"json": {}},
    ("POST", "/api/v1/ingest/pprof"): {"content": b""},
    ("POST", "/ingest"): {"params": {"name": "app.cpu"}, "content": b"main;hot 1\n"},
    ("POST", "/push.v1.PusherService/Push"): {
        "content": b"{}",
        "headers_extra": {"Content-Type": "application/json"},
    },
}


def expected(access: Access, scope: Scope | None) -> int | None:
    """None: the token check lets the request through; else its status."""
    if access is Access.OPEN or (scope is not None and scope in ALLOWED[access]):
        return None
    return 401 if scope is None else 403


@pytest.mark.parametrize(("method", "template"), sorted(HTTP_ROUTES))
def test_every_route_with_every_token(agg: AggregatorProcess, method: str, template: str) -> None:
    access = HTTP_ROUTES[(method, template)]
    path = re.sub(r"\{[^}]+\}", "no-such-rule", template)
    kwargs = dict(BODIES.get((method, template), {}))
    extra = kwargs.pop("headers_extra", {})
    for token, scope in [*TOKENS.items(), (None, None)]:
        response = httpx.request(method, agg.http + path, headers={**bearer(token), **extra},
                                 timeout=30, **kwargs)  # fmt: skip
        status = expected(access, scope)
        who = scope.value if scope else ("no" if token is None else "an unknown")
        if status is None:
            assert response.status_code not in (401, 403), (who, response.text)
        else:
            assert response.status_code == status, (who, response.status_code, response.text)
            message = response.json().get("detail") or response.json()["message"]
            assert message.endswith(".") and "token" in message, message


def grpc_code(call: Any, request_message: Any, token: str | None) -> grpc.StatusCode:
    try:
        call(request_message, metadata=[("authorization", f"Bearer {token}")] if token else [],
             timeout=30)  # fmt: skip
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def test_grpc_methods_with_every_token(agg: AggregatorProcess) -> None:
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        push = raw_push(channel)
        calls: dict[Access, list[tuple[Any, Any]]] = {
            Access.INGEST: [(push, None)],
            Access.READ: [
                (stub.Query, apb.QueryRequest(limit=1)),
                (stub.Aggregate, apb.AggregateRequest(event_type="cpu")),
                (stub.Diff, apb.DiffRequest()),
            ],
        }
        for token, scope in [*TOKENS.items(), (None, None)]:
            for access, methods in calls.items():
                for call, message in methods:
                    status = expected(access, scope)
                    code = grpc_code(call, batch() if message is None else message, token)
                    if status is None:
                        assert code not in REFUSED, (token, call)
                    elif status == 401:
                        assert code == grpc.StatusCode.UNAUTHENTICATED, (token, call)
                    else:
                        assert code == grpc.StatusCode.PERMISSION_DENIED, (token, call)
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_stolen_ingest_token_pushes_but_reads_and_changes_nothing(
    agg: AggregatorProcess,
) -> None:
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        md = [("authorization", f"Bearer {INGEST}")]
        assert stub.Push(encode([profile()], Identity("scoped", "h"), next(SEQUENCE)),
                         metadata=md).accepted  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            stub.Aggregate(apb.AggregateRequest(event_type="cpu"), metadata=md)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details() == (
            "an ingest token may not read from the aggregator: use a read token "
            "(APERTURE_READ_TOKEN) or the admin token (APERTURE_AUTH_TOKEN)."
        )
    # a pprof upload and a Pyroscope push (the password of basic auth) work
    pprof = request(agg, "POST", "/api/v1/ingest/pprof", INGEST_2, content=to_pprof(profile()))
    assert pprof.status_code == 200, pprof.text
    basic = "Basic " + base64.b64encode(f"sdk:{INGEST}".encode()).decode()
    legacy = httpx.post(f"{agg.http}/ingest", params={"name": "svc.cpu"},
                        content=b"main;hot 3\n", headers={"Authorization": basic})  # fmt: skip
    assert legacy.status_code == 200, legacy.text
    # but no profile, agent list, metric or alert rule can be read, nor any rule written
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/flamegraph", {}),
        ("GET", "/api/v1/export", {"params": {"format": "pprof"}}),
        ("GET", "/api/v1/agents", {}),
        ("GET", "/metrics", {}),
        ("GET", "/api/v1/alerts/rules", {}),
        ("GET", "/api/v1/alerts/history", {}),
        ("POST", "/api/v1/alerts/rules", {"json": {"name": "ssrf", "webhook":
                                                   "http://169.254.169.254/", "expression":
                                                   {"metric": "buffer_utilization"},
                                                   "operator": ">", "threshold": 0}}),
        ("POST", "/api/v1/alerts/evaluate", {"json": {}}),
        ("DELETE", "/api/v1/alerts/rules/anything", {}),
    ]  # fmt: skip
    for method, path, kwargs in writes:
        response = request(agg, method, path, INGEST, **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"].startswith("an ingest token may not")
    assert request(agg, "GET", "/api/v1/alerts/rules", ADMIN).json() == []


def test_a_read_token_reads_everything_but_writes_nothing(agg: AggregatorProcess) -> None:
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        admin = [("authorization", f"Bearer {ADMIN}")]
        assert stub.Push(encode([profile()], Identity("scoped", "h"), next(SEQUENCE)),
                         metadata=admin).accepted  # fmt: skip
        md = [("authorization", f"Bearer {READ}")]
        assert stub.Query(apb.QueryRequest(limit=10), metadata=md).batches
        with pytest.raises(grpc.RpcError) as err:
            stub.Push(encode([profile()], Identity("x", "h"), next(SEQUENCE)), metadata=md)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "APERTURE_INGEST_TOKEN" in (err.value.details() or "")
    agg.wait_stored()
    top = request(agg, "GET", "/api/v1/top", READ)
    assert top.status_code == 200 and "hot" in top.text
    for path in ("/api/v1/health", "/api/v1/agents", "/api/v1/alerts", "/metrics"):
        assert request(agg, "GET", path, READ).status_code == 200, path
    exported = request(agg, "GET", "/api/v1/export", READ, params={"format": "collapsed"})
    assert exported.status_code == 200 and "hot" in exported.text
    rule = {"name": "r", "expression": {"metric": "buffer_utilization"}, "operator": ">",
            "threshold": 2}  # fmt: skip
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/alerts/rules", {"json": rule}),
        ("PUT", "/api/v1/alerts/rules/r", {"json": rule}),
        ("DELETE", "/api/v1/alerts/rules/r", {}),
        ("POST", "/api/v1/alerts/evaluate", {"json": {"dry_run": True}}),
        ("POST", "/api/v1/ingest/pprof", {"content": to_pprof(profile())}),
    ]
    for method, path, kwargs in writes:
        response = request(agg, method, path, READ, **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"].startswith("a read token may not")
    refused = httpx.post(f"{agg.http}/push.v1.PusherService/Push", content=b"{}",
                         headers={**bearer(READ), "Content-Type": "application/json"})  # fmt: skip
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"


def test_the_admin_token_does_everything(agg: AggregatorProcess) -> None:
    rule = {"name": "admin-rule", "expression": {"metric": "buffer_utilization"},
            "operator": ">", "threshold": 2}  # fmt: skip
    created = request(agg, "POST", "/api/v1/alerts/rules", ADMIN, json=rule)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert request(agg, "GET", f"/api/v1/alerts/rules/{rid}", READ).status_code == 200
    evaluated = request(agg, "POST", "/api/v1/alerts/evaluate", ADMIN, json={"rule_id": rid})
    assert evaluated.status_code == 200, evaluated.text
    assert request(agg, "DELETE", f"/api/v1/alerts/rules/{rid}", ADMIN).status_code == 204
    pushed = request(agg, "POST", "/api/v1/ingest/pprof", ADMIN, content=to_pprof(profile()))
    assert pushed.status_code == 200, pushed.text


def metric(agg: AggregatorProcess, series: str) -> float:
    text = agg.get("/metrics", headers=bearer(ADMIN)).text
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise KeyError(series)


def test_refusals_are_counted_401_apart_from_403(agg: AggregatorProcess) -> None:
    names = [f'aperture_auth_failures_total{{transport="{t}"}}' for t in ("http", "grpc")]
    names += [f'aperture_auth_forbidden_total{{transport="{t}"}}' for t in ("http", "grpc")]
    names += ['aperture_pushes_total{status="unauthenticated"}',
              'aperture_pushes_total{status="forbidden"}']  # fmt: skip
    before = [metric(agg, n) for n in names]
    assert request(agg, "GET", "/api/v1/agents", "stolen?").status_code == 401
    assert request(agg, "GET", "/api/v1/agents", None).status_code == 401
    assert request(agg, "GET", "/api/v1/agents", INGEST).status_code == 403
    with grpc.insecure_channel(agg.grpc_target) as channel:
        push = raw_push(channel)
        assert grpc_code(push, batch(), "wrong") == grpc.StatusCode.UNAUTHENTICATED
        assert grpc_code(push, batch(), READ) == grpc.StatusCode.PERMISSION_DENIED
    after = [metric(agg, n) for n in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1, 1, 1, 1]


def test_cors_is_off(agg: AggregatorProcess) -> None:
    origin = {"Origin": "https://evil.example"}
    plain = httpx.get(f"{agg.http}/api/v1/health", headers={**bearer(READ), **origin})
    assert plain.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in plain.headers)
    preflight = httpx.options(
        f"{agg.http}/api/v1/alerts/rules",
        headers={**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert preflight.status_code >= 400
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)


def test_probes_and_the_dashboard_need_no_token(agg: AggregatorProcess) -> None:
    for path in ("/healthz", "/readyz", "/", "/flamegraph"):
        # the dashboard answers 503 with a page saying how to build it when it is not built
        assert agg.get(path).status_code in (200, 503), path
    assert agg.get("/api/v1/health").status_code == 401
    # a doubled slash is the dashboard's path, not a way around the token
    assert agg.get("//api/v1/agents").status_code in (200, 503)
    assert "scoped" not in agg.get("//api/v1/agents").text
    assert agg.get("/api/v1/not-a-route", headers=bearer(READ)).status_code == 403


def test_a_read_token_sees_webhook_hosts_not_their_secret_paths(agg: AggregatorProcess) -> None:
    receiver = Receiver()
    try:
        secret_url = receiver.url + "/T000/B000/s3cret?key=s3cret"
        rule = {"name": "webhook-secret", "expression": {"metric": "buffer_utilization"},
                "operator": ">=", "threshold": 0, "webhook": secret_url}  # fmt: skip
        created = request(agg, "POST", "/api/v1/alerts/rules", ADMIN, json=rule)
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        fired = request(agg, "POST", "/api/v1/alerts/evaluate", ADMIN, json={"rule_id": rid})
        assert fired.status_code == 200, fired.text
        receiver.wait_for("webhook-secret", ["firing"])
        assert request(agg, "GET", f"/api/v1/alerts/rules/{rid}", ADMIN).json()["webhook"] == (
            secret_url
        )
        for path in (f"/api/v1/alerts/rules/{rid}", "/api/v1/alerts/rules",
                     f"/api/v1/alerts/history?rule={rid}"):  # fmt: skip
            seen = request(agg, "GET", path, READ)
            assert seen.status_code == 200 and "s3cret" not in seen.text, (path, seen.text)
        shown = request(agg, "GET", f"/api/v1/alerts/rules/{rid}", READ).json()["webhook"]
        assert shown == "http://127.0.0.1/…"
        history = request(agg, "GET", f"/api/v1/alerts/history?rule={rid}", ADMIN).text
        assert "s3cret" in history
        assert request(agg, "DELETE", f"/api/v1/alerts/rules/{rid}", ADMIN).status_code == 204
    finally:
        receiver.server.shutdown()
