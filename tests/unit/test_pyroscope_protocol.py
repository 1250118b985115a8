"""Parsing Pyroscope's ingest requests: app names, times, folded bodies, multipart, PushRequest."""

from __future__ import annotations

import base64
import json

import pytest

from aperture.aggregator.pyroscope import (
    AppName,
    UnsupportedMediaType,
    folded_profile,
    multipart_fields,
    parse_app_name,
    parse_unix_time,
    push_request,
)
from aperture.model import EventType, Profile
from aperture.proto.pyroscope import push_pb2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app", AppName("app", "cpu", {})),
        ("app.cpu", AppName("app", "cpu", {})),
        ("my.app.inuse_space", AppName("my.app", "inuse_space", {})),
        ("my.app", AppName("my.app", "cpu", {})),
        ("app.cpu{env=prod, region=eu-west}", AppName("app", "cpu", {"env": "prod",
                                                                      "region": "eu-west"})),
        ("app.cpu{}", AppName("app", "cpu", {})),
    ],
)  # fmt: skip
def test_app_names_give_service_profile_type_and_tags(text: str, expected: AppName) -> None:
    assert parse_app_name(text) == expected


@pytest.mark.parametrize("text", ["app.cpu{env}", "app{=x}", "{a=b}", "app.cpu{1x=2}"])
def test_bad_app_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="name="):
        parse_app_name(text)


def test_unix_times_in_any_resolution() -> None:
    s = 1_795_600_000
    for text in (str(s), str(s * 10**3), str(s * 10**6), str(s * 10**9)):
        assert parse_unix_time(text, default_ns=0, name="from") == s * 10**9
    assert parse_unix_time(None, default_ns=7, name="from") == 7
    with pytest.raises(ValueError, match="until='soon'"):
        parse_unix_time("soon", default_ns=0, name="until")


def test_folded_and_lines_bodies() -> None:
    folded = folded_profile("main;a;b 10\nmain;c 5\n", lines=False, service="api",
                            profile_type="cpu", units="samples", sample_rate=100,
                            start_ns=1, end_ns=2)  # fmt: skip
    assert folded.event_type is EventType.CPU and folded.frequency_hz == 100
    got = {tuple(f.name for f in s.stack): (s.value, s.comm) for s in folded.samples}
    assert got == {("main", "a", "b"): (10, "api"), ("main", "c"): (5, "api")}
    lines = folded_profile("main;a\nmain;a\nmain;b\n\n", lines=True, service="api",
                           profile_type="cpu", units="", sample_rate=100,
                           start_ns=1, end_ns=2)  # fmt: skip
    assert {tuple(f.name for f in s.stack): s.value for s in lines.samples} == {
        ("main", "a"): 2,
        ("main", "b"): 1,
    }


def test_folded_stacks_are_the_type_their_name_says_in_its_unit() -> None:
    def folded(profile_type: str, units: str, text: str = "main;a 64\n") -> Profile:
        return folded_profile(text, lines=False, service="api", profile_type=profile_type,
                              units=units, sample_rate=100, start_ns=1, end_ns=2)  # fmt: skip

    objects = folded("alloc_objects", "objects")
    assert (objects.event_type, objects.unit, objects.total) == (EventType.ALLOC_OBJECTS,
                                                                 "objects", 64)  # fmt: skip
    assert folded("inuse_space", "bytes").event_type is EventType.INUSE_SPACE
    mutex = folded("mutex_duration", "lock_nanoseconds")
    assert (mutex.event_type, mutex.total) == (EventType.MUTEX_DELAY, 64)
    # wall time in samples at 100 Hz: 10 ms each
    assert folded("wall", "samples").total == 640_000_000
    # an old client's lock contention as app.cpu with lock units, or app.lock_count, is a
    # mutex profile as its pprof would be (our lock type is our agent's futex waits)
    locks = folded("cpu", "lock_nanoseconds", "main;lock 5000\n")
    assert locks.event_type is EventType.MUTEX_DELAY and locks.total == 5000
    counted = folded("lock_count", "lock_samples", "main;lock 7\n")
    assert counted.event_type is EventType.MUTEX_CONTENTIONS and counted.total == 7
    # a unit that does not fit the type is refused, never filed as something else
    with pytest.raises(ValueError, match="units=bytes do not fit alloc_objects profiles"):
        folded("alloc_objects", "bytes")


def test_bad_folded_lines_name_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        folded_profile("main;a 1\nmain;b x\n", lines=False, service="api", profile_type="cpu",
                       units="", sample_rate=100, start_ns=1, end_ns=2)  # fmt: skip


def test_multipart_fields_keep_binary_content_exactly() -> None:
    blob = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"p.pprof\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + blob + b"\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n"
            b"--XyZ--\r\n")  # fmt: skip
    fields = multipart_fields(body, "multipart/form-data; boundary=XyZ")
    assert fields == {"profile": blob, "sample_type_config": b"{}"}
    with pytest.raises(ValueError, match="truncated"):
        multipart_fields(body[:-9], "multipart/form-data; boundary=XyZ")
    with pytest.raises(ValueError, match="boundary"):
        multipart_fields(body, "multipart/form-data")


def request() -> push_pb2.PushRequest:
    req = push_pb2.PushRequest()
    series = req.series.add()
    series.labels.add(name="service_name", value="api")
    series.labels.add(name="__name__", value="process_cpu")
    series.samples.add(raw_profile=b"\x01\x02", ID="x")
    return req


def test_push_request_in_proto_and_connect_json() -> None:
    [series] = push_request(request().SerializeToString(), "application/proto")
    assert series.labels == {"service_name": "api", "__name__": "process_cpu"}
    assert series.profiles == [b"\x01\x02"]
    as_json = json.dumps({"series": [{
        "labels": [{"name": "service_name", "value": "api"}],
        "samples": [{"rawProfile": base64.b64encode(b"\x01\x02").decode()}],
    }]}).encode()  # fmt: skip
    [series] = push_request(as_json, "application/json; charset=utf-8")
    assert series.profiles == [b"\x01\x02"]


def test_push_request_refusals() -> None:
    with pytest.raises(UnsupportedMediaType, match="application/grpc"):
        push_request(b"", "application/grpc")
    with pytest.raises(ValueError, match=r"not a push\.v1\.PushRequest"):
        push_request(b"\xff\xff\xff", "application/proto")
    with pytest.raises(ValueError, match="in JSON"):
        push_request(b"{not json", "application/json")
