"""A pytest plugin for ``fuzz.py``: counts the inputs each test tried, applies an example plan.

Counts come from Hypothesis's observability callbacks (every generated input, nested
``@given`` runs such as the Schemathesis operations included), attributed to the pytest
test running at the time; a test without Hypothesis counts one input per run. The file
named by ``APERTURE_FUZZ_COUNTS`` is rewritten after every test, so a run stopped at its
time budget still reports what it tried. ``APERTURE_FUZZ_PLAN`` (JSON: node id ->
max_examples) overrides the examples of individual tests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.internal.observability import add_observability_callback

_counts: dict[str, dict[str, Any]] = {}
_current: list[str] = [""]


def _entry(nodeid: str) -> dict[str, Any]:
    return _counts.setdefault(
        nodeid, {"inputs": 0, "failed_inputs": 0, "seconds": 0.0, "outcome": "", "error": ""}
    )


def _observe(observation: Any, *_thread: Any) -> None:
    if getattr(observation, "type", "") != "test_case" or not _current[0]:
        return
    entry = _entry(_current[0])
    entry["inputs"] += 1
    if observation.status == "failed":
        entry["failed_inputs"] += 1


def _save() -> None:
    path = os.environ.get("APERTURE_FUZZ_COUNTS")
    if path:
        Path(path).write_text(json.dumps(_counts, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    add_observability_callback(_observe, all_threads=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    plan_text = os.environ.get("APERTURE_FUZZ_PLAN")
    plan: dict[str, int] = json.loads(plan_text) if plan_text else {}
    for item in items:
        examples = plan.get(item.nodeid)
        test = getattr(item, "obj", None)
        if examples and hasattr(test, "hypothesis"):
            parent = getattr(test, "_hypothesis_internal_use_settings", settings.default)
            new = settings(parent, max_examples=max(1, examples))
            test._hypothesis_internal_use_settings = new  # type: ignore[union-attr]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _current[0] = item.nodeid
    started = time.monotonic()
    before = _entry(item.nodeid)["inputs"]
    outcome = yield
    entry = _entry(item.nodeid)
    entry["seconds"] += time.monotonic() - started
    if entry["inputs"] == before:  # no Hypothesis: the test's one fixed input set
        entry["inputs"] += 1
    _current[0] = ""
    excinfo = outcome.excinfo
    if excinfo is not None and not issubclass(excinfo[0], pytest.skip.Exception):
        entry["error"] = (
            str(excinfo[1]).strip().splitlines()[0][:300]
            if str(excinfo[1])
            else (excinfo[0].__name__)
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _entry(report.nodeid)["outcome"] = report.outcome
        _save()


def pytest_sessionfinish() -> None:
    _save()
