// Time range, host, process, pid and labels for every view; "live" refresh.

import { useEffect, useMemo, useState } from "react";
import type { Agent } from "../api/types";
import { useApi } from "../api/hooks";
import { describeRange, fromLocalInput, isRelative, msToNs, PRESETS, resolveMs, toLocalInput } from "../state/time";
import { formatLabels, parseLabels } from "../state/url";
import { useUrlState } from "../state/useUrlState";

function TextFilter({
  label,
  value,
  onCommit,
  placeholder,
  list,
  width,
  validate,
}: {
  label: string;
  value: string;
  onCommit: (v: string) => void;
  placeholder: string;
  list?: string;
  width: number;
  validate?: (v: string) => string | null;
}) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const problem = validate ? validate(text) : null;
  const commit = () => {
    if (!problem && text.trim() !== value) onCommit(text.trim());
  };
  return (
    <label className="filter" title={problem ?? undefined}>
      <span>{label}</span>
      <input
        value={text}
        placeholder={placeholder}
        list={list}
        style={{ width }}
        aria-invalid={problem ? true : undefined}
        onChange={(e) => setText(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => {
          if (e.key === "Enter") commit();
          if (e.key === "Escape") setText(value);
        }}
      />
    </label>
  );
}

function AbsoluteRange({ onDone }: { onDone: () => void }) {
  const [s, update] = useUrlState();
  const now = Date.now();
  const f = resolveMs(s.from, now);
  const t = resolveMs(s.to, now);
  const [from, setFrom] = useState(toLocalInput(Number.isNaN(f) ? now - 3600e3 : f));
  const [to, setTo] = useState(toLocalInput(Number.isNaN(t) ? now : t));
  const fMs = fromLocalInput(from);
  const tMs = fromLocalInput(to);
  const bad = Number.isNaN(fMs) || Number.isNaN(tMs) || tMs <= fMs;
  return (
    <form
      className="absolute-range"
      onSubmit={(e) => {
        e.preventDefault();
        if (bad) return;
        update({ from: msToNs(fMs), to: msToNs(tMs), live: false });
        onDone();
      }}
    >
      <label>
        From <input type="datetime-local" step="1" value={from} onChange={(e) => setFrom(e.target.value)} />
      </label>
      <label>
        To <input type="datetime-local" step="1" value={to} onChange={(e) => setTo(e.target.value)} />
      </label>
      <button type="submit" className="primary small-button" disabled={bad}>
        Apply
      </button>
      <button type="button" className="small-button" onClick={onDone}>
        Cancel
      </button>
      {bad && <span className="warn small">the end must be after the start</span>}
    </form>
  );
}

export function FiltersBar() {
  const [s, update] = useUrlState();
  const [custom, setCustom] = useState(false);
  const agents = useApi<Agent[]>("/api/v1/agents");
  const hosts = useMemo(() => [...new Set((agents.data ?? []).map((a) => a.host))].sort(), [agents.data]);
  const relative = isRelative(s.from) && isRelative(s.to);
  const filtered = s.host || s.comm || s.pid || Object.keys(s.labels).length > 0;
  return (
    <div className="filters" data-testid="filters">
      <div className="presets" role="group" aria-label="Time range">
        {PRESETS.map((p) => (
          <button
            key={p.label}
            type="button"
            className={s.from === p.from && s.to === "now" ? "preset active" : "preset"}
            aria-pressed={s.from === p.from && s.to === "now"}
            onClick={() => update({ from: p.from, to: "now" })}
          >
            {p.label}
          </button>
        ))}
        <button type="button" className={custom || !relative ? "preset active" : "preset"} onClick={() => setCustom(!custom)}>
          Custom…
        </button>
      </div>
      {custom ? (
        <AbsoluteRange onDone={() => setCustom(false)} />
      ) : (
        <span className="range-text" data-testid="range">
          {describeRange(s.from, s.to, Date.now())}
        </span>
      )}
      <datalist id="hosts">
        {hosts.map((h) => (
          <option key={h} value={h} />
        ))}
      </datalist>
      <TextFilter label="Host" value={s.host} placeholder="any" list="hosts" width={120} onCommit={(host) => update({ host })} />
      <TextFilter label="Process" value={s.comm} placeholder="any" width={110} onCommit={(comm) => update({ comm })} />
      <TextFilter
        label="PID"
        value={s.pid}
        placeholder="any"
        width={64}
        validate={(v) => (v.trim() === "" || /^\d+$/.test(v.trim()) ? null : "a process id is a number")}
        onCommit={(pid) => update({ pid })}
      />
      <TextFilter
        label="Labels"
        value={formatLabels(s.labels)}
        placeholder="key=value, …"
        width={150}
        validate={(v) => (parseLabels(v) ? null : "write labels as key=value, separated by commas")}
        onCommit={(v) => update({ labels: parseLabels(v) ?? {} })}
      />
      {filtered && (
        <button type="button" className="link-button small" onClick={() => update({ host: "", comm: "", pid: "", labels: {} })}>
          clear filters
        </button>
      )}
      <label className="live" title={relative ? "Refresh every 10 seconds" : "Live refresh needs a range that ends now"}>
        <input
          type="checkbox"
          checked={s.live && relative}
          disabled={!relative}
          onChange={(e) => update({ live: e.target.checked }, { replace: true })}
        />
        <span className={s.live && relative ? "live-dot on" : "live-dot"} aria-hidden="true" />
        Live
      </label>
    </div>
  );
}
