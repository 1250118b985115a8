"""Attach bench/bpf/empty_hooks.bpf.c with Aperture's own libbpf binding until SIGINT/SIGTERM.

Usage: python bench/empty_hooks.py OBJECT.bpf.o (syscall_overhead.py builds and runs it).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from aperture.agent.libbpf import BpfObject

PROGRAMS = ("empty_sys_enter", "empty_sys_exit")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    with BpfObject(Path(argv[1])) as obj:
        obj.load()
        for name in PROGRAMS:
            obj.keep(obj.program(name).attach())
        print("attached", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
