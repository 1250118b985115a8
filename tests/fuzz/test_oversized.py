"""Oversized and deeply nested inputs are bounded: a clean refusal, and the server lives on."""

from __future__ import annotations

import gzip
import time

import grpc
import pytest
from fuzz_server import Aggregator, refused_or_ok

from aperture.model import EventType, Frame, Profile, Sample
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Identity, encode

TOKEN = [("authorization", "Bearer test-token")]


def _push(agg: Aggregator, data: bytes) -> grpc.StatusCode:
    options = [("grpc.max_send_message_length", 256 << 20)]
    with grpc.insecure_channel(agg.proc.grpc_target, options=options) as channel:
        push = channel.unary_unary("/aperture.v1.Aggregator/Push")
        try:
            push(data, metadata=TOKEN, timeout=120)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def _now() -> int:
    return time.time_ns() // 10**9 * 10**9


@pytest.mark.parametrize("depth", [10, 1000, 10_000, 200_000])
def test_deeply_nested_json_rules_are_refused(aggregator: Aggregator, depth: int) -> None:
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        for path in ("/api/v1/alerts/rules", "/api/v1/alerts/evaluate"):
            response = aggregator.client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            refused_or_ok(response)
            if path.endswith("/rules"):  # no nesting is a rule (evaluate takes any object)
                assert 400 <= response.status_code < 500
    aggregator.assert_healthy()


def test_a_10000_frame_stack_is_stored_and_queried(aggregator: Aggregator) -> None:
    stack = tuple(Frame(f"deep_{i}", "deep.so") for i in range(10_000))
    end = _now()
    profile = Profile(EventType.CPU, "samples", start_ns=end - 10**10, end_ns=end,
                      samples=[Sample(stack, 7, pid=1, comm="deepstack")])  # fmt: skip
    batch = encode([profile], Identity("deep-agent", "deep-host"), 1)
    assert _push(aggregator, batch.SerializeToString()) == grpc.StatusCode.OK
    aggregator.proc.wait_stored()
    query = {"from": str(end - 60 * 10**9), "to": str(end + 10**9), "comm": "deepstack"}
    tree = aggregator.client.get("/api/v1/flamegraph", params=query).json()
    assert tree["total"] == 7
    assert max(tree["nodes"]["depth"]) >= 10_000
    top = aggregator.client.get("/api/v1/top", params={**query, "limit": 5}).json()
    assert top["functions"][0] == {**top["functions"][0], "name": "deep_9999", "self": 7}


def _huge_batch(frames: int) -> pb.ProfileBatch:
    """A valid batch with ``frames`` distinct frames (and as many strings) in one stack each."""
    batch = pb.ProfileBatch(schema_version=pb.SCHEMA_VERSION_1, sequence=1)
    batch.agent.agent_id, batch.agent.host = "huge-agent", "huge-host"
    end = _now()
    batch.window_start_ns, batch.window_end_ns = end - 10**10, end
    batch.strings.extend(["", *(f"f{i}" for i in range(frames))])
    batch.frames.name.extend(range(1, frames + 1))
    batch.frames.module.extend([0] * frames)
    batch.frames.kind.extend([pb.FRAME_KIND_USER] * frames)
    batch.frames.offset.extend([0] * frames)
    batch.stacks.frames.extend(range(frames))
    batch.stacks.lengths.append(frames)
    batch.cpu.stack.append(0)
    batch.cpu.count.append(1)
    batch.cpu.pid.append(1)
    batch.cpu.tid.append(1)
    batch.cpu.comm.append(0)
    batch.cpu.thread.append(0)
    return batch


def test_a_million_frame_string_table_is_refused_as_too_large(aggregator: Aggregator) -> None:
    data = _huge_batch(1_000_000).SerializeToString()
    assert len(data) > 16 << 20  # over the aggregator's default --max-message-bytes
    assert _push(aggregator, data) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # gzip gets it under the wire limit; it must still not inflate past the limit
    packed = gzip.compress(data, compresslevel=1)
    assert len(packed) < 16 << 20
    assert _push(aggregator, packed) == grpc.StatusCode.INVALID_ARGUMENT
    aggregator.assert_healthy()


def test_a_message_over_the_grpc_limit_is_refused(aggregator: Aggregator) -> None:
    assert _push(aggregator, b"\0" * (40 << 20)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    aggregator.assert_healthy()


def test_an_http_body_over_the_limit_is_a_413(aggregator: Aggregator) -> None:
    for path in ("/api/v1/ingest/pprof", "/ingest?name=big.cpu", "/push.v1.PusherService/Push"):
        response = aggregator.client.post(
            path, content=b"x" * (17 << 20), headers={"Content-Type": "application/proto"}
        )
        refused_or_ok(response)
        assert response.status_code == 413, (path, response.status_code)
    aggregator.assert_healthy()


def test_a_gzip_bomb_body_is_refused(aggregator: Aggregator) -> None:
    bomb = gzip.compress(b"\0" * (70 << 20), compresslevel=9)  # past the 64 MiB inflation limit
    response = aggregator.client.post(
        "/api/v1/ingest/pprof", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    refused_or_ok(response)
    assert response.status_code == 400 and "inflates to more than" in response.json()["detail"]


@pytest.mark.parametrize("count", [64, 65, 4_000])  # 4,000: near httpx's 64 KiB URL limit
def test_label_filters_are_bounded(aggregator: Aggregator, count: int) -> None:
    """Found by this test: 4,000 label filters made SQL past ClickHouse's max_query_size (500)."""
    params = [(f"label.k{i}", "v") for i in range(count)]
    for path in ("/api/v1/flamegraph", "/api/v1/top", "/api/v1/timeline", "/api/v1/export"):
        response = aggregator.client.get(path, params=[*params, ("format", "collapsed")])
        refused_or_ok(response)
        assert response.status_code == (200 if count <= 64 else 400), (path, response.text[:200])
    diff = [(f"baseline.label.k{i}", "v") for i in range(min(count, 2_000))]
    response = aggregator.client.get("/api/v1/diff", params=diff)
    refused_or_ok(response)
    assert response.status_code == (200 if count <= 64 else 400)
    aggregator.assert_healthy()


@pytest.mark.parametrize("size", [10_000, 60_000])
def test_long_filter_values_are_answered_or_refused(aggregator: Aggregator, size: int) -> None:
    response = aggregator.client.get("/api/v1/top", params={"comm": "c" * size, "label.k": "v"})
    assert response.status_code < 500
    if response.status_code == 200:
        assert response.json()["functions"] == []
    aggregator.assert_healthy()
