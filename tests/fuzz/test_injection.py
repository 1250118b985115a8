"""SQL and ClickHouse metacharacters in labels, hosts, process and function names.

Each value is pushed by its own agent with a distinct power-of-two sample count, so a
query's total says exactly which rows it matched: a value must match itself only
(``%`` and ``_`` are no LIKE wildcards, quotes and ``{x:String}`` change no statement).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzz_server import Aggregator

from aggregator_proc import AggregatorProcess
from aperture.model import EventType, Frame, Profile, Sample
from aperture.wire import Identity, encode

META = ["'", '"', "\\", ";", "--", "/*", "*/", "\n", "') OR 1=1 --", "' OR '1'='1", "{", "}",
        "{x:String}", "`", "`labels`", "%", "_", "a%", "\0", "é", "日本", "🔥", "\\'",
        "x' UNION SELECT 1 --", "$1", "?", "plain", " padded ", "%25", "a_c"]  # fmt: skip
NOW = time.time_ns() // 10**9 * 10**9
FROM, TO = str(NOW - 3600 * 10**9), str(NOW + 60 * 10**9)
ALL = 2 ** len(META) - 1


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    """An aggregator holding only the metacharacter data."""
    proc = AggregatorProcess(Path(tmp_path_factory.mktemp("inject")) / "agg").start()
    agg = Aggregator(proc)
    with grpc.insecure_channel(proc.grpc_target) as channel:
        push = channel.unary_unary("/aperture.v1.Aggregator/Push")
        for i, value in enumerate(META):
            end = NOW - (i + 1) * 10**9
            profile = Profile(EventType.CPU, "samples", start_ns=end - 10**10, end_ns=end,
                              samples=[Sample((Frame("main"), Frame(value, value)), 2**i,
                                              pid=i + 1, comm=value, thread=value)])  # fmt: skip
            batch = encode([profile], Identity(f"agent{value}", value, {"env": value}), 1)
            push(batch.SerializeToString(), metadata=[("authorization", "Bearer test-token")])
    proc.wait_stored()
    try:
        yield agg
    finally:
        agg.client.close()
        agg.anonymous.close()
        assert proc.stop() == 0


def _get(agg: Aggregator, path: str, **params: Any) -> Any:
    response = agg.client.get(f"/api/v1/{path}", params={"from": FROM, "to": TO, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("i", range(len(META)), ids=[repr(v) for v in META])
def test_each_filter_matches_exactly_its_own_rows(agg: Aggregator, i: int) -> None:
    value = META[i]
    for key in ("label.env", "host", "comm", "agent"):
        wanted = f"agent{value}" if key == "agent" else value
        assert _get(agg, "top", **{key: wanted})["total"] == 2**i, key
    # timeline and flamegraph share the filter code, the rollup path is taken by comm alone
    series = _get(agg, "timeline", step="1h", **{"label.env": value})["series"]
    assert sum(v for s in series for _, v in s["points"]) == 2**i
    wide = {"from": str(NOW - 5 * 3600 * 10**9), "comm": value}
    assert _get(agg, "flamegraph", **wide)["total"] == 2**i


@pytest.mark.parametrize("i", range(len(META)), ids=[repr(v) for v in META])
def test_names_come_back_byte_for_byte(agg: Aggregator, i: int) -> None:
    value = META[i]
    top = _get(agg, "top", **{"label.env": value})["functions"]
    assert {(f["name"], f["module"], f["self"]) for f in top} == {
        ("main", "", 0),
        (value, value, 2**i),
    }
    tree = _get(agg, "flamegraph", **{"host": value})
    assert value in tree["names"]
    exported = agg.client.get("/api/v1/export", params={"from": FROM, "to": TO, "format": "json",
                                                        "comm": value})  # fmt: skip
    assert exported.status_code == 200
    assert value in _strings(exported.json())


def _strings(data: Any) -> set[str]:
    """Every string anywhere in a JSON document."""
    if isinstance(data, str):
        return {data}
    if isinstance(data, dict):
        return set(data) | {s for v in data.values() for s in _strings(v)}
    if isinstance(data, list):
        return {s for v in data for s in _strings(v)}
    return set()


def test_wildcards_and_quotes_match_nothing_else(agg: Aggregator) -> None:
    assert _get(agg, "top")["total"] == ALL
    for pattern in ("%%", "a", "_%", "%'%", "' OR ''='", "1=1", "*", ".*", "", "\\%"):
        if pattern in META:
            continue
        for key in ("label.env", "host", "comm"):
            got = _get(agg, "top", **{key: pattern})["total"]
            # an empty host/comm means "no filter" (documented), a label must equal ""
            expected = ALL if pattern == "" and key != "label.env" else 0
            assert got == expected, (key, pattern)


def test_label_keys_with_metacharacters_are_bound_too(agg: Aggregator) -> None:
    for key in ("env'", "env) OR (1=1", "`env`", "env%", "{lk0:String}"):
        assert _get(agg, "top", **{f"label.{key}": "plain"})["total"] == 0
    assert _get(agg, "top", **{"label.env": "plain", "label.x": "y"})["total"] == 0


def test_agents_list_keeps_labels_exact(agg: Aggregator) -> None:
    agents = agg.client.get("/api/v1/agents").json()
    assert sorted(a["labels"]["env"] for a in agents) == sorted(META)
    assert sorted(a["host"] for a in agents) == sorted(META)


def test_pyroscope_tags_with_metacharacters(agg: Aggregator) -> None:
    for i, value in enumerate(["' OR 1=1 --", "%", "_", "`x`", "\\", "é;--"]):
        name = f"inj.cpu{{tag={value},n={i}}}"
        window = {"from": str(NOW // 10**9 - 30), "until": str(NOW // 10**9 - 20)}
        response = agg.client.post("/ingest", params={"name": name, **window}, content=b"a;b 9\n")
        assert response.status_code == 200, response.text
    agg.proc.wait_stored()
    for i, value in enumerate(["' OR 1=1 --", "%", "_", "`x`", "\\", "é;--"]):
        got = _get(agg, "top", **{"label.tag": value, "label.service_name": "inj"})
        assert got["total"] == 9, value
        assert _get(agg, "top", **{"label.tag": value, "label.n": str(i)})["total"] == 9


def test_alert_functions_with_metacharacters_are_literal(agg: Aggregator) -> None:
    for value in ("x') OR 1=1 --", "%%", "pl_in", "%", "_", "') OR 1=1 --", "plain"):
        rule = {"name": "inj", "expression": {"metric": "cpu_share", "params": {
                "function": value, "window": "1h"}}, "operator": ">", "threshold": 0}  # fmt: skip
        response = agg.client.post("/api/v1/alerts/evaluate", json={"rule": rule})
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        grand = _get(agg, "top", **{"from": "-1h", "to": "now"})["total"]  # the rule's window
        expected = 100 * 2 ** META.index(value) / grand if value in META else 0
        assert (result["value"] or 0) == pytest.approx(expected, rel=1e-9, abs=1e-12), value
