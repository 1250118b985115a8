"""``aperture alerts``: list, create, delete and test alert rules (over REST)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aperture.cli.client import Client
from aperture.cli.rest import RestClient
from aperture.errors import UsageError
from aperture.formats.tables import render_table

HELP = "alert rules: list, create FILE, delete ID, test ID|FILE (over REST)"


def prepare_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "create", "delete", "test"])
    parser.add_argument("target", nargs="?", help="a rule file (YAML or JSON) or a rule id")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="test: evaluate without changing state or notifying",
    )
    parser.add_argument(
        "--window",
        default="1h",
        help="test --dry-run: the window of metrics that take one (default: 1h, the last hour)",
    )


def load_rule(path: Path) -> Any:
    """A rule (or a list of rules) from a .yaml/.yml or .json file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}.") from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}): "
            "save it as UTF-8."
        ) from None
    if path.suffix in (".yaml", ".yml"):
        return _load_yaml(path, text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except (ValueError, RecursionError) as exc:  # numbers too long, nesting too deep
        raise UsageError(f"{path} is not a valid rule file: {_one_line(exc)}.") from None


def _load_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise UsageError("PyYAML is not installed: pip install pyyaml, or use JSON.") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # Its str() spans several lines (context, excerpt, caret): keep the problem and where.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _one_line(exc.problem or exc.context or "a syntax error")
        raise UsageError(f"{path} is not valid YAML: {problem}{where}.") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UsageError(f"{path} is not valid YAML: {_one_line(exc)}.") from None


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


def _target(args: argparse.Namespace) -> str:
    if not args.target:
        raise UsageError(f"aperture alerts {args.action} needs a rule file or id.")
    return str(args.target)


def run(args: argparse.Namespace, _client: Client) -> str:
    rest = RestClient(args.api, token=args.token, tls_ca=args.tls_ca)
    try:
        data = _run(args, rest)
    finally:
        rest.close()
    if args.json or not isinstance(data, list):
        return json.dumps(data, indent=2)
    return "\n".join(str(line) for line in data)


def _run(args: argparse.Namespace, rest: RestClient) -> Any:
    if args.action == "list":
        rules = rest.request("GET", "/api/v1/alerts/rules").json()
        if args.json:
            return rules
        if not rules:
            return ["no alert rules: create one with `aperture alerts create FILE`"]
        rows = [
            [r["id"], r["name"], r["status"]["state"], r["severity"],
             f"{r['expression']['metric']} {r['operator']} {r['threshold']:g}",
             "" if r["status"]["value"] is None else f"{r['status']['value']:.4g}"]
            for r in rules
        ]  # fmt: skip
        table = render_table(["id", "name", "state", "severity", "condition", "value"], rows)
        return [table.rstrip()]
    if args.action == "create":
        body = load_rule(Path(_target(args)))
        created = [
            rest.request("POST", "/api/v1/alerts/rules", json=rule).json()
            for rule in (body if isinstance(body, list) else [body])
        ]
        return created if args.json else [f"created {r['id']} ({r['name']})" for r in created]
    if args.action == "delete":
        rule_id = _target(args)
        rest.request("DELETE", f"/api/v1/alerts/rules/{rule_id}")
        return [f"deleted {rule_id}"]
    target = _target(args)
    if Path(target).exists():
        rule = load_rule(Path(target))
    else:
        rule = rest.request("GET", f"/api/v1/alerts/rules/{target}").json()
        if not args.dry_run:
            return rest.request("POST", "/api/v1/alerts/evaluate", json={"rule_id": target}).json()
    body = {"rule": _with_window(rule, args.window), "dry_run": True}
    return rest.request("POST", "/api/v1/alerts/evaluate", json=body).json()


def _with_window(rule: dict[str, Any], window: str) -> dict[str, Any]:
    """The rule looking at ``window`` when its metric takes one (for test --dry-run)."""
    from aperture.aggregator.alerts.rules import METRICS

    expression = dict(rule.get("expression") or {})
    _required, optional = METRICS.get(str(expression.get("metric")), ((), ()))
    if "window" in optional:
        expression["params"] = {**(expression.get("params") or {}), "window": window}
    out = {k: v for k, v in rule.items() if k not in ("id", "status")}
    return {**out, "expression": expression}
