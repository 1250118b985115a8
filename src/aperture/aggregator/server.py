"""One asyncio process: the gRPC server and the HTTP server (uvicorn) in the same loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aperture.aggregator.access import Access
from aperture.aggregator.alerts.setup import build_engine
from aperture.aggregator.api import AppState, create_app
from aperture.aggregator.auth import AuthInterceptor, Tokens
from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.grpc_service import SERVICE, AggregatorService, OtlpProfilesService
from aperture.aggregator.ingest import Ingest, journal_dir
from aperture.aggregator.journal import Journal
from aperture.aggregator.metrics import Metrics
from aperture.aggregator.storage_link import StorageLink, StorageSettings
from aperture.errors import UserError
from aperture.filters.host import WasmFilter

log = logging.getLogger("aperture.aggregator")


@dataclass(frozen=True)
class Settings:
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    http_host: str = "0.0.0.0"
    http_port: int = 9090
    token: str | None = None
    ingest_tokens: tuple[str, ...] = ()
    read_tokens: tuple[str, ...] = ()
    metrics_public: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = 16 << 20
    buffer_bytes: int = 256 << 20
    buffer_batches: int = 1_000_000
    data_dir: Path = Path("data")
    journal: bool = True
    shutdown_grace_s: float = 5.0
    # None: buffer only (--no-storage)
    storage: StorageSettings | None = None
    # --ingest-filter, loaded (and checked) by the CLI
    ingest_filter: WasmFilter | None = None
    alert_interval_s: float = 30.0
    alert_webhook: str | None = None
    alert_renotify_s: float = 0.0
    # What /readyz reports (None: a random id); see --instance-id
    instance_id: str | None = None


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this process handles signals once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    """A listening socket, or one clear sentence about why it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen for {what} on {host}:{port} ({exc.strerror}): "
            f"choose another address with {flag}."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class Aggregator:
    """Builds the parts, serves until stopped, then drains and closes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        journal = None
        if settings.journal:
            # Segments of a quarter of the buffer (1-64 MiB): trimmed in steps that small.
            segment = min(64 << 20, max(1 << 20, settings.buffer_bytes // 4))
            directory = journal_dir(settings.data_dir)
            journal = Journal(directory, max_bytes=settings.buffer_bytes, segment_bytes=segment)
        self.storage: StorageLink | None = None
        if settings.storage is not None:
            self.storage = StorageLink(settings.storage, self.metrics, journal)
        evictions = self.metrics.buffer_evictions
        self.ingest = Ingest(
            BatchBuffer(
                settings.buffer_bytes,
                settings.buffer_batches,
                on_evict=lambda _batch: evictions.inc(),
            ),
            self.metrics,
            journal=journal,
            max_message_bytes=settings.max_message_bytes,
            ingest_filter=settings.ingest_filter,
            retention_days=settings.storage.retention_days if settings.storage else None,
            on_accept=self.storage.submit if self.storage else None,
            admit=self.storage.has_room if self.storage else None,
            pressure=self.storage.fill if self.storage else None,
        )
        self.tokens = Tokens(settings.token, settings.ingest_tokens, settings.read_tokens)
        self.state = AppState(
            self.ingest,
            self.tokens,
            metrics_public=settings.metrics_public,
            source=self.storage.source if self.storage else None,
            storage=self.storage,
        )
        if settings.instance_id is not None:
            self.state.instance = settings.instance_id
        self.alerts = self.state.alerts = build_engine(
            self.ingest, self.state.source, self.storage, settings.data_dir,
            webhook=settings.alert_webhook, renotify_s=settings.alert_renotify_s,
        )  # fmt: skip
        self.stop_event = asyncio.Event()
        self.grpc_port = settings.grpc_port
        self.http_port = settings.http_port

    def _count_denied(self, transport: str, status: int, access: Access) -> None:
        self.metrics.count_denied(transport, status, is_push=access is Access.INGEST)

    async def run(self) -> None:
        """Serve until stopped, step by step: listen, replay, gRPC, HTTP, drain."""
        s = self.settings
        http_sock = self._listen_http()
        try:
            await asyncio.to_thread(self.ingest.replay)
            server, health_servicer = self._grpc_server()
        except UserError:  # a journal segment this user cannot read, a port in use
            http_sock.close()
            self._close_storage()
            raise
        await server.start()
        for name in ("", SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        http = self._http_server()
        http_task = asyncio.create_task(http.serve(sockets=[http_sock]))
        self.state.ready = True
        self._log_started()
        stop_task = asyncio.create_task(self.stop_event.wait())
        alerts_stop = asyncio.Event()
        alerts_task = asyncio.create_task(self.alerts.run(s.alert_interval_s, alerts_stop))
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)

        # Drain: refuse new calls, let running pushes finish, then close the journal.
        self.state.ready = False
        for name in ("", SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.stop(grace=s.shutdown_grace_s)
        http.should_exit = True
        await http_task
        stop_task.cancel()
        alerts_stop.set()
        await alerts_task
        await asyncio.to_thread(self._close_storage)
        if self.ingest.journal is not None:
            self.ingest.journal.close()
        log.info("stopped")

    def _listen_http(self) -> socket.socket:
        s = self.settings
        try:
            http_sock = bind(s.http_host, s.http_port, "HTTP", "--admin-listen")
        except UserError:
            self._close_storage()
            raise
        self.http_port = http_sock.getsockname()[1]
        return http_sock

    def _grpc_server(self) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
        """The gRPC server with its port bound (UserError if it cannot be), not started."""
        s = self.settings
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(self.tokens, self._count_denied)],
            options=[
                # gRPC itself refuses beyond twice the limit; between the two our
                # own check answers RESOURCE_EXHAUSTED and counts it.
                ("grpc.max_receive_message_length", 2 * s.max_message_bytes),
                ("grpc.max_send_message_length", 64 << 20),
                # Else gRPC shares the port with another SO_REUSEPORT listener (another
                # aggregator), and agents' pushes are split between the two.
                ("grpc.so_reuseport", 0),
            ],
        )
        service = AggregatorService(self.ingest, self.state.source)
        otlp = OtlpProfilesService(self.ingest, self.metrics)
        server.add_generic_rpc_handlers((service.handler(), otlp.handler()))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        address = f"{s.grpc_host}:{s.grpc_port}"
        if s.grpc_port:
            # A port in use is refused here in one sentence, not in gRPC's log lines.
            bind(s.grpc_host, s.grpc_port, "gRPC", "--listen").close()
        try:
            if s.tls_cert and s.tls_key:
                creds = grpc.ssl_server_credentials(
                    [(s.tls_key.read_bytes(), s.tls_cert.read_bytes())]
                )
                self.grpc_port = server.add_secure_port(address, creds)
            else:
                self.grpc_port = server.add_insecure_port(address)
        except RuntimeError:
            self.grpc_port = 0
        if not self.grpc_port:
            raise UserError(
                f"cannot listen for gRPC on {address}: choose another address with --listen."
            )
        return server, health_servicer

    def _http_server(self) -> _Uvicorn:
        s = self.settings
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(s.tls_cert) if s.tls_cert else None,
            ssl_keyfile=str(s.tls_key) if s.tls_key else None,
        )
        return _Uvicorn(config)

    def _log_started(self) -> None:
        s = self.settings
        if not self.tokens.enabled:
            log.warning(
                "no APERTURE_AUTH_TOKEN set: anyone who can reach these ports can push and read"
            )
        elif not self.tokens.has_admin:
            log.warning(
                "no admin token (APERTURE_AUTH_TOKEN): alert rules cannot be changed or evaluated"
            )
        log.info("gRPC on %s:%d, HTTP on %s:%d (instance %s)", s.grpc_host, self.grpc_port,
                 s.http_host, self.http_port, self.state.instance)  # fmt: skip

    def _close_storage(self) -> None:
        if self.storage is not None:
            self.storage.close()
            self.storage = None


async def serve(settings: Settings) -> None:
    aggregator = Aggregator(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, aggregator.stop_event.set)
    await aggregator.run()
