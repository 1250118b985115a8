// Create or edit an alert rule: the metric's parameters come from the aggregator's
// catalog, the aggregator validates (a 422's reason is shown as is), and "Test" evaluates
// the unsaved rule without changing any state or notifying anyone.

import { useMemo, useState } from "react";
import { ApiError, sendJson } from "../api/client";
import type { AlertMetric, AlertRule, AlertRuleBody, EvaluateResult, Operator, Severity } from "../api/types";
import { formatLabels, parseLabels } from "../state/url";
import { metricValue, seconds, thresholdUnit } from "./text";

const OPERATORS: Operator[] = [">", ">=", "<", "<=", "=="];
const SEVERITIES: Severity[] = ["info", "warning", "critical"];
// parameters with a fixed set of values, and the integer one
const CHOICES: Record<string, string[]> = { mode: ["self", "total"], event_type: ["", "cpu", "lock", "syscall"] };
const PARAM_HINTS: Record<string, string> = {
  function: "parse_json",
  module: "libc.so.6",
  window: "5m",
  syscall: "read",
  agent: "agent id",
  host: "hostname",
  comm: "process name",
  pid: "1234",
};

interface Form {
  name: string;
  metric: string;
  params: Record<string, string>;
  operator: Operator;
  threshold: string;
  forText: string;
  severity: Severity;
  labels: string;
  webhook: string;
  renotify: string;
  enabled: boolean;
}

function fromRule(rule: AlertRule | null, catalog: AlertMetric[]): Form {
  if (rule === null) {
    return {
      name: "",
      metric: catalog.find((m) => m.metric === "cpu_share")?.metric ?? catalog[0]?.metric ?? "",
      params: {},
      operator: ">",
      threshold: "",
      forText: "0",
      severity: "warning",
      labels: "",
      webhook: "",
      renotify: "",
      enabled: true,
    };
  }
  return {
    name: rule.name,
    metric: rule.expression.metric,
    params: Object.fromEntries(Object.entries(rule.expression.params).map(([k, v]) => [k, String(v)])),
    operator: rule.operator,
    threshold: String(rule.threshold),
    forText: seconds(rule.for),
    severity: rule.severity,
    labels: formatLabels(rule.labels),
    webhook: rule.webhook ?? "",
    renotify: rule.renotify_interval === null ? "" : seconds(rule.renotify_interval),
    enabled: rule.enabled,
  };
}

/** "90" is seconds (a number for the API), "2m" a duration string, "" none. */
function durationField(text: string): number | string | null {
  const t = text.trim();
  if (t === "") return null;
  return /^\d+(\.\d+)?$/.test(t) ? Number(t) : t;
}

/** The rule body the API takes, or the reason the form cannot make one. */
export function toBody(f: Form, metric: AlertMetric | undefined): AlertRuleBody | string {
  if (!f.name.trim()) return "Give the rule a name.";
  if (!metric) return "Choose a metric.";
  const threshold = Number(f.threshold);
  if (f.threshold.trim() === "" || !Number.isFinite(threshold)) return "The threshold must be a number.";
  const labels = parseLabels(f.labels);
  if (labels === null) return "Write labels as key=value, separated by commas.";
  const params: Record<string, string | number> = {};
  for (const key of [...metric.required, ...metric.optional]) {
    const v = (f.params[key] ?? "").trim();
    if (v === "") continue;
    params[key] = key === "pid" && /^\d+$/.test(v) ? Number(v) : v;
  }
  return {
    name: f.name.trim(),
    expression: { metric: metric.metric, params },
    operator: f.operator,
    threshold,
    for: durationField(f.forText) ?? 0,
    severity: f.severity,
    labels,
    enabled: f.enabled,
    renotify_interval: durationField(f.renotify),
    webhook: f.webhook.trim() || null,
  };
}

