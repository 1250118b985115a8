// Flamegraph view: icicle graph, search, invert, sandwich, and the top
// functions table, all driven by the URL.

import { useCallback, useMemo, useState } from "react";
import { useApi } from "../api/hooks";
import type { ProfileTypeInfo, WallClock } from "../api/schema";
import type { FlamegraphResponse, ProfileTypes, TopFunction, TopResponse, UnwindResponse } from "../api/types";
import { ExportButtons } from "../components/ExportButtons";
import { SearchBox } from "../components/SearchBox";
import { Empty, ErrorBox, Loading } from "../components/States";
import { FlameGraph } from "../flame/FlameGraph";
import { FlamePanel, useHighlight } from "../flame/FlamePanel";
import { invert } from "../flame/invert";
import { moduleColors } from "../flame/colors";
import { sandwich } from "../flame/sandwich";
import { FrameTooltip } from "../flame/Tooltip";
import { fromFlamegraph, type FlameTree } from "../flame/tree";
import { unwindText } from "../flame/unwind";
import * as fmt from "../format";
import { filterParams, isProfileType, type ProfileType, type UrlState } from "../state/url";
import { useUrlState } from "../state/useUrlState";
import { TopTable } from "./TopTable";

/** The profile types with stacks that have data in the range (and the one shown), named as
 * the aggregator's registry names them. */
export function TypeSwitch({ value, onChange }: { value: ProfileType; onChange: (t: ProfileType) => void }) {
  const [s] = useUrlState();
  const { pid: _pid, comm: _comm, ...range } = filterParams(s);
  const types = useApi<ProfileTypes>("/api/v1/profile-types", range);
  const choices = (types.data?.types ?? []).filter(
    (t): t is ProfileTypeInfo & { type: ProfileType } => t.has_stacks && isProfileType(t.type) && (t.present !== false || t.type === value),
  );
  return (
    <div className="segmented" role="group" aria-label="Event type">
      {choices.map(({ type, label }) => (
        <button key={type} type="button" className={value === type ? "active" : ""} aria-pressed={value === type} onClick={() => onChange(type)}>
          {label}
        </button>
      ))}
    </div>
  );
}

/** The registry's name of a type ("Lock wait"), or the type itself before the list arrives. */
function typeLabel(types: ProfileTypes | undefined, type: ProfileType): string {
  return types?.types.find((t) => t.type === type)?.label ?? type;
}

/** Build the tree once per response and time it (the number is shown and tested). */
export function useTree(data: Pick<FlamegraphResponse, "names" | "nodes" | "unit"> | undefined): { tree: FlameTree | null; ms: number; error: string } {
  return useMemo(() => {
    if (!data) return { tree: null, ms: 0, error: "" };
    const t0 = performance.now();
    try {
      const tree = fromFlamegraph(data);
      return { tree, ms: performance.now() - t0, error: "" };
    } catch (err) {
      return { tree: null, ms: 0, error: `The aggregator sent a malformed flame graph: ${String(err)}` };
    }
  }, [data]);
}

function Sandwich({ tree, fn, fnModule, onClose }: { tree: FlameTree; fn: string; fnModule: string; onClose: () => void }) {
  const s = useMemo(() => sandwich(tree, fn, fnModule || null), [tree, fn, fnModule]);
  const callerColors = useMemo(() => (s ? moduleColors(s.callers) : null), [s]);
  const calleeColors = useMemo(() => (s ? moduleColors(s.callees) : null), [s]);
  if (!s || !callerColors || !calleeColors) {
    return (
      <div className="state state-empty">
        {fn} is not in this range. <button type="button" onClick={onClose}>Close the sandwich</button>
      </div>
    );
  }
  const share = s.callees.total[0] / (tree.total[0] || 1);
  return (
    <div className="sandwich" data-testid="sandwich">
      <div className="sandwich-head">
        <strong>{fn}</strong> <span className="muted">{fnModule}</span> · {fmt.value(s.callees.total[0], tree.unit)} (
        {fmt.pct(share)} of total) in {s.sites.length} call site{s.sites.length === 1 ? "" : "s"}
        <button type="button" className="link-button small" onClick={onClose}>
          close sandwich
        </button>
      </div>
      <div className="sandwich-label">Callers ↑</div>
      <div className="sandwich-callers">
        <FlameGraph
          tree={s.callers}
          colors={callerColors}
          focus={0}
          highlight={null}
          upsideDown
          label="callers"
          tooltip={(i) => <FrameTooltip tree={s.callers} node={i} grandTotal={tree.total[0]} />}
        />
      </div>
      <div className="sandwich-label">Callees ↓</div>
      <FlameGraph
        tree={s.callees}
        colors={calleeColors}
        focus={0}
        highlight={null}
        label="callees"
        tooltip={(i) => <FrameTooltip tree={s.callees} node={i} grandTotal={tree.total[0]} />}
      />
    </div>
  );
}

