"""Storage: ingest rate, bytes on disk per sample, and query latency of the embedded store.

Two data sets, both in a fresh chDB directory:

1. The real ingest path: realistic CPU batches (2,000 samples over 2,000 of
   20,000 distinct stacks of 8-32 frames, one 10 s window of one host) go
   through ``Store.insert_batches`` (vectorized rows + one Arrow insert per
   table) in groups like the writer's. Reported: samples/s, and the share of
   time spent building rows in Python.
2. The query data set: ``--samples`` CPU samples over ``--hours`` of windows,
   ``--hosts`` hosts and ``--stacks`` distinct stacks (shared call-tree
   prefixes, skewed popularity), written by ``INSERT ... SELECT FROM numbers()``
   (Python would take minutes to generate it). Queries over the whole range:
   flamegraph, top, diff (first half vs second half), timeline; the first
   (cold stack cache) run is reported apart from the p50/p95 of the rest.

Targets: >= 500k samples/s ingest, <= 25 bytes/sample, flamegraph over
24 h x 100 hosts p50 <= 300 ms. Writes bench/results/storage.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.proto.v1 import profile_pb2 as pb
from aperture.query import QueryFilter, answers
from aperture.storage import StorageWriter, Store, StoreSource
from aperture.storage.rows import RowBuilder
from aperture.wire import Identity, encode

RESULTS = Path(__file__).resolve().parent / "results" / "storage.md"
S = 10**9


def stack_universe(n: int, seed: int = 1) -> list[tuple[Frame, ...]]:
    """``n`` distinct stacks of 8-32 frames over 5,000 functions, sharing prefixes."""
    rng = random.Random(seed)
    modules = [f"lib{i}.so" for i in range(40)]
    functions = [
        Frame(f"fn_{i}_{'x' * rng.randint(5, 30)}", rng.choice(modules), FrameKind.USER,
              rng.randrange(1 << 24))
        for i in range(5000)
    ]  # fmt: skip
    trunks = [tuple(rng.choice(functions) for _ in range(rng.randint(3, 6))) for _ in range(50)]
    stacks: set[tuple[Frame, ...]] = set()
    while len(stacks) < n:
        tail = tuple(rng.choice(functions) for _ in range(rng.randint(5, 26)))
        stacks.add(rng.choice(trunks) + tail)
    return sorted(stacks, key=lambda s: [f.name for f in s])


def templates(universe: list[tuple[Frame, ...]], count: int) -> list[pb.ProfileBatch]:
    """Batches of 2,000 samples over 2,000 stacks each; agent and window set per copy."""
    rng = random.Random(2)
    out = []
    for _ in range(count):
        samples = [
            Sample(stack, rng.randint(1, 3), pid=1000 + i % 50, tid=2000 + i % 200,
                   comm=f"proc_{i % 50}", thread=f"worker-{i % 8}")
            for i, stack in enumerate(rng.sample(universe, 2000))
        ]  # fmt: skip
        profile = Profile(EventType.CPU, "samples", samples=samples, frequency_hz=99)
        out.append(encode([profile], Identity("template", "template"), 1))
    return out


def arrow_ingest(store: Store, batches: int, group: int, start_ns: int) -> dict[str, float]:
    """Samples/s through insert_batches, and the rows-building share of the time."""
    tpl = templates(stack_universe(20_000), 20)
    hosts = 100
    made: list[pb.ProfileBatch] = []
    for i in range(batches):
        b = pb.ProfileBatch()
        b.CopyFrom(tpl[i % len(tpl)])
        host, window = i % hosts, i // hosts
        b.agent.agent_id, b.agent.host = f"agent-{host}", f"host-{host}"
        b.agent.labels["env"] = "prod" if host % 2 else "dev"
        b.sequence = window + 1
        b.window_end_ns = start_ns + (window + 1) * 10 * S
        b.window_start_ns = b.window_end_ns - 10 * S
        made.append(b)
    samples = sum(len(b.cpu.stack) for b in made)
    t = time.perf_counter()
    for i in range(0, len(made), group):
        builder = RowBuilder(set())  # every stack new: the builder's worst case
        for b in made[i : i + group]:
            builder.add(b)
        builder.tables()
    build_s = time.perf_counter() - t
    times = []
    for i in range(0, len(made), group):
        t = time.perf_counter()
        store.insert_batches(made[i : i + group])
        times.append(time.perf_counter() - t)
    steady = samples * (len(times) - 1) / len(times) / sum(times[1:]) if len(times) > 1 else 0.0
    # The aggregator's path: StorageWriter, which prepares a group while the last one inserts.
    for b in made:
        b.agent.agent_id = "w" + b.agent.agent_id
    writer = StorageWriter(store, flush_rows=group * 2000, flush_interval_s=0.5)
    t = time.perf_counter()
    for b in made:
        writer.submit(b)
    writer.start()
    if not writer.drain(600):
        raise SystemExit("the writer did not finish")
    writer_s = time.perf_counter() - t
    return {"samples": samples, "seconds": sum(times), "rate": samples / sum(times),
            "steady": steady, "build_share": build_s / sum(times),
            "writer": samples / writer_s, "writer_s": writer_s}  # fmt: skip


def generate(store: Store, samples: int, hosts: int, stacks: int, hours: int, end_ns: int) -> None:
    """The query data set, generated inside the engine."""
    db = store.database
    windows = hours * 360
    start_ns = end_ns - windows * 10 * S
    # Frame j of stack i depends on i >> (14 - j): stacks share a call tree near the root.
    store.command(
        f"INSERT INTO {db}.stacks (stack_hash, names, modules, kinds, offsets, last_seen) "
        "SELECT cityHash64(number, 7), arrayMap(k -> concat('fn_', toString(k % 5000)), keys), "
        "arrayMap(k -> concat('lib', toString(k % 40), '.so'), keys), "
        "arrayMap(k -> 'user', keys), arrayMap(k -> k % 16777216, keys), now() "
        "FROM (SELECT number, arrayMap(j -> cityHash64(j, intDiv(number, bitShiftLeft("
        "toUInt64(1), greatest(0, 14 - toInt32(j))))), range(8 + number % 25)) AS keys "
        f"FROM numbers({stacks}))"
    )
    store.command(
        f"INSERT INTO {db}.samples (ts, window_start, event_type, host, agent_id, labels, pid, "
        "tid, comm, thread, stack_hash, value) "
        f"SELECT fromUnixTimestamp64Nano(toInt64({start_ns}) + toInt64(w + 1) * {10 * S}, 'UTC'), "
        f"fromUnixTimestamp64Nano(toInt64({start_ns}) + toInt64(w) * {10 * S}, 'UTC'), 'cpu', "
        "concat('host-', toString(h)), concat('agent-', toString(h)), "
        "map('env', if(h % 2 = 0, 'prod', 'dev')), toUInt32(1000 + h * 50 + s % 50), "
        "toUInt32(5000 + s % 200), concat('proc_', toString(intDiv(s * 20, "
        f"{stacks}))), concat('worker-', toString(s % 8)), cityHash64(s, 7), 1 + n % 3 "
        f"FROM (SELECT number AS n, n % {hosts} AS h, intDiv(n, {hosts}) % {windows} AS w, "
        f"toUInt64({stacks} * pow(cityHash64(n, 1) / 18446744073709551616, 3)) AS s "
        f"FROM numbers({samples}))"
    )
    store.command(f"OPTIMIZE TABLE {db}.samples FINAL")
    store.command(f"OPTIMIZE TABLE {db}.samples_hourly FINAL")


def bytes_per_sample(store: Store, database: str) -> tuple[float, float, int]:
    """(samples table bytes per row, all tables' bytes per sample, rows) on disk."""
    rows = store.select(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active "
        "AND database = {db:String} GROUP BY table",
        {"db": database},
    )
    by = {t: (int(r), int(b)) for t, r, b in rows}
    n, sample_bytes = by.get("samples", (0, 0))
    total = sum(b for _, b in by.values())
    return sample_bytes / max(n, 1), total / max(n, 1), n


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, float]:
    """(first run, p50, p95) in ms; the first run is the cold one."""
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    rest = sorted(times[1:])
    return times[0], statistics.median(rest), rest[min(len(rest) - 1, int(0.95 * len(rest)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--stacks", type=int, default=20_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--ingest-batches", type=int, default=1000, help="2,000-sample batches")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dir", type=Path, help="chDB directory (default: a temporary one)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="aperture-bench-")
    where = args.dir or Path(tmp.name) / "store"
    end_ns = time.time_ns() // (10 * S) * 10 * S
    t = time.perf_counter()
    store = Store.open(f"chdb://{where}", database="ingest", retention_days=30)
    open_s = time.perf_counter() - t
    print(f"open: {open_s:.2f}s", file=sys.stderr)
    ingest = arrow_ingest(store, args.ingest_batches, 50, end_ns - 86400 * S)
    store.command("OPTIMIZE TABLE ingest.samples FINAL")
    arrow_bytes = bytes_per_sample(store, "ingest")
    print(f"arrow ingest: {ingest}", file=sys.stderr)
    store.close()

    store = Store.open(f"chdb://{where}", database="query", retention_days=30)
    t = time.perf_counter()
    generate(store, args.samples, args.hosts, args.stacks, args.hours, end_ns)
    gen_s = time.perf_counter() - t
    sql_bytes = bytes_per_sample(store, "query")
    print(f"generated in {gen_s:.1f}s, bytes: {sql_bytes}", file=sys.stderr)
    start_ns = end_ns - args.hours * 3600 * S
    whole = QueryFilter(from_ns=start_ns, to_ns=end_ns + 1)
    mid = start_ns + (end_ns - start_ns) // 2
    first = QueryFilter(from_ns=start_ns, to_ns=mid)
    second = QueryFilter(from_ns=mid, to_ns=end_ns + 1)
    one_host = QueryFilter(from_ns=end_ns - 3600 * S, to_ns=end_ns + 1, host="host-7")
    source = StoreSource(store)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("flamegraph, all hosts, max_nodes 5000",
         lambda: answers.flamegraph(source, whole, 5000)),
        ("top 100 (self)", lambda: answers.top(source, whole, 100, "self")),
        ("diff first vs second half, max_nodes 5000",
         lambda: answers.diff(source, first, second, 5000, 200)),
        ("timeline step 60 s", lambda: answers.timeline(source, whole, 60, None)),
        ("timeline step 300 s by host", lambda: answers.timeline(source, whole, 300, "host")),
        ("flamegraph, one host, last hour", lambda: answers.flamegraph(source, one_host, 5000)),
    ]  # fmt: skip
    results = []
    for name, fn in cases:
        store.stacks._stacks.clear()  # every query's first run starts with a cold stack cache
        cold, p50, p95 = timed(fn, args.runs)
        results.append((name, cold, p50, p95))
        print(f"{name}: cold {cold:.0f} ms, p50 {p50:.0f} ms, p95 {p95:.0f} ms", file=sys.stderr)
    nodes = len(answers.flamegraph(source, whole, 10**7).nodes.name)
    store.close()
    tmp.cleanup()
    write_report(args, open_s, ingest, arrow_bytes, sql_bytes, gen_s, results, nodes)
    return 0


