// Overview: who pushes, how the aggregator is doing, and the top of each view.

import type { ReactNode } from "react";
import { useApi } from "../api/hooks";
import type { Agent, Health, LocksResponse, SyscallsResponse, TopResponse } from "../api/types";
import { ErrorBox, Loading } from "../components/States";
import * as fmt from "../format";
import { pctBar } from "../components/pctBar";
import { classOf } from "./lockClass";
import { filterParams } from "../state/url";
import { hrefFor, useUrlState } from "../state/useUrlState";
import type { UrlState } from "../state/url";

/** A link that changes view without a page load (and still opens in a new tab). */
export function Link({ to, children, className }: { to: Partial<UrlState>; children: ReactNode; className?: string }) {
  const [s, update] = useUrlState();
  return (
    <a
      className={className}
      href={hrefFor(s, to)}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        update(to);
      }}
    >
      {children}
    </a>
  );
}

function Card({ title, link, children, testid }: { title: string; link?: ReactNode; children: ReactNode; testid: string }) {
  return (
    <section className="card" data-testid={testid}>
      <header>
        <h3>{title}</h3>
        {link}
      </header>
      {children}
    </section>
  );
}

const STALE_S = 60;

function Agents({ agents }: { agents: Agent[] }) {
  if (agents.length === 0) {
    return (
      <div className="state state-empty">
        <strong>No agent has pushed to this aggregator yet.</strong>
        <div className="muted">
          Start one on each host: <code>aperture-agent --mode all --aggregator http://THIS-HOST:50051</code> (with{" "}
          <code>APERTURE_AUTH_TOKEN</code> set when the aggregator has a token).
        </div>
      </div>
    );
  }
  return (
    <table className="data" data-testid="agents-table">
      <thead>
        <tr>
          <th>Agent</th>
          <th>Host</th>
          <th>Labels</th>
          <th>Version</th>
          <th>Last push</th>
          <th className="num">Pushes/min</th>
          <th className="num">Pushes</th>
        </tr>
      </thead>
      <tbody>
        {agents.map((a) => (
          <tr key={a.agent_id}>
            <td className="mono">{a.agent_id}</td>
            <td>
              <Link to={{ view: "flamegraph", host: a.host }}>{a.host}</Link>
            </td>
            <td className="small">
              {Object.entries(a.labels).map(([k, v]) => (
                <span key={k} className="chip">
                  {k}={v}
                </span>
              ))}
            </td>
            <td className="small muted">{a.version || "—"}</td>
            <td className={a.seconds_since_last_push > STALE_S ? "warn" : ""}>
              {fmt.ago(a.seconds_since_last_push)}
              {a.seconds_since_last_push > STALE_S && " (silent: is the agent running?)"}
            </td>
            <td className="num">{a.pushes_per_minute.toFixed(1)}</td>
            <td className="num">{fmt.exact(a.pushes)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function HealthCard({ health, agents }: { health: Health; agents: Agent[] }) {
  const b = health.buffer;
  const rate = agents.reduce((sum, a) => sum + a.pushes_per_minute, 0);
  const live = agents.filter((a) => a.seconds_since_last_push <= STALE_S).length;
  return (
    <div className="stats" data-testid="health">
      <div className="stat">
        <div className="stat-label">Status</div>
        <div className={`stat-value ${health.status === "ok" ? "good" : "warn"}`}>{health.status}</div>
        <div className="muted small">
          {health.version && `v${health.version}`} {health.uptime_s !== undefined && `· up ${fmt.seconds(health.uptime_s)}`}
        </div>
      </div>
      <div className="stat">
        <div className="stat-label">Agents pushing</div>
        <div className="stat-value">
          {live} <span className="muted small">of {agents.length}</span>
        </div>
      </div>
      <div className="stat">
        <div className="stat-label">Ingest rate</div>
        <div className="stat-value" data-testid="ingest-rate">
          {rate.toFixed(1)} <span className="muted small">pushes/min</span>
        </div>
      </div>
      {b && (
        <div className="stat">
          <div className="stat-label">Buffer</div>
          <div className="stat-value">{fmt.pct(b.utilization, 1)}</div>
          <div className="meter">
            <span style={{ width: `${Math.min(100, b.utilization * 100)}%` }} />
          </div>
          <div className="muted small">
            {fmt.exact(b.batches)} batches · {fmt.bytes(b.bytes)} of {fmt.bytes(b.max_bytes)}
            {b.evictions > 0 && ` · ${fmt.exact(b.evictions)} evicted`}
          </div>
        </div>
      )}
      {health.journal_bytes !== undefined && health.journal_bytes !== null && (
        <div className="stat">
          <div className="stat-label">Journal</div>
          <div className="stat-value">{fmt.bytes(health.journal_bytes)}</div>
        </div>
      )}
    </div>
  );
}

function TopCpu() {
  const [s] = useUrlState();
  const res = useApi<TopResponse>("/api/v1/top", { ...filterParams(s), type: "cpu", limit: 8, sort: "self" });
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (!res.data) return <Loading what="top functions" />;
  // callers with no self time do not belong in a "where the CPU goes" list
  const functions = res.data.functions.filter((f) => f.self > 0);
  if (functions.length === 0) return <div className="muted small">No CPU samples in this range.</div>;
  return (
    <table className="data compact">
      <tbody>
        {functions.map((f) => (
          <tr key={`${f.name}/${f.module}`}>
            <td className="fn">
              <Link to={{ view: "flamegraph", type: "cpu", fn: f.name, fnModule: f.module, search: "", focus: [] }}>{f.name}</Link>
              <div className="fn-module">{f.module}</div>
            </td>
            <td className="num pct" style={pctBar(f.self_pct)}>
              {f.self_pct.toFixed(1)}%
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function SlowSyscalls() {
  const [s] = useUrlState();
  const res = useApi<SyscallsResponse>("/api/v1/syscalls", filterParams(s));
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (!res.data) return <Loading what="syscalls" />;
  const rows = [...res.data.syscalls].sort((a, b) => b.p99_ns - a.p99_ns).slice(0, 8);
  if (rows.length === 0) return <div className="muted small">No syscall data in this range.</div>;
  return (
    <table className="data compact">
      <thead>
        <tr>
          <th>Syscall</th>
          <th className="num">p99</th>
          <th className="num">Calls</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={`${r.name}/${r.pid}`}>
            <td className="mono">
              <Link to={{ view: "syscalls", sort: "p99_ns", asc: false }}>{r.name}</Link>
            </td>
            <td className="num">{fmt.duration(r.p99_ns)}</td>
            <td className="num">{fmt.count(r.count)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const CONTENDED_ROWS = 6;

/** The most contended locks, and a sentence on the idle waits left out. */
function ContendedLocks() {
  const [s] = useUrlState();
  // idle waits (condition variables, semaphores) often top the wait time: ask for enough rows to fill the card after filtering
  const res = useApi<LocksResponse>("/api/v1/locks", { ...filterParams(s), limit: 50 });
  if (res.error) return <ErrorBox error={res.error} retry={res.reload} />;
  if (!res.data) return <Loading what="locks" />;
  if (res.data.locks.length === 0) return <div className="muted small">No lock waits in this range.</div>;
  const contended = res.data.locks.filter((l) => classOf(l) === "contention").slice(0, CONTENDED_ROWS);
  const idle = res.data.locks.filter((l) => classOf(l) === "idle");
  const idleWaits = idle.reduce((n, l) => n + l.contentions, 0);
  return (
    <>
      {contended.length === 0 ? (
        <div className="muted small">No contended locks in this range.</div>
      ) : (
        <table className="data compact">
          <thead>
            <tr>
              <th>Lock</th>
              <th className="num">Wait</th>
              <th className="num">Contentions</th>
            </tr>
          </thead>
          <tbody>
            {contended.map((l) => (
              <tr key={`${l.pid}/${l.address}`}>
                <td>
                  <Link to={{ view: "locks", lockClass: "contention", lock: l.address, lockPid: String(l.pid), focus: [] }}>
                    <span className="mono">{l.address}</span>
                  </Link>{" "}
                  <span className="muted small">
                    {l.comm} ({l.pid}) · {l.kind_label}
                  </span>
                </td>
                <td className="num">{fmt.duration(l.wait_ns)}</td>
                <td className="num">{fmt.count(l.contentions)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {idle.length > 0 && (
        <div className="muted small hint" data-testid="idle-waits">
          Not listed: {fmt.exact(idleWaits)} idle {idleWaits === 1 ? "wait" : "waits"} on {idle.length} {idle.length === 1 ? "lock" : "locks"} ({fmt.duration(idle.reduce((ns, l) => ns + l.wait_ns, 0))}), threads waiting for work or a signal.{" "}
          <Link to={{ view: "locks", lockClass: "idle", lock: "", lockPid: "", focus: [] }}>Idle waits →</Link>
        </div>
      )}
    </>
  );
}

export function OverviewView() {
  const agents = useApi<Agent[]>("/api/v1/agents");
  const health = useApi<Health>("/api/v1/health");
  return (
    <div className="view overview">
      {health.error ? (
        <ErrorBox error={health.error} retry={health.reload} />
      ) : health.data && agents.data ? (
        <HealthCard health={health.data} agents={agents.data} />
      ) : (
        <Loading what="health" />
      )}
      <Card title="Agents" testid="card-agents">
        {agents.error ? <ErrorBox error={agents.error} retry={agents.reload} /> : agents.data ? <Agents agents={agents.data} /> : <Loading what="agents" />}
      </Card>
      <div className="cards">
        <Card title="Top CPU functions" testid="card-top" link={<Link to={{ view: "flamegraph", type: "cpu" }}>Flamegraph →</Link>}>
          <TopCpu />
        </Card>
        <Card title="Slowest syscalls (p99)" testid="card-syscalls" link={<Link to={{ view: "syscalls", sort: "p99_ns", asc: false }}>Syscalls →</Link>}>
          <SlowSyscalls />
        </Card>
        <Card title="Most contended locks" testid="card-locks" link={<Link to={{ view: "locks", lockClass: "contention" }}>Locks →</Link>}>
          <ContendedLocks />
        </Card>
      </div>
    </div>
  );
}
