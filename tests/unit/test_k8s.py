"""Container ids from real /proc/PID/cgroup contents, and the downward-API identity labels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aperture.agent import k8s
from aperture.agent.k8s import Container, container_of, identity_labels, parse_cgroup
from aperture.errors import UsageError

CID = "3f2c5a1e9b8d7c6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f"
POD = "8e3f2a4b-1c5d-4e6f-9a7b-8c9d0e1f2a3b"
POD_ = POD.replace("-", "_")

# Whole files as the runtimes write them (ids replaced by CID/POD).
DOCKER_V1 = f"""\
12:hugetlb:/docker/{CID}
11:memory:/docker/{CID}
10:cpuset:/docker/{CID}
5:cpu,cpuacct:/docker/{CID}
1:name=systemd:/docker/{CID}
0::/system.slice/containerd.service
"""
KUBE_CONTAINERD_V1 = f"""\
12:pids:/kubepods/burstable/pod{POD}/{CID}
11:memory:/kubepods/burstable/pod{POD}/{CID}
1:name=systemd:/kubepods/burstable/pod{POD}/{CID}
"""

SAMPLES: list[tuple[str, str, Container | None]] = [
    ("docker, cgroup v1 (cgroupfs driver)", DOCKER_V1, Container(CID, "docker")),
    ("docker, cgroup v2 (systemd driver)", f"0::/system.slice/docker-{CID}.scope\n",
     Container(CID, "docker")),
    ("kubernetes + containerd, v1 (cgroupfs driver, burstable)", KUBE_CONTAINERD_V1,
     Container(CID, "", POD)),
    ("kubernetes, v1, guaranteed QoS", f"4:memory:/kubepods/pod{POD}/{CID}\n",
     Container(CID, "", POD)),
    ("kubernetes + containerd, v2 (systemd driver)",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/"
     f"cri-containerd-{CID}.scope\n", Container(CID, "containerd", POD)),
    ("kubernetes + cri-o, v2 (systemd driver)",
     f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/"
     f"crio-{CID}.scope\n", Container(CID, "cri-o", POD)),
    ("kubernetes + cri-o, v1 (cgroupfs driver)",
     f"3:memory:/kubepods/besteffort/pod{POD}/crio-{CID}\n", Container(CID, "cri-o", POD)),
    ("cri-o's conmon is the monitor, not the container",
     f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/"
     f"crio-conmon-{CID}.scope\n", None),
    ("seen from the agent's own cgroup namespace (containerd, v2)",
     f"0::/../../kubepods-burstable-pod{POD_}.slice/cri-containerd-{CID}.scope\n",
     Container(CID, "containerd", POD)),
    ("podman rootful, v2", f"0::/machine.slice/libpod-{CID}.scope/container\n",
     Container(CID, "podman")),
    ("podman rootless, v2",
     f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/"
     "container\n", Container(CID, "podman")),
    ("podman, v1 (cgroupfs manager)", f"2:memory:/libpod_parent/libpod-{CID}\n",
     Container(CID, "podman")),
    ("podman conmon", f"0::/machine.slice/libpod-conmon-{CID}.scope\n", None),
    ("nerdctl (containerd), v2", f"0::/system.slice/nerdctl-{CID}.scope\n",
     Container(CID, "containerd")),
    ("containerd without kubernetes, v1 (namespace 'default')", f"3:memory:/default/{CID}\n",
     Container(CID, "")),
    ("host process, v2 login session", "0::/user.slice/user-1000.slice/session-3.scope\n",
     None),
    ("host service, v2", "0::/system.slice/sshd.service\n", None),
    ("systemd itself", "0::/init.scope\n", None),
    ("inside a container with its own cgroup namespace", "0::/\n", None),
    ("empty file (process exiting)", "", None),
    ("a short id is not a container id", "0::/docker/3f2c5a1e9b8d\n", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_container_from_cgroup(text: str, expected: Container | None) -> None:
    assert parse_cgroup(text) == expected


def test_container_of_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    assert container_of(42, proc=tmp_path) == Container(CID, "docker")
    assert container_of(43, proc=tmp_path) is None  # gone: no error


def test_container_of_this_process_does_not_fail() -> None:
    # Whatever this machine is (host or container), reading a live process works.
    result = container_of(os.getpid())
    assert result is None or len(result.id) == 64


def test_identity_labels_from_downward_api() -> None:
    env = {
        "APERTURE_NODE_NAME": "node-a",
        "APERTURE_POD_NAME": "aperture-agent-x7k2p",
        "APERTURE_POD_NAMESPACE": "aperture",
        "HOSTNAME": "ignored",
    }
    assert identity_labels(env) == {
        "node": "node-a",
        "pod": "aperture-agent-x7k2p",
        "namespace": "aperture",
    }
    assert k8s.node_name(env) == "node-a"


def test_identity_labels_outside_kubernetes() -> None:
    assert identity_labels({}) == {}
    assert identity_labels({"APERTURE_POD_NAME": "  "}) == {}
    assert k8s.node_name({}) is None


def test_bad_downward_api_value_names_the_variable() -> None:
    with pytest.raises(UsageError, match="APERTURE_POD_NAME"):
        identity_labels({"APERTURE_POD_NAME": "a\nb"})
    with pytest.raises(UsageError, match="APERTURE_NODE_NAME"):
        identity_labels({"APERTURE_NODE_NAME": "n" * 300})


def test_pusher_identity_carries_the_downward_api_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    from aperture.agent.cli import build_parser
    from aperture.agent.push_options import build_pusher

    monkeypatch.setenv("APERTURE_NODE_NAME", "node-a")
    monkeypatch.setenv("APERTURE_POD_NAME", "aperture-agent-x7k2p")
    monkeypatch.setenv("APERTURE_POD_NAMESPACE", "aperture")
    args = build_parser().parse_args(
        ["--aggregator", "http://127.0.0.1:1", "--label", "namespace=profiling"]
    )
    pusher = build_pusher(args, lambda _text: None)
    assert pusher is not None
    try:
        identity = pusher.identity
        assert identity.agent_id == identity.host == "node-a"  # not the pod's host name
        assert identity.labels["node"] == "node-a"
        assert identity.labels["pod"] == "aperture-agent-x7k2p"
        assert identity.labels["namespace"] == "profiling"  # an explicit --label wins
        assert "kernel" in identity.labels
    finally:
        pusher.close()
