"""Lock kinds from waiting stacks: real stacks the agent recorded on this kind of host."""

from __future__ import annotations

import pytest

from aperture import lock_kinds
from aperture.model import Frame, FrameKind


def stack(*leaf_first: str) -> tuple[Frame, ...]:
    """Frames root first from names leaf first; ``file.py:Qual.name`` is a Python frame."""
    frames = []
    for name in leaf_first:
        if ".py:" in name:
            path, qual = name.split(":")
            frames.append(Frame(qual, f"/usr/lib/python3.11/{path}", FrameKind.PYTHON))
        else:
            frames.append(Frame(name, "libc.so.6", FrameKind.USER))
    return tuple(reversed(frames))


@pytest.mark.parametrize(
    ("leaf_first", "kind"),
    [
        # glibc mutex, through its internal alias
        (("__GI___lll_lock_wait", "pthread_mutex_lock", "hold_the_lock"), "mutex"),
        (("__futex_abstimed_wait_common", "pthread_rwlock_rdlock", "read_section"),
         "rwlock_read"),
        (("__futex_abstimed_wait_common", "__pthread_rwlock_wrlock_full64", "w"), "rwlock_write"),
        (("__futex_abstimed_wait_common", "___pthread_cond_wait", "wait_for_work"), "condvar"),
        # a signaller waiting for the old group's waiters to leave
        (("__futex_abstimed_wait_common", "pthread_cond_signal", "elf_sections"), "condvar"),
        (("__futex_abstimed_wait_common", "__new_sem_wait_slow64.constprop.0", "sem_wait"),
         "semaphore"),
        (("__futex_abstimed_wait_common", "__pthread_clockjoin_ex", "main"), "join"),
        # the GIL, and the GIL's own mutex
        (("__futex_abstimed_wait_common", "pthread_cond_timedwait", "take_gil",
          "PyEval_RestoreThread"), "gil"),
        (("__GI___lll_lock_wait", "__pthread_mutex_cond_lock", "pthread_cond_timedwait",
          "take_gil"), "gil"),
        # threading.Lock in user code: a Python lock, contended
        (("__futex_abstimed_wait_common", "__new_sem_wait_slow64.constprop.0",
          "PyThread_acquire_lock_timed", "acquire_timed", "lock_PyThread_acquire_lock",
          "app.py:worker"), "mutex"),
        # Condition.wait takes a lock to sleep on: a condition variable
        (("__futex_abstimed_wait_common", "__new_sem_wait_slow64.constprop.0",
          "PyThread_acquire_lock_timed", "acquire_timed", "lock_PyThread_acquire_lock",
          "threading.py:Condition.wait", "app.py:consume"), "condvar"),
        # ... and once it has the lock back, waiting for the GIL is waiting for the GIL
        (("__futex_abstimed_wait_common", "pthread_cond_timedwait", "take_gil",
          "PyEval_RestoreThread", "acquire_timed", "lock_PyThread_acquire_lock",
          "threading.py:Condition.wait"), "gil"),
        (("__futex_abstimed_wait_common", "PyThread_acquire_lock_timed",
          "threading.py:Thread._wait_for_tstate_lock", "threading.py:Thread.join"), "join"),
        # a thread pool's idle worker: SimpleQueue.get is built on a Python lock
        (("__futex_abstimed_wait_common", "__new_sem_wait_slow64.constprop.0",
          "PyThread_acquire_lock_timed", "_queue_SimpleQueue_get_impl",
          "_queue_SimpleQueue_get", "thread.py:_worker"), "semaphore"),
        # Rust and Go
        (("syscall", "std::sys::pal::unix::futex::futex_wait",
          "std::sys::sync::mutex::futex::Mutex::lock_contended"), "mutex"),
        (("runtime.futex", "runtime.futexsleep", "runtime.lock2"), "mutex"),
        (("runtime.futex", "runtime.futexsleep", "runtime.notesleep", "runtime.stopm"), "park"),
    ],
)  # fmt: skip
def test_the_primitive_nearest_the_wait_names_the_kind(
    leaf_first: tuple[str, ...], kind: str
) -> None:
    assert lock_kinds.classify(stack(*leaf_first)) == kind


def test_no_primitive_is_no_kind_and_the_op_decides() -> None:
    assert lock_kinds.classify(stack("__futex_abstimed_wait_common", "[unknown]")) is None
    assert lock_kinds.from_op(0 | lock_kinds.FLAG_VAL2) == "mutex"  # FUTEX_WAIT on 2
    assert lock_kinds.from_op(2) == "mutex"  # FUTEX_LOCK_PI
    assert lock_kinds.from_op(1) == "futex"  # a bitset wait: no telling
    assert lock_kinds.lock_class("futex") == "unknown"


def test_readers_and_writers_of_one_word_are_an_rwlock() -> None:
    from collections import Counter

    assert lock_kinds.combined(Counter({"rwlock_read": 5, "rwlock_write": 1})) == "rwlock"
    assert lock_kinds.combined(Counter({"condvar": 5, "mutex": 1})) == "condvar"
    assert lock_kinds.combined(Counter()) == ""
    assert lock_kinds.leaf_frame("gil").name == "[contention: Python GIL]"
