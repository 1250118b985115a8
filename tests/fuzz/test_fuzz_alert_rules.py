"""Alert rule documents: any JSON gets 201 or 422 (409 for a taken id), never a 5xx."""

from __future__ import annotations

import json
from typing import Any

from fuzz_server import Aggregator, refused_or_ok
from hypothesis import given
from hypothesis import strategies as st

from aperture.aggregator.alerts.rules import METRICS, OPERATORS, SEVERITIES

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
PARAM_KEYS = ["function", "syscall", "window", "mode", "module", "host", "agent", "comm", "pid",
              "event_type", "x"]  # fmt: skip


@st.composite
def rule_documents(draw: st.DrawFn) -> Any:
    """Mostly rule-shaped objects with odd values, sometimes any JSON at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    doc: dict[str, Any] = {
        "name": draw(st.text(max_size=10) | scalars),
        "expression": {
            "metric": draw(st.sampled_from(sorted(METRICS)) | scalars),
            "params": draw(
                st.dictionaries(st.sampled_from(PARAM_KEYS), scalars, max_size=3) | json_values
            ),
        },
        "operator": draw(st.sampled_from(OPERATORS) | scalars),
        "threshold": draw(st.floats() | st.integers(-5, 2**70) | scalars),
    }
    for key, values in (
        ("severity", st.sampled_from(SEVERITIES) | scalars),
        ("for", st.sampled_from(["30s", "5m", "-1s", "1e400s", "10q"]) | scalars),
        ("renotify_interval", st.sampled_from(["1h", "0s"]) | scalars),
        ("labels", st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | json_values),
        ("enabled", st.booleans() | scalars),
        ("webhook", st.sampled_from(["http://127.0.0.1:9/x", "file:///etc/passwd"]) | scalars),
        ("id", st.text(max_size=8) | scalars),
    ):
        if draw(st.booleans()):
            doc[key] = draw(values)
    return doc


def _post(agg: Aggregator, path: str, doc: Any) -> int:
    # allow_nan: Infinity/NaN are what a careless client may send
    body = json.dumps(doc, allow_nan=True).encode()
    response = agg.client.post(path, content=body, headers={"Content-Type": "application/json"})
    refused_or_ok(response)
    return response.status_code


@given(rule_documents())
def test_rule_documents_are_created_or_refused(aggregator: Aggregator, doc: Any) -> None:
    status = _post(aggregator, "/api/v1/alerts/rules", doc)
    assert status in (201, 409, 422), status
    if status == 201:  # and it reads back, and can be replaced and deleted
        created = aggregator.client.get("/api/v1/alerts/rules").json()
        assert created
        rule_id = next(r for r in created if r["name"] == str(doc["name"]).strip())["id"]
        refused_or_ok(aggregator.client.put(f"/api/v1/alerts/rules/{rule_id}", json=doc))
        assert aggregator.client.delete(f"/api/v1/alerts/rules/{rule_id}").status_code == 204


@given(rule_documents(), st.booleans())
def test_dry_run_evaluation_of_any_rule(aggregator: Aggregator, doc: Any, nest: bool) -> None:
    status = _post(aggregator, "/api/v1/alerts/evaluate", {"rule": doc, "dry_run": True} if nest
                   else doc)  # fmt: skip
    assert status in (200, 404, 422), status


@given(st.binary(max_size=200))
def test_non_json_bodies_are_refused(aggregator: Aggregator, body: bytes) -> None:
    response = aggregator.client.post(
        "/api/v1/alerts/rules", content=body, headers={"Content-Type": "application/json"}
    )
    refused_or_ok(response)  # FastAPI: 400 for bytes that are no JSON, 422 for a non-rule
    assert response.status_code in (201, 400, 409, 422), response.status_code


def test_the_aggregator_is_healthy_after_the_rules(aggregator: Aggregator) -> None:
    aggregator.assert_healthy()
    assert aggregator.client.get("/api/v1/alerts").status_code == 200
