"""The gRPC service ``aperture.v1.Aggregator`` over the ingest path and the buffer.

Push takes the raw request bytes (no generated deserializer), so oversize and
garbage payloads reach our own checks and are counted, not dropped inside gRPC.
Query, Aggregate and Diff answer from the in-memory buffer of recent batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from aperture.aggregator.buffer import BufferedBatch
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.analysis import aggregate, diff_functions
from aperture.model import EventType, Profile
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.wire import decode, parse

SERVICE = "aperture.v1.Aggregator"
_STATUS = {
    Outcome.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Outcome.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Outcome.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def select_profiles(
    batches: Iterable[BufferedBatch], request: apb.AggregateRequest
) -> list[Profile]:
    """Decode the buffered batches matching a request's type, window and filters."""
    event_type = EventType(request.event_type or "cpu")
    out = []
    for batch in batches:
        if request.agent_id and batch.agent_id != request.agent_id:
            continue
        if request.host and batch.host != request.host:
            continue
        if request.from_ns and batch.end_ns < request.from_ns:
            continue
        if request.to_ns and batch.start_ns > request.to_ns:
            continue
        if event_type not in batch.event_types:
            continue
        profile = decode(parse(batch.data)).profiles[event_type]
        if request.pid:
            profile.samples = [s for s in profile.samples if s.pid == request.pid]
        out.append(profile)
    return out


class AggregatorService:
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

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
        self, request: apb.QueryRequest, _context: grpc.aio.ServicerContext
    ) -> apb.QueryResponse:
        limit = request.limit or 100
        wanted = EventType(request.event_type) if request.event_type else None
        batches = [
            b
            for b in reversed(self.ingest.buffer.snapshot())
            if (not request.agent_id or b.agent_id == request.agent_id)
            and (wanted is None or wanted in b.event_types)
        ][:limit]
        return apb.QueryResponse(batches=[summary(b) for b in batches])

    async def aggregate(
        self, request: apb.AggregateRequest, context: grpc.aio.ServicerContext
    ) -> apb.AggregateResponse:
        try:
            profiles = await asyncio.to_thread(
                select_profiles, self.ingest.buffer.snapshot(), request
            )
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event_type: cpu or lock")
        result = aggregate(profiles, limit=request.limit or 100)
        return apb.AggregateResponse(
            total=result.total,
            unit=result.unit,
            batches=len(profiles),
            functions=[
                apb.FunctionValue(
                    name=f.name, module=f.module, self=f.self_value, total=f.total_value
                )
                for f in result.functions
            ],
            stacks=[
                apb.FoldedStack(frames=list(path), value=value)
                for path, value in result.stacks.most_common(request.limit or 100)
            ],
        )

    async def diff(
        self, request: apb.DiffRequest, context: grpc.aio.ServicerContext
    ) -> apb.DiffResponse:
        snapshot = self.ingest.buffer.snapshot()
        try:
            base = select_profiles(snapshot, request.baseline)
            comp = select_profiles(snapshot, request.comparison)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event_type: cpu or lock")
        base_total, comp_total, rows = diff_functions(base, comp, limit=request.limit or 100)
        return apb.DiffResponse(
            baseline_total=base_total,
            comparison_total=comp_total,
            functions=[
                apb.DiffEntry(
                    name=r.name,
                    baseline_self=r.baseline,
                    comparison_self=r.comparison,
                    baseline_share=r.baseline_share,
                    comparison_share=r.comparison_share,
                    delta_share=r.delta_share,
                )
                for r in rows
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
