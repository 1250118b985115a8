"""Fault runs: each scenario is bounded, loopback (or a veth pair) only, and writes one result.

For each: what was lost (nothing acknowledged may be; drops only where a documented
bound overflowed, and counted) and how long recovery took. Scenarios about the
agent use the real agent (root, BPF); simulated agents (bench/ingest.py batches
over real gRPC) add load where that is more useful. Each result says which.

usage: python reliability/faults.py [--only NAME[,NAME...]] [--list]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fleet import Fleet, FleetStats
from _run import (
    AggregatorProcess,
    Result,
    Sampler,
    batches,
    log,
    rss_mb,
    sequence_gaps,
    start_agent,
    store_contents,
)

from aperture.formats.json_format import load_json

AGENT = "fault-agent"


def wait_until(check: Callable[[], bool], timeout_s: float, period_s: float = 0.25) -> float | None:
    """Seconds until ``check()`` held, or None if it did not within ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - t0
        time.sleep(period_s)
    return None


def caught_up(agg: AggregatorProcess, agent_id: str, since_ns: int) -> bool:
    """The agent's batches are gapless and include a window that started after ``since_ns``."""
    got = batches(agg, agent_id)
    missing, _ = sequence_gaps([b.sequence for b in got])
    return missing == 0 and any(b.window_start_ns >= since_ns for b in got)


def run_fleet(fleet: Fleet, seconds: float, retry_for_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(fleet.run(seconds, retry_for_s)))
    thread.start()
    return thread


def fleet_loss(stats: FleetStats, stored: dict[str, object]) -> tuple[int, int]:
    """(acknowledged pushes missing from the store, acknowledged samples missing)."""
    seqs = stored["sequences"]
    samples = stored["cpu_samples"]
    assert isinstance(seqs, dict) and isinstance(samples, dict)
    keys = {(a, s) for a, ss in seqs.items() for s in ss}
    missing = sum(1 for k in stats.acked if k not in keys)
    short = sum(max(0, n - samples.get(a, 0)) for a, n in stats.acked_samples().items())
    return missing, short