export function RuleEditor({
  rule,
  catalog,
  onSaved,
  onCancel,
}: {
  rule: AlertRule | null;
  catalog: AlertMetric[];
  onSaved: (saved: AlertRule) => void;
  onCancel: () => void;
}) {
  const [form, setForm] = useState<Form>(() => fromRule(rule, catalog));
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const [test, setTest] = useState<EvaluateResult | null>(null);
  const metric = useMemo(() => catalog.find((m) => m.metric === form.metric), [catalog, form.metric]);
  const set = (change: Partial<Form>) => {
    setForm((f) => ({ ...f, ...change }));
    setTest(null);
  };

  async function run(action: "test" | "save") {
    const body = toBody(form, metric);
    if (typeof body === "string") {
      setProblem(body);
      return;
    }
    setBusy(true);
    setProblem("");
    try {
      if (action === "test") {
        const res = await sendJson<{ results: EvaluateResult[] }>("POST", "/api/v1/alerts/evaluate", { rule: body, dry_run: true });
        setTest(res.results[0] ?? null);
      } else {
        const saved = rule
          ? await sendJson<AlertRule>("PUT", `/api/v1/alerts/rules/${encodeURIComponent(rule.id)}`, body)
          : await sendJson<AlertRule>("POST", "/api/v1/alerts/rules", body);
        onSaved(saved);
      }
    } catch (err) {
      setProblem(err instanceof ApiError ? err.reason || err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  const params = metric ? [...metric.required, ...metric.optional] : [];
  const unit = metric?.unit ?? "";
  return (
    <form
      className="rule-editor"
      data-testid="rule-editor"
      aria-label={rule ? `Edit rule ${rule.name}` : "New alert rule"}
      onSubmit={(e) => {
        e.preventDefault();
        void run("save");
      }}
    >
      <h3>{rule ? `Edit “${rule.name}”` : "New alert rule"}</h3>
      <div className="rule-grid">
        <label>
          Name
          <input name="name" value={form.name} onChange={(e) => set({ name: e.target.value })} placeholder="hot function" />
        </label>
        <label>
          Metric
          <select name="metric" value={form.metric} onChange={(e) => set({ metric: e.target.value, params: {} })}>
            {catalog.map((m) => (
              <option key={m.metric} value={m.metric}>
                {m.metric}
              </option>
            ))}
          </select>
          {metric && <span className="muted small">{metric.description}</span>}
        </label>
        {params.map((key) => (
          <label key={key}>
            {key}
            {metric?.required.includes(key) ? " *" : ""}
            {CHOICES[key] ? (
              <select name={`param-${key}`} value={form.params[key] ?? ""} onChange={(e) => set({ params: { ...form.params, [key]: e.target.value } })}>
                {(CHOICES[key][0] === "" ? CHOICES[key] : ["", ...CHOICES[key]]).map((c) => (
                  <option key={c} value={c}>
                    {c || "(default)"}
                  </option>
                ))}
              </select>
            ) : (
              <input
                name={`param-${key}`}
                value={form.params[key] ?? ""}
                placeholder={PARAM_HINTS[key] ?? ""}
                onChange={(e) => set({ params: { ...form.params, [key]: e.target.value } })}
              />
            )}
          </label>
        ))}
        <label>
          Condition
          <span className="rule-condition">
            <select name="operator" value={form.operator} onChange={(e) => set({ operator: e.target.value as Operator })} aria-label="operator">
              {OPERATORS.map((o) => (
                <option key={o}>{o}</option>
              ))}
            </select>
            <input
              name="threshold"
              inputMode="decimal"
              value={form.threshold}
              onChange={(e) => set({ threshold: e.target.value })}
              aria-label="threshold"
              placeholder="threshold"
            />
            <span className="muted">{thresholdUnit(unit)}</span>
          </span>
          {unit === "ns" && form.threshold && Number.isFinite(Number(form.threshold)) && (
            <span className="muted small">= {metricValue(Number(form.threshold), "ns")}</span>
          )}
        </label>
        <label>
          For
          <input name="for" value={form.forText} onChange={(e) => set({ forText: e.target.value })} placeholder="2m" />
          <span className="muted small">how long the condition must hold before firing</span>
        </label>
        <label>
          Severity
          <select name="severity" value={form.severity} onChange={(e) => set({ severity: e.target.value as Severity })}>
            {SEVERITIES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Labels
          <input name="labels" value={form.labels} onChange={(e) => set({ labels: e.target.value })} placeholder="team=api, env=prod" />
        </label>
        <label>
          Webhook
          <input name="webhook" value={form.webhook} onChange={(e) => set({ webhook: e.target.value })} placeholder="default: --alert-webhook" />
        </label>
        <label>
          Re-notify every
          <input name="renotify" value={form.renotify} onChange={(e) => set({ renotify: e.target.value })} placeholder="default: --alert-renotify" />
        </label>
        <label className="checkbox">
          <input type="checkbox" name="enabled" checked={form.enabled} onChange={(e) => set({ enabled: e.target.checked })} />
          Enabled
        </label>
      </div>
      {problem && (
        <div className="state state-error" role="alert" data-testid="rule-problem">
          {problem}
        </div>
      )}
      {test && (
        <div className="rule-test" data-testid="rule-test" role="status">
          {test.error ? (
            <>Could not evaluate: {test.error}</>
          ) : test.value === null ? (
            <>No data for this metric right now: the rule would not match.</>
          ) : (
            <>
              Now: <strong>{metricValue(test.value, unit)}</strong> — the condition {test.matches ? "holds" : "does not hold"}.
            </>
          )}
        </div>
      )}
      <div className="modal-actions">
        <button type="button" onClick={() => void run("test")} disabled={busy}>
          Test now
        </button>
        <button type="button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
        <button type="submit" className="primary" disabled={busy}>
          {rule ? "Save" : "Create rule"}
        </button>
      </div>
    </form>
  );
}
