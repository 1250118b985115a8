"""Render reliability/results/*.json (load, soak, fault and fuzz runs) into docs/reliability.md.

The page is a function of the result files only (no clock, sorted input), so
regenerating from the same results gives the same bytes.

usage: python tools/gen_reliability_doc.py [--results DIR] [--output FILE] [--check]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reliability" / "results"
OUTPUT = ROOT / "docs" / "reliability.md"

SECTIONS = (
    ("load", "Loads held", "Simulated agents (real gRPC clients) against one aggregator."),
    ("soak", "Soaks", "Long runs of the real agent (real BPF) against a real aggregator."),
    ("fault", "Faults survived", "A fault injected while data flows; what was lost, and how "
     "long recovery took."),
    ("fuzz", "Inputs tried", "Malformed and random inputs fed to the parsers and endpoints."),
)  # fmt: skip


# The metrics shown in a section's summary table (every metric is in the run's own table).
KEY_METRICS = {
    "load": ("pushes_per_s", "p50_push_ms", "p99_push_ms", "rss_growth_pct", "pending_rows_max"),
    "soak": ("rss_growth_pct", "agent_cpu_pct_of_core", "bpf_map_fills", "sequences_missing"),
    "fault": ("downtime_s", "pushes_refused_store_full", "agent_spool_write_failures"),
}


def key_metrics(run: dict[str, Any]) -> str:
    metrics = run.get("metrics") or {}
    keys = KEY_METRICS.get(str(run.get("kind")), ())
    return ", ".join(f"{k} {cell(metrics[k])}" for k in keys if k in metrics) or "n/a"


def cell(value: Any) -> str:
    """A value as a table cell: numbers readable, pipes and newlines escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and abs(value) >= 1:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def load(results: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(results.glob("*.json")):
        doc = json.loads(path.read_text())
        doc.setdefault("name", path.stem)
        runs.append(doc)
    return runs


def when(run: dict[str, Any]) -> str:
    host = run.get("host") or {}
    started = str(run.get("started", "?")).replace("T", " ").replace("+00:00", " UTC")
    return f"{started}, load {host.get('load_at_start', '?')}"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "n/a"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def section(kind: str, title: str, blurb: str, runs: list[dict[str, Any]]) -> list[str]:
    lines = [f"## {title}", "", blurb, ""]
    if not runs:
        return [
            *lines,
            f"No {kind} results yet: run `make {'fuzz' if kind == 'fuzz' else 'soak'}`.",
            "",
        ]
    recovery = kind == "fault"
    headers = ["Run", "Tried", "Held", "Lost"] + (["Recovery"] if recovery else [])
    headers += ["Key metrics", "When"]
    rows = []
    for run in runs:
        row = [f"[{cell(run.get('name'))}](#{run.get('name')})", cell(run.get("tried")),
               cell(bool(run.get("held"))), cell(run.get("lost"))]  # fmt: skip
        if recovery:
            rec = run.get("recovery_s")
            row.append("n/a" if rec is None else f"{cell(float(rec))} s")
        row += [key_metrics(run), cell(when(run))]
        rows.append(row)
    lines += [*table(headers, rows), ""]
    for run in runs:
        host = run.get("host") or {}
        lines += [
            f"### {run.get('name')}",
            "",
            f"{cell(run.get('title'))}. Held: {cell(bool(run.get('held')))}. "
            f"Ran {duration(run.get('duration_s'))} from {when(run)}"
            + (f" (at the end {host['load_at_end']})" if host.get("load_at_end") else "")
            + f"; {host.get('cpus', '?')} CPUs, kernel {host.get('kernel', '?')}.",
            "",
        ]
        if run.get("notes"):
            lines += [cell(run["notes"]), ""]
        metrics = run.get("metrics") or {}
        if metrics:
            lines += table(["Metric", "Value"], [[cell(k), cell(v)] for k, v in metrics.items()])
            lines.append("")
    return lines


def render(runs: list[dict[str, Any]]) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind, *_ in SECTIONS}
    for run in runs:
        by_kind.setdefault(str(run.get("kind")), []).append(run)
    summary = []
    for kind, title, _ in SECTIONS:
        group = by_kind[kind]
        held = sum(1 for r in group if r.get("held"))
        summary.append([title, cell(len(group)), cell(held), cell(len(group) - held)])
    lines = [
        "# Reliability",
        "",
        "What Aperture was made to survive on one machine, and what it lost doing so. Every "
        "number below comes from a run's result file in `reliability/results/`; this page is "
        "generated by `tools/gen_reliability_doc.py` and is not edited by hand.",
        "",
        "Regenerate: `make soak` (load, agent soak and faults, about an hour, as root: real "
        "BPF, tmpfs mounts, network namespaces), `make fuzz` (long fuzzing runs), or "
        "`make reliability-doc` to re-render the existing results. The runs share a 2-CPU "
        "machine with other work: each row shows the load average when it started.",
        "",
        '"Held" means every check of the run passed; "Lost" counts what did not arrive: '
        "acknowledged data must never be lost, and drops are allowed only where a documented "
        "bound overflowed, and then counted.",
        "",
        *table(["Kind", "Runs", "Held", "Did not hold"], summary),
        "",
    ]
    for kind, title, blurb in SECTIONS:
        lines += section(kind, title, blurb, by_kind[kind])
    others = sorted(k for k in by_kind if k not in {s[0] for s in SECTIONS})
    for kind in others:
        lines += section(kind, f"Other: {kind}", "Results of an unknown kind.", by_kind[kind])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    text = render(load(args.results))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run make reliability-doc", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
