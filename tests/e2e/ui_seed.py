"""Real profile batches for the dashboard tests, pushed through the real gRPC ingest.

The numbers are chosen so the tests can check what a person sees: in the last
hour ``parse_json`` takes 50% of CPU (10% the hour before: the regression the
diff must show in red), ``render_template`` drops from 50% to 20% (green), and
``read`` is the busiest syscall. The lock profile has a contended mutex
(waiters in ``cache_get``, held by ``flush_cache``), a second mutex whose holders'
acquisitions were never seen, and a condition variable ``worker_loop`` idles on
with the most wait time of all (idle waits are not contention). Every CPU window
says its user stacks were unwound from tables (``UNWIND``): 97.1% complete, 2.4%
stopped early, 0.5% by frame pointers only, of 1000 stacks a window.

Run it by hand to fill a local aggregator for ``npm run dev``::

    python tests/e2e/ui_seed.py --grpc 127.0.0.1:50051 [--token T] [--big]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc

from aperture.lock_kinds import leaf_frame
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample, SyscallStat
from aperture.proto.v1 import aggregator_pb2_grpc
from aperture.wire import Identity, encode

WINDOW_S = 120
HOUR_NS = 3600 * 10**9

K = FrameKind.KERNEL


def f(name: str, module: str = "app", kind: FrameKind = FrameKind.USER) -> Frame:
    return Frame(name, module, kind)


def py(name: str, line: int) -> Frame:
    """A Python function of the scheduler script the server embeds."""
    return Frame(name, "/srv/api/scheduler.py", FrameKind.PYTHON, 0, line)


MAIN = (f("_start"), f("__libc_start_main", "libc.so.6"), f("main"), f("serve"))
HANDLE = (*MAIN, f("handle_request"))

# poll_loop runs an embedded Python scheduler: Scheduler.tick at two lines (20 at
# line 41, 10 at 44), one flamegraph node whose hottest line is 41
POLL_PY = (*MAIN, f("poll_loop"), py("<module>", 3), py("run_forever", 88))
READ = (
    f("__libc_read", "libc.so.6"),
    f("entry_SYSCALL_64", "[kernel]", K),
    f("do_syscall_64", "[kernel]", K),
    f("ksys_read", "[kernel]", K),
    f("vfs_read", "[kernel]", K),
)

# per CPU window (1000 samples in each hour): stack -> samples
CURRENT = {
    (*HANDLE, f("parse_json"), f("json_tokenize")): 300,
    (*HANDLE, f("parse_json"), f("json_build_object"), f("malloc", "libc.so.6")): 200,
    (*HANDLE, f("render_template"), f("escape_html")): 120,
    (*HANDLE, f("render_template")): 80,
    (*HANDLE, f("read_body"), *READ): 150,
    (*MAIN, f("gc_collect")): 100,
    (*MAIN, f("poll_loop"), f("epoll_wait", "libc.so.6")): 20,
    (*POLL_PY, py("Scheduler.tick", 41)): 20,
    (*POLL_PY, py("Scheduler.tick", 44)): 10,
}
BASELINE = {
    (*HANDLE, f("parse_json"), f("json_tokenize")): 60,
    (*HANDLE, f("parse_json"), f("json_build_object"), f("malloc", "libc.so.6")): 40,
    (*HANDLE, f("render_template"), f("escape_html")): 300,
    (*HANDLE, f("render_template")): 200,
    (*HANDLE, f("read_body"), *READ): 150,
    (*MAIN, f("gc_collect")): 200,
    (*MAIN, f("poll_loop"), f("epoll_wait", "libc.so.6")): 20,
    (*POLL_PY, py("Scheduler.tick", 41)): 20,
    (*POLL_PY, py("Scheduler.tick", 44)): 10,
}

# cpu.unwind* window labels of each CPU window, as an agent with --unwind auto sends them
UNWIND = {
    "unwind": "auto", "unwind_table_walks": "995", "unwind_complete": "971",
    "unwind_truncated": "24", "unwind_fp_only": "5", "unwind_fp_frames": "7",
    "unwind_end_bottom": "971", "unwind_end_depth": "20", "unwind_end_no_table": "4",
    "unwind_tables_loaded": "12",
}  # fmt: skip
UNWIND_TABLE_BYTES = 3 << 20  # web-1's; web-2 has half as many tables' bytes

# Lock waiters' stacks end, as the agent sends them, with their class and kind
MUTEX, MUTEX_2, CONDVAR = 0x7F3A2C001040, 0x7F3A2C0020C0, 0x7F3A2C003080
LOCK_STACK = (*HANDLE, f("cache_get"), f("pthread_mutex_lock", "libc.so.6"), leaf_frame("mutex"))
LOCK_STACK_2 = (*MAIN, f("gc_collect"), f("pthread_mutex_lock", "libc.so.6"), leaf_frame("mutex"))
# the mutex's holder at the releases that woke a waiter, and the wake inside that release
HOLDER_STACK = (*HANDLE, f("flush_cache"), f("pthread_mutex_unlock", "libc.so.6"))
WAKER_STACK = (*HOLDER_STACK, f("__lll_unlock_wake", "libc.so.6"))
COND_STACK = (*MAIN, f("worker_loop"), f("pthread_cond_wait", "libc.so.6"), leaf_frame("condvar"))
COND_WAKER_STACK = (*HANDLE, f("enqueue_job"), f("pthread_cond_signal", "libc.so.6"))
# Off-CPU: blocked reading a socket, and preempted while parsing
_SLEEPING = f("[off-CPU: sleeping]", "[sched]", FrameKind.KERNEL)
_RUNNABLE = f("[off-CPU: runnable]", "[sched]", FrameKind.KERNEL)
OFFCPU_STACKS = {
    (*HANDLE, f("read_body"), f("read", "libc.so.6"),
     f("sock_recvmsg", "[kernel]", FrameKind.KERNEL),
     f("schedule", "[kernel]", FrameKind.KERNEL), _SLEEPING): 3_000_000_000,
    (*HANDLE, f("parse_json"), _RUNNABLE): 1_000_000_000,
}  # fmt: skip

# syscall, nr, calls per window, errors, errno, typical latency exponent (2^k ns)
SYSCALLS = [
    ("read", 0, 4000, 40, 11, 12),
    ("write", 1, 1500, 0, 0, 13),
    ("futex", 202, 900, 300, 11, 18),
    ("openat", 257, 120, 12, 2, 14),
    ("epoll_wait", 232, 300, 0, 0, 21),
]
HIST_BUCKETS = 32


@dataclass(frozen=True)
class Host:
    agent_id: str
    host: str
    pid: int
    labels: dict[str, str]
    # share of the load: web-2 is half as busy, with the same profile shape
    load: float = 1.0


HOSTS = [
    Host("agent-web-1", "web-1", 4242, {"service": "api", "zone": "a"}),
    Host("agent-web-2", "web-2", 5151, {"service": "api", "zone": "b"}, load=0.5),
]


def hist_around(count: int, exp: int) -> tuple[int, ...]:
    """A log2 histogram with most calls near 2^exp ns and a tail above it."""
    h = [0] * HIST_BUCKETS
    shares = {exp - 1: 0.2, exp: 0.5, exp + 1: 0.2, exp + 3: 0.08, exp + 6: 0.02}
    left = count
    for k, share in shares.items():
        n = int(count * share)
        h[k] += n
        left -= n
    h[exp] += left
    return tuple(h)


def cpu_profile(stacks: dict[tuple[Frame, ...], int], host: Host, start: int, end: int) -> Profile:
    samples = [Sample(s, int(v * host.load), pid=host.pid, tid=host.pid, comm="api-server")
               for s, v in stacks.items()]  # fmt: skip
    labels = {**UNWIND, "unwind_table_bytes": str(int(UNWIND_TABLE_BYTES * host.load))}
    return Profile(EventType.CPU, "samples", samples=samples, start_ns=start, end_ns=end,
                   frequency_hz=99, labels=labels)  # fmt: skip


def lock_profile(host: Host, start: int, end: int) -> Profile:
    mutex_wait_ns, cond_wait_ns = int(80_000_000 * host.load), int(1_500_000_000 * host.load)

    def lock(
        address: int,
        stack: tuple[Frame, ...],
        kind: str,
        role: str = "wait",
        *,
        exp: int = 20,
        **counts: int,
    ) -> LockStat:
        """A record whose log2 histogram puts its contentions near 2^exp ns."""
        hist = hist_around(counts.get("contentions", 0), exp)
        return LockStat(host.pid, "api-server", address, stack, kind=kind, role=role, hist=hist,
                        **counts)  # fmt: skip

    locks = [
        lock(MUTEX, LOCK_STACK, "mutex", contentions=40, wait_ns=mutex_wait_ns, max_ns=9_000_000,
             eagain=3),
        # 30 releases woke a waiter, 24 of them by a holder whose acquisition was seen:
        # contentions and wait_ns are those holds, about 2^19 ns each
        lock(MUTEX, HOLDER_STACK, "mutex", "hold", releases=30, contentions=24,
             wait_ns=int(12_000_000 * host.load), max_ns=6_000_000, exp=19),
        lock(MUTEX, WAKER_STACK, "mutex", "wake", contentions=40, wait_ns=mutex_wait_ns,
             max_ns=9_000_000),
        lock(MUTEX_2, LOCK_STACK_2, "mutex", contentions=12, wait_ns=6_000_000,
             max_ns=1_500_000, exp=18),
        # released to waiters, never seen acquired: no hold times
        lock(MUTEX_2, (*MAIN, f("gc_collect"), f("pthread_mutex_unlock", "libc.so.6")), "mutex",
             "hold", releases=5),
        lock(CONDVAR, COND_STACK, "condvar", contentions=25, wait_ns=cond_wait_ns,
             max_ns=500_000_000, exp=25),
        lock(CONDVAR, COND_WAKER_STACK, "condvar", "wake", contentions=25, wait_ns=cond_wait_ns,
             max_ns=500_000_000, exp=25),
    ]  # fmt: skip
    return Profile(EventType.LOCK, "nanoseconds", start_ns=start, end_ns=end, locks=locks)


def offcpu_profile(host: Host, start: int, end: int) -> Profile:
    samples = [Sample(stack, int(ns * host.load), pid=host.pid, tid=host.pid, comm="api-server")
               for stack, ns in OFFCPU_STACKS.items()]  # fmt: skip
    return Profile(EventType.OFFCPU, "nanoseconds", samples=samples, start_ns=start, end_ns=end)


def syscall_profile(host: Host, start: int, end: int) -> Profile:
    calls = []
    for name, nr, full, full_errors, errno, exp in SYSCALLS:
        count, errors = int(full * host.load), int(full_errors * host.load)
        hist = hist_around(count, exp)
        total = sum(n * (3 << k) // 2 for k, n in enumerate(hist))
        calls.append(
            SyscallStat(host.pid, "api-server", nr, name, count=count, errors=errors,
                        total_ns=total, min_ns=1 << (exp - 1), max_ns=1 << (exp + 7),
                        hist=hist, errnos={errno: errors} if errors else {})
        )  # fmt: skip
    return Profile(EventType.SYSCALL, "nanoseconds", start_ns=start, end_ns=end, syscalls=calls)


def windows(now_ns: int, hours: int = 2) -> Iterator[tuple[int, int, bool]]:
    """(start, end, in the last hour) for back-to-back windows over the last hours."""
    step = WINDOW_S * 10**9
    end = now_ns - hours * HOUR_NS + step
    while end <= now_ns:
        yield end - step, end, end > now_ns - HOUR_NS
        end += step


def batches(now_ns: int | None = None) -> Iterator[tuple[Host, int, list[Profile]]]:
    """Every (host, sequence, profiles) of the standard data set."""
    now = now_ns if now_ns is not None else time.time_ns()
    for host in HOSTS:
        for seq, (start, end, recent) in enumerate(windows(now), start=1):
            stacks = CURRENT if recent else BASELINE
            yield (
                host,
                seq,
                [
                    cpu_profile(stacks, host, start, end),
                    lock_profile(host, start, end),
                    syscall_profile(host, start, end),
                    offcpu_profile(host, start, end),
                ],
            )


def big_tree(n_nodes: int, *, deep: bool = False, seed: int = 7) -> Profile:
    """A CPU profile whose flame graph has about n_nodes nodes.

    Bushy (default): fan-out 10 at every level, heavy-tailed values, so most leaves
    are far below a pixel. Deep: 1600 branches each ending in a 62-frame chain of
    equal weight, so in the 835 px graph of a 1280 px window nearly every node is
    just over half a pixel wide and must be drawn: the worst case for the renderer.
    """
    rng = random.Random(seed)
    comm = "deeptree" if deep else "bigtree"
    samples: list[Sample] = []
    if deep:
        chain = 65
        for a in range(10):
            for b in range(10):
                for c in range(16):
                    prefix = (
                        f(f"module_{a}", f"lib{a % 7}.so"),
                        f(f"svc_{a}_{b}"),
                        f(f"op_{b}_{c}"),
                    )
                    tail = tuple(f(f"step_{k}_{c % 5}") for k in range(chain - 3))
                    samples.append(Sample((*prefix, *tail), 50, pid=778, comm=comm))
    else:
        depth = 1
        while sum(10**d for d in range(1, depth + 1)) < n_nodes:
            depth += 1

        def walk(prefix: tuple[Frame, ...], d: int, budget: list[int]) -> None:
            for c in range(10):
                if budget[0] <= 0:
                    return
                name = f"fn_{d}_{len(prefix)}_{c}" if d > 1 else f"module_{c}"
                frame = f(name, f"lib{c % 7}.so")
                budget[0] -= 1
                stack = (*prefix, frame)
                if d == depth:
                    # heavy-tailed, as real profiles are: a few hot paths, a long tail
                    value = int(rng.paretovariate(0.9) * 10)
                    samples.append(Sample(stack, value, pid=777, comm=comm))
                else:
                    walk(stack, d + 1, budget)

        walk((), 1, [n_nodes])
    now = time.time_ns()
    return Profile(EventType.CPU, "samples", samples=samples, start_ns=now - 10**10, end_ns=now,
                   frequency_hz=99)  # fmt: skip


class Pusher:
    def __init__(self, target: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        self.stub = aggregator_pb2_grpc.AggregatorStub(self.channel)  # type: ignore[no-untyped-call]
        self.md = [("authorization", f"Bearer {token}")] if token else []

    def push(self, host: Host, seq: int, profiles: Iterable[Profile]) -> None:
        identity = Identity(host.agent_id, host.host, host.labels, version="0.1.0")
        batch = encode(profiles, identity, seq)
        reply = self.stub.Push(batch, metadata=self.md, timeout=30)
        if not reply.accepted:
            raise RuntimeError(f"batch {host.agent_id}/{seq} was not accepted: {reply}")

    def close(self) -> None:
        self.channel.close()


def seed(target: str, token: str | None, *, big: int = 0) -> int:
    """Push the standard data set (and a big tree when asked); the number of batches."""
    pusher = Pusher(target, token)
    n = 0
    try:
        for host, seq, profiles in batches():
            pusher.push(host, seq, profiles)
            n += 1
        if big:
            pusher.push(Host("agent-big", "big-1", 777, {}), 1, [big_tree(big)])
            n += 1
    finally:
        pusher.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grpc", default="127.0.0.1:50051")
    parser.add_argument("--token")
    parser.add_argument("--big", type=int, default=0, help="also push a tree of this many nodes")
    args = parser.parse_args()
    print(f"pushed {seed(args.grpc, args.token, big=args.big)} batches")


if __name__ == "__main__":
    main()
