"""How user stacks were unwound, from agents' batches to /api/v1/unwind and /metrics.

Constructed batches with known ``cpu.unwind*`` window labels and unwind losses go
in through real gRPC to two real aggregators, one answering from its chDB store
and one from its buffer (``--no-storage``); both must give the exact sums.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.model import EventType, Frame, LockStat, Profile, Sample
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.storage import schema
from aperture.wire import Identity, encode

MAIN = (Frame("_start", "app"), Frame("main", "app"))
NOW = time.time_ns() // 10**9 * 10**9
MIN = 60 * 10**9
FROM = str(NOW - 60 * MIN)  # absolute: the module may run long after NOW was taken
ENDS = ("bottom", "depth", "no_mapping", "no_table", "no_info", "unsupported", "read_fault",
        "bad_frame")  # fmt: skip


def cpu(end_ns: int, labels: dict[str, str], losses: dict[str, int]) -> Profile:
    return Profile(EventType.CPU, "samples", samples=[Sample(MAIN, 5, pid=7, comm="app")],
                   start_ns=end_ns - 10**10, end_ns=end_ns, frequency_hz=99, labels=labels,
                   losses=losses)  # fmt: skip


def unwind_labels(mode: str, **counts: int) -> dict[str, str]:
    return {"unwind": mode, **{f"unwind_{k}": str(v) for k, v in counts.items()}}


# (sequence, host, env, profiles)
BATCHES: list[tuple[int, str, str, list[Profile]]] = [
    (1, "h1", "prod", [cpu(NOW - 30 * MIN, {
        **unwind_labels("auto", table_walks=90, complete=80, truncated=10, fp_only=10,
                        fp_frames=5, end_bottom=80, end_depth=4, end_no_table=6,
                        table_bytes=1000, tables_loaded=3),
        "idle_samples": "40",
    }, {"unwound_stack_collisions": 2, "unwind_tables_evicted": 1, "lost_samples": 7})]),
    (2, "h1", "prod", [cpu(NOW - 5 * MIN, {
        **unwind_labels("auto", table_walks=200, complete=190, truncated=10, fp_only=0,
                        fp_frames=0, end_bottom=190, end_read_fault=10, table_bytes=3000,
                        tables_loaded=5),
        # dropped, not stored: a key over 64 characters and a value that is no number
        "unwind_" + "x" * 60: "9", "unwind_bogus": "12a",
    }, {"unwound_stacks_full": 4, "unwind_tables_too_large": 1})]),
    # --unwind fp: the mode, and counts of 0
    (1, "h2", "dev", [cpu(NOW - 10 * MIN, unwind_labels(
        "fp", table_walks=0, complete=0, truncated=0, fp_only=0, fp_frames=0, table_bytes=0,
        tables_loaded=0), {})]),
    # an agent from before unwinding was reported: no keys at all
    (2, "h2", "dev", [cpu(NOW - 2 * MIN, {}, {"lost_samples": 1})]),
    # no CPU data: not one of the batches /unwind counts
    (3, "h1", "prod", [Profile(EventType.LOCK, "nanoseconds", start_ns=NOW - 70 * 10**9,
                               end_ns=NOW - 60 * 10**9,
                               locks=[LockStat(7, "app", 0x10, MAIN, contentions=1,
                                               wait_ns=100, max_ns=100)])]),
]  # fmt: skip

NULL_SECTIONS = {"samples": None, "ends": None, "tables": None, "losses": None}


def ends(**n: int) -> dict[str, int]:
    return {e: n.get(e, 0) for e in ENDS}


def push_all(agg: AggregatorProcess, batches: list[tuple[int, str, str, list[Profile]]]) -> None:
    with grpc.insecure_channel(agg.grpc_target) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        md = [("authorization", f"Bearer {agg.token}")]
        for seq, host, env, profiles in batches:
            batch = encode(profiles, Identity(f"agent-{host}", host, {"env": env}), seq)
            assert stub.Push(batch, metadata=md, timeout=10).accepted


@pytest.fixture(scope="module")
def aggs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AggregatorProcess]]:
    root = tmp_path_factory.mktemp("unwind")
    procs = {
        "store": AggregatorProcess(root / "store").start(),
        "buffer": AggregatorProcess(root / "buffer", "--no-storage").start(),
    }
    try:
        for proc in procs.values():
            push_all(proc, BATCHES)
        procs["store"].wait_stored()
        yield procs
    finally:
        for proc in procs.values():
            assert proc.stop() == 0, proc.log.read_text()


def unwind(agg: AggregatorProcess, **params: str) -> Any:
    response = httpx.get(f"{agg.http}/api/v1/unwind", params=params, headers=agg.headers())
    assert response.status_code == 200, response.text
    return response.json()


CASES: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({"from": FROM}, {
        "batches": 4, "batches_with_unwind_data": 3, "modes": {"auto": 2, "fp": 1},
        "samples": {"table_walks": 290, "complete": 270, "truncated": 20, "fp_only": 10,
                    "fp_frames": 5},
        "ends": ends(bottom=270, depth=4, no_table=6, read_fault=10),
        "tables": {"bytes_max": 3000, "loaded_max": 5},
        "losses": {"unwound_stack_collisions": 2, "unwound_stacks_full": 4,
                   "unwind_tables_evicted": 1, "unwind_tables_too_large": 1},
    }),
    ({"from": FROM, "host": "h2"}, {
        "batches": 2, "batches_with_unwind_data": 1, "modes": {"fp": 1},
        "samples": {"table_walks": 0, "complete": 0, "truncated": 0, "fp_only": 0,
                    "fp_frames": 0},
        "ends": ends(), "tables": {"bytes_max": 0, "loaded_max": 0},
        "losses": {"unwound_stack_collisions": 0, "unwound_stacks_full": 0,
                   "unwind_tables_evicted": 0, "unwind_tables_too_large": 0},
    }),
    ({"from": FROM, "label.env": "prod"}, {
        "batches": 2, "batches_with_unwind_data": 2, "modes": {"auto": 2},
        "samples": {"table_walks": 290, "complete": 270, "truncated": 20, "fp_only": 10,
                    "fp_frames": 5},
        "ends": ends(bottom=270, depth=4, no_table=6, read_fault=10),
        "tables": {"bytes_max": 3000, "loaded_max": 5},
        "losses": {"unwound_stack_collisions": 2, "unwound_stacks_full": 4,
                   "unwind_tables_evicted": 1, "unwind_tables_too_large": 1},
    }),
    # [from, to) of window ends: the -10m and -5m windows, not the -30m or -2m ones
    ({"from": str(NOW - 20 * MIN), "to": str(NOW - 3 * MIN)}, {
        "batches": 2, "batches_with_unwind_data": 2, "modes": {"auto": 1, "fp": 1},
        "samples": {"table_walks": 200, "complete": 190, "truncated": 10, "fp_only": 0,
                    "fp_frames": 0},
        "ends": ends(bottom=190, read_fault=10), "tables": {"bytes_max": 3000, "loaded_max": 5},
        "losses": {"unwound_stack_collisions": 0, "unwound_stacks_full": 4,
                   "unwind_tables_evicted": 0, "unwind_tables_too_large": 1},
    }),
    ({"from": str(NOW - 5 * MIN), "to": str(NOW - 5 * MIN + 1)}, {
        "batches": 1, "batches_with_unwind_data": 1, "modes": {"auto": 1},
        "samples": {"table_walks": 200, "complete": 190, "truncated": 10, "fp_only": 0,
                    "fp_frames": 0},
        "ends": ends(bottom=190, read_fault=10), "tables": {"bytes_max": 3000, "loaded_max": 5},
        "losses": {"unwound_stack_collisions": 0, "unwound_stacks_full": 4,
                   "unwind_tables_evicted": 0, "unwind_tables_too_large": 1},
    }),
    # only the old agent's batch: counted, and unknown rather than 0% complete
    ({"from": str(NOW - 3 * MIN), "host": "h2"},
     {"batches": 1, "batches_with_unwind_data": 0, "modes": {}, **NULL_SECTIONS}),
    ({"from": FROM, "host": "nowhere"},
     {"batches": 0, "batches_with_unwind_data": 0, "modes": {}, **NULL_SECTIONS}),
]  # fmt: skip


@pytest.mark.parametrize(("params", "expected"), CASES, ids=lambda v: json.dumps(v)[:60])
@pytest.mark.parametrize("side", ["store", "buffer"])
def test_unwind_sums_are_exact_for_each_filter(
    aggs: dict[str, AggregatorProcess], side: str, params: dict[str, str], expected: Any
) -> None:
    assert unwind(aggs[side], **params) == expected


@pytest.mark.parametrize("key", ["pid", "comm"])
def test_process_filters_are_refused_with_the_reason(
    aggs: dict[str, AggregatorProcess], key: str
) -> None:
    agg = aggs["store"]
    response = httpx.get(f"{agg.http}/api/v1/unwind", params={key: "7"}, headers=agg.headers())
    assert response.status_code == 400
    assert "counted per agent window" in response.json()["detail"]


def test_route_is_in_openapi_and_needs_a_token(aggs: dict[str, AggregatorProcess]) -> None:
    agg = aggs["store"]
    assert "/api/v1/unwind" in httpx.get(f"{agg.http}/openapi.json").json()["paths"]
    assert httpx.get(f"{agg.http}/api/v1/unwind").status_code == 401


@pytest.mark.parametrize("side", ["store", "buffer"])
def test_metrics_sum_what_was_pushed(aggs: dict[str, AggregatorProcess], side: str) -> None:
    agg = aggs[side]
    losses = {"cpu.unwound_stack_collisions": 2, "cpu.unwind_tables_evicted": 1,
              "cpu.lost_samples": 8, "cpu.unwound_stacks_full": 4,
              "cpu.unwind_tables_too_large": 1}  # fmt: skip
    for name, n in losses.items():
        assert agg.metric(f'aperture_agent_losses_total{{name="{name}"}}') == n
    for result, n in (("complete", 270), ("truncated", 20), ("fp_only", 10)):
        assert agg.metric(f'aperture_unwind_samples_total{{result="{result}"}}') == n
    with pytest.raises(KeyError):
        agg.metric('aperture_agent_losses_total{name="other"}')
    # a retried push is no new batch: nothing counted twice
    push_all(agg, BATCHES[:1])
    assert agg.metric('aperture_unwind_samples_total{result="complete"}') == 270


def test_loss_names_are_bounded(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path / "agg", "--no-storage").start()
    try:
        names = {f"n{i:02d}": 1 for i in range(70)}  # cpu.n00 .. cpu.n69
        push_all(agg, [(1, "h", "e", [cpu(NOW, {}, names)])])
        push_all(agg, [(2, "h", "e", [cpu(NOW, {}, {"Bad Name": 5})])])
        assert agg.metric('aperture_agent_losses_total{name="cpu.n63"}') == 1
        with pytest.raises(KeyError):
            agg.metric('aperture_agent_losses_total{name="cpu.n64"}')
        assert agg.metric('aperture_agent_losses_total{name="other"}') == 6 + 5
    finally:
        assert agg.stop() == 0, agg.log.read_text()


_OLD_STORE = """
import sys
from aperture.storage import Store, schema
schema.MIGRATIONS = schema.MIGRATIONS[:1]  # the store as the previous release made it
with Store.open(sys.argv[1]) as s:
    s.command(
        "INSERT INTO aperture.batches (agent_id, sequence, ts, window_start, host, labels, "
        "event_types, losses) VALUES ('agent-old', 1, fromUnixTimestamp64Nano(toInt64(%s)), "
        "fromUnixTimestamp64Nano(toInt64(%s)), 'old', map('env', 'prod'), ['cpu'], "
        "map('cpu.lost_samples', 3))" % (sys.argv[2], sys.argv[3]))
