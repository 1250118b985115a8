"""Recent batches in memory, bounded in bytes and count, with dedupe by (agent, sequence)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aperture.model import EventType
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Summary


@dataclass(frozen=True)
class BufferedBatch:
    """A batch as received: its serialized bytes (exact memory cost) and a summary."""

    agent_id: str
    host: str
    sequence: int
    start_ns: int
    end_ns: int
    received_ns: int
    data: bytes  # uncompressed serialized ProfileBatch
    event_types: tuple[EventType, ...]
    cpu_samples: int = 0
    lock_contentions: int = 0
    lock_wait_ns: int = 0
    syscalls: int = 0
    stacks: int = 0

    @classmethod
    def of(
        cls, batch: pb.ProfileBatch, summary: Summary, data: bytes, received_ns: int
    ) -> BufferedBatch:
        types = []
        if batch.HasField("cpu"):
            types.append(EventType.CPU)
        if batch.HasField("lock"):
            types.append(EventType.LOCK)
        if batch.HasField("syscall"):
            types.append(EventType.SYSCALL)
        types += [EventType(st.type) for st in batch.samples]  # check() knows each
        return cls(
            agent_id=batch.agent.agent_id,
            host=batch.agent.host,
            sequence=batch.sequence,
            start_ns=batch.window_start_ns,
            end_ns=batch.window_end_ns,
            received_ns=received_ns,
            data=data,
            event_types=tuple(types),
            cpu_samples=summary.cpu_samples,
            lock_contentions=summary.lock_contentions,
            lock_wait_ns=summary.lock_wait_ns,
            syscalls=summary.syscalls,
            stacks=summary.stacks,
        )

    @property
    def size(self) -> int:
        return len(self.data)


class Deduper:
    """Remembers the last ``per_agent`` sequence numbers of each agent."""

    def __init__(self, per_agent: int = 100_000, max_agents: int = 100_000) -> None:
        self._per_agent = per_agent
        self._max_agents = max_agents
        self._seen: OrderedDict[str, tuple[set[int], deque[int]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, agent_id: str, sequence: int) -> bool:
        """Record a sequence; False when it was already seen (a retried push)."""
        with self._lock:
            entry = self._seen.get(agent_id)
            if entry is None:
                entry = self._seen[agent_id] = (set(), deque())
                while len(self._seen) > self._max_agents:
                    self._seen.popitem(last=False)
            else:
                self._seen.move_to_end(agent_id)
            seen, order = entry
            if sequence in seen:
                return False
            seen.add(sequence)
            order.append(sequence)
            if len(order) > self._per_agent:
                seen.discard(order.popleft())
            return True

    def contains(self, agent_id: str, sequence: int) -> bool:
        with self._lock:
            entry = self._seen.get(agent_id)
            return entry is not None and sequence in entry[0]


@dataclass
class BufferStats:
    bytes: int = 0
    batches: int = 0
    evictions: int = 0
    evicted_bytes: int = 0


class BatchBuffer:
    """Oldest-first eviction when over ``max_bytes`` or ``max_batches``."""

    def __init__(
        self,
        max_bytes: int,
        max_batches: int = 1_000_000,
        on_evict: Callable[[BufferedBatch], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_batches = max_batches
        self._items: deque[BufferedBatch] = deque()
        self._lock = threading.Lock()
        self._on_evict = on_evict
        self.stats = BufferStats()

    def add(self, batch: BufferedBatch) -> None:
        evicted = []
        with self._lock:
            self._items.append(batch)
            self.stats.bytes += batch.size
            self.stats.batches += 1
            while self._items and (
                self.stats.bytes > self.max_bytes or self.stats.batches > self.max_batches
            ):
                old = self._items.popleft()
                self.stats.bytes -= old.size
                self.stats.batches -= 1
                self.stats.evictions += 1
                self.stats.evicted_bytes += old.size
                evicted.append(old)
        if self._on_evict is not None:
            for old in evicted:
                self._on_evict(old)

    def snapshot(self) -> list[BufferedBatch]:
        """Every batch, oldest first (a copy: safe to use while ingest goes on)."""
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[BufferedBatch]:
        return iter(self.snapshot())

    @property
    def utilization(self) -> float:
        return self.stats.bytes / self.max_bytes if self.max_bytes else 0.0


@dataclass
class AgentInfo:
    agent_id: str
    host: str
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""
    first_seen_ns: int = 0
    last_push_ns: int = 0
    pushes: int = 0
    duplicates: int = 0
    bytes: int = 0
    last_sequence: int = 0
    push_times: deque[int] = field(default_factory=lambda: deque(maxlen=64))

    def rate_per_minute(self, now_ns: int) -> float:
        """Pushes per minute over the recent pushes still in view."""
        recent = [t for t in self.push_times if now_ns - t <= 600e9]
        if len(recent) < 2:
            return 0.0
        span = (recent[-1] - recent[0]) / 60e9
        return (len(recent) - 1) / span if span > 0 else 0.0
