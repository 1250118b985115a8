// Alerts: every rule with its state and current value, evaluate on demand, create,
// edit and delete rules, and the history of state changes and notifications.

import { useEffect, useMemo, useState } from "react";
import { ApiError, sendJson } from "../api/client";
import { useApi } from "../api/hooks";
import type { AlertHistoryEntry, AlertMetric, AlertRule, AlertState, EvaluateResult } from "../api/types";
import { RuleEditor } from "../alerts/RuleEditor";
import { condition, expression, metricValue, seconds, when } from "../alerts/text";
import { Guard } from "../components/States";
import * as fmt from "../format";
import { useUrlState } from "../state/useUrlState";

const REFRESH_MS = 10_000;
const STATES: AlertState[] = ["firing", "pending", "resolved", "inactive"];

function StateBadge({ state, enabled = true }: { state: AlertState; enabled?: boolean }) {
  if (!enabled) return <span className="alert-badge disabled">disabled</span>;
  return <span className={`alert-badge ${state}`}>{state}</span>;
}

/** Reload every REFRESH_MS while the tab is visible: states change on the server's schedule. */
function useRefresh(reload: () => void): void {
  useEffect(() => {
    const t = setInterval(() => {
      if (document.visibilityState === "visible") reload();
    }, REFRESH_MS);
    return () => clearInterval(t);
  }, [reload]);
}

