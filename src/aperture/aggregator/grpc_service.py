"""The gRPC services: ``aperture.v1.Aggregator`` over the ingest path and the buffer, and
OTLP's ``ProfilesService`` (the OpenTelemetry eBPF profiler's export).

Push takes the raw request bytes (no generated deserializer), so oversize and
garbage payloads reach our own checks and are counted, not dropped inside gRPC.
Query lists the in-memory buffer of recent batches; Aggregate and Diff answer
from the query source (the store, or the buffer with --no-storage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

import grpc

from aperture.aggregator.buffer import BufferedBatch
from aperture.aggregator.importer import Importer, ImportRefused
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.interop_routes import otlp_items
from aperture.aggregator.metrics import Metrics
from aperture.analysis import aggregate
from aperture.formats.limits import LIMITS, Budget, TooLarge
from aperture.model import EventType
from aperture.profile_types import PROFILE_TYPES, known_names, with_stacks
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.query import answers
from aperture.query.filter import QueryFilter
from aperture.query.source import StackSource

SERVICE = "aperture.v1.Aggregator"
# The most rows one call may ask for (``limit``), as on the REST routes (SECURITY.md).
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
_STACK_TYPES = "event_type: " + " or ".join(str(t.event_type) for t in with_stacks())

_STATUS = {
    Outcome.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Outcome.OUTSIDE_RETENTION: grpc.StatusCode.INVALID_ARGUMENT,
    Outcome.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Outcome.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def request_filter(request: apb.AggregateRequest) -> QueryFilter:
    """The query filter of a gRPC request (0 means unbounded)."""
    return QueryFilter(
        event_type=EventType(request.event_type or "cpu"),
        from_ns=request.from_ns or 0,
        to_ns=request.to_ns or 2**63 - 1,
        host=request.host or None,
        agent=request.agent_id or None,
        pid=request.pid or None,
    )


async def checked_limit(limit: int, context: grpc.aio.ServicerContext) -> int:
    """A request's ``limit`` (0: the default); over :data:`MAX_LIMIT` aborts the call."""
    if limit > MAX_LIMIT:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"limit {limit:,} is over the maximum of {MAX_LIMIT:,}: ask for at most "
            f"{MAX_LIMIT:,} rows, or narrow the request",
        )
    return limit or DEFAULT_LIMIT


class AggregatorService:
    """Push into the ingest path; Aggregate and Diff from the query source (store or buffer)."""

    def __init__(self, ingest: Ingest, source: StackSource) -> None:
        self.ingest = ingest
        self.source = source

    async def push(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        result = await asyncio.to_thread(self.ingest.push, data)
        status = _STATUS.get(result.outcome)
        if status is not None:
            if result.retry_after_ms:
                context.set_trailing_metadata((("retry-after-ms", str(result.retry_after_ms)),))
            await context.abort(status, result.message)
        response = apb.PushResponse(
            accepted=True,
            duplicate=result.outcome is Outcome.DUPLICATE,
            retry_after_ms=result.retry_after_ms,
            message=result.message,
        )
        return response.SerializeToString()

    async def query(
        self, request: apb.QueryRequest, context: grpc.aio.ServicerContext
    ) -> apb.QueryResponse:
        limit = await checked_limit(request.limit, context)
        try:
            wanted = EventType(request.event_type) if request.event_type else None
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"event_type: {known_names()}")
        # The buffer may hold a million batches: scanned in a worker thread, not the loop.
        return await asyncio.to_thread(self._recent, request.agent_id, wanted, limit)

    def _recent(self, agent_id: str, wanted: EventType | None, limit: int) -> apb.QueryResponse:
        """The newest ``limit`` buffered batches of the agent (all if empty) and type."""
        batches = []
        for b in reversed(self.ingest.buffer.snapshot()):
            if (not agent_id or b.agent_id == agent_id) and (
                wanted is None or wanted in b.event_types
            ):
                batches.append(summary(b))
                if len(batches) >= limit:
                    break
        return apb.QueryResponse(batches=batches)

    async def aggregate(
        self, request: apb.AggregateRequest, context: grpc.aio.ServicerContext
    ) -> apb.AggregateResponse:
        try:
            f = request_filter(request)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _STACK_TYPES)
        if not PROFILE_TYPES[f.event_type].has_stacks:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _STACK_TYPES)
        limit = await checked_limit(request.limit, context)
        profile = await asyncio.to_thread(self.source.export_profile, f)
        result = await asyncio.to_thread(aggregate, [profile], limit=limit)
        return apb.AggregateResponse(
            total=result.total,
            unit=result.unit,
            batches=1 if profile.samples else 0,
            functions=[
                apb.FunctionValue(
                    name=fn.name, module=fn.module, self=fn.self_value, total=fn.total_value
                )
                for fn in result.functions
            ],
            stacks=[
                apb.FoldedStack(frames=list(path), value=value)
                for path, value in result.stacks.most_common(limit)
            ],
        )

    async def diff(
        self, request: apb.DiffRequest, context: grpc.aio.ServicerContext
    ) -> apb.DiffResponse:
        try:
            base, comp = request_filter(request.baseline), request_filter(request.comparison)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _STACK_TYPES)
        limit = await checked_limit(request.limit, context)
        answer = await asyncio.to_thread(answers.diff, self.source, base, comp, 100_000, limit)
        return apb.DiffResponse(
            baseline_total=answer.baseline_total,
            comparison_total=answer.comparison_total,
            functions=[
                apb.DiffEntry(
                    name=r.name,
                    baseline_self=r.baseline_self,
                    comparison_self=r.comparison_self,
                    baseline_share=r.baseline_pct / 100,
                    comparison_share=r.comparison_pct / 100,
                    delta_share=r.delta_pct / 100,
                )
                for r in answer.functions
            ],
        )

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[..., Any], request_type: Any | None) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.FromString if request_type else (lambda b: b),
                response_serializer=(
                    lambda m: m if isinstance(m, bytes) else m.SerializeToString()
                ),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Push": unary(self.push, None),
                "Query": unary(self.query, apb.QueryRequest),
                "Aggregate": unary(self.aggregate, apb.AggregateRequest),
                "Diff": unary(self.diff, apb.DiffRequest),
            },
        )


