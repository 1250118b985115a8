// Locks: lock words by class (contention, idle waits, unclassified), and for the one
// selected the flame graphs of its waiters, its holders at release and its wakers.

import { useMemo, useState } from "react";
import { useApi } from "../api/hooks";
import type { FlamegraphResponse, LockRow, LocksResponse } from "../api/types";
import { Empty, ErrorBox, Guard, Loading } from "../components/States";
import { FlamePanel, useHighlight } from "../flame/FlamePanel";
import * as fmt from "../format";
import { filterParams, LOCK_CLASSES, type LockClass } from "../state/url";
import { useUrlState } from "../state/useUrlState";
import { useTree } from "./Flamegraph";
import { CLASS_MEANINGS, CLASS_TITLES, classOf, countByClass, shownClass } from "./lockClass";

function leaf(row: LockRow): string {
  const stack = row.top_stack;
  // the innermost frame outside the C library (and the agent's "[contention: mutex]" leaf)
  // tells where the lock is taken
  for (let k = stack.length - 1; k >= 0; k--) {
    const m = stack[k].module;
    if (!/^(libc|libpthread|ld-linux)/.test(m) && m !== "[kernel]" && m !== "[lock]") return stack[k].name;
  }
  return stack.length > 0 ? stack[stack.length - 1].name : "—";
}

function ClassSwitch({ counts, shown, onChange }: { counts: Record<LockClass, number>; shown: LockClass; onChange: (c: LockClass) => void }) {
  return (
    <div className="segmented" role="group" aria-label="Lock class" data-testid="lock-class">
      {LOCK_CLASSES.map((c) => (
        <button
          key={c}
          type="button"
          className={shown === c ? "active" : ""}
          aria-pressed={shown === c}
          disabled={counts[c] === 0}
          title={CLASS_MEANINGS[c]}
          onClick={() => onChange(c)}
        >
          {CLASS_TITLES[c]} <span className="muted">{fmt.exact(counts[c])}</span>
        </button>
      ))}
    </div>
  );
}

/** A hold quantile, or a dash saying why there is none. */
function HoldCell({ row, ns }: { row: LockRow; ns: number }) {
  if (row.holds === 0) {
    return (
      <td className="num muted" title="no acquisition seen">
        –
      </td>
    );
  }
  return <td className="num">{fmt.duration(ns)}</td>;
}

