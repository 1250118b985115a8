"""Simulated agents: real gRPC clients pushing bench/ingest.py's batches, with retries.

Each agent produces one batch per interval (open loop, staggered) with its own
increasing sequence and delivers them in order, one in flight, retrying a
failed push like the real agent does (exponential backoff, same sequence)
until it is acknowledged or the run's retry deadline passes. What was
acknowledged is recorded per (agent, sequence) with its sample count, so a run
can check the store holds every one of them.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field

import _run  # noqa: F401  (puts bench/ and tests/ on sys.path)
import grpc

from aperture.proto.v1 import aggregator_pb2 as apb
from ingest import header, percentile, template  # bench/ingest.py

__all__ = ["DEFAULT_MIX", "Fleet", "FleetStats", "percentile"]

# Distinct stacks per 10 s CPU window, and the share of agents sending that many.
DEFAULT_MIX: tuple[tuple[int, float], ...] = ((200, 0.5), (600, 0.3), (2000, 0.2))


@dataclass
class FleetStats:
    """What a fleet sent and what the aggregator acknowledged."""

    acked: dict[tuple[str, int], int] = field(default_factory=dict)  # -> samples
    latencies_s: list[float] = field(default_factory=list)  # acknowledged first tries
    attempts: int = 0
    errors: int = 0
    gave_up: set[tuple[str, int]] = field(default_factory=set)
    error_kinds: dict[str, int] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)  # monotonic time of every ack
    delays_s: list[float] = field(default_factory=list)  # window due -> acknowledged

    def p(self, q: float) -> float:
        return float(percentile(self.latencies_s, q)) * 1e3

    def acked_samples(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (agent, _), n in self.acked.items():
            out[agent] = out.get(agent, 0) + n
        return out


def agent_name(i: int) -> str:
    return f"sim-{i:05d}"


class Fleet:
    """``agents`` simulated agents; batch sizes follow ``mix`` (stacks, share)."""

    def __init__(
        self,
        target: str,
        token: str | None,
        agents: int,
        *,
        interval_s: float = 10.0,
        mix: tuple[tuple[int, float], ...] = DEFAULT_MIX,
        timeout_s: float = 10.0,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.md = (("authorization", f"Bearer {token}"),) if token else ()
        self.agents = agents
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.templates = [(template(seed + i, stacks), share) for i, (stacks, share) in
                          enumerate(mix)]  # fmt: skip
        rng = random.Random(seed)
        bodies = [t for t, _ in self.templates]
        weights = [share for _, share in self.templates]
        self.body = [rng.choices(bodies, weights)[0] for _ in range(agents)]
        self.stats = FleetStats()

    def mean_stacks(self, mix: tuple[tuple[int, float], ...] = DEFAULT_MIX) -> float:
        return sum(stacks * share for stacks, share in mix)

    async def run(self, seconds: float, retry_for_s: float = 120.0) -> FleetStats:
        """Push for ``seconds``, then keep retrying unacknowledged pushes up to ``retry_for_s``.

        Like the real agent, each simulated agent has one push in flight: its windows queue
        behind the oldest undelivered one, which is retried with backoff (and after the
        aggregator's retry-after hint on success).
        """
        channel = grpc.aio.insecure_channel(
            self.target, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        push = channel.unary_unary(
            "/aperture.v1.Aggregator/Push",
            request_serializer=lambda b: b,
            response_deserializer=apb.PushResponse.FromString,
        )
        start = time.monotonic()
        give_up_at = start + seconds + retry_for_s
        rounds = max(1, int(seconds / self.interval_s))
        gap = self.interval_s / self.agents
        s = self.stats

        async def agent_loop(agent: int) -> None:
            body, samples = self.body[agent]
            name = agent_name(agent)
            pending: collections.deque[tuple[int, float]] = collections.deque()
            next_seq, next_due = 1, start + agent * gap
            backoff, not_before, retried = 0.5, 0.0, False
            while True:
                now = time.monotonic()
                while next_seq <= rounds and now >= next_due:
                    pending.append((next_seq, next_due))
                    next_seq, next_due = next_seq + 1, next_due + self.interval_s
                if not pending:
                    if next_seq > rounds:
                        return
                    await asyncio.sleep(next_due - now)
                    continue
                if now >= give_up_at:
                    s.gave_up.update((name, seq) for seq, _ in pending)
                    return
                if now < not_before:
                    wake = min(not_before, next_due) if next_seq <= rounds else not_before
                    await asyncio.sleep(max(0.0, wake - now))
                    continue
                seq, due = pending[0]
                t0 = time.perf_counter()
                s.attempts += 1
                try:
                    response = await push(body + header(agent, seq), metadata=self.md,
                                          timeout=self.timeout_s)  # fmt: skip
                except grpc.aio.AioRpcError as exc:
                    s.errors += 1
                    kind = exc.code().name
                    s.error_kinds[kind] = s.error_kinds.get(kind, 0) + 1
                    retried = True
                    not_before = time.monotonic() + random.uniform(0, backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if not retried:
                    s.latencies_s.append(time.perf_counter() - t0)
                done = time.monotonic()
                s.acked[(name, seq)] = samples
                s.ack_times.append(done)
                s.delays_s.append(done - due)
                pending.popleft()
                backoff, retried = 0.5, False
                not_before = done + response.retry_after_ms / 1000

        await asyncio.gather(*(agent_loop(a) for a in range(self.agents)))
        await channel.close()
        return s