def agent_summary(text: str) -> dict[str, int]:
    """Counts from the agent's end-of-run Push summary (its stderr)."""
    out: dict[str, int] = {}
    if m := re.search(r"Push: (\d+) batch(?:es)? sent", text):
        out["agent_batches_sent"] = int(m.group(1))
    if m := re.search(r"(\d+) retries", text):
        out["agent_retries"] = int(m.group(1))
    if m := re.search(r"(\d+) batch(?:es)? came from the spool", text):
        out["agent_restored_from_spool"] = int(m.group(1))
    if m := re.search(r"(\d+) batch(?:es)? could not be written to the spool", text):
        out["agent_spool_write_failures"] = int(m.group(1))
    if m := re.search(r"(\d+) batch(?:es)? still spooled", text):
        out["agent_spooled_at_exit"] = int(m.group(1))
    if m := re.search(r"(\d+) batch(?:es)? lost, not delivered", text):
        out["agent_lost_at_exit"] = int(m.group(1))
    if m := re.search(r"dropped: (.*)", text):
        for n, why in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", m.group(1)):
            out[f"agent_dropped_{why.strip().replace(' ', '_')}"] = int(n)
    return out


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (root only), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> int:
    """Write a file until the filesystem is full; its size in bytes."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with (directory / "filler").open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1 << 12:
                    return written
                chunk = chunk[: len(chunk) // 16]


def local_total(path: Path) -> int:
    return load_json(path.read_text()).total if path.exists() else -1


# -- scenarios ---------------------------------------------------------------


def aggregator_kill9(tmp: Path) -> Result:
    res = Result(
        "fault", "fault-aggregator-kill9",
        "aggregator killed (-9) and restarted while agents push",
        "1 real agent (cpu, 1 s windows, spool) + 50 simulated agents (every 5 s); "
        "kill -9 at 15 s, restart 5 s later; 40 s of pushes",
    )  # fmt: skip
    data, local = tmp / "agg", tmp / "local.json"
    agg = AggregatorProcess(data, token="fault").start()
    agent = start_agent(agg, AGENT, tmp / "agent.log", "--mode", "cpu", "--push-interval", "1s",
                        "--duration", "40s", "--spool-dir", str(tmp / "spool"),
                        "--flush-timeout", "60s", "-o", str(local))  # fmt: skip
    fleet = Fleet(agg.grpc_target, agg.token, 50, interval_s=5.0)
    pushing = run_fleet(fleet, 40, retry_for_s=60)
    time.sleep(15)
    killed_ns, t_kill = time.time_ns(), time.monotonic()
    agg.kill()
    time.sleep(5)
    t_restart = time.monotonic()
    agg.start(timeout=120)
    ready_s = time.monotonic() - t_restart
    recovered = wait_until(lambda: caught_up(agg, AGENT, killed_ns), 90)
    code = agent.wait(timeout=180)
    pushing.join()
    agg.wait_stored(120)
    agg.stop()
    stored = store_contents(data / "store")
    seqs = stored["sequences"].get(AGENT, [])
    missing, dups = sequence_gaps(seqs)
    fleet_missing, fleet_short = fleet_loss(fleet.stats, stored)
    recorded = local_total(local)
    stored_samples = stored["cpu_samples"].get(AGENT, 0)
    res.metrics.update(
        agent_batches_stored=len(seqs), agent_sequences_missing=missing,
        duplicate_batches=dups + stored["duplicate_rows"], agent_samples_recorded=recorded,
        agent_samples_stored=stored_samples, fleet_pushes_acked=len(fleet.stats.acked),
        fleet_acked_missing=fleet_missing, fleet_samples_missing=fleet_short,
        fleet_push_errors=fleet.stats.errors, fleet_gave_up=len(fleet.stats.gave_up),
        downtime_s=t_restart - t_kill, restart_to_ready_s=ready_s, agent_exit=code,
        fleet_first_ack_after_kill_s=min((t for t in fleet.stats.ack_times if t > t_kill),
                                         default=float("nan")) - t_kill,
        **agent_summary((tmp / "agent.log").read_text(errors="replace")),
    )  # fmt: skip
    res.recovery_s = None if recovered is None else (t_restart - t_kill) + ready_s + recovered
    ok = (missing == 0 and fleet_missing == 0 and fleet_short == 0 and recorded == stored_samples
          and code == 0 and not fleet.stats.gave_up)  # fmt: skip
    res.held = ok and recovered is not None
    res.lost = "nothing acknowledged" if ok else (
        f"agent: {missing} sequences missing, {recorded - stored_samples} samples short; "
        f"fleet: {fleet_missing} acknowledged pushes missing")  # fmt: skip
    res.notes.append(
        "Recovery: from the kill until the real agent's batches are gapless again up to a "
        "window recorded after the kill (includes the 5 s the aggregator was down and its "
        "restart; the journal is replayed, the store skips batches it already holds). "
        "The agent's samples recorded locally (-o) are compared with the store's."
    )
    return res


def store_unavailable(
    tmp: Path, outage_s: float = 60.0, buffer_bytes: str | None = None, crash: bool = False
) -> Result:
    """``buffer_bytes``: a journal far smaller than the outage's backlog; ``crash``: the
    aggregator is killed (-9) and restarted halfway through the outage, so what its
    store queue held in memory is gone and only the journal can bring it back."""
    small = f", --buffer-bytes {buffer_bytes}" if buffer_bytes else ""
    res = Result(
        "fault", "fault-store-unavailable" + ("-small-buffer" if buffer_bytes else ""),
        f"store unavailable for {outage_s:.0f} s (its disk full){small}"
        + (", aggregator killed (-9) and restarted mid-outage" if crash else ""),
        f"1 real agent + 100 simulated agents (every 2 s) push for {outage_s + 40:.0f} s; "
        f"the embedded store's filesystem is full for {outage_s:.0f} s",
    )  # fmt: skip
    data, local = tmp / "agg", tmp / "local.json"
    extra = ["--buffer-bytes", buffer_bytes] if buffer_bytes else []
    with tmpfs(tmp / "storefs", "1g") as storefs:
        agg = AggregatorProcess(data, "--storage", f"chdb://{storefs}/store", *extra,
                                token="fault")  # fmt: skip
        agg.start(timeout=120)
        errors_before = agg.metric('aperture_storage_flush_total{status="error"}')
        agent = start_agent(agg, AGENT, tmp / "agent.log", "--mode", "cpu", "--push-interval",
                            "1s", "--duration", f"{outage_s + 40:.0f}s", "--flush-timeout",
                            "120s", "--spool-dir", str(tmp / "spool"),
                            "-o", str(local))  # fmt: skip
        # Enough ingest that 60 s of it overflow the store queue's 256 MiB bound.
        fleet = Fleet(agg.grpc_target, agg.token, 100, interval_s=2.0)
        pushing = run_fleet(fleet, outage_s + 40, retry_for_s=120)
        time.sleep(15)
        filled = fill(storefs)
        log(f"store filesystem full ({filled >> 20} MiB filler) for {outage_s:.0f} s")
        pending_peak = unstored_peak = journal_peak = 0.0
        t_full = time.monotonic()
        restarted = not crash
        while time.monotonic() - t_full < outage_s:
            with contextlib.suppress(Exception):
                pending_peak = max(pending_peak, agg.metric("aperture_storage_pending_rows"))
                unstored_peak = max(unstored_peak, agg.metric("aperture_journal_unstored_batches"))
                journal_peak = max(journal_peak, agg.metric("aperture_journal_bytes"))
            if not restarted and time.monotonic() - t_full >= outage_s / 2:
                agg.kill()
                agg.start(timeout=120)
                restarted = True
                log("aggregator killed (-9) and restarted with the store still full")
            time.sleep(1)
        flush_errors = agg.metric('aperture_storage_flush_total{status="error"}') - errors_before
        refused = agg.metric('aperture_pushes_total{status="unavailable"}')
        (storefs / "filler").unlink()
        t_heal = time.monotonic()
        recovered = wait_until(
            lambda: agg.get("/api/v1/health", headers=agg.headers()).json()["storage"][
                "pending_batches"] == 0, 300)  # fmt: skip
        recovery_s = None if recovered is None else time.monotonic() - t_heal
        code = agent.wait(timeout=240)
        pushing.join()
        agg.wait_stored(180)
        agg_code = agg.stop()
        stored = store_contents(storefs / "store")
    seqs = stored["sequences"].get(AGENT, [])
    missing, dups = sequence_gaps(seqs)
    fleet_missing, fleet_short = fleet_loss(fleet.stats, stored)
    recorded, stored_samples = local_total(local), stored["cpu_samples"].get(AGENT, 0)
    res.metrics.update(
        store_flush_errors=flush_errors, pending_rows_peak=pending_peak,
        journal_unstored_peak=unstored_peak, journal_bytes_peak=journal_peak,
        pushes_refused_store_full=refused,
        agent_sequences_missing=missing, duplicate_batches=dups + stored["duplicate_rows"],
        agent_samples_recorded=recorded, agent_samples_stored=stored_samples,
        fleet_pushes_acked=len(fleet.stats.acked), fleet_acked_missing=fleet_missing,
        fleet_samples_missing=fleet_short, fleet_push_errors=fleet.stats.errors,
        agent_exit=code, aggregator_exit=agg_code,
        **agent_summary((tmp / "agent.log").read_text(errors="replace")),
    )  # fmt: skip
    res.recovery_s = recovery_s
    ok = (missing == 0 and fleet_missing == 0 and fleet_short == 0 and recorded == stored_samples
          and code == 0)  # fmt: skip
    res.held = ok and recovery_s is not None and flush_errors > 0
    res.lost = "nothing acknowledged" if ok else (
        f"agent: {missing} sequences missing, {recorded - stored_samples} samples short; "
        f"fleet: {fleet_missing} acknowledged pushes missing")  # fmt: skip
    res.notes.append(
        "The store is embedded chDB, so 'unavailable' is made real by filling the filesystem "
        "that holds it (a 1 GiB tmpfs, --storage chdb://...; the journal stays on another "
        "disk): every insert fails with ENOSPC; pushes are journaled and acknowledged while "
        "the store's queue (256 MiB) has room, then refused (UNAVAILABLE, retry after 5 s) so "
        f"that agents keep them. {flush_errors:.0f} store writes failed, {refused:.0f} pushes "
        "were refused. Recovery: from freeing the space until no batch is pending for the "
        "store."
    )
    if buffer_bytes:
        res.notes.append(
            f"--buffer-bytes {buffer_bytes}: the journal trims by that size only what the store "
            f"has written; it grew to {journal_peak / 2**20:.0f} MiB holding "
            f"{unstored_peak:.0f} unstored batches, then shrank once they were stored."
        )
    if flush_errors == 0:
        res.notes.append("No store write failed: the outage was not real, so this did not hold.")
    return res


def store_unavailable_small_buffer(tmp: Path) -> Result:
    return store_unavailable(tmp, 60.0, buffer_bytes="8MiB", crash=True)


def agent_kill9_spool(
    tmp: Path, run_s: float = 10.0, stall_s: float = 10.0, rerun_s: float = 15.0
) -> Result:
    res = Result(
        "fault", "fault-agent-kill9-spool",
        "agent killed (-9) with a spool directory, then restarted",
        "real agent (cpu, 1 s windows, --spool-dir): aggregator stalled (SIGSTOP) so batches "
        "spool, agent kill -9, aggregator resumed, agent restarted on the same spool",
    )  # fmt: skip
    data, spool = tmp / "agg", tmp / "spool"
    agg = AggregatorProcess(data, token="fault").start()
    assert agg.proc is not None
    args = ("--mode", "cpu", "--push-interval", "1s", "--spool-dir", str(spool))
    first = start_agent(agg, AGENT, tmp / "agent1.log", *args)
    time.sleep(run_s)
    agg.proc.send_signal(signal.SIGSTOP)
    time.sleep(stall_s)
    first.send_signal(signal.SIGKILL)
    first.wait()
    spooled = sorted(int(p.name.split(".")[0]) for p in spool.glob("*.batch"))
    agg.proc.send_signal(signal.SIGCONT)
    t_restart = time.monotonic()
    second = start_agent(agg, AGENT, tmp / "agent2.log", *args, "--duration", f"{rerun_s:.0f}s",
                         "--flush-timeout", "60s")  # fmt: skip
    drained = wait_until(lambda: not any(int(p.name.split(".")[0]) in set(spooled)
                                         for p in spool.glob("*.batch")), 90)  # fmt: skip
    recovery_s = None if drained is None else time.monotonic() - t_restart
    code = second.wait(timeout=180)
    agg.wait_stored(120)
    agg.stop()
    stored = store_contents(data / "store")
    seqs = stored["sequences"].get(AGENT, [])
    lost_spooled = [s for s in spooled if s not in set(seqs)]
    first_run = [s for s in seqs if s <= (max(spooled) if spooled else 0)]
    second_run = [s for s in seqs if s > (max(spooled) if spooled else 0)]
    missing1, dups1 = sequence_gaps(first_run)
    missing2, dups2 = sequence_gaps(second_run)
    res.metrics.update(
        spooled_at_kill=len(spooled), spooled_lost=len(lost_spooled),
        first_run_batches_stored=len(first_run), first_run_sequences_missing=missing1,
        second_run_batches_stored=len(second_run), second_run_sequences_missing=missing2,
        duplicate_batches=dups1 + dups2 + stored["duplicate_rows"], agent_exit=code,
        **agent_summary((tmp / "agent2.log").read_text(errors="replace")),
    )  # fmt: skip
    res.recovery_s = recovery_s
    ok = not lost_spooled and missing1 == 0 and missing2 == 0 and code == 0 and bool(spooled)
    res.held = ok and recovery_s is not None
    res.lost = (
        "nothing acknowledged (every spooled batch delivered); the window being recorded at "
        "the kill (at most one 1 s window, never drained from the kernel) is lost by design"
        if ok else f"{len(lost_spooled)} spooled batches lost; gaps {missing1}/{missing2}"
    )  # fmt: skip
    res.notes.append(
        "Recovery: from the restart until every batch spooled at the kill left the spool "
        "(delivered and acknowledged). A restarted agent numbers from the clock, above its "
        "spooled sequences, so each run's sequences are checked for gaps separately."
    )
    return res


def spool_disk_full(
    tmp: Path,
    run_s: float = 8.0,
    stall_s: float = 30.0,
    after_s: float = 12.0,
    spool_size: str = "256k",
) -> Result:
    res = Result(
        "fault", "fault-spool-disk-full",
        "agent's spool disk full while the aggregator is stalled",
        "real agent (--mode all, 1 s windows, --queue-bytes 1MiB) spooling to a "
        f"{spool_size.upper()}iB tmpfs; aggregator stalled (SIGSTOP) {stall_s:.0f} s, then resumed",
    )  # fmt: skip
    data = tmp / "agg"
    with tmpfs(tmp / "spoolfs", spool_size) as spool:
        agg = AggregatorProcess(data, token="fault").start()
        assert agg.proc is not None
        agent = start_agent(agg, AGENT, tmp / "agent.log", "--mode", "all", "--push-interval",
                            "1s", "--duration", f"{run_s + stall_s + after_s:.0f}s",
                            "--spool-dir", str(spool),
                            "--queue-bytes", "1MiB", "--flush-timeout", "60s")  # fmt: skip
        sampler = Sampler({"agent": agent.pid}, 1.0).start()
        time.sleep(run_s)
        agg.proc.send_signal(signal.SIGSTOP)
        time.sleep(stall_s)
        agg.proc.send_signal(signal.SIGCONT)
        t_resume_ns, t_resume = time.time_ns(), time.monotonic()
        # Counted drops leave gaps, so recovered means: a window recorded after the resume
        # arrived (the backlog ahead of it was delivered first, in order).
        recovered = wait_until(lambda: any(b.window_start_ns >= t_resume_ns
                                           for b in batches(agg, AGENT)), 90)  # fmt: skip
        recovery_s = None if recovered is None else time.monotonic() - t_resume
        code = agent.wait(timeout=180)
        rows = sampler.stop()
        agg.wait_stored(120)
        agg.stop()
    stored = store_contents(data / "store")
    text = (tmp / "agent.log").read_text(errors="replace")
    summary = agent_summary(text)
    seqs = stored["sequences"].get(AGENT, [])
    missing, dups = sequence_gaps(seqs)
    dropped = sum(v for k, v in summary.items() if k.startswith("agent_dropped_"))
    rss = [r["agent_rss_mb"] for r in rows if r.get("agent_rss_mb")]
    res.metrics.update(
        batches_stored=len(seqs), sequences_missing=missing, agent_drops_counted=dropped,
        duplicate_batches=dups + stored["duplicate_rows"], agent_exit=code,
        agent_rss_max_mb=max(rss) if rss else 0.0, **summary,
    )  # fmt: skip
    res.recovery_s = recovery_s
    # Missing windows must be exactly the drops the agent counted (the queue bound overflowed).
    # With counted drops the agent exits 1 on purpose ("N batches ... are lost").
    ok = missing == dropped and (code == 0 or (dropped > 0 and "are lost" in text))
    res.held = ok and recovery_s is not None and summary.get("agent_spool_write_failures", 0) > 0
    failures = summary.get("agent_spool_write_failures", 0)
    if not ok:
        res.lost = f"{missing} batches missing but {dropped} drops counted"
    elif missing:
        res.lost = (f"{missing} batches, all counted by the agent as drops when its 1 MiB "
                    "queue bound overflowed; nothing acknowledged")  # fmt: skip
    else:
        res.lost = (
            f"nothing: {failures} spool writes failed (ENOSPC); those batches stayed in "
            "memory (the 1 MiB queue bound was not reached) and were delivered"
        )
    res.notes.append(
        "ENOSPC on the spool: the agent counts each batch it could not write, keeps it in "
        "memory, and drops the oldest (counted) only when --queue-bytes overflows; it keeps "
        "recording throughout. Recovery: from resuming the aggregator until a window "
        "recorded after it is stored. Missing sequences must equal the counted drops; the "
        "agent then exits 1 saying how many batches were lost, as documented."
    )
    if code != 0:
        res.notes.append("Agent exit: " + text.strip().splitlines()[-1][:300])
    return res


def slow_aggregator(tmp: Path, stall_s: float = 30.0) -> Result:
    res = Result(
        "fault", "fault-slow-aggregator",
        f"aggregator stalled (SIGSTOP) for {stall_s:.0f} s: backpressure",
        f"1 real agent (cpu, 1 s windows, no spool) + 50 simulated agents (every 5 s); "
        f"aggregator stopped {stall_s:.0f} s then resumed",
    )  # fmt: skip
    data, local = tmp / "agg", tmp / "local.json"
    agg = AggregatorProcess(data, token="fault").start()
    assert agg.proc is not None
    agent = start_agent(agg, AGENT, tmp / "agent.log", "--mode", "cpu", "--push-interval", "1s",
                        "--duration", f"{stall_s + 40:.0f}s", "--flush-timeout", "60s",
                        "-o", str(local))  # fmt: skip
    fleet = Fleet(agg.grpc_target, agg.token, 50, interval_s=5.0)
    pushing = run_fleet(fleet, stall_s + 40, retry_for_s=90)
    time.sleep(10)
    rss_before = rss_mb(agent.pid)
    agg.proc.send_signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    rss_peak = rss_before
    while time.monotonic() - t_stop < stall_s:
        rss_peak = max(rss_peak, rss_mb(agent.pid))
        time.sleep(1)
    agg.proc.send_signal(signal.SIGCONT)
    t_resume_ns, t_resume = time.time_ns(), time.monotonic()
    acked_before = len(fleet.stats.acked)
    recovered = wait_until(lambda: caught_up(agg, AGENT, t_resume_ns), 120)
    recovery_s = None if recovered is None else time.monotonic() - t_resume
    code = agent.wait(timeout=240)
    pushing.join()
    agg.wait_stored(180)
    agg_rss = rss_mb(agg.proc.pid)
    agg.stop()
    stored = store_contents(data / "store")
    seqs = stored["sequences"].get(AGENT, [])
    missing, dups = sequence_gaps(seqs)
    fleet_missing, fleet_short = fleet_loss(fleet.stats, stored)
    recorded, stored_samples = local_total(local), stored["cpu_samples"].get(AGENT, 0)
    res.metrics.update(
        agent_sequences_missing=missing, duplicate_batches=dups + stored["duplicate_rows"],
        agent_samples_recorded=recorded, agent_samples_stored=stored_samples,
        agent_rss_before_mb=rss_before, agent_rss_peak_during_stall_mb=rss_peak,
        aggregator_rss_after_mb=agg_rss, fleet_pushes_acked=len(fleet.stats.acked),
        fleet_acked_at_resume=acked_before, fleet_acked_missing=fleet_missing,
        fleet_samples_missing=fleet_short, fleet_push_errors=fleet.stats.errors,
        fleet_gave_up=len(fleet.stats.gave_up), agent_exit=code,
        **{f"fleet_errors_{k.lower()}": v for k, v in fleet.stats.error_kinds.items()},
        **agent_summary((tmp / "agent.log").read_text(errors="replace")),
    )  # fmt: skip
    res.recovery_s = recovery_s
    ok = (missing == 0 and fleet_missing == 0 and fleet_short == 0 and recorded == stored_samples
          and code == 0 and not fleet.stats.gave_up)  # fmt: skip
    res.held = ok and recovery_s is not None
    res.lost = "nothing acknowledged" if ok else (
        f"agent: {missing} sequences missing; fleet: {fleet_missing} acked pushes missing, "
        f"{len(fleet.stats.gave_up)} never acknowledged")  # fmt: skip
    res.notes.append(
        "A stopped process is the slowest aggregator: its sockets accept nothing, so pushes "
        "time out (simulated agents: 10 s deadline, then retried with backoff; the agent: "
        "20 s, then backoff up to 30 s) and queue in the agent (bounded by --queue-bytes, "
        "default 64 MiB). Recovery: from resuming until the real agent's batches are gapless "
        "up to a window recorded after the resume."
    )
    return res


NS, HOST_IF, NS_IF = "aprt-rel", "aprt-rel-h", "aprt-rel-n"
HOST_IP, NS_IP = "10.231.7.1", "10.231.7.2"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextlib.contextmanager
def netns() -> Iterator[None]:
    """A network namespace joined to this one by a veth pair (10.231.7.0/30)."""
    with contextlib.suppress(subprocess.CalledProcessError):
        sh("ip", "netns", "del", NS)
    with contextlib.suppress(subprocess.CalledProcessError):
        sh("ip", "link", "del", HOST_IF)
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        sh("ip", "link", "set", NS_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            sh("ip", "link", "del", HOST_IF)
        with contextlib.suppress(subprocess.CalledProcessError):
            sh("ip", "netns", "del", NS)


def network_partition(tmp: Path, cut_s: float = 45.0) -> Result:
    res = Result(
        "fault", "fault-network-partition",
        f"network partition between agent and aggregator for {cut_s:.0f} s (netns + veth)",
        f"real agent (cpu, 1 s windows) in its own network namespace, pushing over a veth "
        f"pair; link down {cut_s:.0f} s, then up",
    )  # fmt: skip
    data, local = tmp / "agg", tmp / "local.json"
    with netns():
        agg = AggregatorProcess(data, token="fault")
        agg.args += ["--listen", f"0.0.0.0:{agg.grpc_port}"]  # the last --listen wins
        agg.start()
        agent = start_agent(agg, AGENT, tmp / "agent.log", "--mode", "cpu", "--push-interval",
                            "1s", "--duration", f"{cut_s + 45:.0f}s", "--flush-timeout", "90s",
                            "-o", str(local), prefix=("ip", "netns", "exec", NS),
                            endpoint=f"http://{HOST_IP}:{agg.grpc_port}")  # fmt: skip
        time.sleep(15)
        sh("ip", "link", "set", HOST_IF, "down")
        time.sleep(cut_s)
        sh("ip", "link", "set", HOST_IF, "up")
        t_heal_ns, t_heal = time.time_ns(), time.monotonic()
        recovered = wait_until(lambda: caught_up(agg, AGENT, t_heal_ns), 120)
        recovery_s = None if recovered is None else time.monotonic() - t_heal
        code = agent.wait(timeout=300)
        agg.wait_stored(120)
        agg.stop()
    stored = store_contents(data / "store")
    seqs = stored["sequences"].get(AGENT, [])
    missing, dups = sequence_gaps(seqs)
    recorded, stored_samples = local_total(local), stored["cpu_samples"].get(AGENT, 0)
    res.metrics.update(
        batches_stored=len(seqs), sequences_missing=missing,
        duplicate_batches=dups + stored["duplicate_rows"], agent_samples_recorded=recorded,
        agent_samples_stored=stored_samples, agent_exit=code,
        **agent_summary((tmp / "agent.log").read_text(errors="replace")),
    )  # fmt: skip
    res.recovery_s = recovery_s
    ok = missing == 0 and recorded == stored_samples and code == 0
    res.held = ok and recovery_s is not None
    res.lost = "nothing" if ok else (
        f"{missing} sequences missing, {recorded - stored_samples} samples short")  # fmt: skip
    res.notes.append(
        "The agent runs under `ip netns exec`; the partition is the host end of the veth set "
        "down, so packets vanish (no RST): in-flight pushes wait out their 20 s deadline, "
        "then back off (up to 30 s). Recovery: from the link coming up until the agent's "
        "batches are gapless up to a window recorded after it."
    )
    return res


SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "aggregator-kill9": aggregator_kill9,
    "store-unavailable": store_unavailable,
    "store-unavailable-small-buffer": store_unavailable_small_buffer,
    "agent-kill9-spool": agent_kill9_spool,
    "spool-disk-full": spool_disk_full,
    "slow-aggregator": slow_aggregator,
    "network-partition": network_partition,
}


def kill_children() -> None:
    """SIGKILL what a failed scenario left running: this process's children only."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated scenarios (default: all)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if os.geteuid() != 0:
        print("faults.py: run as root (BPF agents, tmpfs mounts, network namespaces).")
        return 1
    names = args.only.split(",") if args.only else list(SCENARIOS)
    for name in names:
        log(f"fault: {name}")
        with tempfile.TemporaryDirectory(prefix=f"aperture-{name}-") as tmp:
            try:
                SCENARIOS[name](Path(tmp)).save()
            except Exception as exc:  # one broken scenario must not hide the others
                res = Result("fault", f"fault-{name}", name, "did not complete")
                res.lost = "unknown: the scenario failed"
                res.notes.append(f"{type(exc).__name__}: {exc}")
                res.save()
            finally:
                kill_children()
    return 0


if __name__ == "__main__":
    sys.exit(main())