function LocksTable({ rows, holds }: { rows: LockRow[]; holds: boolean }) {
  const [s, update] = useUrlState();
  return (
    <div className="table-scroll locks-table">
      <table className="data" data-testid="locks-table">
        <thead>
          <tr>
            <th>Lock</th>
            <th>Process</th>
            <th>Kind</th>
            <th>{holds ? "Taken in" : "Waits in"}</th>
            <th className="num">Waits</th>
            <th className="num">Wait total</th>
            <th className="num">Avg</th>
            <th className="num">p99</th>
            {holds && (
              <>
                <th className="num" title="how long the holder held the lock, from its acquisition to a release that woke a waiter">
                  Hold p50
                </th>
                <th className="num">Hold p99</th>
                <th className="num" title="releases that woke a waiter">
                  Releases
                </th>
              </>
            )}
          </tr>
        </thead>
        <tbody>
          {rows.map((l) => {
            const sel = l.address === s.lock && String(l.pid) === s.lockPid;
            return (
              <tr
                key={`${l.pid}/${l.address}`}
                className={sel ? "selected" : ""}
                data-lock={l.address}
                onClick={() => update(sel ? { lock: "", lockPid: "", focus: [] } : { lock: l.address, lockPid: String(l.pid), focus: [] })}
              >
                <td className="mono">{l.address}</td>
                <td>
                  {l.comm} <span className="muted">({l.pid})</span>
                </td>
                <td>{l.kind_label}</td>
                <td className="mono small" title={l.top_stack.map((f) => f.name).join(" → ")}>
                  {leaf(l)}
                </td>
                <td className="num">{fmt.exact(l.contentions)}</td>
                <td className="num">{fmt.duration(l.wait_ns)}</td>
                <td className="num">{fmt.duration(l.avg_ns)}</td>
                <td className="num">{fmt.duration(l.p99_ns)}</td>
                {holds && (
                  <>
                    <HoldCell row={l} ns={l.hold_p50_ns} />
                    <HoldCell row={l} ns={l.hold_p99_ns} />
                    <td className="num">{fmt.exact(l.releases)}</td>
                  </>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

type Role = "wait" | "hold" | "wake";

const ROLE_TITLES: Record<Role, string> = {
  wait: "Waiters — wait time",
  hold: "Holders at release — hold time",
  wake: "Wakers — wait time they ended",
};

const ROLE_WHO: Record<Role, string> = { wait: "waiters", hold: "holders", wake: "wakers" };

/** One lock's flame graph for one role; empty says in a sentence what was not seen. */
function LockFlame({ address, pid, role, empty, focus, onFocus }: {
  address: string;
  pid: string;
  role: Role;
  empty: string;
  focus: string[];
  onFocus: (path: string[]) => void;
}) {
  const [s] = useUrlState();
  const res = useApi<FlamegraphResponse>("/api/v1/flamegraph", { ...filterParams(s), type: "lock", address, pid, role, max_nodes: s.maxNodes });
  const built = useTree(res.data);
  const highlight = useHighlight(built.tree, "", "", s.search);
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (built.error) return <div className="state state-error">{built.error}</div>;
  if (!built.tree) return <Loading what={`the lock's ${ROLE_WHO[role]}`} />;
  if (built.tree.n <= 1) {
    return (
      <div className="state state-empty" data-testid="empty">
        {empty}
      </div>
    );
  }
  return <FlamePanel tree={built.tree} focusPath={focus} onFocusPath={onFocus} highlight={highlight} label={`lock-${role}`} />;
}

function article(word: string): string {
  return /^[aeiou]/i.test(word) ? "An" : "A";
}

/** Who waited on the selected lock, who held it and who woke the waiters. */
function LockDetail({ address, pid, row }: { address: string; pid: string; row: LockRow | null }) {
  const [s, update] = useUrlState();
  // the waiters' zoom is the view's, in the URL; the other graphs hold other stacks, so their zoom is their own
  const [holdFocus, setHoldFocus] = useState<string[]>([]);
  const [wakeFocus, setWakeFocus] = useState<string[]>([]);
  const idle = row !== null && classOf(row) === "idle" ? row : null;
  const holdEmpty =
    row && row.releases > 0 && row.holds === 0
      ? "No hold was timed: the agent saw releases that woke a waiter, but not the holders' acquisitions."
      : "No holder was seen releasing this lock to a waiter in this range.";
  return (
    <section className="lock-detail" data-testid="lock-detail">
      <h3>
        <span className="mono">{address}</span>
        {row ? ` in ${row.comm} (${row.pid}) · ${row.kind_label}` : pid ? ` in pid ${pid}` : ""}
        {row && (
          <span className="muted small">
            {" "}
            · {fmt.exact(row.contentions)} waits, longest {fmt.duration(row.max_ns)} · {fmt.exact(row.eagain)} EAGAIN · {fmt.exact(row.timeouts)} timeouts
            {row.holds > 0 && !idle && (
              <>
                {" "}
                · held {fmt.duration(row.hold_ns)} in {fmt.exact(row.holds)} timed holds, longest {fmt.duration(row.hold_max_ns)}
              </>
            )}
          </span>
        )}
      </h3>
      <div className="lock-flames">
        <div className="lock-flame" data-testid="lock-flame-wait">
          <h4>{ROLE_TITLES.wait}</h4>
          <LockFlame
            address={address}
            pid={pid}
            role="wait"
            empty={`No waits on ${address} in this range.`}
            focus={s.focus}
            onFocus={(focus) => update({ focus })}
          />
        </div>
        <div className="lock-flame" data-testid="lock-flame-hold">
          <h4>{ROLE_TITLES.hold}</h4>
          {idle ? (
            <div className="state state-empty" data-testid="no-holder">
              {article(idle.kind_label)} {idle.kind_label} has no holder: its waiters wait for work or a signal, not for a lock another thread holds.
            </div>
          ) : (
            <LockFlame address={address} pid={pid} role="hold" empty={holdEmpty} focus={holdFocus} onFocus={setHoldFocus} />
          )}
        </div>
        <div className="lock-flame" data-testid="lock-flame-wake">
          <h4>{ROLE_TITLES.wake}</h4>
          <LockFlame
            address={address}
            pid={pid}
            role="wake"
            empty="No wake that ended a wait on this lock was seen in this range."
            focus={wakeFocus}
            onFocus={setWakeFocus}
          />
        </div>
      </div>
    </section>
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
        {(data) => {
          if (data.locks.length === 0) return <Empty>The agent sends lock waits with --mode lock or --mode all.</Empty>;
          const counts = countByClass(data.locks);
          const shown = shownClass(data.locks, s.lockClass, selected);
          return (
            <>
              <div className="toolbar">
                <ClassSwitch counts={counts} shown={shown} onChange={(lockClass) => update({ lockClass, lock: "", lockPid: "", focus: [] })} />
                <span className="muted small">{CLASS_MEANINGS[shown]}</span>
              </div>
              <LocksTable rows={data.locks.filter((l) => classOf(l) === shown)} holds={shown === "contention"} />
              {s.lock ? (
                <LockDetail key={`${s.lockPid}/${s.lock}`} address={s.lock} pid={s.lockPid} row={selected} />
              ) : (
                <div className="muted small hint">Select a lock to see who waited on it, who held it and who woke the waiters.</div>
              )}
            </>
          );
        }}
      </Guard>
    </div>
  );
}
