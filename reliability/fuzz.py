"""``make fuzz``: the tests/fuzz properties at length, and atheris on the binary decoders.

1. atheris (coverage-guided, when installed): ProfileBatch and pprof decoding, N s each;
2. every test in tests/fuzz once with the quick ``ci`` profile, which also times each
   property per input;
3. the Hypothesis properties again with the ``fuzz`` profile, each given as many
   examples as its share of the remaining budget buys at the measured cost.

Writes ``results/fuzz-<target>.json`` per target (README.md schema, kind ``fuzz``):
inputs tried, failures, and what they were. The whole run stays within ``--budget``.

usage: python reliability/fuzz.py [--budget SECONDS] [--atheris-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _run import ROOT, Result, log

HERE = Path(__file__).resolve().parent
FUZZ_TESTS = ROOT / "tests" / "fuzz"

# test module -> (result name, title, what "lost" means when it held)
TARGETS: dict[str, tuple[str, str, str]] = {
    "test_fuzz_wire": ("fuzz-profilebatch", "ProfileBatch decoding (parse, check, decode): "
                       "round trips, mutated columns and headers, damaged and random bytes",
                       "nothing: every input decoded or was refused with MalformedBatch"),
    "test_fuzz_pprof": ("fuzz-pprof-import", "pprof import: odd Profile messages, damaged "
                        "files (raw and gzip), random bytes, gzip bombs",
                        "nothing: every input imported or was refused with MalformedPprof"),
    "test_fuzz_folded": ("fuzz-folded-pyroscope", "folded/lines text, Pyroscope app names, "
                         "times, Connect push bodies and multipart forms",
                         "nothing: every input parsed or was refused with a ValueError"),
    "test_fuzz_ingest_http": ("fuzz-ingest-routes", "ingest routes of a real aggregator: "
                              "Pyroscope /ingest parameters, pprof upload, Connect push, "
                              "gRPC Push of damaged batches",
                              "nothing: no 5xx or gRPC INTERNAL, no store flush failed, the "
                              "server stayed healthy"),
    "test_fuzz_wasm": ("fuzz-wasm-filters", "WASM filters: random bytes, generated modules "
                       "that trap, spin, grow memory or break the ABI",
                       "nothing: refused at load or a counted per-batch failure; fuel and "
                       "the memory limit held"),
    "test_fuzz_alert_rules": ("fuzz-alert-rules", "alert rule documents (any JSON) on create, "
                              "replace and dry-run evaluate",
                              "nothing: 201/409/422 with a reason, never a 5xx"),
    "test_schemathesis": ("fuzz-openapi", "Schemathesis on every /openapi.json operation, "
                          "with the token, without it and with wrong ones",
                          "nothing: no 5xx; every operation 401/403 without a valid token"),
    "test_injection": ("fuzz-injection", "SQL/ClickHouse metacharacters in labels, hosts, "
                       "agents, process, function and tag names, through every query route",
                       "nothing: each value matched only its own rows"),
    "test_static_traversal": ("fuzz-static-traversal", "path traversal on the static "
                              "dashboard: encoded dot segments, NUL, absolute paths, symlinks",
                              "nothing: no file outside the web directory was served"),
    "test_fuzz_agent_parsers": ("fuzz-agent-parsers", "the agent's parsers of files other "
                                "users write: perf maps, ELF headers, symbol tables and notes, "
                                ".gnu_debuglink, MiniDebugInfo, /proc/PID/maps and status, the "
                                "unwind and interpreter ELF readers; valid, damaged and random",
                                "nothing: every input parsed or was refused (RefusedFile or "
                                "ELFError), within the read and inflation bounds"),
    "test_oversized": ("fuzz-oversized", "oversized and deeply nested inputs: 10,000-frame "
                       "stacks, 1M-frame string tables, 200,000-deep JSON, gzip bombs, "
                       "bodies and messages over the limits, 4,000 label filters",
                       "nothing: bounded with a clean 4xx/RESOURCE_EXHAUSTED, server healthy"),
}  # fmt: skip
ATHERIS = {"profilebatch": "test_fuzz_wire", "pprof": "test_fuzz_pprof"}


def _pytest(args: list[str], counts: Path, env: dict[str, str], timeout: float) -> bool:
    """Run pytest with the counting plugin; SIGINT at the timeout (fixtures tear down)."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **env, "APERTURE_FUZZ_COUNTS": str(counts), "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "_fuzz_counter", "-p", "no:cacheprovider",
           "-p", "no:logging", "--hypothesis-seed", str(int(time.time())), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        proc.wait(timeout=max(timeout, 1))
        return False
    except subprocess.TimeoutExpired:
        log("time budget reached: stopping pytest (SIGINT, fixtures tear down)")
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return True


def _atheris(target: str, seconds: float, work: Path) -> dict[str, Any]:
    """One atheris run: inputs tried and the crash, if any."""
    corpus, artifacts = work / f"corpus-{target}", work / f"crash-{target}-"
    cmd = [sys.executable, str(HERE / "_atheris_targets.py"), target, str(corpus),
           f"-max_total_time={int(seconds)}", "-timeout=20", "-rss_limit_mb=2048",
           f"-artifact_prefix={artifacts}", "-print_final_stats=1"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
    runs = re.findall(r"Done (\d+) runs", proc.stderr) or re.findall(
        r"stat::number_of_executed_units:\s*(\d+)", proc.stderr
    )
    seconds_run = round(time.monotonic() - started, 1)
    out: dict[str, Any] = {
        "runs": int(runs[-1]) if runs else 0,
        "seconds": seconds_run,
        "crash": "",
    }
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln), 0)
        out["crash"] = " / ".join(lines[start : start + 12])[:1500]
    return out