function History({ ruleId, version, unitOf }: { ruleId: string; version: number; unitOf: (ruleId: string) => string }) {
  const res = useApi<AlertHistoryEntry[]>("/api/v1/alerts/history", { rule: ruleId || undefined, limit: 100 });
  const { reload } = res;
  useRefresh(reload);
  useEffect(() => {
    if (version > 0) reload();
  }, [version, reload]);
  return (
    <Guard what="the alert history" result={res}>
      {(rows) =>
        rows.length === 0 ? (
          <div className="muted small hint">No state changes or notifications yet.</div>
        ) : (
          <div className="table-scroll">
            <table className="data compact" data-testid="alert-history">
              <thead>
                <tr>
                  <th>Time</th>
                  <th>Rule</th>
                  <th>Event</th>
                  <th className="num">Value</th>
                  <th>Detail</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((h, i) => (
                  <tr key={`${h.ts}-${i}`}>
                    <td className="mono small">{when(h.ts)}</td>
                    <td>{h.rule_name}</td>
                    <td>
                      {h.kind === "state" ? (
                        <>
                          → <StateBadge state={h.state ?? "inactive"} />
                        </>
                      ) : (
                        <span className={h.ok ? "" : "bad"}>
                          {h.status} notification {h.ok ? "sent" : "failed"}
                        </span>
                      )}
                    </td>
                    <td className="num">{metricValue(h.value, unitOf(h.rule_id))}</td>
                    <td className="mono small">
                      {h.kind === "notification" ? `${h.target ?? ""}${h.attempt && h.attempt > 1 ? ` (attempt ${h.attempt})` : ""}${h.error ? `: ${h.error}` : ""}` : ""}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      }
    </Guard>
  );
}

export function AlertsView() {
  const [s, update] = useUrlState();
  const rules = useApi<AlertRule[]>("/api/v1/alerts/rules");
  const catalog = useApi<AlertMetric[]>("/api/v1/alerts/metrics");
  useRefresh(rules.reload);
  const [editing, setEditing] = useState<AlertRule | "new" | null>(null);
  const [confirmDelete, setConfirmDelete] = useState("");
  const [message, setMessage] = useState<{ text: string; bad: boolean } | null>(null);
  const [busy, setBusy] = useState(false);
  // bumped after anything that writes history, so the history panel refetches
  const [version, setVersion] = useState(0);
  const units = useMemo(() => new Map((catalog.data ?? []).map((m) => [m.metric, m.unit])), [catalog.data]);
  const unitOf = (r: AlertRule) => units.get(r.expression.metric) ?? "";
  const unitOfId = (id: string) => {
    const rule = rules.data?.find((r) => r.id === id);
    return rule ? unitOf(rule) : "";
  };

  async function act(what: () => Promise<string>) {
    setBusy(true);
    try {
      setMessage({ text: await what(), bad: false });
    } catch (err) {
      setMessage({ text: err instanceof ApiError ? err.message : String(err), bad: true });
    } finally {
      setBusy(false);
      rules.reload();
      setVersion((v) => v + 1);
    }
  }

  const evaluate = (rule?: AlertRule) =>
    act(async () => {
      const res = await sendJson<{ results: EvaluateResult[] }>("POST", "/api/v1/alerts/evaluate", rule ? { rule_id: rule.id } : {});
      if (rule) {
        const r = res.results[0];
        return `${rule.name}: ${metricValue(r.value, unitOf(rule))}, ${r.state}${r.error ? ` (${r.error})` : ""}.`;
      }
      const firing = res.results.filter((r) => r.state === "firing").length;
      return `Evaluated ${res.results.length} enabled rule${res.results.length === 1 ? "" : "s"}: ${firing} firing.`;
    });

  const remove = (rule: AlertRule) =>
    act(async () => {
      await sendJson("DELETE", `/api/v1/alerts/rules/${encodeURIComponent(rule.id)}`);
      setConfirmDelete("");
      if (s.alert === rule.id) update({ alert: "" });
      return `Deleted ${rule.name}.`;
    });

  return (
    <div className="view alerts-view">
      <Guard what="the alert rules" result={rules}>
        {(list) => {
          const counts = Object.fromEntries(STATES.map((st) => [st, list.filter((r) => r.enabled && r.status.state === st).length]));
          return (
            <>
              <div className="toolbar">
                <span className="alert-counts" data-testid="alert-counts">
                  {STATES.map((st) => (
                    <span key={st} className={`alert-count ${st}`}>
                      <strong>{counts[st]}</strong> {st}
                    </span>
                  ))}
                </span>
                <span className="grow" />
                <button type="button" onClick={() => void evaluate()} disabled={busy || list.length === 0}>
                  Evaluate all now
                </button>
                <button type="button" className="primary" onClick={() => setEditing("new")} disabled={!catalog.data}>
                  New rule
                </button>
              </div>
              {message && (
                <div className={`state ${message.bad ? "state-error" : "state-ok"}`} role="status" data-testid="alert-message">
                  {message.text}
                </div>
              )}
              {editing !== null && catalog.data && (
                <RuleEditor
                  key={editing === "new" ? "new" : editing.id}
                  rule={editing === "new" ? null : editing}
                  catalog={catalog.data}
                  onCancel={() => setEditing(null)}
                  onSaved={(saved) => {
                    setEditing(null);
                    setMessage({ text: `Saved ${saved.name}.`, bad: false });
                    rules.reload();
                    update({ alert: saved.id });
                  }}
                />
              )}
              {list.length === 0 ? (
                <div className="state state-empty" data-testid="alerts-empty">
                  <strong>No alert rules yet.</strong>
                  <div className="muted">
                    A rule watches a function's CPU share, a syscall's p99, lock wait, or the aggregator's own health, and notifies a
                    webhook when it fires. Create one with “New rule” or <span className="mono">aperture alerts create rule.yaml</span>.
                  </div>
                </div>
              ) : (
                <div className="table-scroll">
                  <table className="data" data-testid="alert-rules">
                    <thead>
                      <tr>
                        <th>State</th>
                        <th>Rule</th>
                        <th>Expression</th>
                        <th>Condition</th>
                        <th className="num">Value</th>
                        <th className="num">For</th>
                        <th>Severity</th>
                        <th>Evaluated</th>
                        <th />
                      </tr>
                    </thead>
                    <tbody>
                      {list.map((r) => {
                        const sel = s.alert === r.id;
                        const unit = unitOf(r);
                        return (
                          <tr key={r.id} className={sel ? "selected" : ""} data-rule={r.name} onClick={() => update({ alert: sel ? "" : r.id })}>
                            <td>
                              <StateBadge state={r.status.state} enabled={r.enabled} />
                            </td>
                            <td>
                              {r.name}
                              {Object.keys(r.labels).length > 0 && (
                                <div className="small">
                                  {Object.entries(r.labels).map(([k, v]) => (
                                    <span key={k} className="chip">
                                      {k}={v}
                                    </span>
                                  ))}
                                </div>
                              )}
                            </td>
                            <td className="mono small">{expression(r)}</td>
                            <td className="mono">{condition(r, unit)}</td>
                            <td className="num" title={r.status.error ?? undefined}>
                              {r.status.error ? <span className="bad">error</span> : metricValue(r.status.value, unit)}
                            </td>
                            <td className="num">{seconds(r.for)}</td>
                            <td>
                              <span className={`severity ${r.severity}`}>{r.severity}</span>
                            </td>
                            <td className="small" title={when(r.status.last_evaluated)}>
                              {r.status.last_evaluated ? fmt.ago(Date.now() / 1000 - r.status.last_evaluated) : "never"}
                            </td>
                            <td className="row-actions" onClick={(e) => e.stopPropagation()}>
                              <button type="button" className="small-button" onClick={() => void evaluate(r)} disabled={busy}>
                                Evaluate
                              </button>
                              <button type="button" className="small-button" onClick={() => setEditing(r)} disabled={busy}>
                                Edit
                              </button>
                              {confirmDelete === r.id ? (
                                <button type="button" className="small-button danger" onClick={() => void remove(r)} disabled={busy}>
                                  Confirm delete
                                </button>
                              ) : (
                                <button type="button" className="small-button" onClick={() => setConfirmDelete(r.id)} disabled={busy}>
                                  Delete
                                </button>
                              )}
                            </td>
                          </tr>
                        );
                      })}
                    </tbody>
                  </table>
                </div>
              )}
              <section className="alert-history">
                <h3>
                  History{s.alert ? ` of ${list.find((r) => r.id === s.alert)?.name ?? s.alert}` : ""}
                  {s.alert && (
                    <button type="button" className="link-button small" onClick={() => update({ alert: "" })}>
                      all rules
                    </button>
                  )}
                </h3>
                <History ruleId={s.alert} version={version} unitOf={unitOfId} />
              </section>
            </>
          );
        }}
      </Guard>
    </div>
  );
}
