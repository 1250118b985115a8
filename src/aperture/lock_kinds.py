"""What a futex wait was for: the kind of lock, and whether it was contention or idle waiting.

A futex word carries no type. The waiter's own stack does: the C library's
``pthread_mutex_lock`` or ``pthread_cond_wait`` (by name, in whatever libc build
the process maps), a language runtime's lock (Python's ``PyThread_acquire_lock``,
the GIL's ``take_gil``, Rust's and Go's futex mutexes), or a Python primitive
built on them (``threading.Condition.wait``). The frame nearest the wait that
names a known primitive decides, with the runtime's name winning over the C
library's below it (a Python ``Condition.wait`` is a condition variable even
though CPython takes a semaphore for it). Without a stack, the futex operation
is the fallback: a wait while the word was 2 is the "locked, with waiters"
protocol of mutexes; anything else stays an unclassified futex.

*Contention* is a thread wanting a lock another thread held (mutex, rwlock,
the GIL); *idle* is a thread waiting for work or a signal (condition
variables, semaphores, joins, barriers, parked threads).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from aperture.model import Frame, FrameKind

LockClass = Literal["contention", "idle", "unknown"]

# kind -> (label, class); the order is the dashboard's
KINDS: dict[str, tuple[str, LockClass]] = {
    "mutex": ("mutex", "contention"),
    "rwlock_read": ("rwlock (read)", "contention"),
    "rwlock_write": ("rwlock (write)", "contention"),
    "rwlock": ("rwlock", "contention"),  # a lock word both readers and writers wait on
    "gil": ("Python GIL", "contention"),
    "condvar": ("condition variable", "idle"),
    "semaphore": ("semaphore", "idle"),
    "join": ("thread join", "idle"),
    "barrier": ("barrier", "idle"),
    "park": ("parked thread", "idle"),
    "futex": ("futex", "unknown"),
}
UNKNOWN = "futex"

# Frames searched from the wait toward the root: the primitive is near the leaf.
SEARCH_DEPTH = 16

# The GIL outranks everything above it, and a Python primitive anything below the GIL.
GIL_LEVEL = 4

# (pattern on the name without leading underscores, kind, level): the highest level found wins.
_NATIVE: tuple[tuple[re.Pattern[str], str, int], ...] = tuple(
    (re.compile(p), kind, level)
    for p, kind, level in (
        # glibc (2.34+ names; older builds the same stems)
        (r"^(pthread_)?rwlock.*rdlock|^pthread_rwlock_(timed|clock)?rdlock", "rwlock_read", 1),
        (r"^(pthread_)?rwlock.*wrlock|^pthread_rwlock_(timed|clock)?wrlock", "rwlock_write", 1),
        (r"^pthread_mutex_(timed|clock)?lock|^pthread_mutex_cond_lock|^lll_lock_wait", "mutex", 1),
        (r"^pthread_cond_(timed|clock)?wait|^pthread_cond_wait_common", "condvar", 1),
        # a signaller waiting for the old group's waiters to leave (glibc 2.25+)
        (r"^pthread_cond_(signal|broadcast)|^condvar_quiesce", "condvar", 1),
        (r"^(new_)?sem_(timed|clock)?wait|^new_sem_wait_slow|^do_futex_wait", "semaphore", 1),
        (r"^pthread_(clock|timed|try)?join|^pthread_clockjoin_ex", "join", 1),
        (r"^pthread_barrier_wait", "barrier", 1),
        # CPython: threading.Lock and the GIL
        (
            r"^PyThread_acquire_lock|^PyMutex_Lock|^PyMutex_LockTimed|^lock_PyThread_acquire_lock",
            "mutex",
            2,
        ),
        # the GIL outranks every primitive above it: a Condition.wait that got its lock
        # back and waits for the GIL is waiting for the GIL
        (r"^take_gil$|^PyEval_AcquireThread|^PyEval_RestoreThread", "gil", GIL_LEVEL),
        # a C primitive made of a Python lock: the queue a thread pool's workers idle on
        (r"^queue_SimpleQueue_get", "semaphore", 3),
        # Rust std and parking_lot
        (r"sync::.*mutex.*::lock_contended|raw_mutex::RawMutex::lock_slow", "mutex", 2),
        (r"rwlock.*::read_contended|RawRwLock::lock_shared_slow", "rwlock_read", 2),
        (r"rwlock.*::write_contended|RawRwLock::lock_exclusive_slow", "rwlock_write", 2),
        (r"condvar.*::wait|Condvar::wait", "condvar", 2),
        (r"^std::thread::park|::Thread::park|^parking_lot_core::parking_lot::park", "park", 1),
        # Go runtime
        (r"^runtime\.lock2$|^runtime\.lockWithRank", "mutex", 2),
        (r"^runtime\.note(t)?sleep", "park", 2),
    )
)

# Python primitives by (file name suffix, qualified name).
_PYTHON: dict[tuple[str, str], str] = {
    ("threading.py", "Condition.wait"): "condvar",
    ("threading.py", "Condition.wait_for"): "condvar",
    ("threading.py", "Event.wait"): "condvar",
    ("threading.py", "Semaphore.acquire"): "semaphore",
    ("threading.py", "BoundedSemaphore.acquire"): "semaphore",
    ("threading.py", "Thread.join"): "join",
    ("threading.py", "Thread._wait_for_tstate_lock"): "join",
    ("threading.py", "Barrier.wait"): "barrier",
    ("threading.py", "Barrier._wait"): "barrier",
    ("queue.py", "Queue.get"): "condvar",
    ("queue.py", "Queue.put"): "condvar",
}

LOCK_OP_WAIT, LOCK_OP_LOCK_PI = 0, 2
FLAG_VAL2 = 0x100


def _plain(name: str) -> str:
    """A symbol without leading underscores and glibc's internal ``__GI_`` alias prefix."""
    name = name.lstrip("_")
    return name[3:].lstrip("_") if name.startswith("GI_") else name


