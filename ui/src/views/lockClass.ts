// Lock rows by class, for the Locks view's switch and the overview's contended locks.

import type { LockRow } from "../api/types";
import { LOCK_CLASSES, type LockClass } from "../state/url";

export const CLASS_TITLES: Record<LockClass, string> = {
  contention: "Contention",
  idle: "Idle waits",
  unknown: "Unclassified",
};

export const CLASS_MEANINGS: Record<LockClass, string> = {
  contention: "A thread wanted a lock another thread held.",
  idle: "Threads waited for work or a signal (condition variables, semaphores, joins…): no other thread held them up.",
  unknown: "Futex waits whose waiters' stacks name no known lock.",
};

/** The row's class; a class this dashboard does not know counts as unknown. */
export function classOf(row: LockRow): LockClass {
  return (LOCK_CLASSES as readonly string[]).includes(row.lock_class) ? (row.lock_class as LockClass) : "unknown";
}

export function countByClass(rows: readonly LockRow[]): Record<LockClass, number> {
  const counts: Record<LockClass, number> = { contention: 0, idle: 0, unknown: 0 };
  for (const r of rows) counts[classOf(r)] += 1;
  return counts;
}

/** The class to show: the selected lock's, else the one asked for if it has locks, else the first that has. */
export function shownClass(rows: readonly LockRow[], wanted: LockClass, selected: LockRow | null): LockClass {
  if (selected) return classOf(selected);
  const counts = countByClass(rows);
  if (counts[wanted] > 0) return wanted;
  return LOCK_CLASSES.find((c) => counts[c] > 0) ?? wanted;
}
