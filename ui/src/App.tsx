import { useEffect, useState, useSyncExternalStore } from "react";
import { auth } from "./api/client";
import { FiltersBar } from "./components/FiltersBar";
import { LoginDialog } from "./components/LoginDialog";
import { isRelative } from "./state/time";
import { LIVE_INTERVAL_MS, LiveContext } from "./state/live";
import { VIEWS, VIEW_TITLES, type View } from "./state/url";
import { useUrlState } from "./state/useUrlState";
import { AlertsView } from "./views/Alerts";
import { DiffView } from "./views/Diff";
import { FlamegraphView } from "./views/Flamegraph";
import { Link } from "./views/Overview";
import { OverviewView } from "./views/Overview";
import { LocksView } from "./views/Locks";
import { SyscallsView } from "./views/Syscalls";
import { TimelineView } from "./views/Timeline";

const VIEW_COMPONENTS: Record<View, () => React.JSX.Element> = {
  overview: OverviewView,
  flamegraph: FlamegraphView,
  diff: DiffView,
  timeline: TimelineView,
  syscalls: SyscallsView,
  locks: LocksView,
  alerts: AlertsView,
};

function useLiveTick(enabled: boolean): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!enabled) return;
    const t = setInterval(() => {
      // no refresh while the tab is hidden
      if (document.visibilityState === "visible") setTick((n) => n + 1);
    }, LIVE_INTERVAL_MS);
    return () => clearInterval(t);
  }, [enabled]);
  return tick;
}

function SignOut() {
  const hasToken = useSyncExternalStore(auth.subscribe, () => auth.token !== null);
  if (!hasToken) return null;
  return (
    <button type="button" className="link-button small" onClick={() => auth.clear()} title="Forget the token kept for this tab">
      sign out
    </button>
  );
}

export function App() {
  const [s] = useUrlState();
  const tick = useLiveTick(s.live && isRelative(s.from) && isRelative(s.to));
  const ViewComponent = VIEW_COMPONENTS[s.view];
  useEffect(() => {
    document.title = `${VIEW_TITLES[s.view]} · Aperture`;
  }, [s.view]);
  return (
    <LiveContext.Provider value={tick}>
      <header className="topbar">
        <Link to={{ view: "overview" }} className="brand">
          <span className="logo" aria-hidden="true">
            <span />
            <span />
            <span />
          </span>
          Aperture
        </Link>
        <nav className="tabs" aria-label="Views">
          {VIEWS.map((v) => (
            <Link key={v} to={{ view: v, focus: [], search: "", sandwich: false }} className={v === s.view ? "tab active" : "tab"}>
              {VIEW_TITLES[v]}
            </Link>
          ))}
        </nav>
        <span className="grow" />
        <SignOut />
      </header>
      {/* rules are not scoped by the time range or the filters */}
      {s.view !== "alerts" && <FiltersBar />}
      <main>
        {/* remount per view: each view's local state starts fresh */}
        <ViewComponent key={s.view} />
      </main>
      <LoginDialog />
    </LiveContext.Provider>
  );
}