def classify(stack: Sequence[Frame]) -> str | None:
    """The kind of lock a waiter's stack (root first) waited on, or None if none is named."""
    best: tuple[int, str] | None = None
    for frame in list(reversed(stack))[:SEARCH_DEPTH]:
        if frame.kind is FrameKind.PYTHON:
            kind = _PYTHON.get((frame.module.rsplit("/", 1)[-1], frame.name))
            if kind is not None and (best is None or best[0] < GIL_LEVEL):
                return kind  # the Python primitive the code called
            if best is not None:
                return best[1]  # the leaf-most Python frame is the caller: native decides
            continue
        name = _plain(frame.name)
        for pattern, kind, level in _NATIVE:
            if (best is None or level > best[0]) and pattern.search(name):
                best = (level, kind)
                break
    return best[1] if best else None


def combined(kinds: Counter[str]) -> str:
    """One lock word's kind from its records' kinds (weighted): readers and writers of one
    rwlock make an ``rwlock``; otherwise the kind with the most weight."""
    present = {k for k, n in kinds.items() if n > 0}
    if not present:
        return ""
    if {"rwlock_read", "rwlock_write"} <= present:
        return "rwlock"
    return max(sorted(present), key=lambda k: kinds[k])


def from_op(flags: int) -> str:
    """The kind as the futex operation alone tells it (no stack to read)."""
    op = flags & 0xFF
    if op == LOCK_OP_LOCK_PI or (op == LOCK_OP_WAIT and flags & FLAG_VAL2):
        return "mutex"
    return UNKNOWN


def lock_class(kind: str) -> LockClass:
    return KINDS.get(kind, KINDS[UNKNOWN])[1]


def label(kind: str) -> str:
    return KINDS.get(kind, KINDS[UNKNOWN])[0]


def leaf_frame(kind: str) -> Frame:
    """The frame a waiter's stack ends with in flamegraphs: its class and kind."""
    return Frame(f"[{lock_class(kind)}: {label(kind)}]", "[lock]", FrameKind.UNKNOWN)
