import type { CSSProperties } from "react";

/** A share drawn as a bar behind a table cell's text. */
export function pctBar(pct: number): CSSProperties {
  const w = Math.max(0, Math.min(100, pct));
  return { background: `linear-gradient(to left, #fde3cf ${w}%, transparent ${w}%)` };
}
