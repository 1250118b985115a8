import { useEffect, useState } from "react";
import { compileQuery } from "../flame/search";

/** Search frames by substring or /regex/; commits after a short pause. */
export function SearchBox({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  useEffect(() => {
    if (text === value) return;
    const t = setTimeout(() => onChange(text), 200);
    return () => clearTimeout(t);
  }, [text, value, onChange]);
  const invalid = text.trim() !== "" && compileQuery(text) === null;
  return (
    <label className="search">
      <span className="visually-hidden">Search functions</span>
      <input
        type="search"
        placeholder="Search functions (text or /regex/)"
        value={text}
        aria-invalid={invalid || undefined}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") onChange(text);
          if (e.key === "Escape") {
            setText("");
            onChange("");
          }
        }}
        data-testid="search"
      />
    </label>
  );
}