def _merge(total: dict[str, dict[str, Any]], counts: Path) -> None:
    if not counts.exists():
        return
    for nodeid, entry in json.loads(counts.read_text()).items():
        into = total.setdefault(nodeid, {"inputs": 0, "failed_inputs": 0, "seconds": 0.0,
                                         "outcome": "", "error": "", "runs": 0})  # fmt: skip
        into["inputs"] += entry["inputs"]
        into["failed_inputs"] += entry["failed_inputs"]
        into["seconds"] += entry["seconds"]
        into["runs"] += 1
        if entry["outcome"] == "failed" or not into["outcome"]:
            into["outcome"], into["error"] = entry["outcome"], entry["error"]


def _plan(calibration: dict[str, dict[str, Any]], seconds: float) -> tuple[dict[str, int], int]:
    """Examples per Hypothesis test for ``seconds`` in all, and per Schemathesis operation."""
    fuzzed = {n: e for n, e in calibration.items() if e["inputs"] > 1 and e["outcome"] == "passed"}
    if not fuzzed:
        return {}, 0
    share = seconds / len(fuzzed)
    plan: dict[str, int] = {}
    operation_examples = 0
    for nodeid, entry in fuzzed.items():
        per_input = max(entry["seconds"], 0.01) / entry["inputs"]
        examples = int(min(100_000, max(25, share / per_input)))
        if "test_schemathesis" in nodeid:
            # the ci run tried 6 examples per operation (3 for the token test)
            operation_examples = max(operation_examples, int(max(6, 6 * share / entry["seconds"])))
        else:
            plan[nodeid] = examples
    return plan, operation_examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="seconds in all (600)")
    parser.add_argument("--atheris-seconds", type=float, default=None,
                        help="per atheris target (default: 10%% of the budget each)")  # fmt: skip
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    results = {module: Result("fuzz", name, title, tried="")
               for module, (name, title, _) in TARGETS.items()}  # fmt: skip
    atheris_runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="aperture-fuzz-") as tmp:
        work = Path(tmp)
        try:
            import atheris  # noqa: F401

            have_atheris = True
        except ImportError:
            have_atheris = False
            log("atheris is not installed: Hypothesis only (pip install atheris)")
        if have_atheris:
            seconds = args.atheris_seconds or max(10.0, args.budget * 0.1)
            for target in ATHERIS:
                log(f"atheris: {target} for {seconds:.0f} s")
                atheris_runs[target] = _atheris(target, seconds, work)
                log(f"atheris: {target}: {atheris_runs[target]['runs']:,} inputs")
        total: dict[str, dict[str, Any]] = {}
        log("every tests/fuzz test once with the ci profile (calibration)")
        calib = work / "calibration.json"
        stopped = _pytest([str(FUZZ_TESTS)], calib, {}, deadline - time.monotonic() - 60)
        _merge(total, calib)
        calibration = json.loads(calib.read_text()) if calib.exists() else {}
        remaining = deadline - time.monotonic() - 90  # startup, teardown, writing
        plan, operation_examples = _plan(calibration, remaining * 0.8)
        if plan and not stopped and remaining > 60:
            log(f"the fuzz profile: {len(plan)} properties, {sum(plan.values()):,} examples "
                f"planned over {remaining:.0f} s")  # fmt: skip
            long_run = work / "fuzz.json"
            nodeids = [*plan, *(n for n in calibration if "test_schemathesis" in n)]
            env = {"APERTURE_FUZZ": "1", "APERTURE_FUZZ_PLAN": json.dumps(plan),
                   "APERTURE_FUZZ_EXAMPLES": "200",
                   "APERTURE_FUZZ_OPERATION_EXAMPLES": str(operation_examples)}  # fmt: skip
            stopped = _pytest(nodeids, long_run, env, deadline - time.monotonic() - 30) or stopped
            _merge(total, long_run)
    for module, result in results.items():
        _, _, held_lost = TARGETS[module]
        tests = {n: e for n, e in total.items() if n.split("::")[0].endswith(f"{module}.py")}
        inputs = sum(e["inputs"] for e in tests.values())
        failed = {
            n.split("::", 1)[1]: e["error"] for n, e in tests.items() if e["outcome"] == "failed"
        }
        parts = [f"{inputs:,} inputs over {len(tests)} tests (Hypothesis and fixed cases)"]
        result.metrics = {"inputs": inputs, "tests": len(tests), "failed_tests": len(failed)}
        for target, module_of in ATHERIS.items():
            run = atheris_runs.get(target)
            if module_of == module and run is not None:
                parts.append(
                    f"{run['runs']:,} coverage-guided inputs (atheris, {run['seconds']:.0f} s)"
                )
                result.metrics["atheris_inputs"] = run["runs"]
                if run["crash"]:
                    failed[f"atheris {target}"] = run["crash"]
        result.tried = " + ".join(parts)
        result.held = bool(tests) and not failed
        result.lost = held_lost if result.held else (
            f"{len(failed)} failing: " + "; ".join(f"{k}: {v}" for k, v in failed.items())[:1500]
            if failed else "not run: the time budget ended first"
        )  # fmt: skip
        for nodeid, entry in sorted(tests.items()):
            result.metrics[nodeid.split("::", 1)[1][:80]] = entry["inputs"]
        result.notes.append(f"make fuzz with --budget {args.budget:.0f} s.")
        if stopped:
            result.notes.append("The run reached its time budget; counts are what was tried.")
        result.save()
    return 0 if all(r.held for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
