"""The agent exposes nothing: with real BPF, recording and pushing, it holds no listening socket.

SECURITY.md's threat model rests on this: the agent runs as root on every host,
and only ever dials out. Its sockets are found through /proc/PID/fd and looked up
in /proc/net (no psutil): a TCP socket in LISTEN, an unconnected UDP socket or a
listening unix socket would fail the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aggregator_proc import AggregatorProcess

pytestmark = pytest.mark.usefixtures("bpf")

TCP_LISTEN = "0A"
UNIX_ACCEPTING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def exposed(inodes: set[str]) -> list[str]:
    """The sockets among ``inodes`` that accept anything from outside."""
    found = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            f = line.split()
            if f[9] in inodes and f[3] == TCP_LISTEN:
                found.append(f"{name} listening on {f[1]}")
    for name in ("udp", "udp6", "raw", "raw6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            f = line.split()
            remote_port = f[2].rsplit(":", 1)[1]
            if f[9] in inodes and remote_port == "0000":
                found.append(f"{name} bound to {f[1]}, unconnected")
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        f = line.split()
        if f[6] in inodes and int(f[3], 16) & UNIX_ACCEPTING:
            found.append(f"unix socket listening at {f[7] if len(f) > 7 else '(abstract)'}")
    return found


def watch(proc: subprocess.Popen[str], seconds: float) -> tuple[set[str], list[str]]:
    """Every socket the agent held over ``seconds``, and those of them exposed."""
    seen: set[str] = set()
    problems: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            inodes = socket_inodes(proc.pid)
        except FileNotFoundError:
            break
        seen |= inodes
        problems += exposed(inodes)
        time.sleep(0.2)
    return seen, problems


def test_the_agent_listens_on_nothing_while_recording_and_pushing(tmp_path: Path) -> None:
    # with the push-only token agents are meant to get (its start-up check cannot Query)
    agg = AggregatorProcess(tmp_path / "agg", "--ingest-token", "agent-token").start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aperture.agent.cli", "--aggregator", agg.endpoint,
             "--token", "agent-token", "--push-interval", "1s", "--duration", "6s",
             "-o", str(tmp_path / "out.json"), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            seen, problems = watch(proc, 5)
        finally:
            _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert seen, "the agent held no socket at all: was it pushing?"
        assert problems == []
        assert agg.metric('aperture_pushes_total{status="accepted"}') > 0
    finally:
        assert agg.stop() == 0


def test_the_agent_writing_files_holds_no_socket_open_to_the_outside(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aperture.agent.cli", "--duration", "4s",
         "-o", str(tmp_path / "out.json"), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _seen, problems = watch(proc, 3)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert problems == []
