"""Schemathesis against a real aggregator's /openapi.json, with, without and with a wrong token.

With the token no operation may answer 5xx, to valid (positive) or invalid (negative)
requests, and valid requests get responses that match their schemas. Without a token,
or with a wrong one, every operation in the schema is protected: 401 or 403, never
2xx. (``/healthz``, ``/readyz`` and the dashboard are open and not in the schema.)

Schemathesis 4's pytest integration does not run on pytest 9 (it sets ``_nodeid``),
so each operation's strategy drives a hypothesis test here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fuzz_server import Aggregator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

# per operation: a modest count keeps `make test` fast; `make fuzz` sets its own
EXAMPLES = (
    int(os.environ.get("APERTURE_FUZZ_OPERATION_EXAMPLES", "50"))
    if os.environ.get("APERTURE_FUZZ") == "1"
    else 6
)
WRONG = [None, "Bearer wrong-token", "bearer test-token-x", "Basic Og==", "Bearer ", "test-token"]


@pytest.fixture(scope="module")
def operations(aggregator: Aggregator) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{aggregator.proc.http}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 15, "the schema lost its operations"
    return ops


def _negative_or_none(operation: Any) -> Any:
    try:
        return operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:  # an operation without parameters has no negative form
        return None


def _runner(operation: Any, examples: int, test: Callable[[Any, Any], None]) -> Callable[[], None]:
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    negative = _negative_or_none(operation)
    if negative is not None:
        strategy = st.one_of(strategy, negative)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        test(operation, case)

    return run  # type: ignore[no-any-return]


def _each(operations: list[Any], examples: int, test: Callable[[Any, Any], None]) -> None:
    """Run ``test(operation, case)`` on generated cases of every operation; report all failures."""
    failures: list[str] = []
    for operation in operations:
        try:
            _runner(operation, examples, test)()
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:1500])
    assert not failures, "\n\n".join(failures)


def test_no_operation_answers_5xx(aggregator: Aggregator, operations: list[Any]) -> None:
    def check(_operation: Any, case: Any) -> None:
        response = case.call(base_url=aggregator.proc.http, headers=aggregator.proc.headers(),
                             timeout=60)  # fmt: skip
        checks = [not_a_server_error]
        # Refusals carry {"detail": "one sentence"} where FastAPI documents its own 422
        # shape (a list), so only answers to valid requests are held to their schemas.
        positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
        if positive and response.status_code < 300:
            checks.append(response_schema_conformance)
        case.validate_response(response, checks=checks)

    _each(operations, EXAMPLES, check)
    aggregator.assert_healthy()


def test_every_operation_needs_the_token(aggregator: Aggregator, operations: list[Any]) -> None:
    def check(operation: Any, case: Any) -> None:
        for authorization in WRONG:
            headers = {"Authorization": authorization} if authorization else {}
            response = case.call(base_url=aggregator.proc.http, headers=headers, timeout=60)
            assert response.status_code in (401, 403), (
                f"{case.method} {case.formatted_path} answered {response.status_code} with "
                f"Authorization {authorization!r}: {response.text[:200]}"
            )

    _each(operations, max(2, EXAMPLES // 2), check)
