"""The analysis API over the buffer: constructed data in through gRPC, answers out over REST."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.formats.collapsed import parse_collapsed
from aperture.model import EventType, Frame, LockStat, Profile, Sample, SyscallStat
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

MAIN, A, B, C = (Frame(n, "app") for n in ("main", "a", "b", "c"))
NOW = time.time_ns() // 10**9 * 10**9
MIN = 60 * 10**9
# Absolute bounds: the module may run long after NOW was taken.
FROM = str(NOW - 60 * MIN)


def cpu(end_ns: int, *samples: tuple[tuple[Frame, ...], int]) -> Profile:
    return Profile(EventType.CPU, "samples",
                   samples=[Sample(st, v, pid=7, comm="app") for st, v in samples],
                   start_ns=end_ns - 10**10, end_ns=end_ns, frequency_hz=99)  # fmt: skip


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("q") / "agg").start()
    stub = aggregator_pb2_grpc.AggregatorStub(grpc.insecure_channel(proc.grpc_target))  # type: ignore[no-untyped-call]
    md = [("authorization", "Bearer test-token")]

    def push(seq: int, profiles: list[Profile], host: str = "h1", env: str = "prod") -> None:
        ident = Identity(f"agent-{host}", host, {"env": env})
        assert stub.Push(encode(profiles, ident, seq), metadata=md).accepted

    # baseline window (-30m): a 90, b 10; comparison (-5m): a 100, b 300, c 100 (c only here)
    push(1, [cpu(NOW - 30 * MIN, ((MAIN, A), 90), ((MAIN, B), 10))])
    push(2, [cpu(NOW - 5 * MIN, ((MAIN, A), 100), ((MAIN, B), 300), ((MAIN, C), 100))])
    # another host with another label, exactly at -10m
    push(1, [cpu(NOW - 10 * MIN, ((MAIN, A), 5))], host="h2", env="dev")
    sys_end = NOW - 2 * MIN
    calls = [SyscallStat(7, "app", 0, "read", count=100, errors=4, total_ns=100_000,
                         min_ns=500, max_ns=9000, hist=(0,) * 9 + (90, 10), errnos={11: 4}),
             SyscallStat(7, "app", 257, "openat", count=10, errors=10, total_ns=50_000,
                         min_ns=2000, max_ns=8000, hist=(0,) * 11 + (10,),
                         errnos={2: 10})]  # fmt: skip
    locks = [LockStat(7, "app", 0xABC0, (MAIN, A), contentions=3, wait_ns=3_000_000,
                      max_ns=2_000_000, hist=(0,) * 20 + (3,))]  # fmt: skip
    push(3, [
        Profile(EventType.SYSCALL, "nanoseconds", start_ns=sys_end - 10**10, end_ns=sys_end,
                syscalls=calls),
        Profile(EventType.LOCK, "nanoseconds", start_ns=sys_end - 10**10, end_ns=sys_end,
                locks=locks),
    ])  # fmt: skip
    proc.wait_stored()
    yield proc
    proc.stop()


def get(agg: AggregatorProcess, path: str, **params: Any) -> Any:
    response = httpx.get(f"{agg.http}/api/v1/{path}", params=params, headers=agg.headers())
    assert response.status_code == 200, response.text
    return response.json() if "json" in response.headers["content-type"] else response.text


def tree(data: dict[str, Any]) -> dict[tuple[str, ...], int]:
    """{path of names: total} from the flat pre-order arrays."""
    names, nodes = data["names"], data["nodes"]
    out: dict[tuple[str, ...], int] = {}
    path: list[str] = []
    for name, depth, total in zip(nodes["name"], nodes["depth"], nodes["total"], strict=True):
        del path[depth:]
        path.append(names[name])
        out[tuple(path)] = total
    return out


def test_flamegraph_flat_arrays(agg: AggregatorProcess) -> None:
    data = get(agg, "flamegraph", **{"from": FROM})
    t = tree(data)
    assert data["total"] == 90 + 10 + 100 + 300 + 100 + 5
    assert t[("all",)] == data["total"]
    assert t[("all", "app", "main", "b")] == 310
    assert t[("all", "app", "main", "c")] == 100


def test_time_and_label_filters_are_exact_at_the_boundaries(agg: AggregatorProcess) -> None:
    at = str(NOW - 10 * MIN)
    assert get(agg, "top", **{"from": at, "to": "now", "host": "h2"})["total"] == 5
    assert get(agg, "top", **{"from": str(NOW - 10 * MIN + 1), "host": "h2"})["total"] == 0
    assert get(agg, "top", **{"from": FROM, "to": at, "host": "h2"})["total"] == 0
    assert get(agg, "top", **{"from": FROM, "label.env": "dev"})["total"] == 5
    assert get(agg, "top", **{"from": FROM, "label.env": "prod"})["total"] == 600
    assert get(agg, "top", **{"from": FROM, "label.env": "x' OR '1'='1"})["total"] == 0


def test_top_functions(agg: AggregatorProcess) -> None:
    data = get(agg, "top", **{"from": FROM, "limit": 2})
    assert [(f["name"], f["self"]) for f in data["functions"]] == [("b", 310), ("a", 195)]
    assert data["functions"][0]["self_pct"] == pytest.approx(100 * 310 / 605)
    by_total = get(agg, "top", **{"from": FROM, "sort": "total", "limit": 1})
    assert by_total["functions"][0]["name"] == "main"


def test_diff_is_normalized_per_side_and_covers_the_union(agg: AggregatorProcess) -> None:
    data = get(agg, "diff", baseline_from=str(NOW - 40 * MIN), baseline_to=str(NOW - 20 * MIN),
               comparison_from=str(NOW - 7 * MIN), comparison_to="now")  # fmt: skip
    assert (data["baseline_total"], data["comparison_total"]) == (100, 500)
    rows = {r["name"]: r for r in data["functions"]}
    assert rows["a"]["baseline_pct"] == pytest.approx(90.0)
    assert rows["a"]["comparison_pct"] == pytest.approx(20.0)
    assert rows["b"]["delta_pct"] == pytest.approx(60.0 - 10.0)
    assert rows["c"]["baseline_self"] == 0 and rows["c"]["comparison_pct"] == pytest.approx(20.0)
    names, nodes = data["names"], data["nodes"]
    c = next(i for i, n in enumerate(nodes["name"]) if names[n] == "c")
    assert (nodes["baseline"][c], nodes["comparison"][c]) == (0, 100)
    assert data["functions"][0]["name"] == "a"  # the largest |change| first


def test_timeline_buckets(agg: AggregatorProcess) -> None:
    data = get(agg, "timeline", **{"from": FROM, "step": "1m", "group_by": "host"})
    series = {s["key"]: s["points"] for s in data["series"]}
    assert series["h2"] == [[(NOW - 10 * MIN) // MIN * MIN, 5]]
    assert sum(v for _, v in series["h1"]) == 600


def test_syscalls_and_locks(agg: AggregatorProcess) -> None:
    rows = {r["name"]: r for r in get(agg, "syscalls", **{"from": FROM})["syscalls"]}
    assert rows["read"]["count"] == 100 and rows["read"]["errors"] == 4
    assert rows["read"]["top_errno"] == [["EAGAIN", 4]]
    assert 512 <= rows["read"]["p50_ns"] < 1024 and rows["read"]["max_ns"] == 9000
    assert rows["openat"]["error_rate"] == 1.0
    locks = get(agg, "locks", **{"from": FROM})["locks"]
    assert locks[0]["address"] == "0xabc0" and locks[0]["contentions"] == 3
    assert [f["name"] for f in locks[0]["top_stack"]] == ["main", "a"]
    lock_tree = get(agg, "flamegraph", type="lock", address="0xabc0", pid=7, **{"from": FROM})
    assert lock_tree["total"] == 3_000_000


def test_exports_parse_back(agg: AggregatorProcess) -> None:
    folded = parse_collapsed(get(agg, "export", format="collapsed", **{"from": FROM}))
    assert folded[("app", "main", "b")] == 310
    speedscope = get(agg, "export", format="speedscope", **{"from": FROM})
    assert speedscope["$schema"].startswith("https://www.speedscope.app/")
    assert (
        json.loads(json.dumps(get(agg, "export", format="json", **{"from": FROM})))["total"] == 605
    )


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("top", {"from": "yesterday"}, "is not a time"),
        ("top", {"from": "now", "to": "-1h"}, "must be later"),
        ("top", {"pid": "abc"}, "not a number"),
        ("flamegraph", {"type": "syscall"}, "no stacks"),
        ("top", {"type": "syscall"}, "use /api/v1/syscalls"),
        ("export", {"format": "png"}, "not available"),
        ("timeline", {"step": "1s", "from": "-7d"}, "10,000 buckets"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(
    agg: AggregatorProcess, path: str, params: dict[str, str], reason: str
) -> None:
    response = httpx.get(f"{agg.http}/api/v1/{path}", params=params, headers=agg.headers())
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_profile_types_lists_the_registry(agg: AggregatorProcess) -> None:
    response = httpx.get(f"{agg.http}/api/v1/profile-types", headers=agg.headers())
    assert response.status_code == 200
    types = {t["type"]: t for t in response.json()["types"]}
    assert set(types) == {
        "cpu", "lock", "syscall", "offcpu", "wall", "cycles", "alloc_objects", "alloc_space",
        "inuse_objects", "inuse_space", "goroutines", "mutex_contentions", "mutex_delay",
        "block_contentions", "block_delay", "exceptions"}  # fmt: skip
    assert all(t["present"] is None for t in types.values())  # no range asked
    assert [t for t, info in types.items() if info["aggregation"] == "average"] == [
        "inuse_objects", "inuse_space", "goroutines"]  # fmt: skip
    assert (types["inuse_space"]["value_unit"], types["inuse_space"]["pprof_sample_types"]) == (
        "bytes", ["inuse_space/bytes"])  # fmt: skip
    ranged = httpx.get(f"{agg.http}/api/v1/profile-types", headers=agg.headers(),
                       params={"from": "-1h"}).json()["types"]  # fmt: skip
    present = {t["type"] for t in ranged if t["present"]}
    assert "cpu" in present and "alloc_space" not in present
    assert (types["offcpu"]["label"], types["offcpu"]["pprof_sample_types"]) == (
        "Off-CPU", ["off_cpu/nanoseconds"])  # fmt: skip
    assert (types["lock"]["label"], types["lock"]["value_unit"]) == ("Lock wait", "nanoseconds")
    assert types["cpu"]["pprof_sample_types"] == ["samples/count", "cpu/nanoseconds"]
    assert [t for t, info in types.items() if not info["has_stacks"]] == ["syscall"]


def test_openapi_lists_the_analysis_routes(agg: AggregatorProcess) -> None:
    paths = httpx.get(f"{agg.http}/openapi.json").json()["paths"]
    for route in ("flamegraph", "top", "diff", "timeline", "syscalls", "locks", "export"):
        assert f"/api/v1/{route}" in paths


def test_every_route_needs_the_token(agg: AggregatorProcess, tmp_path: Path) -> None:
    for route in ("flamegraph", "top", "diff", "timeline", "syscalls", "locks"):
        assert httpx.get(f"{agg.http}/api/v1/{route}").status_code == 401