OTLP_PROFILES = "opentelemetry.proto.collector.profiles.v1development.ProfilesService"
_REFUSED = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
            422: grpc.StatusCode.FAILED_PRECONDITION, 503: grpc.StatusCode.UNAVAILABLE}  # fmt: skip


class OtlpProfilesService:
    """OTLP/gRPC ``ProfilesService/Export``: what the OpenTelemetry eBPF profiler sends by
    default, stored as the OTLP/HTTP route stores it (``interop_routes.otlp_items``)."""

    def __init__(self, ingest: Ingest, metrics: Metrics) -> None:
        self.ingest = ingest
        self.metrics = metrics
        self.importer = Importer(ingest, retention_days=ingest.retention_days)
        self.limits = dataclasses.replace(LIMITS, inflated_bytes=ingest.max_message_bytes)

    def _store(self, data: bytes) -> None:
        """Store the request's profiles, or raise :class:`ImportRefused` having counted it."""
        try:
            if len(data) > self.ingest.max_message_bytes:
                raise ImportRefused(413, f"the request is over the aggregator's limit of "
                                    f"{self.ingest.max_message_bytes} bytes")  # fmt: skip
            items = otlp_items(data, Budget(self.limits), time.time_ns())
            key = hashlib.sha256(b"otlp-grpc\0" + data).digest()
            self.importer.store("otlp", items, request_key=key)
        except ImportRefused as exc:
            if not exc.counted:
                self.metrics.pushes.labels(_OUTCOME.get(exc.status, "malformed")).inc()
            raise
        except TooLarge as exc:
            self.metrics.pushes.labels("too_large").inc()
            raise ImportRefused(413, str(exc), counted=True) from None
        except ValueError as exc:
            self.metrics.pushes.labels("malformed").inc()
            raise ImportRefused(400, str(exc), counted=True) from None

    async def export(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            await asyncio.to_thread(self._store, data)
        except ImportRefused as exc:
            await context.abort(_REFUSED.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        return b""  # an empty ExportProfilesServiceResponse: every profile accepted

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(OTLP_PROFILES, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.export, request_deserializer=lambda b: b,
                response_serializer=lambda b: b),
        })  # fmt: skip


_OUTCOME = {400: "malformed", 413: "too_large", 422: "outside_retention", 503: "unavailable"}


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else bytes(message.SerializeToString())


def summary(b: BufferedBatch) -> apb.BatchSummary:
    return apb.BatchSummary(
        agent_id=b.agent_id,
        host=b.host,
        sequence=b.sequence,
        window_start_ns=b.start_ns,
        window_end_ns=b.end_ns,
        event_types=[str(t) for t in b.event_types],
        cpu_samples=b.cpu_samples,
        lock_wait_ns=b.lock_wait_ns,
        syscalls=b.syscalls,
        stacks=b.stacks,
        received_ns=b.received_ns,
        bytes=b.size,
    )
