"""REST routes of the alert engine under /api/v1/alerts (docs/alerting.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, HTTPException, Query, Request

from aperture.aggregator.alerts.engine import AlertEngine
from aperture.aggregator.alerts.rules import RuleError, metric_catalog, parse_rule
from aperture.aggregator.auth import is_admin


def hide_secret(url: str | None) -> str | None:
    """A webhook URL without its path and query, which often hold a secret (Slack's do)."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def add_alert_routes(api: APIRouter, engine: AlertEngine) -> None:
    def parse(body: Any, rule_id: str | None = None) -> Any:
        try:
            return parse_rule(body, rule_id)
        except RuleError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    def view(rule_id: str, admin: bool = True) -> dict[str, Any]:
        rule = engine.rules.get(rule_id)
        if rule is None:
            raise HTTPException(status_code=404, detail=f"no alert rule {rule_id!r}")
        out = {**rule.to_json(), "status": asdict(engine.state_of(rule_id))}
        if not admin:  # a read token sees where notifications go, not the URL's secret
            out["webhook"] = hide_secret(out["webhook"])
        return out

    @api.get("/alerts/metrics")
    def metrics() -> list[dict[str, Any]]:
        """What a rule can measure: each metric's parameters, unit and meaning."""
        return metric_catalog()

    @api.get("/alerts/rules")
    def list_rules(request: Request) -> list[dict[str, Any]]:
        return [view(rid, is_admin(request)) for rid in list(engine.rules)]

    @api.post("/alerts/rules", status_code=201)
    def create_rule(body: Annotated[Any, Body()]) -> dict[str, Any]:
        rule = parse(body)
        if rule.id in engine.rules:
            raise HTTPException(status_code=409, detail=f"alert rule {rule.id!r} exists")
        engine.put_rule(rule)
        return view(rule.id)

    @api.get("/alerts/rules/{rule_id}")
    def get_rule(rule_id: str, request: Request) -> dict[str, Any]:
        return view(rule_id, is_admin(request))

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
        request: Request,
        rule: Annotated[str | None, Query(description="only this rule id")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """State changes and notification attempts, newest first."""
        rows = engine.history_for(rule, limit)
        if is_admin(request):
            return rows
        hidden = []
        for row in rows:
            target = row.get("target")
            if isinstance(target, str) and target != "log":
                row = {**row, "target": hide_secret(target)}
                if isinstance(row.get("error"), str):  # errors may quote the URL
                    row["error"] = row["error"].replace(target, hide_secret(target) or "")
            hidden.append(row)
        return hidden

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
