"""Alert rules: the model, its JSON form and validation with one reason per error."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aperture.units import parse_duration

OPERATORS = (">", ">=", "<", "<=", "==")
SEVERITIES = ("info", "warning", "critical")

# metric -> (required parameters, optional parameters); docs/alerting.md describes each.
_FILTER = ("host", "agent", "comm", "pid", "window")
METRICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "buffer_utilization": ((), ()),
    "push_error_rate": ((), ("window",)),
    "auth_failure_rate": ((), ("window",)),
    "storage_flush_failures": ((), ("window",)),
    "storage_pending_rows": ((), ()),
    "ingest_samples_rate": ((), ("window", "event_type")),
    "agent_silent_seconds": ((), ("agent",)),
    "cpu_share": (("function",), ("mode", "module", *_FILTER)),
    "cpu_share_change": (("function",), ("mode", "module", *_FILTER)),
    "syscall_p99_ns": (("syscall",), _FILTER),
    "syscall_error_rate": (("syscall",), _FILTER),
    "lock_wait_per_second": ((), _FILTER),
}

# metric -> (unit, one line): what the dashboard's rule editor shows. The unit says how
# to read a value: percent, pp (percentage points), ratio (0..1), ns, seconds, per_second
# (events/s), seconds_per_second, rows, count.
METRIC_INFO: dict[str, tuple[str, str]] = {
    "buffer_utilization": ("ratio", "buffer bytes / its limit"),
    "push_error_rate": ("per_second", "refused pushes per second"),
    "auth_failure_rate": ("per_second", "requests refused for the token, per second"),
    "storage_flush_failures": ("count", "failed store writes in the window"),
    "storage_pending_rows": ("rows", "rows accepted but not yet in the store"),
    "ingest_samples_rate": ("per_second", "samples ingested per second"),
    "agent_silent_seconds": ("seconds", "seconds since an agent's last push"),
    "cpu_share": ("percent", "percent of CPU samples in a function (self or total)"),
    "cpu_share_change": ("pp", "a function's CPU share minus its share the window before"),
    "syscall_p99_ns": ("ns", "p99 latency of a syscall"),
    "syscall_error_rate": ("ratio", "failed calls / calls of a syscall"),
    "lock_wait_per_second": ("seconds_per_second", "seconds spent waiting for locks per second"),
}


def metric_catalog() -> list[dict[str, Any]]:
    """Every metric a rule can use, with its parameters, unit and meaning."""
    return [
        {
            "metric": m,
            "required": list(req),
            "optional": list(opt),
            "unit": METRIC_INFO[m][0],
            "description": METRIC_INFO[m][1],
        }
        for m, (req, opt) in METRICS.items()
    ]


class RuleError(ValueError):
    """A rule that cannot be accepted; the message says why."""


def compare(value: float, operator: str, threshold: float) -> bool:
    if operator == ">":
        return value > threshold
    if operator == ">=":
        return value >= threshold
    if operator == "<":
        return value < threshold
    if operator == "<=":
        return value <= threshold
    return value == threshold


# A firing alert's notification repeats at most this often (0: never): shorter would
# page someone every evaluation.
MIN_RENOTIFY_S = 60.0


def is_webhook_url(url: object) -> bool:
    """http(s)://HOST[:PORT][/...]: a scheme alone, or no host, or a bad port is not."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        # .port raises ValueError past 65535, like urlsplit for an unclosed [
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok


def check_renotify(seconds: float, name: str) -> float:
    """``seconds`` unless it is between 0 (never) and MIN_RENOTIFY_S."""
    if 0 < seconds < MIN_RENOTIFY_S:
        raise RuleError(
            f"{name} must be 0 (never) or at least {MIN_RENOTIFY_S:.0f}s, so a firing alert "
            "does not notify on every evaluation"
        )
    return seconds


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise RuleError(f"{name} must be a duration (30s, 5m) or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(parse_duration(value))
        except ValueError as exc:
            raise RuleError(f"{name}: {exc}") from None
    else:
        raise RuleError(f"{name} must be a duration (30s, 5m) or a number of seconds")
    if seconds < 0:
        raise RuleError(f"{name} must not be negative")
    return seconds


@dataclass
class Rule:
    id: str
    name: str
    metric: str
    params: dict[str, Any]
    operator: str
    threshold: float
    for_s: float = 0.0
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    renotify_s: float | None = None  # None: the global --alert-renotify
    webhook: str | None = None  # None: the global --alert-webhook

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["expression"] = {"metric": out.pop("metric"), "params": out.pop("params")}
        out["for"] = out.pop("for_s")
        out["renotify_interval"] = out.pop("renotify_s")
        return out

    @property
    def window_s(self) -> float:
        return _seconds(self.params.get("window", "5m"), "params.window")


def parse_rule(body: Any, rule_id: str | None = None) -> Rule:
    """A validated Rule from its JSON form, or a RuleError with the reason."""
    if not isinstance(body, dict):
        raise RuleError("a rule is a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError("name is required")
    expression = body.get("expression")
    if not isinstance(expression, dict) or not isinstance(expression.get("metric"), str):
        raise RuleError("expression.metric is required")
    metric = expression["metric"]
    if metric not in METRICS:
        raise RuleError(f"unknown metric {metric!r}: one of {', '.join(sorted(METRICS))}")
    params = expression.get("params") or {}
    if not isinstance(params, dict):
        raise RuleError("expression.params must be an object")
    required, optional = METRICS[metric]
    for key in required:
        if params.get(key) in (None, ""):
            raise RuleError(f"metric {metric} needs params.{key}")
    for key in params:
        if key not in required and key not in optional:
            raise RuleError(f"metric {metric} takes no parameter {key!r}")
    if "window" in params and _seconds(params["window"], "params.window") <= 0:
        raise RuleError("params.window must be positive")
    if params.get("mode", "self") not in ("self", "total"):
        raise RuleError("params.mode is self or total")
    if "pid" in params and not isinstance(params["pid"], int):
        raise RuleError("params.pid must be an integer")
    operator = body.get("operator")
    if operator not in OPERATORS:
        raise RuleError(f"bad operator {operator!r}: one of {' '.join(OPERATORS)}")
    threshold = body.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RuleError("threshold must be a number")
    if threshold < 0:
        raise RuleError("threshold must not be negative")
    severity = body.get("severity", "warning")
    if severity not in SEVERITIES:
        raise RuleError(f"bad severity {severity!r}: one of {', '.join(SEVERITIES)}")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise RuleError("labels must map strings to strings")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled must be true or false")
    renotify = body.get("renotify_interval")
    webhook = body.get("webhook")
    if webhook is not None and not is_webhook_url(webhook):
        raise RuleError("webhook must be an http(s)://HOST/... URL")
    return Rule(
        id=rule_id or body.get("id") or uuid.uuid4().hex[:12],
        name=name.strip(),
        metric=metric,
        params=dict(params),
        operator=operator,
        threshold=float(threshold),
        for_s=_seconds(body.get("for", 0), "for"),
        severity=severity,
        labels=dict(labels),
        enabled=enabled,
        renotify_s=None
        if renotify is None
        else check_renotify(_seconds(renotify, "renotify_interval"), "renotify_interval"),
        webhook=webhook,
    )
