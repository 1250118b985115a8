"""The aggregator's Prometheus metrics, all prefixed ``aperture_``, in one registry."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from aperture.aggregator.agents import AGENT_IDLE_S, MAX_AGENTS, MAX_LAST_SEEN_SERIES
from aperture.profile_types import PROFILE_TYPES
from aperture.unwind_stats import NAME, unwind_stats

# The *_created series only double the output; rates come from the totals.
disable_created_metrics()  # type: ignore[no-untyped-call]

# aperture_agent_losses_total{name}: names are the agents' own (cpu.lost_samples, ...);
# a bounded set keeps a rogue agent from growing the exposition without end.
MAX_LOSS_NAMES = 64
UNWIND_RESULTS = ("complete", "truncated", "fp_only")

PUSH_STATUSES = (
    "accepted",
    "duplicate",
    "unauthenticated",
    "forbidden",
    "malformed",
    "outside_retention",
    "too_large",
    "unavailable",
    "empty",  # an import with nothing to store (a profile minus its prev_profile)
)


class Metrics:
    """Every metric the aggregator exports; see docs for their meaning."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.pushes = Counter("aperture_pushes", "Push calls by outcome.", ["status"], registry=r)
        for status in PUSH_STATUSES:
            self.pushes.labels(status)
        self.samples = Counter(
            "aperture_samples_ingested",
            "Samples ingested: CPU samples, lock contentions, syscalls, and the records of "
            "other stack types (off-CPU stacks, ...).",
            ["event_type"],
            registry=r,
        )
        for event_type in PROFILE_TYPES:
            self.samples.labels(event_type)
        self.received_bytes = Counter(
            "aperture_received_bytes", "Bytes of ProfileBatch received (decompressed).", registry=r
        )
        self.push_seconds = Histogram(
            "aperture_push_duration_seconds",
            "Time to handle one Push, journal write included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.buffer_bytes = Gauge("aperture_buffer_bytes", "Bytes held in the buffer.", registry=r)
        self.buffer_batches = Gauge(
            "aperture_buffer_batches", "Batches held in the buffer.", registry=r
        )
        self.buffer_utilization = Gauge(
            "aperture_buffer_utilization_ratio", "Buffer bytes / its byte limit.", registry=r
        )
        self.buffer_evictions = Counter(
            "aperture_buffer_evictions", "Batches evicted (oldest first) to stay in bounds.",
            registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "aperture_auth_failures", "Requests refused for a wrong or missing token (HTTP 401).",
            ["transport"], registry=r,
        )  # fmt: skip
        self.auth_forbidden = Counter(
            "aperture_auth_forbidden",
            "Requests refused because the token's scope does not allow them (HTTP 403).",
            ["transport"], registry=r,
        )  # fmt: skip
        for transport in ("grpc", "http"):
            self.auth_failures.labels(transport)
            self.auth_forbidden.labels(transport)
        self.dedupe_hits = Counter(
            "aperture_dedupe_hits", "Pushes of an already stored (agent, sequence).", registry=r
        )
        self.agent_last_seen = Gauge(
            "aperture_agent_last_seen_timestamp_seconds",
            "Unix time of each agent's last accepted push, for the first "
            f"{MAX_LAST_SEEN_SERIES} agents held (the others: aperture_agents_untracked).",
            ["agent_id"],
            registry=r,
        )
        self.agents = Gauge(
            "aperture_agents",
            f"Agents held: pushed in the last {AGENT_IDLE_S // 3600} h, at most {MAX_AGENTS} "
            "(the least recently pushed are forgotten first).",
            registry=r,
        )
        self.agents_untracked = Gauge(
            "aperture_agents_untracked",
            "Agents held without an aperture_agent_last_seen_timestamp_seconds series "
            f"(past its {MAX_LAST_SEEN_SERIES}).",
            registry=r,
        )
        self.agents_forgotten = Counter(
            "aperture_agents_forgotten",
            f"Agents forgotten: silent for {AGENT_IDLE_S // 3600} h, or the least recently "
            f"pushed past {MAX_AGENTS} held.",
            registry=r,
        )
        self.storage_flushes = Counter(
            "aperture_storage_flush", "Store writes by outcome (ok, error).", ["status"],
            registry=r,
        )  # fmt: skip
        for status in ("ok", "error"):
            self.storage_flushes.labels(status)
        self.storage_flush_seconds = Histogram(
            "aperture_storage_flush_duration_seconds", "Time of one write to the store.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r,
        )  # fmt: skip
        self.storage_pending_rows = Gauge(
            "aperture_storage_pending_rows", "Rows accepted but not yet in the store.", registry=r
        )
        self.storage_pending_bytes = Gauge(
            "aperture_storage_pending_bytes", "Bytes of batches waiting for the store.", registry=r
        )
        self.journal_unstored = Gauge(
            "aperture_journal_unstored_batches",
            "Journaled batches the store has not written yet (their segments are kept).",
            registry=r,
        )
        self.journal_bytes = Gauge(
            "aperture_journal_bytes", "Bytes in the on-disk journal.", registry=r
        )
        self.agent_losses = Counter(
            "aperture_agent_losses",
            "What agents reported lost, by loss name, summed over batches pushed and accepted "
            f"since start (journal replays not counted). Names outside [a-z0-9_.]{{1,64}} and "
            f"names beyond the first {MAX_LOSS_NAMES} seen are counted under name=\"other\".",
            ["name"], registry=r,
        )  # fmt: skip
        self._loss_names: set[str] = set()
        self.unwind_samples = Counter(
            "aperture_unwind_samples",
            "CPU samples of accepted batches by how their user stack was unwound: complete "
            "(table walk to the entry point), truncated (table walk stopped early), fp_only "
            "(frame pointers only: process not registered yet). Agents that do not report "
            "unwinding add nothing.",
            ["result"], registry=r,
        )  # fmt: skip
        for result in UNWIND_RESULTS:
            self.unwind_samples.labels(result)

    def count_batch(self, losses: Mapping[str, int], window_labels: Mapping[str, str]) -> None:
        """An accepted batch's losses and unwind counts (the caller serializes calls)."""
        for name, lost in sorted(losses.items()):
            if NAME.fullmatch(name) and (
                name in self._loss_names or len(self._loss_names) < MAX_LOSS_NAMES
            ):
                self._loss_names.add(name)
            else:
                name = "other"
            self.agent_losses.labels(name).inc(lost)
        _, stats = unwind_stats(window_labels)
        for result in UNWIND_RESULTS:
            self.unwind_samples.labels(result).inc(stats.get(f"cpu.unwind_{result}", 0))

    def count_denied(self, transport: str, status: int, is_push: bool) -> None:
        """One request refused by the token check: 401 (no or unknown token) or 403."""
        counter = self.auth_failures if status == 401 else self.auth_forbidden
        counter.labels(transport).inc()
        if is_push:
            self.pushes.labels("unauthenticated" if status == 401 else "forbidden").inc()
