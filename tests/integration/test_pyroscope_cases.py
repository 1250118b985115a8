"""Pyroscope's own ingest test set against a real aggregator: status and stored types.

``../shared/interop/pyroscope/expected.json`` lists the cases of Pyroscope's
integration test (``pkg/test/integration/ingest_pprof_test.go``): a profile,
maybe a previous profile and a sample-type config, the status Pyroscope answers
on the legacy ``/ingest`` and on ``/push.v1.PusherService/Push``, and the
profile types it stores with the pprof value column each comes from. Every case
is sent both ways to one aggregator; the status must be the same, and each type
Pyroscope stores must be stored here under our name for it (:data:`OURS`), from
the same column: the stored total, asked of the query API, is that column's sum
(in our unit). No other type may appear. The fixtures are years old, so the
aggregator keeps ten years.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.proto.pprof import profile_pb2 as pb
from aperture.proto.pyroscope import push_pb2
from interop_files import INTEROP, needs_interop

pytestmark = needs_interop
CASES = INTEROP / "pyroscope"
TOKEN = "test-token"

# Pyroscope's ``name:sample_type`` -> the type we store it as (our names; the same values).
OURS = {
    "process_cpu:samples": "cpu",
    "process_cpu:cpu": "cpu",
    "process_cpu:alloc_samples": "alloc_objects",  # .NET's names, by its sample-type config
    "process_cpu:alloc_size": "alloc_space",
    "memory:alloc_objects": "alloc_objects",
    "memory:alloc_space": "alloc_space",
    "memory:inuse_objects": "inuse_objects",
    "memory:inuse_space": "inuse_space",
    "memory:objects": "inuse_objects",  # Node's heap profile: live objects
    "memory:space": "inuse_space",
    "wall:sample": "wall",
    "wall:samples": "wall",
    "wall:wall": "wall",
    "goroutines:goroutine": "goroutines",
    "block:contentions": "block_contentions",
    "block:delay": "block_delay",
    "mutex:contentions": "mutex_contentions",
    "mutex:delay": "mutex_delay",
}
_TIME = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000}


def _cases() -> list[Any]:
    if not (CASES / "expected.json").is_file():
        return []
    out = []
    for i, case in enumerate(json.loads((CASES / "expected.json").read_text())):
        name = f"{i:02d}-{Path(case['profile']).name}" + ("-delta" if case["prev_profile"] else "")
        missing = [p for p in (case["profile"], case["prev_profile"]) if p and
                   not (CASES / p).is_file()]  # fmt: skip
        reason = (
            (
                f"Pyroscope's case {i} sends {missing[0]}, a file its expected.json lists "
                f"but {CASES} does not hold: there is no profile to send"
            )
            if missing
            else ""
        )
        marks = [pytest.mark.skip(reason=reason)] if missing else []
        out.append(pytest.param(i, case, id=name, marks=marks))
    return out


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("pyroscope") / "agg",
                             "--retention", "3650d").start()  # fmt: skip
    yield proc
    proc.stop()


def _read(path: str) -> bytes:
    return (CASES / path).read_bytes()


def _pprof(data: bytes) -> pb.Profile:
    p = pb.Profile()
    p.ParseFromString(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return p


def _column_total(p: pb.Profile, index: int) -> int:
    return sum(s.value[index] for s in p.sample)


def _expected_total(p: pb.Profile, index: int, ours: str) -> tuple[int, int]:
    """(the column's sum, what one unit of our stored total is worth in that column)."""
    s = p.string_table
    unit = s[p.sample_type[index].unit]
    total = _column_total(p, index)
    if ours == "cpu" and unit == "nanoseconds":
        period = p.period * _TIME.get(s[p.period_type.unit], 1) or 1
        return total, period  # we keep samples at the period
    if ours == "wall":
        if unit in _TIME:
            return total * _TIME[unit], 1
        period = p.period * _TIME[s[p.period_type.unit]]
        return total * period, 1  # samples of the wall period
    return total, 1


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "aperture-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _ingest(agg: AggregatorProcess, service: str, case: dict[str, Any]) -> httpx.Response:
    fields = {"profile": _read(case["profile"])}
    if case["prev_profile"]:
        fields["prev_profile"] = _read(case["prev_profile"])
    if case["sample_type_config"]:
        fields["sample_type_config"] = _read(case["sample_type_config"])
    body, content_type = _multipart(fields)
    return httpx.post(f"{agg.http}/ingest", content=body, timeout=30, params={
        "name": f"{service}{{case=x}}", "format": "pprof", "spyName": case["spy_name"]},
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})  # fmt: skip


