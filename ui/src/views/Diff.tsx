// Diff: baseline vs comparison, frames coloured by the change of their share.

import { useMemo } from "react";
import { useApi } from "../api/hooks";
import type { DiffResponse } from "../api/types";
import { RangeInputs } from "../components/RangeInputs";
import { SearchBox } from "../components/SearchBox";
import { Empty, ErrorBox, Loading } from "../components/States";
import { diffColors, diffPalette, type DiffScheme } from "../flame/colors";
import { FlameGraph } from "../flame/FlameGraph";
import { Breadcrumb, useHighlight } from "../flame/FlamePanel";
import { DiffTooltip } from "../flame/Tooltip";
import { findPath, framePath, fromDiff, type FlameTree } from "../flame/tree";
import * as fmt from "../format";
import { describeRange, previousRange } from "../state/time";
import { filterParams } from "../state/url";
import { useUrlState } from "../state/useUrlState";
import { TypeSwitch } from "./Flamegraph";

function Legend({ scheme }: { scheme: DiffScheme }) {
  const p = diffPalette(scheme);
  return (
    <span className="legend small" data-testid="diff-legend">
      <span className="swatch" style={{ background: p[8] }} /> grew
      <span className="swatch" style={{ background: p[16] }} /> shrank
      <span className="swatch" style={{ background: p[0] }} /> unchanged
      <span className="muted"> (share of each side’s total)</span>
    </span>
  );
}

export function DiffView() {
  const [s, update] = useUrlState();
  const now = Date.now();
  const [defFrom, defTo] = previousRange(s.from, s.to, now);
  const bfrom = s.bfrom || defFrom;
  const bto = s.bto || defTo;
  const filters = filterParams(s);
  const params = {
    ...filters,
    type: s.type,
    baseline_from: bfrom,
    baseline_to: bto,
    comparison_from: s.from,
    comparison_to: s.to,
    max_nodes: s.maxNodes,
  };
  delete (params as Record<string, unknown>).from;
  delete (params as Record<string, unknown>).to;
  const res = useApi<DiffResponse>("/api/v1/diff", params);
  const built = useMemo(() => {
    if (!res.data) return { tree: null as FlameTree | null, error: "" };
    try {
      return { tree: fromDiff(res.data), error: "" };
    } catch (err) {
      return { tree: null, error: `The aggregator sent a malformed diff: ${String(err)}` };
    }
  }, [res.data]);
  const tree = built.tree;
  const colors = useMemo(() => (tree ? diffColors(tree, s.palette) : null), [tree, s.palette]);
  const highlight = useHighlight(tree, s.fn, s.fnModule, s.search);
  const found = useMemo(() => (tree ? findPath(tree, s.focus) : -1), [tree, s.focus]);
  const focus = found < 0 ? 0 : found;

  let body;
  if (res.error) body = <ErrorBox error={res.error} retry={res.reload} />;
  else if (built.error) body = <div className="state state-error">{built.error}</div>;
  else if (!res.data || !tree || !colors) body = <Loading what="the diff" />;
  else if (res.data.baseline_total === 0 && res.data.comparison_total === 0) body = <Empty>Neither range has samples.</Empty>;
  else
    body = (
      <>
        {(res.data.baseline_total === 0 || res.data.comparison_total === 0) && (
          <div className="notice">
            The {res.data.baseline_total === 0 ? "baseline" : "comparison"} range has no samples, so every frame shows as{" "}
            {res.data.baseline_total === 0 ? "grown" : "shrunk"}: pick a range where the agent was running.
          </div>
        )}
        <Breadcrumb tree={tree} focus={focus} onFocus={(f) => update({ focus: f })} />
        <FlameGraph
          tree={tree}
          colors={colors}
          focus={focus}
          highlight={highlight.result?.match ?? null}
          label="diff"
          onFocus={(i) => update({ focus: framePath(tree, i) })}
          tooltip={(i) => <DiffTooltip tree={tree} node={i} />}
        />
      </>
    );

  const data = res.data;
  // functions with no self value on either side (callers only) say nothing here
  const changes = useMemo(() => (data ? data.functions.filter((f) => f.baseline_self > 0 || f.comparison_self > 0) : []), [data]);
  return (
    <div className="view diff-view">
      <div className="toolbar wrap">
        <TypeSwitch value={s.type} onChange={(type) => update({ type, focus: [] })} />
        <RangeInputs label="Baseline" from={bfrom} to={bto} onChange={(f, t) => update({ bfrom: f, bto: t })} />
        <span className="range-label">Comparison</span>
        <span className="range-text">{describeRange(s.from, s.to, now)}</span>
        <span className="muted small">(the range above)</span>
      </div>
      <div className="toolbar">
        <SearchBox value={s.search} onChange={(search) => update({ search, fn: "", fnModule: "" }, { replace: true })} />
        <div className="segmented" role="group" aria-label="Palette">
          <button type="button" className={s.palette === "redgreen" ? "active" : ""} onClick={() => update({ palette: "redgreen" })}>
            Red / green
          </button>
          <button type="button" className={s.palette === "colorblind" ? "active" : ""} onClick={() => update({ palette: "colorblind" })}>
            Colour-blind safe
          </button>
        </div>
        <Legend scheme={s.palette} />
        {data && (
          <span className="small muted">
            baseline {fmt.value(data.baseline_total, data.unit)} · comparison {fmt.value(data.comparison_total, data.unit)}
          </span>
        )}
      </div>
      <div className="split">
        <div className="split-main">{body}</div>
        <aside className="split-side">
          <h3>Biggest changes (self)</h3>
          {changes.length > 0 ? (
            <div className="top-table" data-testid="diff-table">
              <table className="data">
                <colgroup>
                  <col />
                  <col style={{ width: 78 }} />
                  <col style={{ width: 92 }} />
                  <col style={{ width: 84 }} />
                </colgroup>
                <thead>
                  <tr>
                    <th>Function</th>
                    <th className="num">Baseline</th>
                    <th className="num">Compar.</th>
                    <th className="num">Change</th>
                  </tr>
                </thead>
                <tbody>
                  {changes.map((f) => {
                    const sel = s.fn === f.name && s.fnModule === f.module;
                    return (
                      <tr
                        key={`${f.name}\u0000${f.module}`}
                        className={sel ? "selected" : ""}
                        onClick={() => update(sel ? { fn: "", fnModule: "" } : { fn: f.name, fnModule: f.module, search: "" })}
                      >
                        <td className="fn">
                          <div className="fn-name" title={f.name}>
                            {f.name}
                          </div>
                          <div className="fn-module">{f.module}</div>
                        </td>
                        <td className="num">{f.baseline_pct.toFixed(2)}%</td>
                        <td className="num">{f.comparison_pct.toFixed(2)}%</td>
                        <td className={`num delta ${f.delta_pct > 0 ? `grew ${s.palette}` : f.delta_pct < 0 ? `shrank ${s.palette}` : ""}`}>
                          {fmt.pp(f.delta_pct / 100)}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          ) : data ? (
            <div className="muted small">No function changed.</div>
          ) : null}
        </aside>
      </div>
    </div>
  );
}
