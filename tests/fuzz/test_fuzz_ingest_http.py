"""The ingest routes of a real aggregator: garbage gets a 4xx that says why, never a 5xx.

Covers pprof upload, Pyroscope's legacy ``/ingest`` (every query parameter) and its
Connect push, and gRPC Push of damaged batches; the server stays healthy throughout.
"""

from __future__ import annotations

import gzip

import grpc
from fuzz_batches import byte_edits, mutate_bytes, mutated_batches, pprof_messages
from fuzz_server import Aggregator, refused_or_ok
from hypothesis import given
from hypothesis import strategies as st

from aperture.proto.pprof import profile_pb2 as pp
from aperture.proto.v1 import profile_pb2 as pb

# refused as malformed or too large, or asked to retry when the store's queue is full
ALLOWED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
)

METACHARS = st.sampled_from(["'", '"', "\\", ";", "--", "/*", "*/", "\n", "{", "}", "`", "%",
                             "_", "\x00", "é", "=", ",", " ", "app", ".cpu", "k=v"])  # fmt: skip
weird = st.lists(METACHARS, max_size=12).map("".join) | st.text(max_size=30)
times = st.none() | st.integers(-(2**65), 2**65).map(str) | weird
formats = st.sampled_from(["folded", "lines", "pprof", "trie", "tree", "json", ""])
folded_bodies = st.text(st.sampled_from(list("ab; \n0123456789{}")), max_size=100).map(str.encode)


@given(
    name=weird,
    format_=formats,
    from_=times,
    until=times,
    rate=st.none() | st.integers(-5, 2**33).map(str) | weird,
    extra=st.dictionaries(st.sampled_from(["spyName", "units", "aggregationType"]), weird),
    body=folded_bodies | st.binary(max_size=200),
)
def test_pyroscope_ingest_parameters(
    aggregator: Aggregator,
    name: str,
    format_: str,
    from_: str | None,
    until: str | None,
    rate: str | None,
    extra: dict[str, str],
    body: bytes,
) -> None:
    params: dict[str, str] = {"name": name, "format": format_, **extra}
    for key, value in (("from", from_), ("until", until), ("sampleRate", rate)):
        if value is not None:
            params[key] = value
    refused_or_ok(aggregator.client.post("/ingest", params=params, content=body))


@given(pprof_messages(), st.booleans(), st.sampled_from(["svc", "", "a'b", "x" * 300]))
def test_pprof_upload_of_odd_profiles(
    aggregator: Aggregator, p: pp.Profile, gzipped: bool, service: str
) -> None:
    data = p.SerializeToString()
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    response = aggregator.client.post(
        "/api/v1/ingest/pprof",
        params={"service": service, "label.k": "v"},
        content=gzip.compress(data) if gzipped else data,
        headers=headers,
    )
    refused_or_ok(response)


@given(st.binary(max_size=300), st.sampled_from(["gzip", "identity", "br", ""]))
def test_pprof_upload_of_random_bytes(aggregator: Aggregator, data: bytes, encoding: str) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    refused_or_ok(aggregator.client.post("/api/v1/ingest/pprof", content=data, headers=headers))


@given(
    st.binary(max_size=300),
    st.sampled_from(["application/proto", "application/json", "text/plain", "multipart/x"]),
)
def test_pyroscope_push_of_random_bytes(
    aggregator: Aggregator, data: bytes, content_type: str
) -> None:
    response = aggregator.client.post(
        "/push.v1.PusherService/Push", content=data, headers={"Content-Type": content_type}
    )
    refused_or_ok(response)


@given(mutated_batches(), byte_edits, st.booleans())
def test_grpc_push_of_damaged_batches(
    aggregator: Aggregator, batch: pb.ProfileBatch, edits: list[tuple[int, int, int]], gz: bool
) -> None:
    data = batch.SerializeToString()
    data = mutate_bytes(gzip.compress(data) if gz else data, edits)
    with grpc.insecure_channel(aggregator.proc.grpc_target) as channel:
        push = channel.unary_unary("/aperture.v1.Aggregator/Push")
        try:
            push(data, metadata=[("authorization", "Bearer test-token")], timeout=30)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code in ALLOWED, (
                code,
                exc.details(),  # type: ignore[attr-defined]
            )


def test_the_aggregator_is_healthy_after_the_garbage(aggregator: Aggregator) -> None:
    aggregator.assert_healthy()
    aggregator.proc.wait_stored(timeout=60)
    # whatever was accepted was also written: no flush failed on an odd value
    assert aggregator.proc.metric('aperture_storage_flush_total{status="error"}') == 0
    assert aggregator.proc.metric('aperture_storage_flush_total{status="ok"}') > 0
    assert "Traceback" not in aggregator.proc.log.read_text()
