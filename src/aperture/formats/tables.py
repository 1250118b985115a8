"""Syscall and lock tables: the rows behind them, as text and as CSV."""

from __future__ import annotations

import csv
import errno as errno_mod
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aperture import histogram, lock_kinds
from aperture.formats.humanize import format_duration_ns
from aperture.model import Frame, LockStat, Profile

# Kernel-internal codes a syscall tracer sees when a signal interrupts a call
# (include/linux/errno.h); user space never gets them, so libc has no names.
_KERNEL_ERRNOS = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
    517: "EPROBE_DEFER",
    518: "EOPENSTALE",
    519: "ENOPARAM",
    521: "EBADHANDLE",
    524: "ENOTSUPP",
    526: "EJUKEBOX",
    527: "EIOCBQUEUED",
    530: "ERECALLCONFLICT",
}


def errno_name(err: int) -> str:
    """The symbolic name of a positive errno, kernel-internal ones included."""
    return errno_mod.errorcode.get(err) or _KERNEL_ERRNOS.get(err) or f"errno {err}"


@dataclass
class SyscallRow:
    """One syscall (optionally of one process) with latency and errors merged."""

    name: str
    nr: int
    pid: int | None = None
    comm: str | None = None
    count: int = 0
    errors: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    hist: tuple[int, ...] = ()
    errnos: Counter[int] = field(default_factory=Counter)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        return histogram.quantile(self.hist, q, lo=self.min_ns, hi=self.max_ns)

    def top_errnos(self, n: int = 3) -> list[tuple[str, int]]:
        return [(errno_name(e), c) for e, c in self.errnos.most_common(n)]


def syscall_rows(profile: Profile, *, per_process: bool = False) -> list[SyscallRow]:
    """Rows sorted by total time, merged across processes unless ``per_process``."""
    rows: dict[tuple[int, int, str], SyscallRow] = {}
    for rec in profile.syscalls:
        key = (rec.nr, rec.pid if per_process else -1, rec.comm if per_process else "")
        row = rows.get(key)
        if row is None:
            row = rows[key] = SyscallRow(
                name=rec.name,
                nr=rec.nr,
                pid=rec.pid if per_process else None,
                comm=rec.comm if per_process else None,
                min_ns=rec.min_ns,
            )
        row.count += rec.count
        row.errors += rec.errors
        row.total_ns += rec.total_ns
        row.min_ns = min(row.min_ns, rec.min_ns) if rec.count else row.min_ns
        row.max_ns = max(row.max_ns, rec.max_ns)
        row.hist = histogram.add(row.hist, rec.hist)
        row.errnos.update(rec.errnos)
    return sorted(rows.values(), key=lambda r: (-r.total_ns, r.name))


_SYSCALL_HEADER = (
    "syscall", "count", "rate/s", "errors", "err%", "top errno",
    "total", "avg", "p50", "p90", "p99", "max",
)  # fmt: skip


