import { useEffect, useState } from "react";
import { resolveMs } from "../state/time";

/** Two time expressions (relative like -2h, RFC 3339, or unix ns), committed together. */
export function RangeInputs({
  label,
  from,
  to,
  onChange,
}: {
  label: string;
  from: string;
  to: string;
  onChange: (from: string, to: string) => void;
}) {
  const [f, setF] = useState(from);
  const [t, setT] = useState(to);
  useEffect(() => {
    setF(from);
    setT(to);
  }, [from, to]);
  const now = Date.now();
  const fm = resolveMs(f, now);
  const tm = resolveMs(t, now);
  const bad = Number.isNaN(fm) || Number.isNaN(tm) || tm <= fm;
  return (
    <form
      className="range-inputs"
      onSubmit={(e) => {
        e.preventDefault();
        if (!bad) onChange(f.trim(), t.trim());
      }}
    >
      <span className="range-label">{label}</span>
      <input aria-label={`${label} from`} value={f} onChange={(e) => setF(e.target.value)} style={{ width: 170 }} />
      <span>→</span>
      <input aria-label={`${label} to`} value={t} onChange={(e) => setT(e.target.value)} style={{ width: 170 }} />
      <button type="submit" className="small-button" disabled={bad || (f === from && t === to)}>
        Apply
      </button>
      {bad && <span className="warn small">use -2h, now, 2026-11-25T10:00:00Z or unix ns; the end after the start</span>}
    </form>
  );
}
