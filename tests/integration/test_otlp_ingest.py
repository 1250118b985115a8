"""The OpenTelemetry eBPF profiler's real OTLP export pushed to a real aggregator over
OTLP/HTTP, and the stored CPU and off-CPU profiles against what Pyroscope makes of it.

Pyroscope's two expected files are its query of ``service_name="unknown_service"``:
the processes whose resource names no executable (the others are
``unknown_service:<executable>``, OpenTelemetry's default, here as there). The
folded export of that service is compared stack by stack (names, root first;
our folded lines start at the process name, which Pyroscope's do not have).
The export is from March 2026, so this aggregator keeps ten years.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.formats.collapsed import parse_collapsed
from aperture.proto.otlp import profiles_service_pb2 as pb
from interop_files import INTEROP, needs_interop

pytestmark = needs_interop
OTLP = INTEROP / "otlp"
TOKEN = "test-token"
URL = "/v1development/profiles"
_LINE = re.compile(r"^(.*)\[.*\]@.*:\d+$")


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("otlp") / "agg",
                             "--retention", "3650d").start()  # fmt: skip
    yield proc
    proc.stop()


def post(agg: AggregatorProcess, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{agg.http}{URL}", content=body, timeout=30, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf",
        **headers})  # fmt: skip


def pyroscope(name: str) -> Counter[tuple[str, ...]]:
    """Pyroscope's stacks, root first, by function name."""
    doc = json.loads((OTLP / name).read_text())
    stacks: Counter[tuple[str, ...]] = Counter()
    for sample in doc["samples"]:
        leaf_first = [m.group(1) for loc in sample["locations"] for line in loc["lines"]
                      if (m := _LINE.match(line))]  # fmt: skip
        stacks[tuple(reversed(leaf_first))] += int(sample["values"])
    return stacks


def stored(agg: AggregatorProcess, event_type: str) -> Counter[tuple[str, ...]]:
    """The folded export of unknown_service, without the process root."""
    response = httpx.get(f"{agg.http}/api/v1/export", headers={"Authorization": f"Bearer {TOKEN}"},
                         params={"format": "collapsed", "type": event_type,
                                 "from": "2026-01-01T00:00:00Z", "to": "now",
                                 "label.service_name": "unknown_service"})  # fmt: skip
    assert response.status_code == 200, response.text
    out: Counter[tuple[str, ...]] = Counter()
    for path, value in parse_collapsed(response.text).items():
        out[path[1:]] += value
    return out


@pytest.fixture(scope="module")
def pushed(agg: AggregatorProcess) -> pb.ExportProfilesServiceRequest:
    data = (OTLP / "otel-ebpf-profile.pb.bin").read_bytes()
    response = post(agg, gzip.compress(data), **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.content == b""  # an empty ExportProfilesServiceResponse: all accepted
    again = post(agg, data)  # the same export again (raw): stored once
    assert again.status_code == 200
    return pb.ExportProfilesServiceRequest.FromString(data)


def test_cpu_is_stored_as_pyroscope_reads_it(
    agg: AggregatorProcess, pushed: pb.ExportProfilesServiceRequest
) -> None:
    strings = pushed.dictionary.string_table
    [period_ns] = {p.period for rp in pushed.resource_profiles for sp in rp.scope_profiles
                   for p in sp.profiles
                   if strings[p.period_type.type_strindex] == "cpu"}  # fmt: skip
    assert period_ns == 50_000_000  # cpu/nanoseconds: one sample is one period (20 Hz)
    ours = stored(agg, "cpu")
    expected = pyroscope("otel-ebpf-profile-cpu.out.json")
    assert {k: v * period_ns for k, v in ours.items()} == dict(expected)
    assert sum(ours.values()) * period_ns == sum(expected.values()) == 500_000_000


def test_off_cpu_is_stored_as_pyroscope_reads_it(
    agg: AggregatorProcess, pushed: pb.ExportProfilesServiceRequest
) -> None:
    ours = stored(agg, "offcpu")
    expected = pyroscope("otel-ebpf-profile-offcpu.out.json")
    assert ours == expected
    assert sum(ours.values()) == 250_725_419_905


def test_named_executables_are_their_own_services(
    agg: AggregatorProcess, pushed: pb.ExportProfilesServiceRequest
) -> None:
    agents = {a["agent_id"] for a in agg.get("/api/v1/agents", headers=agg.headers()).json()}
    assert {"otlp:unknown_service", "otlp:unknown_service:containerd"} <= agents


def test_bad_requests_are_refused_with_one_sentence(agg: AggregatorProcess) -> None:
    garbage = post(agg, b"\x0a\x05hello-not-otlp")
    assert garbage.status_code == 400
    assert b"OTLP" in garbage.content or b"otlp" in garbage.content
    wrong_type = post(agg, b"x", **{"Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    assert b"application/x-protobuf" in wrong_type.content
    empty = post(agg, b"")
    assert empty.status_code == 400 and b"no body" in empty.content
    unauthenticated = httpx.post(f"{agg.http}{URL}", content=b"x",
                                 headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert unauthenticated.status_code == 401


def test_otlp_grpc_export_is_stored_as_over_http(tmp_path: Path) -> None:
    """OTLP/gRPC, the eBPF profiler's default exporter: the same method path, the same
    bytes, and the same stored profiles; a refusal is a gRPC status with the sentence."""
    proc = AggregatorProcess(tmp_path / "agg", "--retention", "3650d").start()
    try:
        channel = grpc.insecure_channel(proc.grpc_target)
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            request_serializer=None, response_deserializer=None)  # fmt: skip
        md = [("authorization", f"Bearer {TOKEN}")]
        data = (OTLP / "otel-ebpf-profile.pb.bin").read_bytes()
        assert export(data, metadata=md, timeout=30) == b""
        assert stored(proc, "offcpu") == pyroscope("otel-ebpf-profile-offcpu.out.json")
        with pytest.raises(grpc.RpcError) as refused:
            export(b"\x0a\x05hello-not-otlp", metadata=md, timeout=30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "OTLP" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as unauthenticated:
            export(data, timeout=30)
        assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert proc.metric('aperture_pushes_total{status="malformed"}') >= 1
        channel.close()
    finally:
        proc.stop()
