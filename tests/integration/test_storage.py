"""The store against the real embedded chDB engine (and a server when one is configured).

chDB hosts one directory per process, so every test here shares one engine
directory and gets its own database in it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb", reason="the storage tests need the aggregator extra (chdb)")

from aperture import histogram
from aperture.aggregator.buffer import BatchBuffer, BufferedBatch
from aperture.aggregator.buffer_source import BufferSource
from aperture.formats.pprof import from_pprof, to_pprof_message
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample, SyscallStat
from aperture.profile_types import with_stacks
from aperture.proto.v1 import profile_pb2 as pb
from aperture.query import QueryFilter, answers
from aperture.query.source import StackSource
from aperture.storage import StorageWriter, Store, StoreInUse, StoreSource, schema
from aperture.transforms import lock_samples, merge
from aperture.wire import Identity, check, decode, encode

MAIN = Frame("main", "app", FrameKind.USER, 0x1130)
HOT = Frame("hot", "app", FrameKind.USER, 0x1200)
COLD = Frame("cold", "libc.so.6", FrameKind.USER, 0x99)
VFS = Frame("vfs_read", "[kernel]", FrameKind.KERNEL, 0xFFFFFFFF81234567)
JIT = Frame("lambda$0", "[jit]", FrameKind.JIT, 0x7F00)
S = 10**9
T0 = (time.time_ns() // (3600 * S) - 1) * 3600 * S  # an hour boundary, one hour ago
_db = itertools.count()


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "store"


@pytest.fixture
def store(engine_dir: Path) -> Iterator[Store]:
    with Store.open(f"chdb://{engine_dir}", database=f"t{next(_db)}") as s:
        yield s


def cpu(end_ns: int, *samples: tuple[tuple[Frame, ...], int, int, str]) -> Profile:
    return Profile(EventType.CPU, "samples", start_ns=end_ns - 10 * S, end_ns=end_ns,
                   frequency_hz=99, losses={"lost": 1},
                   samples=[Sample(st, v, pid=pid, tid=pid + 1, comm=comm, thread="t")
                            for st, v, pid, comm in samples])  # fmt: skip


def lock(end_ns: int) -> Profile:
    locks = [
        LockStat(10, "app", 0x7F00, (MAIN, HOT), contentions=4, wait_ns=9000, max_ns=5000,
                 eagain=1, timeouts=2, timeout_ns=300, hist=(0,) * 10 + (1, 3)),
        LockStat(10, "app", 0x7F00, (MAIN, COLD), contentions=1, wait_ns=1000, max_ns=1000,
                 hist=(0,) * 9 + (1,)),
        LockStat(11, "db", 0x8000, (MAIN, VFS), contentions=1, wait_ns=500, max_ns=500,
                 hist=(0,) * 8 + (1,)),
    ]  # fmt: skip
    return Profile(EventType.LOCK, "nanoseconds", samples=lock_samples(locks),
                   start_ns=end_ns - 10 * S, end_ns=end_ns, locks=locks)  # fmt: skip


def syscall(end_ns: int) -> Profile:
    calls = [
        SyscallStat(10, "app", 0, "read", count=100, errors=4, total_ns=100_000, min_ns=500,
                    max_ns=9000, hist=(0,) * 9 + (90, 10), errnos={11: 4}),
        SyscallStat(11, "db", 0, "read", count=10, errors=0, total_ns=5_000, min_ns=400,
                    max_ns=600, hist=(0,) * 8 + (10,)),
        SyscallStat(10, "app", 257, "openat", count=10, errors=10, total_ns=50_000,
                    min_ns=2000, max_ns=8000, hist=(0,) * 11 + (10,), errnos={2: 10}),
    ]  # fmt: skip
    return Profile(EventType.SYSCALL, "nanoseconds", start_ns=end_ns - 10 * S, end_ns=end_ns,
                   syscalls=calls)  # fmt: skip


def offcpu(end_ns: int) -> Profile:
    """Off-CPU time: a registry type that travels as a StackSamples set."""
    return Profile(EventType.OFFCPU, "nanoseconds", start_ns=end_ns - 10 * S, end_ns=end_ns,
                   losses={"sampled_out": 2},
                   samples=[Sample((MAIN, VFS), 30_000_000, pid=10, tid=11, comm="app"),
                            Sample((MAIN, HOT), 10_000_000, pid=11, tid=11, comm="db")],
                   )  # fmt: skip


def batch(seq: int, profiles: list[Profile], host: str = "h1", **labels: str) -> pb.ProfileBatch:
    return encode(profiles, Identity(f"agent-{host}", host, labels or {"env": "prod"}), seq)


def fleet() -> list[pb.ProfileBatch]:
    """Three windows of two hosts with every event type."""
    return [
        batch(1, [cpu(T0, ((MAIN, HOT), 75, 10, "app"), ((MAIN, VFS), 25, 10, "app"))]),
        batch(2, [cpu(T0 + 10 * S, ((MAIN, HOT), 5, 10, "app"), ((MAIN, JIT), 7, 12, "")),
                  lock(T0 + 10 * S), syscall(T0 + 10 * S), offcpu(T0 + 10 * S)]),
        batch(1, [cpu(T0 + 20 * S, ((MAIN, COLD), 40, 11, "db"), ((), 3, 11, "db"))],
              host="h2", env="dev"),
    ]  # fmt: skip


class Answers:
    """One source's answers as the API sends them (the models' JSON, as dicts)."""

    def __init__(self, source: StackSource) -> None:
        self.source = source

    def flamegraph(self, f: QueryFilter, max_nodes: int) -> dict[str, Any]:
        return answers.flamegraph(self.source, f, max_nodes).model_dump()

    def top(self, f: QueryFilter, limit: int, sort: str = "self") -> dict[str, Any]:
        return answers.top(self.source, f, limit, sort).model_dump()

    def diff(self, b: QueryFilter, c: QueryFilter, max_nodes: int, limit: int) -> dict[str, Any]:
        return answers.diff(self.source, b, c, max_nodes, limit).model_dump()

    def timeline(self, f: QueryFilter, step_s: int, group_by: str | None) -> dict[str, Any]:
        return answers.timeline(self.source, f, step_s, group_by).model_dump()

    def syscalls(self, f: QueryFilter, per_process: bool) -> dict[str, Any]:
        return answers.syscalls(self.source, f, per_process).model_dump()

    def locks(self, f: QueryFilter, limit: int) -> dict[str, Any]:
        return answers.locks(self.source, f, limit).model_dump()

    def unwind(self, f: QueryFilter) -> dict[str, Any]:
        return answers.unwind(self.source, f).model_dump()

    def export_profile(self, f: QueryFilter) -> Profile:
        return self.source.export_profile(f)


def stored(store: Store) -> Answers:
    return Answers(StoreSource(store))


def buffer_of(batches: list[pb.ProfileBatch]) -> BatchBuffer:
    buf = BatchBuffer(1 << 30)
    for b in batches:
        buf.add(BufferedBatch.of(b, check(b), b.SerializeToString(), 0))
    return buf


def buffer_backend(batches: list[pb.ProfileBatch]) -> Answers:
    return Answers(BufferSource(buffer_of(batches)))


FILTERS: list[dict[str, Any]] = [
    {},
    {"host": "h1"},
    {"pid": 10},
    {"comm": "db"},
    {"labels": {"env": "dev"}},
    {"from_ns": T0 + 10 * S, "to_ns": T0 + 20 * S},
    {"agent": "agent-h2", "from_ns": T0 + 20 * S},
]


@pytest.mark.parametrize("kw", FILTERS, ids=lambda kw: ",".join(kw) or "all")
def test_every_query_answers_as_the_buffer_does(store: Store, kw: dict[str, Any]) -> None:
    batches = fleet()
    assert store.insert_batches(batches).batches == 3
    mem = buffer_backend(batches)
    for et in (t.event_type for t in with_stacks()):  # cpu, lock, offcpu, ...
        f = QueryFilter(et, **kw)
        assert stored(store).flamegraph(f, 1000) == mem.flamegraph(f, 1000)
        for sort in ("self", "total"):
            assert stored(store).top(f, 10, sort) == mem.top(f, 10, sort)
        for group in (None, "host", "comm", "pid"):
            assert stored(store).timeline(f, 10, group) == mem.timeline(f, 10, group)
    f = QueryFilter(EventType.SYSCALL, **kw)
    for per_process in (False, True):
        assert stored(store).syscalls(f, per_process) == mem.syscalls(f, per_process)
    assert stored(store).timeline(f, 60, "comm") == mem.timeline(f, 60, "comm")
    f = QueryFilter(EventType.LOCK, **kw)
    assert stored(store).locks(f, 10) == mem.locks(f, 10)
    assert stored(store).unwind(f) == mem.unwind(f)
    assert stored(store).locks(f, 1) == mem.locks(f, 1)


def test_round_trip_values(store: Store) -> None:
    store.insert_batches(fleet())
    fg = stored(store).flamegraph(QueryFilter(), 100)
    names, nodes = fg["names"], fg["nodes"]
    assert fg["total"] == 75 + 25 + 5 + 7 + 40 + 3
    assert [names[i] for i in nodes["name"][:3]] == ["all", "app", "main"]
    assert nodes["depth"][:3] == [0, 1, 2]
    assert names[nodes["name"][nodes["total"].index(7)]] == "pid 12"  # no comm: pid
    syscalls = stored(store).syscalls(QueryFilter(EventType.SYSCALL), False)["syscalls"]
    read = next(r for r in syscalls if r["name"] == "read")
    assert (read["count"], read["errors"], read["top_errno"]) == (110, 4, [("EAGAIN", 4)])
    assert 512 <= read["p50_ns"] < 1024 and read["p99_ns"] <= 9000
    top_lock = stored(store).locks(QueryFilter(EventType.LOCK), 5)["locks"][0]
    assert (top_lock["address"], top_lock["wait_ns"], top_lock["contentions"]) == (
        "0x7f00",
        10000,
        5,
    )
    assert top_lock["top_stack"] == [
        {"name": "main", "module": "app"},
        {"name": "hot", "module": "app"},
    ]
    one_lock = QueryFilter(EventType.LOCK, address=0x8000)
    assert stored(store).flamegraph(one_lock, 100)["total"] == 500
    assert stored(store).flamegraph(QueryFilter(EventType.LOCK), 100)["total"] == 10500


def test_a_stack_type_of_the_registry_is_stored_and_answered(store: Store) -> None:
    """Off-CPU needs no code of its own in the store: its rows, sums and exports follow."""
    store.insert_batches(fleet())
    f = QueryFilter(EventType.OFFCPU)
    fg = stored(store).flamegraph(f, 100)
    assert (fg["type"], fg["unit"], fg["total"]) == ("offcpu", "nanoseconds", 40_000_000)
    top = {r["name"]: (r["self"], r["total"]) for r in stored(store).top(f, 10)["functions"]}
    assert top == {"vfs_read": (30_000_000, 30_000_000), "hot": (10_000_000, 10_000_000),
                   "main": (0, 40_000_000)}  # fmt: skip
    profile = stored(store).export_profile(f)
    assert profile.event_type is EventType.OFFCPU and profile.losses == {"sampled_out": 2}
    assert sorted(s.value for s in profile.samples) == [10_000_000, 30_000_000]
    assert stored(store).flamegraph(QueryFilter(EventType.OFFCPU, comm="db"), 100)["total"] == (
        10_000_000
    )
    out = to_pprof_message(profile)
    st = out.string_table
    assert [(st[v.type], st[v.unit]) for v in out.sample_type] == [("off_cpu", "nanoseconds")]
    assert st[out.default_sample_type] == "off_cpu"
    back = from_pprof(out.SerializeToString())
    assert [p.profile.event_type for p in back] == [EventType.OFFCPU]
    assert sum(s.value for s in back[0].profile.samples) == 40_000_000


def test_a_gauge_is_averaged_per_series_over_the_range_by_store_and_buffer(store: Store) -> None:
    """Bytes in use are a level, not a count: two windows of 100 and 300 MB in use are 200 MB
    in use over the range, not 400; series (agents, labels) add up. A process in one window
    of two is averaged over both (it had nothing in use in the other), filtered or not."""

    def batch(
        event_type: EventType,
        identity: Identity,
        seq: int,
        end_ns: int,
        *samples: tuple[tuple[Frame, ...], int, str],
    ) -> pb.ProfileBatch:
        profile = Profile(
            event_type,
            "bytes",
            start_ns=end_ns,
            end_ns=end_ns,
            samples=[
                Sample(st, v, pid=2 if comm == "db" else 1, comm=comm) for st, v, comm in samples
            ],
        )
        return encode([profile], identity, seq)  # fmt: skip

    a, b = Identity("pprof:a", "h1", {"service": "a"}), Identity("pprof:b", "h2", {"service": "b"})
    windows = [
        (a, 1, T0 + 5 * S, ((MAIN, HOT), 100, "api"), ((MAIN, COLD), 40, "db")),
        (a, 2, T0 + 15 * S, ((MAIN, HOT), 300, "api")),  # db freed its 40 by now
        (b, 1, T0 + 15 * S, ((MAIN, HOT), 7, "api")),
    ]
    inuse = [batch(EventType.INUSE_SPACE, *w) for w in windows]
    alloc = [batch(EventType.ALLOC_SPACE, i, seq + 10, *rest) for i, seq, *rest in windows]
    store.insert_batches(inuse + alloc)
    mem = buffer_backend(inuse + alloc)
    f = QueryFilter(EventType.INUSE_SPACE, from_ns=T0, to_ns=T0 + 60 * S)
    fg = stored(store).flamegraph(f, 100)
    assert (fg["unit"], fg["total"]) == ("bytes", (100 + 300) // 2 + 40 // 2 + 7)
    for one in (f, replace(f, comm="db"), replace(f, pid=2), replace(f, labels={"service": "a"})):
        assert stored(store).flamegraph(one, 100) == mem.flamegraph(one, 100), one
        assert stored(store).top(one, 10) == mem.top(one, 10), one
        for step, group in ((10, None), (10, "host"), (60, None), (60, "comm"), (60, "pid")):
            assert stored(store).timeline(one, step, group) == mem.timeline(one, step, group)
    assert stored(store).flamegraph(replace(f, comm="db"), 10)["total"] == 20  # 40 in 1 of 2
    points = {s["key"]: s["points"] for s in stored(store).timeline(f, 60, "comm")["series"]}
    assert [p[1] for p in points["db"]] == [20] and [p[1] for p in points["api"]] == [207]
    exported = stored(store).export_profile(f)
    assert sorted(s.value for s in exported.samples) == [20, 207]  # one process name: merged
    assert sorted(s.value for s in mem.export_profile(f).samples) == [20, 207]
    # the same windows as allocations (a summed type) are the sum
    g = replace(f, event_type=EventType.ALLOC_SPACE)
    assert stored(store).flamegraph(g, 10)["total"] == 100 + 40 + 300 + 7
    assert stored(store).flamegraph(g, 10) == mem.flamegraph(g, 10)


def test_wall_clock_adds_cpu_samples_as_time_to_the_off_cpu_time(store: Store) -> None:
    batches = fleet()
    store.insert_batches(batches)
    f = QueryFilter(EventType.CPU, pid=10)
    wall = answers.wallclock(StoreSource(store), f, 1000).model_dump()
    assert wall == answers.wallclock(BufferSource(buffer_of(batches)), f, 1000).model_dump()
    period = round(1e9 / 99)
    assert (wall["on_cpu_ns"], wall["off_cpu_ns"]) == ((75 + 25 + 5) * period, 30_000_000)
    assert wall["total"] == wall["on_cpu_ns"] + wall["off_cpu_ns"] and wall["frequency_hz"] == 99
    names = [wall["names"][i] for i in wall["nodes"]["name"]]
    assert "vfs_read" in names and "hot" in names
    with pytest.raises(ValueError, match="give pid="):
        answers.wallclock(StoreSource(store), QueryFilter(EventType.CPU), 1000)


def test_export_profile_merges_the_range(store: Store) -> None:
    batches = fleet()
    store.insert_batches(batches)
    for et in EventType:
        if not any(et in decode(b).profiles for b in batches):
            continue  # a type the fleet has none of
        want = merge(decode(b).profiles[et] for b in batches if et in decode(b).profiles)
        got = stored(store).export_profile(QueryFilter(et))
        assert (got.start_ns, got.end_ns, got.unit) == (want.start_ns, want.end_ns, want.unit)
        assert Counter(got.samples) == Counter(want.samples)
        # the store keeps lock histograms in the fine layout (4 buckets per power of two)
        fine = [replace(lk, hist=histogram.fine(lk.hist)) for lk in want.locks]
        assert Counter(got.locks) == Counter(fine)
        key = lambda s: (s.pid, s.nr)  # noqa: E731
        assert sorted(got.syscalls, key=key) == sorted(want.syscalls, key=key)
    assert stored(store).export_profile(QueryFilter()).frequency_hz == 99
    assert stored(store).export_profile(QueryFilter()).losses == {"lost": 3}
    empty = stored(store).export_profile(QueryFilter(from_ns=T0 + 3600 * S))
    assert empty.samples == [] and empty.start_ns == T0 + 3600 * S


def test_time_range_is_half_open_on_window_ends(store: Store) -> None:
    store.insert_batches(fleet())  # windows end at T0, T0+10s, T0+20s

    def total(lo: int, hi: int) -> int:
        return int(stored(store).flamegraph(QueryFilter(from_ns=lo, to_ns=hi), 100)["total"])

    assert total(T0, T0 + 1) == 100
    assert total(T0 - 1, T0) == 0
    assert total(T0 + 1, T0 + 10 * S) == 0
    assert total(T0 + 10 * S, T0 + 10 * S + 1) == 12
    assert total(T0, T0 + 20 * S) == 112
    assert total(T0, T0 + 20 * S + 1) == 155
    by_label = QueryFilter(labels={"env": "prod"}, from_ns=T0 + 10 * S)
    assert stored(store).flamegraph(by_label, 100)["total"] == 12
    assert stored(store).top(QueryFilter(labels={"env": ""}), 5)["total"] == 0
    assert stored(store).top(QueryFilter(labels={"env": "dev", "x": "y"}), 5)["total"] == 0


def test_diff_on_constructed_sides(store: Store) -> None:
    base = batch(1, [cpu(T0, ((MAIN, HOT), 60, 1, "app"), ((MAIN, COLD), 40, 1, "app"))])
    comp = batch(2, [cpu(T0 + 60 * S, ((MAIN, HOT), 100, 1, "app"), ((MAIN, VFS), 300, 1, "app"))])
    store.insert_batches([base, comp])
    b, c = QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1)
    d = stored(store).diff(b, c, 100, 10)
    assert (d["baseline_total"], d["comparison_total"]) == (100, 400)
    names, nodes = d["names"], d["nodes"]
    row = {names[n]: i for i, n in enumerate(nodes["name"])}
    assert (nodes["baseline"][row["hot"]], nodes["comparison"][row["hot"]]) == (60, 100)
    assert (nodes["baseline"][row["cold"]], nodes["comparison"][row["cold"]]) == (40, 0)
    assert (nodes["baseline"][row["vfs_read"]], nodes["comparison"][row["vfs_read"]]) == (0, 300)
    deltas = {r["name"]: r["delta_pct"] for r in d["functions"]}
    assert deltas == pytest.approx({"vfs_read": 75.0, "hot": -35.0, "cold": -40.0, "main": 0.0})
    assert [r["name"] for r in d["functions"]] == ["vfs_read", "cold", "hot", "main"]
    mem = buffer_backend([base, comp])
    assert d == mem.diff(QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1), 100, 10)


def _check_sums(nodes: dict[str, list[int]]) -> None:
    """Every node's total is its self plus its children's totals."""
    depth, total, self_ = nodes["depth"], nodes["total"], nodes["self"]
    for i in range(len(depth)):
        children = 0
        for j in range(i + 1, len(depth)):
            if depth[j] <= depth[i]:
                break
            if depth[j] == depth[i] + 1:
                children += total[j]
        assert total[i] == self_[i] + children, i


def test_flamegraph_pruning_keeps_totals(store: Store) -> None:
    leaves = [Frame(f"fn{i}", "app") for i in range(300)]
    mids = [Frame(f"mid{i}", "app") for i in range(10)]
    samples = [((MAIN, mids[i % 10], leaf), i + 1, 1, "app") for i, leaf in enumerate(leaves)]
    half = [((MAIN, mids[i % 7], leaf), 3 * i % 17, 2, "db") for i, leaf in enumerate(leaves)]
    batches = [batch(1, [cpu(T0, *samples)]), batch(2, [cpu(T0 + 60 * S, *half)])]
    store.insert_batches(batches)
    first = QueryFilter(to_ns=T0 + 1)
    full = stored(store).flamegraph(first, 100_000)
    pruned = stored(store).flamegraph(first, 50)
    mem = buffer_backend(batches)
    assert pruned == mem.flamegraph(QueryFilter(to_ns=T0 + 1), 50)
    for n in (10, 40, 333):
        assert stored(store).flamegraph(QueryFilter(), n) == mem.flamegraph(QueryFilter(), n)
        b, c = QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1)
        mb, mc = QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1)
        assert stored(store).diff(b, c, n, 20) == mem.diff(mb, mc, n, 20)
    assert len(full["nodes"]["name"]) == 1 + 1 + 1 + 10 + 300
    assert len(pruned["nodes"]["name"]) < 80
    assert pruned["total"] == full["total"] == sum(range(1, 301))
    assert "other" in pruned["names"]
    _check_sums(pruned["nodes"])
    _check_sums(full["nodes"])


NASTY = ["'; DROP TABLE samples; --", "\\", "a'b\\'c", "{host:String}", "\0", "é\n\t"]


@pytest.mark.parametrize("value", NASTY)
def test_sql_metacharacters_are_only_values(store: Store, value: str) -> None:
    store.insert_batches(fleet())
    for kw in ({"host": value}, {"comm": value}, {"agent": value}, {"labels": {value: value}}):
        assert stored(store).flamegraph(QueryFilter(**kw), 100)["total"] == 0
        assert stored(store).top(QueryFilter(**kw), 10)["functions"] == []
        assert stored(store).timeline(QueryFilter(**kw), 60, "host")["series"] == []
        assert stored(store).syscalls(QueryFilter(EventType.SYSCALL, **kw), True)["syscalls"] == []
        assert stored(store).locks(QueryFilter(EventType.LOCK, **kw), 10)["locks"] == []
    assert stored(store).top(QueryFilter(), 10)["total"] == 155  # nothing was dropped
    # the same strings as data come back exactly
    odd = batch(9, [cpu(T0, ((Frame(value, value),), 3, 5, value))], host=value, **{value: value})
    store.insert_batches([odd])
    f = QueryFilter(host=value, comm=value, labels={value: value})
    assert stored(store).top(f, 5)["functions"][0]["name"] == value
    assert store.stored([(f"agent-{value}", 9)]) == {(f"agent-{value}", 9)}


def test_out_of_range_filters_match_nothing(store: Store) -> None:
    store.insert_batches(fleet())
    for f in (QueryFilter(pid=-1), QueryFilter(pid=2**40), QueryFilter(EventType.LOCK, address=-5)):
        assert stored(store).top(f, 5)["total"] == 0
    assert stored(store).top(QueryFilter(from_ns=-(2**70), to_ns=2**70), 5)["total"] == 155


def test_duplicates_and_malformed_batches_are_skipped(store: Store) -> None:
    batches = fleet()
    first = store.insert_batches(batches + batches[:1])
    assert (first.batches, first.duplicates) == (3, 1)
    again = store.insert_batches(batches)
    assert (again.batches, again.duplicates, again.samples) == (0, 3, 0)
    bad = batch(7, [cpu(T0, ((MAIN,), 1, 1, "x"))])
    bad.cpu.stack[0] = 99  # refers to a stack the batch lacks
    assert store.insert_batches([bad]).rejected == 1
    keys = [("agent-h1", 1), ("agent-h1", 2), ("agent-h1", 7), ("agent-h2", 1)]
    assert store.stored(keys) == {("agent-h1", 1), ("agent-h1", 2), ("agent-h2", 1)}
    assert stored(store).top(QueryFilter(), 5)["total"] == 155


def test_reopen_keeps_data_and_migrations_are_idempotent(engine_dir: Path) -> None:
    dsn, db = f"chdb://{engine_dir}", f"t{next(_db)}"
    with Store.open(dsn, database=db) as s:
        s.insert_batches(fleet())
        for migration in schema.MIGRATIONS:
            for stmt in migration.statements(s.layout):
                s.command(stmt)  # applying again changes nothing
    with Store.open(dsn, database=db) as s:
        assert stored(s).top(QueryFilter(), 5)["total"] == 155
        versions = s.select(f"SELECT version FROM {db}.schema_migrations ORDER BY version")
        assert versions == [(m.version,) for m in schema.MIGRATIONS]


def test_retention_ttl_drops_expired_partitions(engine_dir: Path) -> None:
    dsn, db = f"chdb://{engine_dir}", f"t{next(_db)}"
    old = T0 - 3 * 86400 * S
    with Store.open(dsn, database=db, retention_days=7) as s:
        s.insert_batches([batch(1, [cpu(old, ((MAIN,), 5, 1, "a")), syscall(old)]),
                          batch(2, [cpu(T0, ((MAIN,), 7, 1, "a"))])])  # fmt: skip
        assert stored(s).top(QueryFilter(), 5)["total"] == 12
    with Store.open(dsn, database=db, retention_days=1) as s:
        for table in ("samples", "syscall_stats", "batches"):
            s.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
        assert stored(s).top(QueryFilter(), 5)["total"] == 7
        assert stored(s).syscalls(QueryFilter(EventType.SYSCALL), False)["syscalls"] == []
        assert s.stored([("agent-h1", 1), ("agent-h1", 2)]) == {("agent-h1", 2)}
        ttl = s.select(f"SELECT engine_full FROM system.tables WHERE database = '{db}' "
                       "AND name = 'samples'")  # fmt: skip
        assert "toIntervalDay(1)" in ttl[0][0]


def test_one_process_per_path(store: Store, engine_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom aperture.storage import Store, StoreInUse\n"
        f"try:\n    Store.open({f'chdb://{engine_dir}'!r})\n"
        "except StoreInUse as exc:\n    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert f"the store at {os.path.realpath(engine_dir)} is used by another process" in proc.stdout
    assert f"(pid {os.getpid()})" in proc.stdout
    with pytest.raises(StoreInUse, match="hosts one path per process"):
        Store.open(f"chdb://{tmp_path}/other")


def test_cluster_statements_shape() -> None:
    stmts = schema.cluster_statements("prof", "main", retention_days=3)
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS prof ON CLUSTER main"
    assert all(" ON CLUSTER main" in s for s in stmts)
    for table in schema.TABLES:
        local = next(s for s in stmts if f"prof.{table}_local ON CLUSTER" in s)
        assert "ENGINE = Replicated" in local and f"/prof/{table}'" in local
        assert "old_parts_lifetime" not in local and "TTL" in local
        dist = next(s for s in stmts if f"TABLE IF NOT EXISTS prof.{table} ON" in s)
        assert f"Distributed(main, prof, {table}_local," in dist
    assert "INTERVAL 3 DAY" in next(s for s in stmts if "samples_local" in s)
    for name in ("prof.batches_local", "prof.batches"):  # a Distributed table keeps its columns
        assert any(s.startswith(f"ALTER TABLE {name} ON CLUSTER main ADD COLUMN IF NOT EXISTS "
                                "window_stats") for s in stmts)  # fmt: skip
    with pytest.raises(ValueError, match="cluster name"):
        schema.cluster_statements("prof", "main; DROP")


def test_writer_keeps_data_queued_while_the_store_fails(store: Store) -> None:
    outcomes: list[str] = []
    writer = StorageWriter(
        store,
        flush_rows=1000,
        flush_interval_s=0.05,
        backoff_s=0.05,
        max_backoff_s=0.2,
        on_flush=lambda status, _seconds: outcomes.append(status),
    ).start()
    try:
        batches = fleet()
        store.command(f"DETACH TABLE {store.database}.samples")
        writer.submit(batches[0].SerializeToString())
        writer.submit(batches[1])
        assert not writer.flush(0.5)
        # On a loaded host the writer's first attempt may come after those 0.5 s.
        deadline = time.monotonic() + 10
        while writer.stats().flush_failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = writer.stats()
        assert stats.flush_failed >= 1 and stats.flush_ok == 0 and "samples" in stats.last_error
        assert stats.pending_batches == 2 and stats.pending_rows > 0
        store.command(f"ATTACH TABLE {store.database}.samples")
        assert writer.flush(5.0)
        # the client itself goes away: the writer reconnects
        store._clients["write"].close()
        writer.submit(decode(batches[2]))
        assert writer.flush(5.0)
    finally:
        assert writer.drain(5.0)
    stats = writer.stats()
    assert stats.pending_batches == stats.pending_rows == stats.pending_bytes == 0
    assert stats.written_batches == 3
    assert stats.flush_total["error"] >= 1 and "error" in outcomes and outcomes[-1] == "ok"
    assert stored(store).top(QueryFilter(), 5)["total"] == 155


def test_writer_keeps_every_batch_over_its_byte_bound(store: Store) -> None:
    """Its bound is kept by refusing pushes (has_room): what it was given, it writes."""
    writer = StorageWriter(store, flush_interval_s=60, max_pending_bytes=1)
    for b in fleet():
        writer.submit(b)  # never blocks, thread not even started
    assert writer.stats().pending_batches == 3 and not writer.has_room(1)
    writer.start()
    assert writer.drain(5.0)
    keys = [("agent-h1", 1), ("agent-h1", 2), ("agent-h2", 1)]
    assert store.stored(keys) == set(keys)


def test_writer_groups_by_rows_and_time(store: Store) -> None:
    writer = StorageWriter(store, flush_rows=3, flush_interval_s=3600).start()
    try:
        for b in fleet():
            writer.submit(b)
        deadline = time.monotonic() + 5
        while writer.stats().written_batches < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.stats().written_batches >= 2  # by rows, long before the interval
    finally:
        assert writer.drain(5.0)
    assert writer.stats().written_batches == 3


@pytest.fixture
def server_store() -> Iterator[Store]:
    url = os.environ.get("APERTURE_TEST_CLICKHOUSE_URL")
    if not url:
        pytest.skip("APERTURE_TEST_CLICKHOUSE_URL is not set: no ClickHouse server to test")
    with Store.open(url, database=f"aperture_test_{os.getpid()}") as s:
        yield s
        s.command(f"DROP DATABASE IF EXISTS {s.database}")


def test_server_round_trip(server_store: Store) -> None:
    batches = fleet()
    server_store.insert_batches(batches)
    mem = buffer_backend(batches)
    assert stored(server_store).flamegraph(QueryFilter(), 100) == mem.flamegraph(QueryFilter(), 100)
    assert server_store.stored([("agent-h1", 2)]) == {("agent-h1", 2)}


def test_hourly_rollup_and_raw_edges_agree(store: Store) -> None:
    hour = 3600 * S
    ends = [T0 - 3 * hour + 5 * S, T0 - 3 * hour + 40 * 60 * S, T0 - 2 * hour, T0 - hour - S,
            T0 - hour, T0 - 30 * 60 * S, T0, T0 + 10 * S]  # fmt: skip
    batches = [
        batch(i + 1, [cpu(end, ((MAIN, HOT), i + 1, 1, "app"), ((MAIN, COLD), 2 * i + 1, 2, ""))])
        for i, end in enumerate(ends)
    ]
    store.insert_batches(batches)
    mem = buffer_backend(batches)
    for lo, hi in [(T0 - 3 * hour + S, T0 + 5 * S), (T0 - 3 * hour, T0), (0, T0 - hour),
                   (T0 - 2 * hour - 1, T0 + hour), (T0 - 3 * hour + 6 * S, T0 - S)]:  # fmt: skip
        f = QueryFilter(from_ns=lo, to_ns=hi)
        assert stored(store).flamegraph(f, 100) == mem.flamegraph(f, 100)
        assert stored(store).top(f, 10, "total") == mem.top(f, 10, "total")
        f = QueryFilter(from_ns=lo, to_ns=hi, comm="app")
        assert stored(store).flamegraph(f, 100) == mem.flamegraph(f, 100)


def test_writer_pipelines_a_backlog_without_loss_or_duplicates(store: Store) -> None:
    writer = StorageWriter(store, flush_rows=8, flush_interval_s=3600)
    batches = [batch(i + 1, [cpu(T0 + i * S, ((MAIN, HOT), i + 1, 1, "app"))]) for i in range(60)]
    for b in batches:
        writer.submit(b.SerializeToString())
    writer.start()
    assert writer.drain(20.0)
    stats = writer.stats()
    assert (stats.written_batches, stats.flush_failed, stats.pending_rows) == (60, 0, 0)
    assert stats.flush_ok >= 7
    assert stored(store).top(QueryFilter(), 5)["total"] == sum(range(1, 61))
    assert len(store.stored([("agent-h1", b.sequence) for b in batches])) == 60


# Python frames: one function at two lines, interleaved with native frames.
EVAL = Frame("_PyEval_EvalFrameDefault", "libpython3.11.so.1.0", FrameKind.USER, 0x2000)
PY_MAIN = Frame("<module>", "/app/run.py", FrameKind.PYTHON, 0, 30)
PY_HOT_12 = Frame("Worker.hot", "/app/run.py", FrameKind.PYTHON, 0, 12)
PY_HOT_14 = Frame("Worker.hot", "/app/run.py", FrameKind.PYTHON, 0, 14)
ENCODER = Frame("encoder_listencode", "_json.cpython-311.so", FrameKind.USER, 0x300)


def python_fleet() -> list[pb.ProfileBatch]:
    return [
        batch(1, [cpu(T0, ((EVAL, PY_MAIN, PY_HOT_12), 60, 20, "python3"),
                      ((EVAL, PY_MAIN, PY_HOT_14), 30, 20, "python3"),
                      ((EVAL, PY_MAIN, PY_HOT_14, ENCODER), 20, 20, "python3"),
                      ((MAIN, HOT), 5, 10, "app"))]),
        batch(2, [cpu(T0 + 10 * S, ((EVAL, PY_MAIN, PY_HOT_14), 50, 20, "python3"))]),
    ]  # fmt: skip


def _node(fg: dict[str, Any], name: str) -> dict[str, Any]:
    names, nodes = fg["names"], fg["nodes"]
    rows = [i for i, n in enumerate(nodes["name"]) if names[n] == name]
    assert len(rows) == 1, f"{name} is {len(rows)} nodes"
    return {column: values[rows[0]] for column, values in nodes.items()}


def test_python_frames_group_by_function_and_keep_their_lines(store: Store) -> None:
    batches = python_fleet()
    store.insert_batches(batches)
    mem = buffer_backend(batches)
    fg = stored(store).flamegraph(QueryFilter(), 1000)
    assert fg == mem.flamegraph(QueryFilter(), 1000)
    hot = _node(fg, "Worker.hot")  # lines 12 and 14 are one node
    assert (hot["kind"], hot["total"], hot["self"]) == (6, 160, 140)
    assert hot["line"] == 14  # 100 samples at line 14 against 60 at line 12
    assert fg["names"][hot["module"]] == "/app/run.py"
    assert _node(fg, "<module>")["line"] == 30
    assert _node(fg, "encoder_listencode")["line"] == 0  # native frames have none
    top = stored(store).top(QueryFilter(), 10, "self")
    assert top == mem.top(QueryFilter(), 10, "self")
    assert top["functions"][0] == {"name": "Worker.hot", "module": "/app/run.py", "self": 140,
                                   "self_pct": 140 * 100 / 165, "total": 160,
                                   "total_pct": 160 * 100 / 165}  # fmt: skip
    # the earlier window against the later one: the hottest line over both sides
    d = stored(store).diff(QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1), 100, 10)
    assert d == mem.diff(QueryFilter(to_ns=T0 + 1), QueryFilter(from_ns=T0 + 1), 100, 10)
    assert _node(d, "Worker.hot")["line"] == 14
    # exports keep every frame with its kind and line
    want = merge(decode(b).profiles[EventType.CPU] for b in batches)
    got = stored(store).export_profile(QueryFilter())
    assert Counter(got.samples) == Counter(want.samples)
    assert {f.line for s in got.samples for f in s.stack if f.kind is FrameKind.PYTHON} == {
        12, 14, 30,
    }  # fmt: skip


def test_stacks_stored_before_lines_read_as_line_zero_and_keep_their_hash(store: Store) -> None:
    # A stack row as migration 2 wrote it (no lines column): lines reads [].
    old = batch(1, [cpu(T0, ((MAIN, HOT), 5, 10, "app"))])
    stack_hash = next(iter(rows_hashes(store, old)))
    store.command(
        f"INSERT INTO {store.table('stacks')} (stack_hash, names, modules, kinds, offsets, "
        f"last_seen) VALUES ({stack_hash}, ['main', 'hot'], ['app', 'app'], ['user', 'user'], "
        "[4400, 4608], now())"
    )
    assert store.select(f"SELECT lines FROM {store.table('stacks')}") == [([],)]
    store.insert_batches([old])  # the same stack from a new aggregator: the same hash
    assert store.select(f"SELECT count() FROM {store.table('stacks')} FINAL") == [(1,)]
    (sample,) = stored(store).export_profile(QueryFilter()).samples
    assert sample.stack == (MAIN, HOT) and {f.line for f in sample.stack} == {0}


def rows_hashes(store: Store, b: pb.ProfileBatch) -> set[int]:
    """The stack hashes the store computes for a batch (without inserting it)."""
    from aperture.storage.rows import RowBuilder

    rows = RowBuilder(set())
    rows.add(b)
    return set(rows.tables()["stacks"].column("stack_hash").to_pylist())


def test_a_store_at_migration_3_migrates_lock_rows_to_kinds_roles_and_fine_histograms(
    engine_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, db = f"chdb://{engine_dir}", f"t{next(_db)}"
    coarse = [0] * 40
    coarse[21] = 5  # five waits of [2.1, 4.2) ms
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        with Store.open(dsn, database=db) as s:
            s.command(
                f"INSERT INTO {db}.stacks (stack_hash, names, modules, kinds, offsets, last_seen) "
                "VALUES (7, ['main'], ['app'], ['user'], [4400], now())"
            )
            s.command(
                f"INSERT INTO {db}.lock_stats (ts, window_start, host, agent_id, labels, pid, "
                "comm, address, stack_hash, contentions, wait_ns, max_ns, eagain, timeouts, "
                "timeout_ns, interrupted, hist) VALUES (now64(9), now64(9), 'h', 'a', {}, 9, "
                f"'app', 4096, 7, 5, 15000000, 4000000, 0, 0, 0, 0, {coarse})"
            )
    with Store.open(dsn, database=db) as s:
        (lock,) = StoreSource(s).lock_stats(QueryFilter(EventType.LOCK), None)
    assert (lock.kind, lock.role, lock.releases, lock.contentions) == ("", "wait", 0, 5)
    assert len(lock.hist) == histogram.FINE_BUCKETS and lock.hist[84] == 5
    assert sum(lock.hist) == 5


def test_a_store_at_migration_2_migrates_to_python_frames(
    engine_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, db = f"chdb://{engine_dir}", f"t{next(_db)}"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        with Store.open(dsn, database=db) as s:
            s.command(
                f"INSERT INTO {db}.stacks (stack_hash, names, modules, kinds, offsets, last_seen) "
                "VALUES (7, ['main'], ['app'], ['user'], [4400], now())"
            )
    latest = [m.version for m in schema.MIGRATIONS][-1]
    with Store.open(dsn, database=db) as s:
        versions = s.select(f"SELECT version FROM {db}.schema_migrations ORDER BY version")
        assert versions == [(v,) for v in range(1, latest + 1)]
        assert s.resolve_stacks([7])[7].frames == (Frame("main", "app", FrameKind.USER, 4400),)
        s.insert_batches(python_fleet())
        fg = stored(s).flamegraph(QueryFilter(), 100)
        assert _node(fg, "Worker.hot")["line"] == 14
