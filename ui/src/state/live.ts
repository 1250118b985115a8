import { createContext } from "react";

/** Increments on every live refresh tick; data hooks refetch when it changes. */
export const LiveContext = createContext(0);

export const LIVE_INTERVAL_MS = 10_000;
