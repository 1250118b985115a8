"""WASM filter cost: records/s through each example filter, and the cost per batch of 2,000.

Not a test. Builds the C examples (clang wasm32 + lld) into bench/build/filters, runs
each filter (and the WAT twins) on batches of synthetic CPU samples shaped like a real
window (20-frame stacks, a few hundred processes), and writes bench/results/filters.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from aperture.filters import FilterOptions, WasmFilter, apply_filter, encode_batch
from aperture.filters.batch import filter_batch
from aperture.filters.host import sample_records
from aperture.model import EventType, Frame, Profile, Sample
from aperture.wire import Identity, encode

BENCH = Path(__file__).resolve().parent
EXAMPLES = BENCH.parent / "src/aperture/filters/examples"
BUILD = BENCH / "build" / "filters"


def build() -> dict[str, Path]:
    BUILD.mkdir(parents=True, exist_ok=True)
    out = {}
    for src in sorted(EXAMPLES.glob("*.c")):
        wasm = BUILD / f"{src.stem}.wasm"
        subprocess.run(
            ["clang", "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry",
             "-Wl,--export=aperture_alloc", "-Wl,--export=aperture_filter",
             "-o", str(wasm), str(src)],
            check=True,
        )  # fmt: skip
        out[f"{src.stem} (C)"] = wasm
    for wat in sorted(EXAMPLES.glob("*.wat")):
        out[f"{wat.stem} (WAT)"] = wat
    return out


def window(records: int) -> Profile:
    # One Frame object per distinct frame, as a decoded batch and the symbolizer's cache
    # give; every sample has its own 20-frame stack.
    pool = [Frame(f"func_{i}", f"lib{i % 6}.so") for i in range(600)]
    samples = []
    for i in range(records):
        stack = tuple(pool[(i * 7 + j * 13) % len(pool)] for j in range(20))
        comm = "swapper/0" if i % 10 == 0 else f"proc{i % 300}"
        samples.append(Sample(stack, 1 + i % 5, pid=0 if i % 10 == 0 else 1000 + i % 300,
                              tid=2000 + i % 700, comm=comm))  # fmt: skip
    return Profile(EventType.CPU, "samples", samples=samples)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``fn``."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


ARGS = {"comm_prefix": "proc1", "drop_function": "func_42", "sample_1_in_n": "10"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    filters = build()
    profile = window(args.records)
    records = sample_records(profile)
    n = len(records)
    encode_s = timed(lambda: encode_batch(records, b"proc1"), args.repeat)
    batch = encode([profile], Identity("bench", "bench"), 1)
    size = len(encode_batch(records, b""))
    rows = []
    for name, path in filters.items():
        stem = name.split(" ")[0]
        flt = WasmFilter(path, FilterOptions(arg=ARGS.get(stem, "").encode(), fuel=10**9))
        flt.run(records)  # warm
        run_s = timed(lambda f=flt: f.run(records), args.repeat)  # type: ignore[misc]
        inst_s = timed(flt._instantiate, args.repeat)
        encoded = encode_batch(records, flt.options.arg)
        wasm_s = timed(lambda f=flt, e=encoded: f.run_encoded(e, n), args.repeat)  # type: ignore[misc]
        apply_s = timed(lambda f=flt: apply_filter(f, profile), args.repeat)  # type: ignore[misc]
        kept = len(apply_filter(flt, profile).samples)
        ingest_s = timed(lambda f=flt: filter_batch(f, batch), max(5, args.repeat // 3))  # type: ignore[misc]
        rows.append((name, kept, inst_s, wasm_s, run_s, apply_s, ingest_s))

    lines = [
        "# WASM filters",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: kernel {platform.release()}, {platform.machine()}, "
        f"Python {platform.python_version()}, wasmtime {version('wasmtime')}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine)",
        f"- command: `bench/filters.py --records {args.records} --repeat {args.repeat}`",
        f"- batch: {n:,} CPU samples, 20-frame stacks, {size / 1024:.0f} KiB in the ABI "
        f"layout; encoding it (Python) takes {encode_s * 1e3:.2f} ms, and the WASM call "
        "itself is a small part of *run*",
        "",
        "Per batch of the given size, median of the repeats. *sandbox* is a fresh store + "
        "instance (each batch gets one); *wasm* = sandbox + alloc/write of the encoded "
        "batch + `aperture_filter` + read back (no Python encoding); *run* = encode + "
        "wasm; *apply* = run + rebuilding the profile (the agent's "
        "per-window cost); *ingest* = decode the ProfileBatch + apply + re-encode (the "
        "aggregator's --ingest-filter cost).",
        "",
        "| filter | kept | sandbox ms | wasm ms | run ms | apply ms | records/s (apply) "
        "| ingest ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, kept, inst_s, wasm_s, run_s, apply_s, ingest_s in rows:
        lines.append(
            f"| {name} | {kept:,} | {inst_s * 1e3:.3f} | {wasm_s * 1e3:.2f} | {run_s * 1e3:.2f} | "
            f"{apply_s * 1e3:.2f} | {n / apply_s:,.0f} | {ingest_s * 1e3:.1f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "filters.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
