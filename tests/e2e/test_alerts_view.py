"""The Alerts view in a real browser: create, test, evaluate, edit and delete a rule
against the real alert API, with a real webhook receiving the notifications.

The seeded data (ui_seed.py) has ``parse_json`` in 50% of the last hour's CPU samples.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ui_session import Session

from webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def api_rules(ui: Session) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = ui.api("/api/v1/alerts/rules")
    return rules


def dry_run(ui: Session, rule: dict[str, Any]) -> float:
    r = httpx.post(f"{ui.agg.http}/api/v1/alerts/evaluate", json={"rule": rule, "dry_run": True},
                   headers=ui.agg.headers(), timeout=30)  # fmt: skip
    r.raise_for_status()
    return float(r.json()["results"][0]["value"])


def test_alert_rule_lifecycle_in_the_browser(ui: Session, receiver: Receiver) -> None:
    name = "parse_json hot"
    for rule in api_rules(ui):  # a rerun against the same aggregator starts clean
        httpx.delete(f"{ui.agg.http}/api/v1/alerts/rules/{rule['id']}", headers=ui.agg.headers())
    page = ui.open("/alerts")
    page.get_by_test_id("alerts-empty").wait_for()
    assert page.get_by_test_id("filters").count() == 0  # rules are not scoped by the filters

    # a new rule: the form is built from the metric catalog; the client checks the
    # threshold, the aggregator checks the rest and its reason is shown as is
    page.get_by_role("button", name="New rule").click()
    form = page.get_by_test_id("rule-editor")
    form.locator("select[name=metric]").select_option("cpu_share")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=param-function]").fill("parse_json")
    form.locator("select[name=param-mode]").select_option("total")
    form.locator("input[name=param-window]").fill("soon")
    form.get_by_role("button", name="Create rule").click()
    assert "threshold must be a number" in form.get_by_test_id("rule-problem").inner_text()
    form.get_by_label("threshold").fill("40")
    form.get_by_role("button", name="Create rule").click()
    form.get_by_test_id("rule-problem").get_by_text("params.window").wait_for()
    form.locator("input[name=param-window]").fill("1h")
    form.locator("input[name=webhook]").fill(receiver.url)

    # "Test now" evaluates the unsaved rule: the number shown is the aggregator's
    form.get_by_role("button", name="Test now").click()
    tested = form.get_by_test_id("rule-test")
    tested.wait_for()
    assert "the condition holds" in tested.inner_text(), form.inner_text()
    params = {"function": "parse_json", "mode": "total", "window": "1h"}
    body = {"name": name, "operator": ">", "threshold": 40,
            "expression": {"metric": "cpu_share", "params": params}}  # fmt: skip
    value = dry_run(ui, body)
    assert 45 < value <= 50.5  # the seed's 50%, diluted by at most a minute of the hour before
    assert f"{value:.1f}%" in tested.inner_text()
    assert receiver.bodies == []  # a test notifies nobody
    form.get_by_role("button", name="Create rule").click()

    table = page.get_by_test_id("alert-rules")
    row = table.locator(f"tr[data-rule='{name}']")
    row.wait_for()
    assert "inactive" in row.inner_text() and "> 40.0%" in row.inner_text()
    (saved,) = api_rules(ui)
    assert saved["name"] == name and saved["webhook"] == receiver.url
    assert saved["expression"]["params"] == {"function": "parse_json", "mode": "total",
                                             "window": "1h"}  # fmt: skip

    # evaluate now: for=0 fires at once, the webhook gets one notification
    row.get_by_role("button", name="Evaluate").click()
    row.locator(".alert-badge.firing").wait_for()
    receiver.wait_for(name, ["firing"])
    value = api_rules(ui)[0]["status"]["value"]
    assert f"{value:.1f}%" in row.inner_text()
    page.get_by_test_id("alert-counts").get_by_text(re.compile(r"1\s*firing")).wait_for()
    history = page.get_by_test_id("alert-history")
    # one notification to the log, one to the webhook, each a row of its own
    sent = history.locator("tr", has_text=receiver.url)
    sent.get_by_text("firing notification sent").wait_for()
    assert history.locator("tr", has_text="firing notification sent").count() == 2
    assert history.locator(".alert-badge.pending").count() == 1
    ui.shot("alerts")

    # edit the threshold above the value: the next evaluation resolves it
    row.get_by_role("button", name="Edit").click()
    form = page.get_by_test_id("rule-editor")
    assert form.get_by_label("threshold").input_value() == "40"
    form.get_by_label("threshold").fill("90")
    form.get_by_role("button", name="Save").click()
    row.get_by_text("> 90.0%").wait_for()
    page.get_by_role("button", name="Evaluate all now").click()
    row.locator(".alert-badge.resolved").wait_for()
    receiver.wait_for(name, ["firing", "resolved"])
    sent.get_by_text("resolved notification sent").wait_for()
    assert api_rules(ui)[0]["threshold"] == 90

    # the saved rule is selected: the history is scoped to it, the URL keeps the
    # selection; a click on the row lets go of it
    assert f"alert={saved['id']}" in page.url
    page.get_by_role("heading", name=f"History of {name}").wait_for()
    row.locator("td").nth(1).click()
    page.get_by_role("heading", name="History", exact=True).wait_for()
    assert "alert=" not in page.url

    # delete asks once more, then the rule is gone from the page and the API
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Confirm delete").click()
    page.get_by_test_id("alerts-empty").wait_for()
    assert api_rules(ui) == []
