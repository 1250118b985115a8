// Timeline: each profile type's rate over time (CPU samples, lock wait, syscalls, ...), grouped by host,
// process or pid; dragging across a chart sets the range for every view.

import { useApi } from "../api/hooks";
import type { ProfileTypeInfo } from "../api/schema";
import type { EventType, ProfileTypes, TimelineResponse } from "../api/types";
import { densify, effectiveStep, pickStep } from "../state/buckets";
import { Empty, ErrorBox, Loading } from "../components/States";
import { SERIES_COLORS, TimeChart } from "../components/TimeChart";
import * as fmt from "../format";
import { msToNs, resolveMs } from "../state/time";
import { filterParams, type GroupBy, type UrlState } from "../state/url";
import { useUrlState } from "../state/useUrlState";

interface MetricSpec {
  type: EventType;
  title: string;
  per: (v: number, step: number) => number;
  format: (v: number) => string;
}

/** One chart per type the registry names, scaled by what its timeline counts. */
function metric(t: ProfileTypeInfo): MetricSpec {
  // a gauge (bytes in use, goroutines) is shown as its value, not as a rate
  if (t.aggregation === "average") return { type: t.type, title: `${t.label} (${t.series_unit})`, per: (v) => v, format: t.series_unit === "bytes" ? fmt.bytes : fmt.count };
  // time per second of wall time, in ms: 1000 ms/s = one thread all the time
  if (t.series_unit === "nanoseconds") return { type: t.type, title: `${t.label} (ms per second)`, per: (v, step) => v / step / 1e6, format: fmt.count };
  return { type: t.type, title: `${t.label} (${t.series_unit} per second)`, per: (v, step) => v / step, format: fmt.count };
}

function Metric({ m, s, step, fromMs, toMs }: { m: MetricSpec; s: UrlState; step: number; fromMs: number; toMs: number }) {
  const [, update] = useUrlState();
  const res = useApi<TimelineResponse>("/api/v1/timeline", { ...filterParams(s), type: m.type, step: `${step}s`, group_by: s.group });
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (!res.data) return <Loading what={m.title.toLowerCase()} />;
  const data = res.data;
  const sorted = [...data.series].sort((a, b) => sum(b) - sum(a));
  const stepS = effectiveStep(sorted, data.step_s || step);
  const series = densify(sorted, fromMs, toMs, stepS);
  const filterKey = (key: string): Partial<UrlState> =>
    s.group === "host" ? { host: key } : s.group === "comm" ? { comm: key } : { pid: key };
  return (
    <section className="metric">
      <TimeChart
        title={m.title}
        testid={`chart-${m.type}`}
        series={series}
        fromMs={fromMs}
        toMs={toMs}
        scale={(v) => m.per(v, stepS)}
        format={m.format}
        onSelect={(a, b) => update({ from: msToNs(a), to: msToNs(b), live: false })}
      />
      {series.length === 0 ? (
        <div className="muted small">No {m.type} data in this range.</div>
      ) : (
        <div className="legend-list small">
          {series.slice(0, 12).map((ser, k) => (
            <button key={ser.key} type="button" className="legend-item" title={`Filter every view to ${s.group} ${ser.key}`} onClick={() => update(filterKey(ser.key))}>
              <span className="swatch" style={{ background: SERIES_COLORS[k % SERIES_COLORS.length] }} />
              {ser.key}
            </button>
          ))}
          {series.length > 12 && <span className="muted">and {series.length - 12} more</span>}
        </div>
      )}
    </section>
  );
}

function sum(s: { points: [number, number][] }): number {
  let t = 0;
  for (const [, v] of s.points) t += v;
  return t;
}

/** The types with data in the range (CPU when none has: its chart says there is none). */
function shownTypes(types: ProfileTypeInfo[]): ProfileTypeInfo[] {
  const present = types.filter((t) => t.present !== false);
  return present.length > 0 ? present : types.filter((t) => t.type === "cpu");
}

export function TimelineView() {
  const [s, update] = useUrlState();
  const { pid: _pid, comm: _comm, ...range } = filterParams(s);
  const types = useApi<ProfileTypes>("/api/v1/profile-types", range);
  const now = Date.now();
  const fromMs = resolveMs(s.from, now);
  const toMs = resolveMs(s.to, now);
  if (Number.isNaN(fromMs) || Number.isNaN(toMs) || toMs <= fromMs) {
    return <Empty>The time range is not valid: pick a preset above.</Empty>;
  }
  const step = pickStep(toMs - fromMs);
  return (
    <div className="view timeline-view">
      <div className="toolbar">
        <span className="range-label">Group by</span>
        <div className="segmented" role="group" aria-label="Group by">
          {(["host", "comm", "pid"] as GroupBy[]).map((g) => (
            <button key={g} type="button" className={s.group === g ? "active" : ""} onClick={() => update({ group: g }, { replace: true })}>
              {g === "comm" ? "process" : g}
            </button>
          ))}
        </div>
        <span className="muted small">Drag across a chart to zoom every view to that range. {step}s buckets.</span>
      </div>
      {shownTypes(types.data?.types ?? []).map((t) => (
        <Metric key={t.type} m={metric(t)} s={s} step={step} fromMs={fromMs} toMs={toMs} />
      ))}
    </div>
  );
}