/** How the CPU samples' user stacks were unwound, for the same range, hosts and labels. */
function UnwindLine({ s }: { s: UrlState }) {
  // pid and comm cannot narrow per-window counts: the route refuses them, the line says so
  const { pid: _pid, comm: _comm, ...params } = filterParams(s);
  const res = useApi<UnwindResponse>(s.type === "cpu" ? "/api/v1/unwind" : null, params);
  if (s.type !== "cpu") return null;
  if (res.error) {
    return (
      <div className="statusline small muted" data-testid="unwind-line" data-state="error" title={res.error.message}>
        User stacks: how they were unwound could not be loaded
      </div>
    );
  }
  const text = res.data ? unwindText(res.data, Boolean(s.pid || s.comm)) : null;
  if (!text) return null;
  return (
    <div className="statusline small muted" data-testid="unwind-line" title={text.title}>
      {text.line}
    </div>
  );
}

/** One process's threads over the range: on CPU (samples x period) and off CPU, by state. */
function WallClockPanel({ s }: { s: UrlState }) {
  const [, update] = useUrlState();
  const res = useApi<WallClock>("/api/v1/wallclock", { ...filterParams(s), max_nodes: s.maxNodes });
  const built = useTree(res.data);
  const highlight = useHighlight(built.tree, s.fn, s.fnModule, s.search);
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (built.error) return <div className="state state-error" role="alert">{built.error}</div>;
  if (!res.data || !built.tree) return <Loading what="the wall-clock tree" />;
  const w = res.data;
  if (w.total === 0) return <Empty>Process {s.pid} has no CPU samples or off-CPU time in this range.</Empty>;
  return (
    <>
      <div className="statusline small muted" data-testid="wall-status">
        pid {w.pid}: {fmt.value(w.total, "nanoseconds")} in all · on CPU {fmt.value(w.on_cpu_ns, "nanoseconds")} ({fmt.pct(w.on_cpu_ns / w.total)}
        {w.frequency_hz ? `, samples at ${w.frequency_hz} Hz` : ""}) · off CPU {fmt.value(w.off_cpu_ns, "nanoseconds")} ({fmt.pct(w.off_cpu_ns / w.total)}, under its [off-CPU: …] leaves)
      </div>
      <FlamePanel tree={built.tree} focusPath={s.focus} onFocusPath={(focus) => update({ focus })} highlight={highlight} label="wall" />
    </>
  );
}

