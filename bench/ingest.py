"""Aggregator ingest: how many agents one process sustains on this machine.

Simulated agents are real gRPC clients pushing realistic batches (2,000
distinct stacks of 8-32 frames from 5,000 functions, ~2,000 samples: one
10 s window of a 2-CPU host at 99 Hz) on a fixed schedule (open loop), to a
real aggregator process with its journal on. For each agent count: pushes/s
and samples/s achieved, push latency p50/p99 (client side), errors, and the
aggregator's CPU and RSS. Target: >= 1,000 agents at a 10 s interval with
p99 < 100 ms.

To keep the load generator cheap on a 2-core machine, each push is the gzip of
one pre-built template followed by a tiny gzip member carrying that agent's
id and sequence: protobuf merges concatenated messages, so the server does the
full work of a real push (gunzip, parse, check, journal, buffer).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from aggregator_proc import AggregatorProcess
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import profile_pb2 as pb
from aperture.wire import Identity, encode

INTERVAL_S = 10.0
RESULTS = Path(__file__).parent / "results"


def template(seed: int, stacks: int = 2000) -> tuple[bytes, int]:
    """A realistic CPU batch (gzip) without agent id/sequence, and its sample count."""
    rng = random.Random(seed)
    modules = [f"lib{i}.so" for i in range(40)] + ["[kernel]"]
    functions = [
        Frame(f"fn_{i}_{'x' * rng.randint(5, 30)}", rng.choice(modules), FrameKind.USER,
              rng.randrange(1 << 24))
        for i in range(5000)
    ]  # fmt: skip
    samples = []
    for _ in range(stacks):
        stack = tuple(rng.choice(functions) for _ in range(rng.randint(8, 32)))
        samples.append(Sample(stack, 1, pid=rng.randint(1, 300), tid=1, comm="proc", thread="t"))
    now = time.time_ns()
    profile = Profile(EventType.CPU, "samples", samples=samples, start_ns=now - 10**10,
                      end_ns=now, frequency_hz=99)  # fmt: skip
    batch = encode([profile], Identity("template", "host"), 1)
    batch.ClearField("agent")
    batch.ClearField("sequence")
    return gzip.compress(batch.SerializeToString(), 1), len(samples)


def header(agent: int, sequence: int) -> bytes:
    head = pb.ProfileBatch(sequence=sequence)
    head.agent.agent_id = f"sim-{agent:05d}"
    head.agent.host = f"host-{agent:05d}"
    return gzip.compress(head.SerializeToString(), 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_step(
    target: str, token: str, agents: int, seconds: float, body: bytes, seq_base: int
) -> tuple[int, int, list[float]]:
    """Every agent pushes once per interval, staggered; returns ok, errors, latencies."""
    channel = grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 << 20)]
    )
    push = channel.unary_unary(
        "/aperture.v1.Aggregator/Push",
        request_serializer=lambda b: b,
        response_deserializer=apb.PushResponse.FromString,
    )
    md = (("authorization", f"Bearer {token}"),)
    latencies: list[float] = []
    ok = errors = 0
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def one(agent: int, seq: int) -> None:
        nonlocal ok, errors
        t0 = time.perf_counter()
        try:
            await push(body + header(agent, seq), metadata=md, timeout=10)
            ok += 1
            latencies.append(time.perf_counter() - t0)
        except grpc.aio.AioRpcError:
            errors += 1

    rounds = max(1, int(seconds / INTERVAL_S))
    gap = INTERVAL_S / agents
    for r in range(rounds):
        for agent in range(agents):
            due = start + r * INTERVAL_S + agent * gap
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(agent, seq_base + r))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await channel.close()
    return ok, errors, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=30.0, help="per step")
    parser.add_argument("--aggregator-args", default="", help="extra aggregator flags")
    args = parser.parse_args()
    body, samples_per_batch = template(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        extra = args.aggregator_args.split()
        agg = AggregatorProcess(Path(tmp) / "agg", *extra, token="bench").start()
        assert agg.proc is not None
        pid = agg.proc.pid
        try:
            for step, agents in enumerate(int(a) for a in args.agents.split(",")):
                cpu0, t0 = proc_cpu_s(pid), time.monotonic()
                ok, errors, lat = asyncio.run(
                    run_step(agg.grpc_target, "bench", agents, args.seconds, body, step * 1000 + 1)
                )
                elapsed = time.monotonic() - t0
                cpu = (proc_cpu_s(pid) - cpu0) / elapsed
                rows.append(
                    (agents, ok / elapsed, ok * samples_per_batch / elapsed,
                     percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3, errors,
                     cpu * 100, proc_rss_mb(pid))
                )  # fmt: skip
                print(f"{agents} agents: {rows[-1]}", file=sys.stderr)
        finally:
            agg.stop()
    batch_kb = len(body) / 1024
    lines = [
        f"# Aggregator ingest ({time.strftime('%Y-%m-%d')}, {os.uname().release}, "
        f"{os.cpu_count()} CPUs)",
        "",
        f"Batch: 2,000 distinct stacks, {samples_per_batch} samples, {batch_kb:.0f} KiB gzip; "
        f"each agent pushes every {INTERVAL_S:.0f} s; journal fsync'd per push; "
        f"aggregator flags: `{args.aggregator_args or '(defaults: embedded chDB store)'}`; "
        f"load average at start {os.getloadavg()[0]:.1f}.",
        "",
        "| agents | pushes/s | samples/s | p50 ms | p99 ms | errors | aggregator CPU % | RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {a} | {p:.1f} | {s:,.0f} | {p50:.1f} | {p99:.1f} | {e} | {c:.0f} | {r:.0f} |"
            for a, p, s, p50, p99, e, c, r in rows
        ),
        "",
        "Target: >= 1,000 agents at a 10 s interval with p99 < 100 ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = "ingest-no-storage.md" if "--no-storage" in extra else "ingest.md"
    (RESULTS / name).write_text(text)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
