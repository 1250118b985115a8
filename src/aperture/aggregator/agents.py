"""The agents that pushed recently, bounded in number and age, and their metrics.

Every distinct ``agent_id`` used to stay for the life of the process, with a
series of its own in ``/metrics``: pushes under ever new ids (one ingest token
is enough) grew both without end. Now an agent silent for :data:`AGENT_IDLE_S`
is forgotten, at most :data:`MAX_AGENTS` are held (the least recently pushed
forgotten first), and only the first :data:`MAX_LAST_SEEN_SERIES` held have an
``aperture_agent_last_seen_timestamp_seconds`` series; ``aperture_agents_untracked``
counts the others. docs/api.md states these limits.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from aperture.aggregator.buffer import AgentInfo

if TYPE_CHECKING:
    from aperture.aggregator.metrics import Metrics
    from aperture.proto.v1 import profile_pb2 as pb

# A day: an agent_silent_seconds rule on a dead host keeps firing that long.
AGENT_IDLE_S = 24 * 3600
# Ten times the 400 agents one aggregator was measured to keep up with
# (docs/reliability.md); at most ~11 KB each with every identity limit reached.
MAX_AGENTS = 5_000
MAX_LAST_SEEN_SERIES = 1_000


class AgentTable:
    """Who pushed and when (``GET /api/v1/agents``, ``agent_silent_seconds`` rules).

    The caller serializes :meth:`record` calls (the ingest lock).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        idle_s: float = AGENT_IDLE_S,
        max_agents: int = MAX_AGENTS,
        max_series: int = MAX_LAST_SEEN_SERIES,
    ) -> None:
        self.metrics = metrics
        self.idle_ns = int(idle_s * 1e9)
        self.max_agents = max_agents
        self.max_series = max_series
        # The API and the alert rules iterate this from other threads without a lock,
        # so it is replaced, never resized in place, when agents come or go.
        self.agents: dict[str, AgentInfo] = {}
        self._order: OrderedDict[str, None] = OrderedDict()  # least recently pushed first
        self._series: set[str] = set()  # the agents with a last_seen series

    def record(self, agent: pb.AgentIdentity, now_ns: int) -> AgentInfo:
        """The agent's entry (new if unknown) as of a push at ``now_ns``."""
        agent_id = agent.agent_id
        info = self.agents.get(agent_id)
        self._order.pop(agent_id, None)
        gone = self._idle(now_ns)
        if info is None or gone:
            table = dict(self.agents)
            if info is None:
                info = table[agent_id] = AgentInfo(agent_id, agent.host, first_seen_ns=now_ns)
                while len(self._order) >= self.max_agents:
                    gone.append(self._order.popitem(last=False)[0])
            for old in gone:
                table.pop(old, None)
            self.agents = table
            self._forget(gone)
        self._order[agent_id] = None
        info.host, info.labels, info.version = agent.host, dict(agent.labels), agent.version
        info.last_push_ns = now_ns
        if agent_id in self._series or len(self._series) < self.max_series:
            self._series.add(agent_id)
            self.metrics.agent_last_seen.labels(agent_id).set(now_ns / 1e9)
        self.metrics.agents.set(len(self._order))
        self.metrics.agents_untracked.set(len(self._order) - len(self._series))
        return info

    def _idle(self, now_ns: int) -> list[str]:
        """Take the agents silent for longer than the idle limit out of the order."""
        gone = []
        while self._order:
            oldest = next(iter(self._order))
            info = self.agents.get(oldest)
            if info is not None and now_ns - info.last_push_ns <= self.idle_ns:
                break
            self._order.popitem(last=False)
            gone.append(oldest)
        return gone

    def _forget(self, gone: list[str]) -> None:
        for agent_id in gone:
            if agent_id in self._series:
                self._series.discard(agent_id)
                self.metrics.agent_last_seen.remove(agent_id)
        self.metrics.agents_forgotten.inc(len(gone))