export function FlamegraphView() {
  const [s, update] = useUrlState();
  const filters = filterParams(s);
  const fg = useApi<FlamegraphResponse>("/api/v1/flamegraph", { ...filters, type: s.type, max_nodes: s.maxNodes });
  const types = useApi<ProfileTypes>("/api/v1/profile-types");
  const top = useApi<TopResponse>("/api/v1/top", { ...filters, type: s.type, limit: 200, sort: s.topSort });
  const built = useTree(fg.data);
  const tree = built.tree;
  const inverted = useMemo(() => (tree && s.invert ? invert(tree) : null), [tree, s.invert]);
  const shown = inverted ?? tree;
  const highlight = useHighlight(shown, s.fn, s.fnModule, s.search);
  const [hovered, setHovered] = useState<{ name: string; module: string } | null>(null);
  const onHover = useCallback(
    (i: number) => {
      if (!shown || i <= 0) setHovered(null);
      else setHovered({ name: shown.names[shown.name[i]], module: shown.names[shown.module[i]] });
    },
    [shown],
  );
  const onSearch = useCallback((search: string) => update({ search, fn: "", fnModule: "" }, { replace: true }), [update]);
  // stable props: the table's rows then skip re-rendering while the pointer moves
  const selected = useMemo(() => ({ name: s.fn, module: s.fnModule }), [s.fn, s.fnModule]);
  const onSelect = useCallback(
    (f: TopFunction | null) => update({ fn: f?.name ?? "", fnModule: f?.module ?? "", search: "" }),
    [update],
  );
  const onSandwich = useCallback(
    (f: TopFunction) => update({ fn: f.name, fnModule: f.module, sandwich: true, search: "" }),
    [update],
  );

  let body;
  if (fg.error) body = <ErrorBox error={fg.error} retry={fg.reload} />;
  else if (built.error) body = <div className="state state-error" role="alert">{built.error}</div>;
  else if (!tree) body = <Loading what="the flame graph" />;
  else if (tree.n <= 1 || tree.total[0] === 0) body = <Empty>The aggregator has no {typeLabel(types.data, s.type)} data for these filters.</Empty>;
  else if (s.wall && s.pid) body = <WallClockPanel s={s} />;
  else if (s.sandwich && s.fn) body = <Sandwich tree={tree} fn={s.fn} fnModule={s.fnModule} onClose={() => update({ sandwich: false })} />;
  else
    body = (
      <FlamePanel
        tree={shown!}
        focusPath={s.focus}
        onFocusPath={(focus) => update({ focus })}
        highlight={highlight}
        label={s.invert ? "inverted" : "main"}
        onHover={onHover}
      />
    );

  const matched = highlight.result && shown ? highlight.result.total / (shown.total[0] || 1) : null;
  return (
    <div className="view flamegraph-view">
      <div className="toolbar">
        <TypeSwitch value={s.type} onChange={(type) => update({ type, focus: [], fn: "", fnModule: "", sandwich: false })} />
        <SearchBox value={s.search} onChange={onSearch} />
        {matched !== null && (
          <span className="match-info" data-testid="match-info">
            {highlight.result!.nodes === 0 ? `no frame matches “${highlight.what}”` : `“${highlight.what}”: ${fmt.pct(matched)} of total`}
            {s.fn && (
              <button type="button" className="link-button small" onClick={() => update({ fn: "", fnModule: "", sandwich: false })}>
                clear
              </button>
            )}
          </span>
        )}
        <label className="toggle">
          <input type="checkbox" checked={s.invert} onChange={(e) => update({ invert: e.target.checked, focus: [] })} /> Invert (bottom-up)
        </label>
        <label className="toggle" title={s.pid ? "on-CPU samples as time, with the off-CPU time" : "filter to one process (pid) first"}>
          <input type="checkbox" checked={s.wall && !!s.pid} disabled={!s.pid} onChange={(e) => update({ wall: e.target.checked, focus: [] })} /> Wall clock
        </label>
        {s.fn && !s.sandwich && (
          <button type="button" className="small-button" onClick={() => update({ sandwich: true })}>
            Sandwich {s.fn}
          </button>
        )}
        <span className="grow" />
        <ExportButtons type={s.type} />
      </div>
      {tree && tree.n > 1 && !(s.wall && s.pid) && (
        <div className="statusline small muted" data-testid="flame-status" data-build-ms={built.ms.toFixed(2)}>
          {fmt.value(tree.total[0], tree.unit)} · {fmt.exact(tree.n)} nodes · built in {built.ms.toFixed(1)} ms
          {fg.loading ? " · refreshing…" : ""}
        </div>
      )}
      <UnwindLine s={s} />
      <div className="split">
        <div className="split-main">{body}</div>
        <aside className="split-side">
          <h3>Top functions{s.wall && s.pid ? ` (${typeLabel(types.data, s.type)} only)` : ""}</h3>
          {top.error ? (
            <ErrorBox error={top.error} retry={top.reload} />
          ) : !top.data ? (
            <Loading what="top functions" />
          ) : top.data.functions.length === 0 ? (
            <div className="muted small">No functions in this range.</div>
          ) : (
            <TopTable
              top={top.data}
              sort={s.topSort}
              onSort={(topSort) => update({ topSort }, { replace: true })}
              selected={selected}
              hovered={hovered}
              onSelect={onSelect}
              onSandwich={onSandwich}
            />
          )}
        </aside>
      </div>
    </div>
  );
}
