"""A background thread that writes accepted batches to the store in groups.

``submit`` only appends to a queue (microseconds, no I/O), so the asyncio
loop never waits on ClickHouse. The thread parses what was queued, flushes
when ``flush_rows`` rows wait or the oldest batch has waited
``flush_interval_s``, and on failure keeps the group queued and retries with
exponential backoff. The queue is bounded in bytes by its callers: the
aggregator refuses a push that would not fit (``has_room``), and a journal
replay at start submits only what the journal held, which was admitted so. No
queued batch is ever dropped: ``on_done`` hears of each one once it is in the
store (or refused by it as unreadable), and only then may the aggregator's
journal let it go.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aperture.proto.v1 import profile_pb2 as pb
from aperture.storage.store import InsertResult, Prepared, Store, as_batch
from aperture.wire import Decoded

log = logging.getLogger("aperture.storage")

Item = pb.ProfileBatch | Decoded | bytes


@dataclass(frozen=True)
class WriterStats:
    """Counters for /metrics (``flush_total{status}``, ``pending_rows``, ...)."""

    flush_ok: int
    flush_failed: int
    pending_batches: int
    pending_rows: int  # rows of the queued batches parsed so far
    pending_bytes: int
    written_batches: int
    written_rows: int
    duplicate_batches: int  # already stored: skipped
    rejected_batches: int  # malformed: skipped
    flush_seconds_total: float
    flush_seconds_last: float
    retry_in_s: float  # 0 unless waiting to retry a failed flush
    last_error: str

    @property
    def flush_total(self) -> dict[str, int]:
        return {"ok": self.flush_ok, "error": self.flush_failed}


@dataclass(eq=False)
class _Queued:
    item: Item
    size: int
    at: float
    batch: pb.ProfileBatch | None = None
    rows: int = 0
    tag: object = None  # the submitter's, handed back to on_done


def _size(item: Item) -> int:
    """Bytes a queued batch holds: exact for bytes, estimated otherwise (ByteSize costs ~1 ms)."""
    if isinstance(item, bytes):
        return len(item)
    if isinstance(item, pb.ProfileBatch):
        return (
            32 * len(item.strings) + 24 * len(item.frames.name) + 4 * len(item.stacks.frames)
            + 24 * len(item.cpu.stack) + 200 * (len(item.lock.locks) + len(item.syscall.syscalls))
            + 200
        )  # fmt: skip
    rows = sum(len(p.samples) + len(p.locks) + len(p.syscalls) for p in item.profiles.values())
    return 100 * rows + 200


def _rows(batch: pb.ProfileBatch) -> int:
    return len(batch.cpu.stack) + 2 * len(batch.lock.locks) + len(batch.syscall.syscalls)


@dataclass
class _Counters:
    flush_ok: int = 0
    flush_failed: int = 0
    written_batches: int = 0
    written_rows: int = 0
    duplicate_batches: int = 0
    rejected_batches: int = 0
    flush_seconds_total: float = 0.0
    flush_seconds_last: float = 0.0
    last_error: str = ""
    pending_rows: int = 0
    pending_bytes: int = 0
    failures: int = 0  # consecutive
    retry_at: float = 0.0
    busy: set[int] = field(default_factory=set)


@dataclass(eq=False)
class _Inflight:
    """A group whose rows a helper thread is writing to the store."""

    group: list[_Queued]
    started: float
    error: BaseException | None = None
    result: InsertResult | None = None
    thread: threading.Thread = field(default_factory=threading.Thread)

    def start(self, store: Store, prepared: Prepared) -> None:
        def write() -> None:
            try:
                self.result = store.write(prepared)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=write, name="aperture-storage-insert", daemon=True)
        self.thread.start()


class StorageWriter:
    """Queue batches with :meth:`submit`; a thread writes them to ``store``."""

    def __init__(
        self,
        store: Store,
        *,
        flush_rows: int = 100_000,
        flush_interval_s: float = 2.0,
        max_pending_bytes: int = 256 << 20,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_flush: Callable[[str, float], None] | None = None,
        on_done: Callable[[list[object]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.max_pending_bytes = max_pending_bytes
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._on_flush = on_flush
        self._on_done = on_done  # with the tags of batches the store now holds or refused
        self._clock = clock
        self._queue: collections.deque[_Queued] = collections.deque()
        self._c = _Counters()
        self._cv = threading.Condition()
        self._urgent = False  # flush whatever is queued now (flush/drain)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="aperture-storage", daemon=True)

    def start(self) -> StorageWriter:
        self._thread.start()
        return self

    # -- caller side (any thread, never blocks on I/O) -------------------

    def submit(self, item: Item, tag: object = None) -> None:
        """Queue one accepted batch (serialized bytes, a ProfileBatch or a Decoded).

        ``tag`` comes back through ``on_done`` once the batch is in the store.
        """
        size = _size(item)
        with self._cv:
            self._queue.append(_Queued(item, size, self._clock(), tag=tag))
            self._c.pending_bytes += size
            self._cv.notify_all()

    def fill(self) -> float:
        """The queue's bytes over its byte bound (can pass 1: one batch always fits)."""
        with self._cv:
            return self._c.pending_bytes / self.max_pending_bytes if self.max_pending_bytes else 1.0

    def has_room(self, size: int) -> bool:
        """Whether a batch of ``size`` bytes fits the queue's byte bound."""
        with self._cv:
            return not self._queue or self._c.pending_bytes + size <= self.max_pending_bytes

    def stats(self) -> WriterStats:
        with self._cv:
            c = self._c
            return WriterStats(
                flush_ok=c.flush_ok,
                flush_failed=c.flush_failed,
                pending_batches=len(self._queue),
                pending_rows=c.pending_rows,
                pending_bytes=c.pending_bytes,
                written_batches=c.written_batches,
                written_rows=c.written_rows,
                duplicate_batches=c.duplicate_batches,
                rejected_batches=c.rejected_batches,
                flush_seconds_total=c.flush_seconds_total,
                flush_seconds_last=c.flush_seconds_last,
                retry_in_s=max(0.0, c.retry_at - self._clock()) if c.failures else 0.0,
                last_error=c.last_error,
            )

    def flush(self, timeout: float) -> bool:
        """Write everything queued now; True when the queue emptied within ``timeout``.

        Waits for the batches queued when it was called, not for those that arrive
        meanwhile (under a continuous ingest the queue is never empty for long).
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = True
            self._cv.notify_all()
            wanted = {id(q) for q in self._queue}
            while self._thread.is_alive() and any(id(q) in wanted for q in self._queue):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.1))
            self._urgent = False
            return not self._queue

    def drain(self, timeout: float) -> bool:
        """Flush, then stop the thread (shutdown); True when nothing was left behind."""
        emptied = self.flush(timeout) if self._thread.is_alive() else not self._queue
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=max(1.0, timeout))
        if not emptied:
            log.warning("storage writer stopped with %d batches unwritten", len(self._queue))
        return emptied

    # -- the thread ------------------------------------------------------

    def _run(self) -> None:
        # While one group is in ClickHouse (GIL released), the next one is prepared
        # in Python: two cores, about twice the ingest rate under a backlog.
        inflight: _Inflight | None = None
        while True:
            with self._cv:
                group = self._next_group(pipelined=inflight is not None)
                while group is None and inflight is None and not self._stop:
                    self._cv.wait(self._wait_s())
                    group = self._next_group(pipelined=False)
                if group is None and inflight is None:
                    return
                if group is not None:
                    self._c.busy |= {id(q) for q in group}
            prepared: Prepared | BaseException | None = None
            started = time.perf_counter()
            if group is not None:
                try:
                    prepared = self.store.prepare([q.batch for q in group if q.batch is not None])
                except Exception as exc:
                    prepared = exc
            if inflight is not None:
                inflight.thread.join()
                ok = self._finish(inflight)
                inflight = None
                if not ok and group is not None:  # retry the failed group first, in order
                    with self._cv:
                        self._c.busy -= {id(q) for q in group}
                    continue
            if group is None or prepared is None:
                continue
            if isinstance(prepared, BaseException):
                self._finish(_Inflight(group, started, error=prepared))
                continue
            inflight = _Inflight(group, started)
            inflight.start(self.store, prepared)

    def _wait_s(self) -> float:
        now = self._clock()
        c = self._c
        if c.failures:
            return max(0.01, c.retry_at - now)
        if self._queue:
            return max(0.01, self._queue[0].at + self.flush_interval_s - now)
        return 1.0

    def _next_group(self, *, pipelined: bool) -> list[_Queued] | None:
        """The oldest batches to write now, or None when nothing is due (lock held).

        ``pipelined``: a group is being written; only a full group goes next to it.
        """
        if not self._queue:
            return None
        c = self._c
        now = self._clock()
        if c.failures and now < c.retry_at:
            return None
        self._cv.release()  # parse outside the lock: submit must never wait on it
        try:
            self._parse()
        finally:
            self._cv.acquire()
        free = [q for q in self._queue if id(q) not in c.busy]
        if not free:
            return None
        due = self._urgent or c.failures or now - free[0].at >= self.flush_interval_s
        group: list[_Queued] = []
        rows = 0
        for q in free:
            if q.batch is None or (group and rows + q.rows > self.flush_rows):
                break
            group.append(q)
            rows += q.rows
        full = rows >= self.flush_rows or len(group) < len(free)
        if not group or (pipelined and not full) or not (due or full):
            return None
        return group

    def _parse(self) -> None:
        with self._cv:
            todo = [q for q in self._queue if q.batch is None]
        for q in todo:
            try:
                batch = as_batch(q.item)
            except Exception as exc:
                log.warning("dropping a batch the writer cannot read: %s", exc)
                with self._cv:
                    if q in self._queue:
                        self._queue.remove(q)
                        self._c.pending_bytes -= q.size
                        self._c.rejected_batches += 1
                self._done([q.tag])  # it can never be stored: nothing to keep it for
                continue
            rows = _rows(batch)
            size = q.size if isinstance(q.item, bytes) else _size(batch)
            with self._cv:
                q.batch, q.item, q.rows = batch, batch, rows
                if q in self._queue:
                    self._c.pending_rows += rows
                    self._c.pending_bytes += size - q.size
                q.size = size

    def _finish(self, job: _Inflight) -> bool:
        """Account for a written (or failed) group; True when it was written."""
        seconds = time.perf_counter() - job.started
        group = job.group
        done: list[object] = []
        with self._cv:
            c = self._c
            c.busy -= {id(q) for q in group}
            if job.error is not None or job.result is None:
                c.failures += 1
                c.flush_failed += 1
                c.last_error = str(job.error)
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (c.failures - 1))
                c.retry_at = self._clock() + delay * random.uniform(0.8, 1.0)
            else:
                result = job.result
                written = {id(q) for q in group}
                # Nothing leaves the queue but written groups: the group is still its head.
                while self._queue and id(self._queue[0]) in written:
                    q = self._queue.popleft()
                    c.pending_rows -= q.rows
                    c.pending_bytes -= q.size
                    done.append(q.tag)
                c.failures = 0
                c.flush_ok += 1
                c.written_batches += result.batches
                c.written_rows += result.samples + result.locks + result.syscalls
                c.duplicate_batches += result.duplicates
                c.rejected_batches += result.rejected
                c.flush_seconds_total += seconds
                c.flush_seconds_last = seconds
            self._cv.notify_all()
        if job.error is not None:
            log.warning("storage flush of %d batches failed (retry in %.1fs): %s",
                        len(group), max(0.0, c.retry_at - self._clock()), job.error)  # fmt: skip
            self._observe("error", seconds)
            return False
        self._observe("ok", seconds)
        self._done(done)
        return True

    def _done(self, tags: list[object]) -> None:
        if self._on_done is not None and tags:
            try:
                self._on_done(tags)
            except Exception:
                log.exception("the on_done callback failed")

    def _observe(self, status: str, seconds: float) -> None:
        if self._on_flush is not None:
            try:
                self._on_flush(status, seconds)
            except Exception:
                log.exception("the on_flush callback failed")
