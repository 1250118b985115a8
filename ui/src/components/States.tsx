import type { ReactNode } from "react";
import type { ApiError } from "../api/client";
import { useUrlState } from "../state/useUrlState";

export function Loading({ what }: { what: string }) {
  return (
    <div className="state state-loading" role="status" data-testid="loading">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
    </div>
  );
}

export function ErrorBox({ error, retry }: { error: ApiError; retry?: () => void }) {
  return (
    <div className="state state-error" role="alert" data-testid="error">
      <strong>Could not load this view.</strong> {error.message}
      {retry && error.status !== 401 && (
        <button type="button" onClick={retry}>
          Retry
        </button>
      )}
    </div>
  );
}

/** No samples: say how to get some (widen the range, or look at the agents). */
export function Empty({ children }: { children?: ReactNode }) {
  const [s, update] = useUrlState();
  return (
    <div className="state state-empty" data-testid="empty">
      <div>
        <strong>No samples in this range — widen it or check the agent.</strong>
      </div>
      {children && <div className="muted">{children}</div>}
      <div className="state-actions">
        {s.from !== "-24h" && (
          <button type="button" onClick={() => update({ from: "-24h", to: "now" })}>
            Show the last 24 hours
          </button>
        )}
        {(s.host || s.comm || s.pid || Object.keys(s.labels).length > 0) && (
          <button type="button" onClick={() => update({ host: "", comm: "", pid: "", labels: {} })}>
            Clear the filters
          </button>
        )}
        <button type="button" onClick={() => update({ view: "overview" })}>
          See which agents push
        </button>
      </div>
    </div>
  );
}

/** Loading / error / data, with the last good data kept visible while reloading. */
export function Guard<T>({
  what,
  result,
  children,
}: {
  what: string;
  result: { data: T | undefined; error: ApiError | undefined; loading: boolean; reload: () => void };
  children: (data: T) => ReactNode;
}) {
  if (result.error) return <ErrorBox error={result.error} retry={result.reload} />;
  if (result.data === undefined) return <Loading what={what} />;
  return <>{children(result.data)}</>;
}
