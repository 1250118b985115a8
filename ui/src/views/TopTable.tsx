// Top functions beside the flame graph: click a row to highlight its frames,
// hover a frame to find its row.

import { memo, useEffect, useRef } from "react";
import type { TopFunction, TopResponse } from "../api/types";
import { pctBar } from "../components/pctBar";
import * as fmt from "../format";

interface Props {
  top: TopResponse;
  sort: "self" | "total";
  onSort: (s: "self" | "total") => void;
  selected: { name: string; module: string };
  hovered: { name: string; module: string } | null;
  onSelect: (f: TopFunction | null) => void;
  onSandwich: (f: TopFunction) => void;
}

const key = (f: { name: string; module: string }) => `${f.name}\u0000${f.module}`;

type RowsProps = Omit<Props, "hovered" | "sort" | "onSort">;

// The rows do not re-render on hover: hovering a frame only moves a class (below),
// so a 200-row table costs nothing while the pointer sweeps the graph.
const Rows = memo(function Rows({ top, selected, onSelect, onSandwich }: RowsProps) {
  return (
    <>
      {top.functions.map((f) => {
        const k = key(f);
        const isSel = selected.name === f.name && (selected.module === "" || selected.module === f.module);
        return (
          <tr key={k} data-key={k} className={isSel ? "selected" : ""} onClick={() => onSelect(isSel ? null : f)} aria-selected={isSel}>
            <td className="fn">
              <div className="fn-name" title={f.name}>
                {f.name}
              </div>
              <div className="fn-module">{f.module}</div>
            </td>
            <td className="num">{fmt.compact(f.self, top.unit)}</td>
            <td className="num pct" style={pctBar(f.self_pct)}>
              {f.self_pct.toFixed(2)}%
            </td>
            <td className="num">{fmt.compact(f.total, top.unit)}</td>
            <td className="num pct">{f.total_pct.toFixed(2)}%</td>
            <td>
              <button
                type="button"
                className="icon-button"
                title="Sandwich: callers and callees of this function"
                aria-label={`Sandwich view of ${f.name}`}
                onClick={(e) => {
                  e.stopPropagation();
                  onSandwich(f);
                }}
              >
                <svg width="14" height="14" viewBox="0 0 14 14" aria-hidden="true">
                  <rect x="1" y="1.5" width="12" height="3" rx="1" />
                  <rect x="3" y="5.5" width="8" height="3" rx="1" />
                  <rect x="1" y="9.5" width="12" height="3" rx="1" />
                </svg>
              </button>
            </td>
          </tr>
        );
      })}
    </>
  );
});

export function TopTable({ top, sort, onSort, selected, hovered, onSelect, onSandwich }: Props) {
  const body = useRef<HTMLTableSectionElement>(null);
  const hoveredKey = hovered ? key(hovered) : "";
  useEffect(() => {
    const tbody = body.current;
    if (!tbody) return;
    tbody.querySelector("tr.hovered")?.classList.remove("hovered");
    if (!hoveredKey) return;
    const row = Array.from(tbody.rows).find((r) => r.dataset.key === hoveredKey);
    row?.classList.add("hovered");
    row?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }, [hoveredKey, top]);
  const header = (k: "self" | "total", label: string) => (
    <th className="num sortable" aria-sort={sort === k ? "descending" : "none"} onClick={() => onSort(k)} colSpan={2}>
      {label}
      {sort === k ? " ▾" : ""}
    </th>
  );
  return (
    <div className="top-table" data-testid="top-table">
      <table className="data">
        <colgroup>
          <col />
          <col className="c-num" />
          <col className="c-pct" />
          <col className="c-num" />
          <col className="c-pct" />
          <col className="c-icon" />
        </colgroup>
        <thead>
          <tr>
            <th>Function</th>
            {header("self", "Self")}
            {header("total", "Total")}
            <th aria-label="Sandwich" />
          </tr>
        </thead>
        <tbody ref={body}>
          <Rows top={top} selected={selected} onSelect={onSelect} onSandwich={onSandwich} />
        </tbody>
      </table>
    </div>
  );
}