def render_table(
    header: Iterable[str], rows: list[list[str]], left: int = 1, last_left: bool = False
) -> str:
    """Columns padded to width; the first ``left`` (and maybe the last) left-aligned."""
    table = [list(header), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.ljust(widths[i])
            if i < left or (last_left and i == len(row) - 1)
            else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_syscall_table(
    profile: Profile, *, per_process: bool = False, limit: int | None = None
) -> str:
    rows = syscall_rows(profile, per_process=per_process)[:limit]
    seconds = profile.duration_s or 1.0
    header = list(_SYSCALL_HEADER)
    lead = 1
    if per_process:
        header[:0] = ["pid", "process"]
        lead = 3
    body = []
    for r in rows:
        errnos = ",".join(f"{name}:{n}" for name, n in r.top_errnos(2)) or "-"
        cells = [
            r.name, str(r.count), f"{r.count / seconds:.1f}", str(r.errors),
            f"{r.error_rate:.1%}", errnos,
            *map(format_duration_ns, (r.total_ns, r.avg_ns, r.quantile(0.5), r.quantile(0.9),
                                      r.quantile(0.99), r.max_ns)),
        ]  # fmt: skip
        if per_process:
            cells[:0] = [str(r.pid), r.comm or ""]
        body.append(cells)
    if not body:
        return "no syscalls recorded\n"
    return render_table(header, body, left=lead)


def syscall_csv(profile: Profile, *, per_process: bool = True) -> str:
    """Every row with exact numbers (ns), one line per syscall and process."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["pid", "process", "syscall", "nr", "count", "errors", "error_rate", "top_errnos",
         "total_ns", "min_ns", "avg_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"]
    )  # fmt: skip
    for r in syscall_rows(profile, per_process=per_process):
        writer.writerow(
            [
                "" if r.pid is None else r.pid, r.comm or "", r.name, r.nr, r.count,
                r.errors, f"{r.error_rate:.6f}",
                " ".join(f"{name}:{n}" for name, n in r.top_errnos(5)),
                r.total_ns, r.min_ns, round(r.avg_ns), round(r.quantile(0.5)),
                round(r.quantile(0.9)), round(r.quantile(0.99)), r.max_ns,
            ]
        )  # fmt: skip
    return out.getvalue()


@dataclass
class LockRow:
    """One lock word in one process: its waits (every waiting stack merged), the holds
    of the releases that woke a waiter, and the stacks of holders and wakers."""

    pid: int
    comm: str
    address: int
    kind: str = ""
    contentions: int = 0
    wait_ns: int = 0
    max_ns: int = 0
    eagain: int = 0
    timeouts: int = 0
    hist: tuple[int, ...] = ()
    stacks: Counter[tuple[Frame, ...]] = field(default_factory=Counter)
    releases: int = 0  # releases that woke a waiter
    holds: int = 0  # of those, the ones whose acquisition was seen (timed)
    hold_ns: int = 0
    hold_max_ns: int = 0
    hold_hist: tuple[int, ...] = ()
    holders: Counter[tuple[Frame, ...]] = field(default_factory=Counter)  # by hold time
    wakers: Counter[tuple[Frame, ...]] = field(default_factory=Counter)  # by wait time ended
    kinds: Counter[str] = field(default_factory=Counter)  # the waits' kinds, by count

    @property
    def lock_class(self) -> str:
        return lock_kinds.lock_class(self.kind) if self.kind else "unknown"

    @property
    def avg_ns(self) -> float:
        return self.wait_ns / self.contentions if self.contentions else 0.0

    @property
    def p99_ns(self) -> float:
        return histogram.quantile(self.hist, 0.99, hi=self.max_ns)

    def hold_quantile(self, q: float) -> float:
        return histogram.quantile(self.hold_hist, q, hi=self.hold_max_ns)

    @property
    def top_stack(self) -> tuple[Frame, ...]:
        return self.stacks.most_common(1)[0][0] if self.stacks else ()

    @property
    def top_holder(self) -> tuple[Frame, ...]:
        return self.holders.most_common(1)[0][0] if self.holders else ()


def lock_rows(locks: Iterable[LockStat]) -> list[LockRow]:
    """Locks sorted by total wait time (locks with no real wait last)."""
    rows: dict[tuple[int, int], LockRow] = {}
    for rec in locks:
        row = rows.get((rec.pid, rec.address))
        if row is None:
            row = rows[(rec.pid, rec.address)] = LockRow(rec.pid, rec.comm, rec.address)
        if rec.role == "hold":
            row.releases += rec.releases
            row.holds += rec.contentions
            row.hold_ns += rec.wait_ns
            row.hold_max_ns = max(row.hold_max_ns, rec.max_ns)
            row.hold_hist = histogram.add(row.hold_hist, rec.hist)
            row.holders[rec.stack] += rec.wait_ns or rec.releases
        elif rec.role == "wake":
            row.wakers[rec.stack] += rec.wait_ns
        else:
            row.contentions += rec.contentions
            row.wait_ns += rec.wait_ns
            row.max_ns = max(row.max_ns, rec.max_ns)
            row.eagain += rec.eagain
            row.timeouts += rec.timeouts
            row.hist = histogram.add(row.hist, rec.hist)
            row.stacks[rec.stack] += rec.wait_ns
        row.kind = row.kind or rec.kind  # records of other roles name it when no wait does
        if rec.kind and rec.role == "wait":
            row.kinds[rec.kind] += rec.contentions + rec.eagain + rec.timeouts + 1
    for row in rows.values():
        row.kind = lock_kinds.combined(row.kinds) or row.kind
    return sorted(rows.values(), key=lambda r: (-r.wait_ns, -r.contentions, r.address))


def _short_stack(stack: tuple[Frame, ...], depth: int = 4) -> str:
    names = [f.name for f in stack if not f.name.startswith("[")]
    return " < ".join(reversed(names[-depth:])) or "-"


def format_lock_table(profile: Profile, *, limit: int | None = 20) -> str:
    """Contended locks, then idle waits: wait time per lock word, with hold times where seen."""
    rows = [r for r in lock_rows(profile.locks) if r.contentions]
    contended = [r for r in rows if r.lock_class == "contention"][:limit]
    idle = [r for r in rows if r.lock_class != "contention"][:limit]
    if not rows:
        return "no lock waits recorded\n"
    out = []
    if contended:
        out.append("Contended locks (a thread wanted a lock another held)\n")
        out.append(_lock_table(contended, holds=True))
    if idle:
        out.append("\nIdle waits (threads waiting for work or a signal)\n")
        out.append(_lock_table(idle, holds=False))
    return "".join(out)


def _lock_table(rows: list[LockRow], *, holds: bool) -> str:
    def hold(r: LockRow) -> list[str]:
        if not holds:
            return []
        if not r.holds:
            return ["-", "-", "-", str(r.releases)]
        return [
            format_duration_ns(r.hold_ns),
            format_duration_ns(r.hold_quantile(0.5)),
            format_duration_ns(r.hold_quantile(0.99)),
            f"{r.holds}/{r.releases}",
        ]

    body = [
        [
            f"0x{r.address:x}", str(r.pid), r.comm, lock_kinds.label(r.kind) if r.kind else "?",
            str(r.contentions),
            *map(format_duration_ns, (r.wait_ns, r.avg_ns, r.max_ns, r.p99_ns)),
            *hold(r), str(r.timeouts), _short_stack(r.top_stack),
        ]
        for r in rows
    ]  # fmt: skip
    header = ["lock", "pid", "process", "kind", "waits", "wait total", "avg", "max", "p99",
              *(["held", "hold p50", "hold p99", "timed/releases"] if holds else []),
              "timeouts",
              "top waiting stack (leaf first)"]  # fmt: skip
    return render_table(header, body, left=4, last_left=True)
