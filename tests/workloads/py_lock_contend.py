"""Threads contending one threading.Lock, each holding it HOLD_MS per round.

usage: python py_lock_contend.py GO_FILE THREADS ROUNDS HOLD_MS
Prints "ready" once started, then, at exit, the total time the threads spent
waiting in acquire as measured here, in ns.
"""

import os
import sys
import threading
import time

LOCK = threading.Lock()
WAITED = []


def hold_the_lock(hold_s: float) -> None:
    time.sleep(hold_s)


def worker(rounds: int, hold_s: float) -> None:
    waited = 0
    for _ in range(rounds):
        t0 = time.monotonic_ns()
        with LOCK:
            waited += time.monotonic_ns() - t0
            hold_the_lock(hold_s)
    WAITED.append(waited)


def main() -> None:
    go, n, rounds, hold_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    threads = [threading.Thread(target=worker, args=(rounds, hold_ms / 1000)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(WAITED), flush=True)


main()
