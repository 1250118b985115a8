// Data hooks: fetch on parameter change, keep the last good answer while
// reloading (no flicker on live refresh), refetch after a new token.

import { useCallback, useContext, useEffect, useState, useSyncExternalStore } from "react";
import { ApiError, auth, getJson, query, type Params } from "./client";
import { LiveContext } from "../state/live";

export interface Result<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  /** ms the last request took */
  ms: number;
  reload: () => void;
}

export function useAuthVersion(): number {
  return useSyncExternalStore(auth.subscribe, () => auth.version);
}

/** GET path?params; null path = nothing to fetch yet. Refetches on each live tick. */
export function useApi<T>(path: string | null, params: Params = {}): Result<T> {
  const version = useAuthVersion();
  const tick = useContext(LiveContext);
  const [manual, setManual] = useState(0);
  const key = path === null ? null : path + query(params);
  const [state, setState] = useState<{ key: string | null; data?: T; error?: ApiError; loading: boolean; ms: number }>({
    key: null,
    loading: path !== null,
    ms: 0,
  });

  useEffect(() => {
    if (path === null) return;
    const ctrl = new AbortController();
    const t0 = performance.now();
    setState((s) => ({ ...s, loading: true }));
    getJson<T>(key!, {}, ctrl.signal).then(
      (data) => {
        // a new key drops data that belonged to other parameters
        setState({ key, data, loading: false, ms: performance.now() - t0 });
      },
      (err: unknown) => {
        if (ctrl.signal.aborted) return;
        const error =
          err instanceof ApiError ? err : new ApiError(`Request failed: ${String(err)}`, 0, path);
        setState((s) => ({ key, data: s.key === key ? s.data : undefined, error, loading: false, ms: 0 }));
      },
    );
    return () => ctrl.abort();
  }, [path, key, version, tick, manual]);

  const reload = useCallback(() => setManual((m) => m + 1), []);
  const fresh = state.key === key;
  return {
    data: fresh ? state.data : undefined,
    error: fresh ? state.error : undefined,
    loading: state.loading || !fresh,
    ms: state.ms,
    reload,
  };
}