def _push(agg: AggregatorProcess, service: str, case: dict[str, Any]) -> httpx.Response:
    request = push_pb2.PushRequest()
    series = request.series.add()
    kinds = {t["id"].split(":")[0] for t in case["profile_types"]} or {"process_cpu"}
    # the profile's name, as the SDKs send it (godeltaprof: "block" for a block profile)
    for name, value in {"__name__": sorted(kinds)[0], "service_name": service}.items():
        series.labels.add(name=name, value=value)
    series.samples.add(raw_profile=_read(case["profile"]), ID="1")
    return httpx.post(f"{agg.http}/push.v1.PusherService/Push", timeout=30,
                      content=request.SerializeToString(),
                      headers={"Authorization": f"Bearer {TOKEN}",
                               "Content-Type": "application/proto"})  # fmt: skip


def _stored(agg: AggregatorProcess, service: str) -> dict[str, int]:
    """Every type stored for the service, with its total over all time, from the query API."""
    window = {"from": "2000-01-01T00:00:00Z", "to": "now", "label.service_name": service}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    types = httpx.get(f"{agg.http}/api/v1/profile-types", params=window, headers=headers)
    assert types.status_code == 200, types.text
    out = {}
    for t in types.json()["types"]:
        if t["present"]:
            top = httpx.get(f"{agg.http}/api/v1/top", headers=headers,
                            params={**window, "type": t["type"], "limit": 1})  # fmt: skip
            assert top.status_code == 200, top.text
            out[t["type"]] = top.json()["total"]
    return out


def _check_types(agg: AggregatorProcess, service: str, case: dict[str, Any]) -> None:
    stored = _stored(agg, service)
    p = _pprof(_read(case["profile"]))
    want: dict[str, set[tuple[int, int]]] = {}
    for t in case["profile_types"]:
        name, sample_type = t["id"].split(":")[:2]
        ours = OURS[f"{name}:{sample_type}"]
        want.setdefault(ours, set()).add(_expected_total(p, t["value_index"], ours))
    assert set(stored) == set(want), f"stored {sorted(stored)}, Pyroscope {sorted(want)}"
    for ours, totals in want.items():
        for column_total, per_unit in totals:
            # our total, in our unit, is the column Pyroscope reads (to within rounding of
            # a CPU time column into samples of its period)
            assert abs(stored[ours] * per_unit - column_total) <= per_unit * len(p.sample), (
                ours, stored[ours], per_unit, column_total)  # fmt: skip
            if per_unit == 1:
                assert stored[ours] == column_total, (ours, stored[ours], column_total)


@pytest.mark.parametrize(("i", "case"), _cases())
def test_legacy_ingest_answers_and_stores_as_pyroscope(
    agg: AggregatorProcess, i: int, case: dict[str, Any]
) -> None:
    service = f"ingest{i}"
    response = _ingest(agg, service, case)
    assert response.status_code == int(case["ingest_status"]), response.text
    if response.status_code != 200:
        assert response.json()["detail"]  # one sentence saying why
        assert _stored(agg, service) == {}
        return
    _check_types(agg, service, case)


@pytest.mark.parametrize(("i", "case"), [c for c in _cases() if c.values[1]["push_status"]])
def test_connect_push_answers_and_stores_as_pyroscope(
    agg: AggregatorProcess, i: int, case: dict[str, Any]
) -> None:
    service = f"push{i}"
    response = _push(agg, service, case)
    assert response.status_code == int(case["push_status"]), response.text
    if response.status_code != 200:
        error = response.json()
        assert error["code"] == "invalid_argument" and error["message"]
        if case["expected_error"]:
            assert "id 0" in error["message"]  # Pyroscope: "function id is 0"
        assert _stored(agg, service) == {}
        return
    _check_types(agg, service, case)
