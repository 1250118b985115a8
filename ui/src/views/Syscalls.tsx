// Syscalls: a sortable table of counts, errors and latency percentiles, with a
// latency histogram per syscall.

import { Fragment, useMemo, useState } from "react";
import { useApi } from "../api/hooks";
import type { SyscallRow, SyscallsResponse } from "../api/types";
import { bucketLabel, Histogram, MiniHistogram, sharedRange } from "../components/Histogram";
import { Empty, Guard } from "../components/States";
import * as fmt from "../format";
import { filterParams } from "../state/url";
import { useUrlState } from "../state/useUrlState";

type Col = { key: keyof SyscallRow; label: string; render: (r: SyscallRow) => string; title?: string };

const COLS: Col[] = [
  { key: "count", label: "Count", render: (r) => fmt.exact(r.count) },
  { key: "rate", label: "Rate", render: (r) => `${fmt.count(r.rate)}/s` },
  { key: "errors", label: "Errors", render: (r) => fmt.exact(r.errors) },
  { key: "error_rate", label: "Error rate", render: (r) => fmt.pct(r.error_rate, 1) },
  { key: "total_ns", label: "Total time", render: (r) => fmt.duration(r.total_ns) },
  { key: "avg_ns", label: "Avg", render: (r) => fmt.duration(r.avg_ns) },
  { key: "p50_ns", label: "p50", render: (r) => fmt.duration(r.p50_ns), title: "median latency (from the log2 histogram)" },
  { key: "p90_ns", label: "p90", render: (r) => fmt.duration(r.p90_ns) },
  { key: "p99_ns", label: "p99", render: (r) => fmt.duration(r.p99_ns) },
  { key: "max_ns", label: "Max", render: (r) => fmt.duration(r.max_ns) },
];

export function sortRows(rows: SyscallRow[], key: string, asc: boolean): SyscallRow[] {
  const k = key as keyof SyscallRow;
  return [...rows].sort((a, b) => {
    const x = a[k];
    const y = b[k];
    const c = typeof x === "string" || typeof y === "string" ? String(x).localeCompare(String(y)) : Number(x) - Number(y);
    return asc ? c : -c;
  });
}

export function SyscallsView() {
  const [s, update] = useUrlState();
  const perProcess = s.perProcess;
  const [open, setOpen] = useState<string | null>(null);
  const res = useApi<SyscallsResponse>("/api/v1/syscalls", { ...filterParams(s), per_process: perProcess });
  const rows = useMemo(() => (res.data ? sortRows(res.data.syscalls, s.sort, s.asc) : []), [res.data, s.sort, s.asc]);
  const domain = useMemo(() => sharedRange(rows.map((r) => r.hist)), [rows]);
  const sortBy = (key: string) => update(key === s.sort ? { asc: !s.asc } : { sort: key, asc: key === "name" }, { replace: true });
  const th = (key: string, label: string, title?: string, num = true) => (
    <th
      key={key}
      className={`sortable ${num ? "num" : ""}`}
      title={title}
      aria-sort={s.sort === key ? (s.asc ? "ascending" : "descending") : "none"}
      onClick={() => sortBy(key)}
    >
      {label}
      {s.sort === key ? (s.asc ? " ▴" : " ▾") : ""}
    </th>
  );
  return (
    <div className="view syscalls-view">
      <div className="toolbar">
        <label className="toggle">
          <input type="checkbox" checked={perProcess} onChange={(e) => update({ perProcess: e.target.checked })} /> Per process
        </label>
        {res.data && (
          <span className="muted small">
            {rows.length} rows over {fmt.seconds(res.data.duration_s)} · click a row for its latency histogram
          </span>
        )}
      </div>
      <Guard what="syscalls" result={res}>
        {(data) =>
          data.syscalls.length === 0 ? (
            <Empty>The agent sends syscall data with --mode syscall or --mode all.</Empty>
          ) : (
            <div className="table-scroll">
              <table className="data syscalls" data-testid="syscalls-table">
                <thead>
                  <tr>
                    {th("name", "Syscall", undefined, false)}
                    {perProcess && th("comm", "Process", undefined, false)}
                    {perProcess && th("pid", "PID")}
                    {COLS.map((c) => th(c.key, c.label, c.title))}
                    <th>Top errno</th>
                    <th title="log2 latency histogram; every row on the same axis">
                      Latency <span className="muted small">{bucketLabel(domain[0])} … {bucketLabel(domain[1] + 1)}</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((r) => {
                    const key = `${r.name}/${r.pid ?? ""}/${r.comm ?? ""}`;
                    const isOpen = open === key;
                    return (
                      <Fragment key={key}>
                        <tr className={isOpen ? "selected" : ""} onClick={() => setOpen(isOpen ? null : key)} data-syscall={r.name}>
                          <td className="mono">{r.name}</td>
                          {perProcess && <td>{r.comm ?? "—"}</td>}
                          {perProcess && <td className="num">{r.pid ?? "—"}</td>}
                          {COLS.map((c) => (
                            <td key={c.key} className={`num ${c.key === "error_rate" && r.error_rate > 0.05 ? "warn" : ""}`} data-col={c.key}>
                              {c.render(r)}
                            </td>
                          ))}
                          <td className="small">
                            {r.top_errno.length === 0 ? <span className="muted">—</span> : r.top_errno.slice(0, 2).map(([e, n]) => `${e} ×${fmt.count(n)}`).join(", ")}
                          </td>
                          <td>
                            <MiniHistogram hist={r.hist} domain={domain} />
                          </td>
                        </tr>
                        {isOpen && (
                          <tr className="expanded">
                            <td colSpan={COLS.length + (perProcess ? 5 : 3)}>
                              <Histogram hist={r.hist} />
                            </td>
                          </tr>
                        )}
                      </Fragment>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )
        }
      </Guard>
    </div>
  );
}
