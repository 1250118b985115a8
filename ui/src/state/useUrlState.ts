// The URL as the one store of view state: read with useUrlState, change with
// navigate (push a history entry) or replace (for typing, hovering, live).

import { useCallback, useSyncExternalStore } from "react";
import { formatUrl, parseUrl, type UrlState } from "./url";

const EVENT = "aperture:navigate";

function subscribe(fn: () => void): () => void {
  window.addEventListener("popstate", fn);
  window.addEventListener(EVENT, fn);
  return () => {
    window.removeEventListener("popstate", fn);
    window.removeEventListener(EVENT, fn);
  };
}

let cacheKey = "";
let cacheState: UrlState | null = null;

function snapshot(): UrlState {
  const key = window.location.pathname + window.location.search;
  if (key !== cacheKey || cacheState === null) {
    cacheKey = key;
    cacheState = parseUrl(window.location.pathname, window.location.search);
  }
  return cacheState;
}

export function current(): UrlState {
  return snapshot();
}

export function go(next: UrlState, replace = false): void {
  const url = formatUrl(next);
  if (url === window.location.pathname + window.location.search) return;
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  window.dispatchEvent(new Event(EVENT));
}

export type Update = (patch: Partial<UrlState>, opts?: { replace?: boolean }) => void;

export function useUrlState(): [UrlState, Update] {
  const state = useSyncExternalStore(subscribe, snapshot);
  const update = useCallback<Update>((patch, opts) => {
    go({ ...snapshot(), ...patch }, opts?.replace ?? false);
  }, []);
  return [state, update];
}

/** href of the state with a patch applied (for real links: middle-click works). */
export function hrefFor(state: UrlState, patch: Partial<UrlState>): string {
  return formatUrl({ ...state, ...patch });
}
