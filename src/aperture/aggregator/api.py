"""The HTTP side: health, Prometheus metrics and the REST API under /api/v1."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aperture import __version__
from aperture.aggregator.access import Access
from aperture.aggregator.alerts.engine import AlertEngine
from aperture.aggregator.alerts.routes import add_alert_routes
from aperture.aggregator.auth import HttpAuth, Tokens
from aperture.aggregator.buffer_source import BufferSource
from aperture.aggregator.grpc_service import summary
from aperture.aggregator.ingest import Ingest
from aperture.aggregator.interop_routes import add_interop_routes
from aperture.aggregator.query_routes import add_query_routes
from aperture.aggregator.storage_link import StorageLink
from aperture.aggregator.web import WEB_DIR, mount_ui
from aperture.model import EventType
from aperture.query.source import StackSource


class AppState:
    def __init__(
        self,
        ingest: Ingest,
        tokens: Tokens,
        *,
        metrics_public: bool,
        source: StackSource | None = None,
        storage: StorageLink | None = None,
    ) -> None:
        self.ingest = ingest
        self.storage = storage
        self.source: StackSource = source or BufferSource(ingest.buffer)
        self.tokens = tokens
        self.metrics_public = metrics_public
        self.ready = False
        self.started = time.time()
        # Told in /readyz: a launcher checks the process answering is the one it started.
        self.instance = secrets.token_hex(8)
        self.alerts: AlertEngine | None = None


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="Aperture aggregator",
        version=__version__,
        description="REST API of the Aperture aggregator. When tokens are configured, GET "
        "routes need a read token (APERTURE_READ_TOKEN), ingest routes an ingest token "
        "(APERTURE_INGEST_TOKEN), alert rule changes and evaluate the admin token "
        "(APERTURE_AUTH_TOKEN), which may also do everything else.",
    )
    metrics = state.ingest.metrics

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(response: Response) -> dict[str, str]:
        response.headers["X-Aperture-Instance"] = state.instance
        if not state.ready:
            response.status_code = 503
            return {"status": "starting", "instance": state.instance}
        return {"status": "ready", "instance": state.instance}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        state.ingest.refresh_gauges()
        if state.storage is not None:
            state.storage.refresh_gauges()
        if state.ingest.journal is not None:
            metrics.journal_bytes.set(state.ingest.journal.size())
            metrics.journal_unstored.set(state.ingest.journal.held())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    api = APIRouter(prefix="/api/v1")

    @api.get("/health")
    def health() -> dict[str, Any]:
        buffer = state.ingest.buffer
        return {
            "status": "ok" if state.ready else "starting",
            "version": __version__,
            "uptime_s": round(time.time() - state.started, 1),
            "agents": len(state.ingest.agents),
            "buffer": {
                "bytes": buffer.stats.bytes,
                "max_bytes": buffer.max_bytes,
                "batches": buffer.stats.batches,
                "utilization": round(buffer.utilization, 4),
                "evictions": buffer.stats.evictions,
            },
            "journal_bytes": state.ingest.journal.size() if state.ingest.journal else None,
            "journal_unstored": state.ingest.journal.held() if state.ingest.journal else None,
            "storage": state.storage.health() if state.storage else None,
        }

    @api.get("/batches")
    def batches(
        agent: Annotated[str | None, Query(description="only this agent_id")] = None,
        type: Annotated[EventType | None, Query(description="cpu, lock or syscall")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """Recent batches in the buffer, newest first."""
        out = []
        for b in reversed(state.ingest.buffer.snapshot()):
            if agent and b.agent_id != agent:
                continue
            if type is not None and type not in b.event_types:
                continue
            s = summary(b)
            out.append(
                {
                    "agent_id": s.agent_id,
                    "host": s.host,
                    "sequence": s.sequence,
                    "window_start_ns": s.window_start_ns,
                    "window_end_ns": s.window_end_ns,
                    "event_types": list(s.event_types),
                    "cpu_samples": s.cpu_samples,
                    "lock_wait_ns": s.lock_wait_ns,
                    "syscalls": s.syscalls,
                    "received_ns": s.received_ns,
                    "bytes": s.bytes,
                }
            )
            if len(out) >= limit:
                break
        return out

    @api.get("/agents")
    def agents() -> list[dict[str, Any]]:
        """Every agent seen since start, most recent push first."""
        now = time.time_ns()
        rows = sorted(state.ingest.agents.values(), key=lambda a: -a.last_push_ns)
        return [
            {
                "agent_id": a.agent_id,
                "host": a.host,
                "labels": a.labels,
                "version": a.version,
                "first_seen_ns": a.first_seen_ns,
                "last_push_ns": a.last_push_ns,
                "seconds_since_last_push": round((now - a.last_push_ns) / 1e9, 1),
                "pushes": a.pushes,
                "pushes_per_minute": round(a.rate_per_minute(now), 2),
                "duplicates": a.duplicates,
                "bytes": a.bytes,
                "last_sequence": a.last_sequence,
            }
            for a in rows
        ]

    add_query_routes(api, state.source)
    if state.alerts is not None:
        add_alert_routes(api, state.alerts)
    app.include_router(api)
    add_interop_routes(app, state.ingest, metrics, retention_days=state.ingest.retention_days)
    mount_ui(app, WEB_DIR)

    def denied(transport: str, status: int, access: Access) -> None:
        metrics.count_denied(transport, status, is_push=access is Access.INGEST)

    # Every route's scope is in aperture.aggregator.access.HTTP_ROUTES.
    app.add_middleware(
        HttpAuth,
        tokens=state.tokens,
        public=frozenset({"/metrics"}) if state.metrics_public else frozenset(),
        on_denied=denied,
    )
    return app
