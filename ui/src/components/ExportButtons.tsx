import { useState } from "react";
import { ApiError, download } from "../api/client";
import { filterParams } from "../state/url";
import { useUrlState } from "../state/useUrlState";

const FORMATS = [
  { format: "collapsed", label: "Folded", ext: "collapsed" },
  { format: "json", label: "JSON", ext: "json" },
  { format: "speedscope", label: "speedscope", ext: "speedscope.json" },
  { format: "pprof", label: "pprof", ext: "pb.gz" },
] as const;

/** Download the current range and filters through /api/v1/export. */
export function ExportButtons({ type }: { type: string }) {
  const [s] = useUrlState();
  const [busy, setBusy] = useState("");
  const [message, setMessage] = useState("");
  return (
    <div className="export" role="group" aria-label="Export">
      <span className="muted small">Export</span>
      {FORMATS.map((f) => (
        <button
          key={f.format}
          type="button"
          className="small-button"
          disabled={busy !== ""}
          title={`Download the ${type} profile of this range as ${f.label}`}
          onClick={async () => {
            setBusy(f.format);
            setMessage("");
            try {
              const params = { ...filterParams(s), type, format: f.format };
              await download("/api/v1/export", params, `aperture-${type}.${f.ext}`);
            } catch (err) {
              setMessage(err instanceof ApiError ? err.message : String(err));
            } finally {
              setBusy("");
            }
          }}
        >
          {busy === f.format ? "…" : f.label}
        </button>
      ))}
      {message && (
        <span className="export-error" role="alert">
          {message}
        </span>
      )}
    </div>
  );
}
