"""Import amplification: what a small pprof upload costs the aggregator.

The body of issue 17: one sample per distinct pid, 300,000 of them (4.8 MB
inflated, 491 KB gzip), so every sample is a distinct key. Also 100,000 distinct
pids (at the sample limit, the most an import may cost now), 8 million empty
samples in 16 KB of gzip (a parse bomb: each is two bytes on the wire and a
message in memory), and google/pprof's large.cpu (20,430 samples, moved to
now) as the real-world reference. Each body is posted once to a fresh
aggregator (embedded store, journal on); reported: the answer, the seconds until
it came, and how much the aggregator's peak RSS (VmHWM) grew over its idle peak.

``--src DIR`` runs the aggregator from another source tree (e.g. an older
commit's ``git archive``) for a before/after comparison. Writes
bench/results/import_amplification.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_DIR, log, machine_header, markdown_table, peak_rss_kib, write_report
from aggregator_proc import AggregatorProcess
from pprof_bodies import distinct_pids_gzip, empty_samples_gzip

LARGE_CPU = REPO_DIR.parent / "shared" / "interop" / "pprof" / "large.cpu"


def measure(name: str, body: bytes, params: dict[str, str], src: Path | None) -> tuple[str, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        old_path = os.environ.get("PYTHONPATH")
        if src is not None:
            os.environ["PYTHONPATH"] = str(src)
        try:
            agg = AggregatorProcess(Path(tmp) / "agg").start()
        finally:
            if src is not None:
                if old_path is None:
                    os.environ.pop("PYTHONPATH")
                else:
                    os.environ["PYTHONPATH"] = old_path
        try:
            assert agg.proc is not None
            idle = peak_rss_kib(agg.proc.pid)
            started = time.perf_counter()
            response = httpx.post(f"{agg.http}/api/v1/ingest/pprof", params=params,
                                  content=body, headers=agg.headers(), timeout=600)  # fmt: skip
            seconds = time.perf_counter() - started
            grown = (peak_rss_kib(agg.proc.pid) - idle) / 1024
        finally:
            agg.stop()
    answer = f"{response.status_code} " + response.text[:90].replace("|", "/")
    log(f"{name}: {answer} in {seconds:.2f} s, peak RSS +{grown:.0f} MiB")
    return (name, f"{len(body):,}", answer, f"{seconds:.2f}", f"{grown:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, help="run the aggregator from this source tree")
    parser.add_argument("--name", default="import_amplification", help="the report's name")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], bytes], dict[str, str]]] = [
        ("300,000 distinct pids", lambda: distinct_pids_gzip(300_000), {"service": "pids"}),
        ("100,000 distinct pids", lambda: distinct_pids_gzip(100_000), {"service": "pids"}),
        ("8M empty samples", lambda: empty_samples_gzip(8_000_000), {"service": "empty"}),
        ("large.cpu, at=now", LARGE_CPU.read_bytes, {"service": "large", "at": "now"}),
    ]
    rows = [measure(name, make(), params, args.src) for name, make, params in cases]
    source = f"the aggregator from {args.src}" if args.src else "this tree"
    text = "\n\n".join([
        machine_header("Import amplification", " ".join(["python", *sys.argv])),
        f"Each body posted once to `/api/v1/ingest/pprof` of a fresh aggregator ({source}).",
        markdown_table(["body", "bytes", "answer", "seconds", "peak RSS growth (MiB)"], rows),
    ])  # fmt: skip
    write_report(args.name, text)


if __name__ == "__main__":
    main()
