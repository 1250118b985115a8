// Locks: the most contended futexes, and the wait-time flame graph of the one selected.

import { useMemo } from "react";
import { useApi } from "../api/hooks";
import type { FlamegraphResponse, LockRow, LocksResponse } from "../api/types";
import { Empty, ErrorBox, Guard, Loading } from "../components/States";
import { FlamePanel, useHighlight } from "../flame/FlamePanel";
import * as fmt from "../format";
import { filterParams } from "../state/url";
import { useUrlState } from "../state/useUrlState";
import { useTree } from "./Flamegraph";

function leaf(row: LockRow): string {
  const stack = row.top_stack;
  // the innermost frame outside the C library tells where the lock is taken
  for (let k = stack.length - 1; k >= 0; k--) {
    if (!/^(libc|libpthread|ld-linux)/.test(stack[k].module) && stack[k].module !== "[kernel]") return stack[k].name;
  }
  return stack.length > 0 ? stack[stack.length - 1].name : "—";
}

function LockFlame({ address, pid }: { address: string; pid: string }) {
  const [s, update] = useUrlState();
  const res = useApi<FlamegraphResponse>("/api/v1/flamegraph", { ...filterParams(s), type: "lock", address, pid, max_nodes: s.maxNodes });
  const built = useTree(res.data);
  const highlight = useHighlight(built.tree, "", "", s.search);
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (built.error) return <div className="state state-error">{built.error}</div>;
  if (!built.tree) return <Loading what="the lock's wait-time flame graph" />;
  if (built.tree.n <= 1) return <Empty>No waits recorded on {address} in this range.</Empty>;
  return (
    <FlamePanel tree={built.tree} focusPath={s.focus} onFocusPath={(focus) => update({ focus })} highlight={highlight} label="lock" />
  );
}

export function LocksView() {
  const [s, update] = useUrlState();
  const res = useApi<LocksResponse>("/api/v1/locks", { ...filterParams(s), limit: 50 });
  const selected = useMemo(
    () => res.data?.locks.find((l) => l.address === s.lock && String(l.pid) === s.lockPid) ?? null,
    [res.data, s.lock, s.lockPid],
  );
  return (
    <div className="view locks-view">
      <Guard what="locks" result={res}>
        {(data) =>
          data.locks.length === 0 ? (
            <Empty>The agent sends lock waits with --mode lock or --mode all.</Empty>
          ) : (
            <>
              <div className="table-scroll locks-table">
                <table className="data" data-testid="locks-table">
                  <thead>
                    <tr>
                      <th>Lock</th>
                      <th>Process</th>
                      <th>Taken in</th>
                      <th className="num">Contentions</th>
                      <th className="num">Wait total</th>
                      <th className="num">Avg</th>
                      <th className="num">p99</th>
                      <th className="num">Max</th>
                      <th className="num" title="futex waits that returned EAGAIN (the value changed first)">EAGAIN</th>
                      <th className="num">Timeouts</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.locks.map((l) => {
                      const sel = l.address === s.lock && String(l.pid) === s.lockPid;
                      return (
                        <tr
                          key={`${l.pid}/${l.address}`}
                          className={sel ? "selected" : ""}
                          onClick={() => update(sel ? { lock: "", lockPid: "", focus: [] } : { lock: l.address, lockPid: String(l.pid), focus: [] })}
                        >
                          <td className="mono">{l.address}</td>
                          <td>
                            {l.comm} <span className="muted">({l.pid})</span>
                          </td>
                          <td className="mono small" title={l.top_stack.map((f) => f.name).join(" → ")}>
                            {leaf(l)}
                          </td>
                          <td className="num">{fmt.exact(l.contentions)}</td>
                          <td className="num">{fmt.duration(l.wait_ns)}</td>
                          <td className="num">{fmt.duration(l.avg_ns)}</td>
                          <td className="num">{fmt.duration(l.p99_ns)}</td>
                          <td className="num">{fmt.duration(l.max_ns)}</td>
                          <td className="num">{fmt.exact(l.eagain)}</td>
                          <td className="num">{fmt.exact(l.timeouts)}</td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </div>
              {s.lock ? (
                <section className="lock-flame">
                  <h3>
                    Wait time on <span className="mono">{s.lock}</span>
                    {selected ? ` in ${selected.comm} (${selected.pid})` : s.lockPid ? ` in pid ${s.lockPid}` : ""} by stack
                  </h3>
                  <LockFlame address={s.lock} pid={s.lockPid} />
                </section>
              ) : (
                <div className="muted small hint">Select a lock to see its wait-time flame graph (time blocked in futex waits, not hold time).</div>
              )}
            </>
          )
        }
      </Guard>
    </div>
  );
}
