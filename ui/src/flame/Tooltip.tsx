import * as fmt from "../format";
import { diffDelta, Kind, KIND_NAMES, type FlameTree } from "./tree";

/** Where a frame's code is: `file:line` for a Python function with a known line, else its module. */
export function frameWhere(tree: FlameTree, node: number): string {
  const module = tree.names[tree.module[node]];
  const line = tree.line?.[node] ?? 0;
  return tree.kind[node] === Kind.python && module && line > 0 ? `${module}:${line}` : module;
}

/** Hover card of one frame: function, module, self, total, share of the whole profile. */
export function FrameTooltip({ tree, node, grandTotal }: { tree: FlameTree; node: number; grandTotal: number }) {
  const name = tree.names[tree.name[node]];
  const module = frameWhere(tree, node);
  const total = tree.total[node];
  const self = tree.self[node];
  const all = grandTotal > 0 ? grandTotal : tree.total[0];
  return (
    <>
      <div className="tt-name">{name}</div>
      <div className="tt-module">
        {module || "—"} <span className="muted">· {KIND_NAMES[tree.kind[node]] ?? "frame"}</span>
      </div>
      <table className="tt-table">
        <tbody>
          {tree.pathValue ? (
            <tr>
              <th>{tree.pathValue}</th>
              <td>{fmt.value(total, tree.unit)}</td>
              <td className="tt-pct">{fmt.pct(total / all)}</td>
            </tr>
          ) : (
            <>
              <tr>
                <th>Total</th>
                <td>{fmt.value(total, tree.unit)}</td>
                <td className="tt-pct">{fmt.pct(total / all)}</td>
              </tr>
              <tr>
                <th>Self</th>
                <td>{fmt.value(self, tree.unit)}</td>
                <td className="tt-pct">{fmt.pct(self / all)}</td>
              </tr>
            </>
          )}
        </tbody>
      </table>
      <div className="tt-hint">{node === 0 ? "click to reset zoom" : "click to zoom"}</div>
    </>
  );
}

/** Hover card of a diff frame: both sides, as values and as shares of each side. */
export function DiffTooltip({ tree, node }: { tree: FlameTree; node: number }) {
  const d = tree.diff;
  if (!d) return null;
  const name = tree.names[tree.name[node]];
  const module = frameWhere(tree, node);
  const bShare = d.baselineTotal > 0 ? d.baseline[node] / d.baselineTotal : 0;
  const cShare = d.comparisonTotal > 0 ? d.comparison[node] / d.comparisonTotal : 0;
  const bSelf = d.baselineTotal > 0 ? d.baselineSelf[node] / d.baselineTotal : 0;
  const cSelf = d.comparisonTotal > 0 ? d.comparisonSelf[node] / d.comparisonTotal : 0;
  const delta = diffDelta(d, node);
  return (
    <>
      <div className="tt-name">{name}</div>
      <div className="tt-module">{module || "—"}</div>
      <table className="tt-table">
        <thead>
          <tr>
            <th />
            <th>Baseline</th>
            <th>Comparison</th>
          </tr>
        </thead>
        <tbody>
          <tr>
            <th>Total</th>
            <td>
              {fmt.value(d.baseline[node], tree.unit)} <span className="muted">({fmt.pct(bShare)})</span>
            </td>
            <td>
              {fmt.value(d.comparison[node], tree.unit)} <span className="muted">({fmt.pct(cShare)})</span>
            </td>
          </tr>
          <tr>
            <th>Self</th>
            <td>{fmt.pct(bSelf)}</td>
            <td>{fmt.pct(cSelf)}</td>
          </tr>
        </tbody>
      </table>
      <div className={`tt-delta ${delta > 0 ? "grew" : delta < 0 ? "shrank" : ""}`} data-testid="tt-delta">
        {fmt.pp(delta)} of total {Math.abs(delta) < 0.0005 ? "(unchanged)" : delta > 0 ? "(grew)" : "(shrank)"}
      </div>
    </>
  );
}