def write_report(
    args: argparse.Namespace,
    open_s: float,
    ingest: dict[str, float],
    arrow_bytes: tuple[float, float, int],
    sql_bytes: tuple[float, float, int],
    gen_s: float,
    results: list[tuple[str, float, float, float]],
    nodes: int,
) -> None:
    flame_p50 = results[0][2]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = [
        "# Storage benchmark (embedded chDB)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"Python {platform.python_version()}, `python bench/storage.py "
        f"--samples {args.samples} --hosts {args.hosts} --stacks {args.stacks} "
        f"--hours {args.hours} --ingest-batches {args.ingest_batches}`; load average "
        f"{os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} CPUs (a shared machine: "
        "other work inflates these times).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| ingest through `Store.insert_batches` (Arrow), samples/s | "
        f"{ingest['rate']:,.0f} ({ingest['samples']:,.0f} samples in {ingest['seconds']:.1f} s, "
        f"groups of 50 batches; building rows with every stack new takes "
        f"{ingest['build_share']:.0%} of that) | >= 500,000: "
        f"{verdict(ingest['rate'] >= 500_000)} |",
        f"| the same once stacks are known (every group after the first), samples/s | "
        f"{ingest['steady']:,.0f} | >= 500,000: {verdict(ingest['steady'] >= 500_000)} |",
        f"| through `StorageWriter` (prepare and insert overlapped), samples/s | "
        f"{ingest['writer']:,.0f} ({ingest['samples']:,.0f} samples in {ingest['writer_s']:.1f} s)"
        f" | >= 500,000: {verdict(ingest['writer'] >= 500_000)} |",
        f"| bytes on disk per sample, Arrow-ingested batches (samples table / all tables) | "
        f"{arrow_bytes[0]:.1f} / {arrow_bytes[1]:.1f} ({arrow_bytes[2]:,} rows) | <= 25: "
        f"{verdict(arrow_bytes[1] <= 25)} |",
        f"| bytes on disk per sample, query data set (samples table / all tables) | "
        f"{sql_bytes[0]:.1f} / {sql_bytes[1]:.1f} ({sql_bytes[2]:,} rows) | <= 25: "
        f"{verdict(sql_bytes[1] <= 25)} |",
        f"| open an existing/new store | {open_s:.2f} s | |",
        f"| generate the query data set in SQL | {gen_s:.1f} s | |",
        "",
        f"Queries over {args.samples:,} samples ({args.hours} h, {args.hosts} hosts, "
        f"{args.stacks:,} stacks; the unpruned tree has {nodes:,} nodes), {args.runs} runs "
        "after a first run with a cold stack cache:",
        "",
        "| query | first (cold) ms | p50 ms | p95 ms |",
        "|---|---|---|---|",
        *[f"| {n} | {c:.0f} | {p50:.0f} | {p95:.0f} |" for n, c, p50, p95 in results],
        "",
        f"Flamegraph over {args.hours} h x {args.hosts} hosts p50 target <= 300 ms: "
        f"{verdict(flame_p50 <= 300)}.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
