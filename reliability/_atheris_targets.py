"""Coverage-guided (atheris/libFuzzer) harnesses for the binary decoders.

usage: python reliability/_atheris_targets.py {profilebatch,pprof} CORPUS_DIR [libFuzzer flags]

Each input must decode or be refused with the decoder's documented error; anything
else is a crash libFuzzer reports (and ``fuzz.py`` counts as a failure).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from aperture.formats.pprof import MalformedPprof, from_pprof, to_pprof
    from aperture.model import EventType, Frame, LockStat, Profile, Sample, SyscallStat
    from aperture.wire import Identity, MalformedBatch, check, decode, encode, parse


def profilebatch(data: bytes) -> None:
    try:
        batch = parse(data)
        check(batch)
    except MalformedBatch:
        return
    decode(batch)


def pprof(data: bytes) -> None:
    try:
        from_pprof(data, comm="svc", now_ns=10**18)
    except MalformedPprof:
        return


def _profiles() -> list[Profile]:
    stack = (Frame("main", "app"), Frame("work", "libw.so"), Frame("leaf", "[kernel]"))
    cpu = Profile(EventType.CPU, "samples", start_ns=1, end_ns=10**10, frequency_hz=99,
                  samples=[Sample(stack, 5, pid=1, tid=2, comm="app", thread="t"),
                           Sample(stack[:2], 3, pid=1, comm="app")])  # fmt: skip
    lock = Profile(EventType.LOCK, "nanoseconds", start_ns=1, end_ns=10**10,
                   locks=[LockStat(1, "app", 0xABC, stack, contentions=2, wait_ns=900,
                                   hist=(1, 1))])  # fmt: skip
    syscall = Profile(EventType.SYSCALL, "nanoseconds", start_ns=1, end_ns=10**10,
                      syscalls=[SyscallStat(1, "app", 0, "read", count=3, errors=1,
                                            errnos={11: 1})])  # fmt: skip
    return [cpu, lock, syscall]


def seed(target: str, corpus: Path) -> None:
    """Valid inputs to start from: libFuzzer mutates toward the deep code faster."""
    corpus.mkdir(parents=True, exist_ok=True)
    cpu, lock, syscall = _profiles()
    if target == "profilebatch":
        ident = Identity("agent-1", "host", {"env": "prod"}, "1.0")
        for i, group in enumerate(([cpu], [lock], [syscall], [cpu, lock, syscall])):
            (corpus / f"seed-{i}").write_bytes(encode(group, ident, i + 1).SerializeToString())
    else:
        import gzip

        for i, profile in enumerate((cpu, lock)):
            data = to_pprof(profile)
            (corpus / f"seed-gz-{i}").write_bytes(data)
            (corpus / f"seed-raw-{i}").write_bytes(gzip.decompress(data))


TARGETS: dict[str, Callable[[bytes], None]] = {"profilebatch": profilebatch, "pprof": pprof}


def main() -> None:
    target, corpus = sys.argv[1], Path(sys.argv[2])
    seed(target, corpus)
    atheris.Setup([sys.argv[0], str(corpus), *sys.argv[3:]], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
