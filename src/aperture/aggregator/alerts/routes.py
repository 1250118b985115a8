"""REST routes of the alert engine under /api/v1/alerts (docs/alerting.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from aperture.aggregator.alerts.engine import AlertEngine
from aperture.aggregator.alerts.rules import RuleError, metric_catalog, parse_rule


def add_alert_routes(api: APIRouter, engine: AlertEngine) -> None:
    def parse(body: Any, rule_id: str | None = None) -> Any:
        try:
            return parse_rule(body, rule_id)
        except RuleError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    def view(rule_id: str) -> dict[str, Any]:
        rule = engine.rules.get(rule_id)
        if rule is None:
            raise HTTPException(status_code=404, detail=f"no alert rule {rule_id!r}")
        return {**rule.to_json(), "status": asdict(engine.state_of(rule_id))}

    @api.get("/alerts/metrics")
    def metrics() -> list[dict[str, Any]]:
        """What a rule can measure: each metric's parameters, unit and meaning."""
        return metric_catalog()

    @api.get("/alerts/rules")
    def list_rules() -> list[dict[str, Any]]:
        return [view(rid) for rid in list(engine.rules)]

    @api.post("/alerts/rules", status_code=201)
    def create_rule(body: Annotated[Any, Body()]) -> dict[str, Any]:
        rule = parse(body)
        if rule.id in engine.rules:
            raise HTTPException(status_code=409, detail=f"alert rule {rule.id!r} exists")
        engine.put_rule(rule)
        return view(rule.id)

    @api.get("/alerts/rules/{rule_id}")
    def get_rule(rule_id: str) -> dict[str, Any]:
        return view(rule_id)

    @api.put("/alerts/rules/{rule_id}")
    def replace_rule(rule_id: str, body: Annotated[Any, Body()]) -> dict[str, Any]:
        view(rule_id)
        engine.put_rule(parse(body, rule_id))
        return view(rule_id)

    @api.delete("/alerts/rules/{rule_id}", status_code=204)
    def delete_rule(rule_id: str) -> None:
        if not engine.delete_rule(rule_id):
            raise HTTPException(status_code=404, detail=f"no alert rule {rule_id!r}")

    @api.get("/alerts")
    def current() -> list[dict[str, Any]]:
        """Every rule's state, firing first."""
        order = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}
        rows = [
            {**asdict(engine.state_of(r.id)), "name": r.name, "severity": r.severity,
             "labels": r.labels, "enabled": r.enabled}
            for r in list(engine.rules.values())
        ]  # fmt: skip
        return sorted(rows, key=lambda s: (order[s["state"]], s["name"]))

    @api.get("/alerts/history")
    def history(
        rule: Annotated[str | None, Query(description="only this rule id")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """State changes and notification attempts, newest first."""
        return engine.history_for(rule, limit)

    @api.post("/alerts/evaluate")
    def evaluate(body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        """Evaluate now: every rule, one (``rule_id``), or an unsaved ``rule``; ``dry_run``."""
        body = body or {}
        dry_run = bool(body.get("dry_run", False))
        if body.get("rule") is not None:
            return {"results": engine.evaluate(dry_run=True, rule=parse(body["rule"]))}
        rule_id = body.get("rule_id")
        if rule_id is not None and rule_id not in engine.rules:
            raise HTTPException(status_code=404, detail=f"no alert rule {rule_id!r}")
        return {"results": engine.evaluate(dry_run=dry_run, rule_id=rule_id)}