"""

_READ_STORE = """
import json, sys
from aperture.storage import Store
with Store.open(sys.argv[1]) as s:
    print(json.dumps({
        "versions": [r[0] for r in s.select(
            "SELECT version FROM aperture.schema_migrations FINAL ORDER BY version")],
        "rows": [[r[0], r[1], dict(r[2])] for r in s.select(
            "SELECT agent_id, unwind_mode, window_stats FROM aperture.batches ORDER BY agent_id")],
    }))
"""


def test_migration_adds_the_columns_to_a_store_of_the_previous_schema(tmp_path: Path) -> None:
    data = tmp_path / "agg"
    dsn = f"chdb://{data / 'store'}"
    end = NOW - 3 * MIN
    subprocess.run([sys.executable, "-c", _OLD_STORE, dsn, str(end), str(end - 10**10)],
                   check=True, timeout=120)  # fmt: skip
    agg = AggregatorProcess(data).start()
    try:
        old = unwind(agg, **{"from": FROM})
        assert old == {"batches": 1, "batches_with_unwind_data": 0, "modes": {}, **NULL_SECTIONS}
        push_all(agg, BATCHES[:1])
        agg.wait_stored()
        both = unwind(agg, **{"from": FROM, "label.env": "prod"})
        assert (both["batches"], both["batches_with_unwind_data"]) == (2, 1)
        assert both["samples"]["complete"] == 80 and both["tables"]["bytes_max"] == 1000
    finally:
        assert agg.stop() == 0, agg.log.read_text()
    out = subprocess.run([sys.executable, "-c", _READ_STORE, dsn], check=True, timeout=120,
                         capture_output=True, text=True)  # fmt: skip
    stored = json.loads(out.stdout)
    # every later migration too (3: Python frames, 4: lock kinds and roles)
    assert stored["versions"] == [m.version for m in schema.MIGRATIONS]
    assert stored["rows"][0] == ["agent-h1", "auto", {
        "cpu.unwind_complete": 80, "cpu.unwind_end_bottom": 80, "cpu.unwind_end_depth": 4,
        "cpu.unwind_end_no_table": 6, "cpu.unwind_fp_frames": 5, "cpu.unwind_fp_only": 10,
        "cpu.unwind_table_bytes": 1000, "cpu.unwind_table_walks": 90,
        "cpu.unwind_tables_loaded": 3, "cpu.unwind_truncated": 10,
    }]  # fmt: skip
    assert stored["rows"][1] == ["agent-old", "", {}]
