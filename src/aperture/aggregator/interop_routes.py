"""HTTP ingest of other tools' profiles: pprof uploads, Pyroscope's two push protocols, OTLP.

- ``POST /api/v1/ingest/pprof?service=NAME&label.KEY=VALUE``: a pprof file body.
- ``POST /push.v1.PusherService/Push``: Pyroscope's Connect push API (current SDKs).
- ``POST /ingest?name=app.cpu{k=v}&format=folded|lines|pprof&...``: Pyroscope's legacy API.
- ``POST /v1development/profiles``: OTLP/HTTP profiles (the OpenTelemetry eBPF profiler).

Every route counts what the request would make it build against one
:class:`~aperture.formats.limits.Budget` before building it (413 past a limit),
converts the whole request, and refuses it (400, with the reason; 422 for a
window outside the store's retention) before anything is stored; the profiles
then go through :class:`~aperture.aggregator.importer.Importer` and
:meth:`Ingest.push` like an agent's batches. Pyroscope SDKs send the token as a
bearer or as the basic-auth password, so those routes accept both (the token
check is :class:`aperture.aggregator.auth.HttpAuth`'s, before these handlers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, NoReturn

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from aperture.aggregator.importer import Importer, ImportRefused, Item, subtract
from aperture.aggregator.ingest import Ingest
from aperture.aggregator.metrics import Metrics
from aperture.aggregator.pyroscope import (
    UnsupportedMediaType,
    folded_profile,
    multipart_fields,
    parse_app_name,
    parse_unix_time,
    push_request,
)
from aperture.formats.limits import LIMITS, Budget, TooLarge
from aperture.formats.otlp import OtlpTooLarge, read_otlp_profiles
from aperture.formats.pprof import (
    MalformedPprof,
    SampleTypeConfig,
    from_pprof_message,
    inflate,
    read_pprof,
)
from aperture.proto.pprof import profile_pb2 as pprof_pb
from aperture.timeparse import parse_time

# Connect's error codes for the HTTP statuses we answer with.
_CONNECT_CODES = {400: "invalid_argument", 413: "resource_exhausted",
                  415: "invalid_argument", 422: "failed_precondition",
                  503: "unavailable"}  # fmt: skip
# What the pprof upload may do with a profile recorded outside the store's retention.
_AT_HINT = ", or import it with at=now (`aperture import --at now`), which moves its window to now"


def _read(data: bytes, budget: Budget, what: str = "", *, legacy: bool = False) -> pprof_pb.Profile:
    """One pprof, counted against the request's budget and checked.

    ``legacy``: Pyroscope's ``/ingest``, which numbers functions that all have id 0
    and answers 422 for a profile it cannot read (the push API answers 400).
    """
    try:
        return read_pprof(data, budget=budget, number_functions=legacy)
    except TooLarge as exc:
        raise ImportRefused(413, f"{what}: {exc}" if what else str(exc)) from None
    except MalformedPprof as exc:
        status = 422 if legacy else 400
        message = f"{what}: {exc}" if what else str(exc)
        raise ImportRefused(status, message, reason="malformed") from None


def _items(
    message: pprof_pb.Profile,
    service: str,
    labels: dict[str, str],
    *,
    now_ns: int,
    config: SampleTypeConfig | None = None,
    hint: str = "",
) -> list[Item]:
    """The profiles of one read pprof; its sample labels add to ``labels``."""
    imported = from_pprof_message(message, comm=service, now_ns=now_ns, config=config, hint=hint)
    return [
        Item(service, {**labels, **one.labels}, one.profile, one.source, one.columns)
        for one in imported
    ]


def otlp_items(body: bytes, budget: Budget, now_ns: int) -> list[Item]:
    """The profiles of an OTLP ``ExportProfilesServiceRequest`` as imports: a resource's
    ``service.name`` is the service, its ``host.name`` the host."""
    try:
        read = read_otlp_profiles(body, budget=budget, now_ns=now_ns)
    except OtlpTooLarge as exc:
        raise ImportRefused(413, str(exc)) from None
    items = []
    for one in read:
        labels = dict(one.labels)
        service = labels.pop("service.name", "") or "unknown_service"
        host = labels.pop("host.name", "")
        labels = {**labels, "service_name": service, **({"host": host} if host else {})}
        items.append(Item(service, labels, one.profile, one.source))
    return items


def _request_key(request: Request, body: bytes) -> bytes:
    """A digest of what the request asks: its route, parameters and body."""
    digest = hashlib.sha256(request.url.path.encode())
    digest.update(repr(sorted(request.query_params.multi_items())).encode())
    digest.update(body)
    return digest.digest()


def _public(labels: dict[str, str]) -> dict[str, str]:
    """Series labels without Pyroscope's internal ones (``__name__``, ``__session_id__``)."""
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def add_interop_routes(
    app: FastAPI, ingest: Ingest, metrics: Metrics, *, retention_days: int | None = None
) -> None:
    """Register the pprof upload route and the Pyroscope-compatible ingest routes.

    ``retention_days``: the store's, which imported windows must be inside (None: no store).
    """
    importer = Importer(ingest, retention_days=retention_days)
    max_body = ingest.max_message_bytes
    # A compressed request carries no more than an uncompressed one may.
    limits = dataclasses.replace(LIMITS, inflated_bytes=max_body)
    metrics.pushes.labels("outside_retention")  # exported at 0 from the start

    def refuse(status: int, message: str, reason: str = "") -> NoReturn:
        if reason:
            metrics.pushes.labels(reason).inc()
        elif status == 400:
            metrics.pushes.labels("malformed").inc()
        elif status == 413:
            metrics.pushes.labels("too_large").inc()
        elif status == 422:
            metrics.pushes.labels("outside_retention").inc()
        raise ImportRefused(status, message, reason=reason)

    async def body_of(request: Request) -> bytes:
        """The request body, bounded, with a gzip content-encoding undone."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                refuse(413, f"the request body is over the aggregator's limit of {max_body} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = inflate(body, max_bytes=max_body, what="request body")
            except MalformedPprof as exc:
                refuse(400, str(exc))
        elif encoding not in ("", "identity"):
            refuse(415, f"content-encoding {encoding!r} is not supported: use gzip or none")
        return body

    async def store(
        source: str,
        convert: Callable[[], list[Item]],
        *,
        key: bytes,
        at_ns: int | None = None,
        hint: str = "",
    ) -> dict[str, Any]:
        """Convert and store in a worker thread, counting a refusal in aperture_pushes_total."""

        def work() -> dict[str, Any]:
            try:
                items = convert()
                return importer.store(
                    source, items, request_key=key, at_ns=at_ns, hint=hint
                ).as_json()
            except ImportRefused as exc:
                if exc.counted:
                    raise
                refuse(exc.status, exc.message, exc.reason)
            except TooLarge as exc:
                refuse(413, str(exc))
            except ValueError as exc:
                refuse(400, str(exc))

        return await asyncio.to_thread(work)

    # -- pprof upload -----------------------------------------------------------------

    @app.post(
        "/api/v1/ingest/pprof",
        summary="Store a pprof profile",
        responses={400: {"description": "not a valid pprof (the detail says why)"}},
    )
    async def ingest_pprof(
        request: Request,
        service: Annotated[str, Query(min_length=1, max_length=200,
                                      description="the service the profile is from")] = "pprof",
        at: Annotated[str | None, Query(max_length=64, description=(
            "move the profile's window to end at this time (now, -1h, RFC 3339, unix ns), "
            "e.g. to look at a profile recorded before the store's retention"))] = None,
        kind: Annotated[Literal["mutex", "block"] | None, Query(description=(
            "what a Go contentions/delay profile is, which its sample types cannot "
            "tell"))] = None,
    ) -> JSONResponse:  # fmt: skip
        """A pprof file (gzip or raw) as the body; ``label.KEY=VALUE`` parameters label it."""
        labels = {"service": service}
        for key, value in request.query_params.multi_items():
            if key.startswith("label.") and len(key) > len("label."):
                labels[key[len("label.") :]] = value
        now = time.time_ns()
        try:
            at_ns = None
            if at is not None:
                try:
                    at_ns = parse_time(at, now_ns=now)
                except ValueError as exc:
                    refuse(400, f"at: {exc}")
            data = await body_of(request)
            if not data:
                refuse(400, "the request has no body: send the pprof file as the body")

            def convert() -> list[Item]:
                message = _read(data, Budget(limits))
                return _items(message, service, labels, now_ns=now, hint=kind or "")

            result = await store("pprof", convert, key=_request_key(request, data),
                                 at_ns=at_ns, hint=_AT_HINT)  # fmt: skip
        except ImportRefused as exc:
            return _json_error(exc.status, exc.message)
        return JSONResponse(result)

    # -- Pyroscope: Connect push API -------------------------------------------------------

    @app.post(
        "/push.v1.PusherService/Push",
        summary="Pyroscope push (Connect)",
        response_class=Response,
        responses={200: {"description": "stored: an empty PushResponse in the request's codec",
                         "content": {"application/proto": {},
                                     "application/json": {"schema": {"type": "object"}}}}},
    )  # fmt: skip
    async def pyroscope_push(request: Request) -> Response:
        """Pyroscope SDKs' push: series of labels (``service_name``, tags) and raw pprof."""
        content_type = request.headers.get("content-type", "")
        as_json = content_type.split(";")[0].strip().lower() == "application/json"
        now = time.time_ns()
        budget = Budget(limits)
        try:
            body = await body_of(request)
            series = push_request(body, content_type, budget)
        except ImportRefused as exc:
            return _connect_error(exc.status, exc.message)
        except UnsupportedMediaType as exc:
            metrics.pushes.labels("malformed").inc()
            return _connect_error(415, str(exc))
        except TooLarge as exc:
            metrics.pushes.labels("too_large").inc()
            return _connect_error(413, str(exc))
        except ValueError as exc:
            metrics.pushes.labels("malformed").inc()
            return _connect_error(400, str(exc))

        def convert() -> list[Item]:
            # Every profile read and counted before any is converted: a push past a
            # limit in its last profile builds nothing for the first ones.
            read = [
                (one, _read(raw, budget, f"series {i} profile {j}"))
                for i, one in enumerate(series)
                for j, raw in enumerate(one.profiles)
            ]
            items: list[Item] = []
            for one, message in read:
                service = one.labels.get("service_name") or "unknown"
                labels = {**_public(one.labels), "service_name": service}
                hint = one.labels.get("__name__", "")
                items += _items(message, service, labels, now_ns=now, hint=hint)
            return items

        try:
            await store("pyroscope", convert, key=_request_key(request, body))
        except ImportRefused as exc:
            return _connect_error(exc.status, exc.message)
        media = "application/json" if as_json else "application/proto"
        return Response(b"{}" if as_json else b"", media_type=media)

    # -- OpenTelemetry: OTLP/HTTP profiles ---------------------------------------------------

    @app.post(
        "/v1development/profiles",
        summary="OTLP profiles (OTLP/HTTP, protobuf)",
        response_class=Response,
        responses={200: {"description": "stored: an empty ExportProfilesServiceResponse",
                         "content": {"application/x-protobuf": {}}}},
    )  # fmt: skip
    async def otlp_profiles(request: Request) -> Response:
        """An OTLP ``ExportProfilesServiceRequest`` (the OpenTelemetry eBPF profiler's export):
        each resource's ``service.name`` is the service, ``host.name`` the host."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        now = time.time_ns()
        budget = Budget(limits)
        try:
            if content_type not in ("application/x-protobuf", "application/protobuf"):
                refuse(415, f"content type {content_type!r} is not supported: send OTLP "
                       "profiles as application/x-protobuf")  # fmt: skip
            body = await body_of(request)
            if not body:
                refuse(400, "the request has no body: send an ExportProfilesServiceRequest")

            await store("otlp", lambda: otlp_items(body, budget, now),
                        key=_request_key(request, body))  # fmt: skip
        except ImportRefused as exc:
            return _otlp_error(exc.status, exc.message)
        return Response(b"", media_type="application/x-protobuf")

    # -- Pyroscope: legacy /ingest ---------------------------------------------------------

    @app.post(
        "/ingest",
        summary="Pyroscope legacy ingest",
        response_class=Response,
        responses={200: {"description": "stored (an empty body, as Pyroscope answers)"}},
    )
    async def pyroscope_ingest(
        request: Request,
        name: Annotated[str, Query(min_length=1, max_length=4096,
                                   description="app.cpu{key=value,...}")],
        format: Annotated[str, Query(pattern="^(folded|lines|pprof|trie|tree)$")] = "folded",
        from_: Annotated[str | None, Query(alias="from")] = None,
        until: str | None = None,
        sampleRate: Annotated[int, Query(ge=0, le=1_000_000)] = 100,
        spyName: str = "",
        units: str = "",
        aggregationType: str = "sum",
    ) -> Response:  # fmt: skip
        """Folded stacks, one stack per line, or pprof (raw or the ``profile`` form field)."""
        now = time.time_ns()
        try:
            if format in ("trie", "tree"):
                refuse(400, f"format={format} is not supported: use folded, lines or pprof")
            try:
                app_name = parse_app_name(name)
                end = parse_unix_time(until, default_ns=now, name="until")
                start = parse_unix_time(from_, default_ns=end - 10**10, name="from")
            except ValueError as exc:
                refuse(400, str(exc))
            if end < start:
                refuse(400, "until is earlier than from")
            body = await body_of(request)
            content_type = request.headers.get("content-type", "")
            service = app_name.service
            labels = {**app_name.tags, "service_name": service}
            budget = Budget(limits)

            def convert() -> list[Item]:
                if format != "pprof":
                    text = body.decode("utf-8", "replace")
                    profile = folded_profile(
                        text, lines=format == "lines", service=service,
                        profile_type=app_name.profile_type, units=units,
                        sample_rate=sampleRate, start_ns=start, end_ns=end, budget=budget,
                    )  # fmt: skip
                    return [Item(service, labels, profile)]
                data, previous, config = body, b"", None
                if content_type.lower().startswith("multipart/form-data"):
                    fields = multipart_fields(body, content_type)
                    if "profile" not in fields:
                        raise ValueError("the multipart body has no 'profile' field")
                    data = fields["profile"]
                    previous = fields.get("prev_profile", b"")
                    if fields.get("sample_type_config"):
                        config = SampleTypeConfig.parse(fields["sample_type_config"])
                if not data:
                    raise ValueError("the request has no profile in its body")
                hint = app_name.profile_type
                items = _items(_read(data, budget, legacy=True), service, labels,
                               now_ns=end, config=config, hint=hint)  # fmt: skip
                if previous:
                    # A cumulative profile (since the process started) and the one before
                    # it: what happened in between is their difference, as Pyroscope stores.
                    earlier = _read(previous, budget, "prev_profile", legacy=True)
                    before = _items(earlier, service, labels, now_ns=end, config=config,
                                    hint=hint)  # fmt: skip
                    items = subtract(items, before)
                    if not any(i.profile.samples for i in items):
                        raise ImportRefused(
                            422,
                            "the profile minus prev_profile has no samples: nothing to store",
                            reason="empty",
                        )
                return items

            await store("pyroscope", convert, key=_request_key(request, body))
        except ImportRefused as exc:
            return _json_error(exc.status, exc.message)
        return Response(status_code=200)


def _otlp_error(status: int, message: str) -> Response:
    """An OTLP/HTTP error: a ``google.rpc.Status`` (code 3 invalid argument, 8 exhausted...)
    as protobuf, as the OTLP exporters read it; the message is the one sentence."""
    codes = {400: 3, 413: 8, 415: 3, 422: 9, 503: 14}
    body = _status_bytes(codes.get(status, 2), message)
    return Response(body, status_code=status, media_type="application/x-protobuf")


def _status_bytes(code: int, message: str) -> bytes:
    """``google.rpc.Status{code, message}`` encoded by hand (two fields, no dependency)."""
    text = message.encode("utf-8")
    out = bytearray(b"\x08")  # field 1, varint
    out += _varint(code)
    out += b"\x12" + _varint(len(text)) + text  # field 2, bytes
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _connect_error(status: int, message: str) -> JSONResponse:
    """A Connect unary error: JSON ``{code, message}`` whatever the request's codec."""
    code = _CONNECT_CODES.get(status, "unknown")
    return JSONResponse({"code": code, "message": message}, status_code=status)
