"""The agent's own pid, as its BPF programs are told to leave it out."""

from __future__ import annotations

import os

import pytest

from aperture.agent.collectors import base


def test_the_agent_leaves_out_its_own_process_only_when_asked() -> None:
    if not base._in_host_pid_namespace():
        pytest.skip("this test runs in a container's pid namespace: nothing is left out there")
    me = os.getpid()
    assert base.own_tgid(0, True) == me
    assert base.own_tgid(1234, True) == me  # --pid another process
    assert base.own_tgid(me, True) == 0, "--pid the agent itself: recorded"
    assert base.own_tgid(0, False) == 0, "a library user's collectors record every process"


def test_in_another_pid_namespace_nothing_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """There our pid is not the one the BPF programs see: leaving it out would drop
    whichever host process has that number."""
    monkeypatch.setattr(base, "_in_host_pid_namespace", lambda: False)
    assert base.own_tgid(0, True) == 0
