"""Kubernetes and container metadata the agent derives locally, without the API server.

Two sources, both on the node: a process's ``/proc/PID/cgroup`` names its container
(the runtimes put the container id in the cgroup path), and the downward API hands
the agent's own pod, namespace and node names in as environment variables, which
become identity labels of every batch the agent sends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aperture.errors import UsageError

# Downward-API variables (see deploy/k8s/agent-daemonset.yaml) and the label each becomes.
ENV_LABELS = {
    "APERTURE_NODE_NAME": "node",
    "APERTURE_POD_NAME": "pod",
    "APERTURE_POD_NAMESPACE": "namespace",
}
MAX_VALUE = 256  # as for --label values

# A cgroup directory named after a container: the runtime's prefix (systemd driver
# scopes, CRI-O and Podman with cgroupfs) or the bare id (cgroupfs drivers of Docker,
# containerd and Kubernetes v1 hierarchies). "crio-conmon-ID" / "libpod-conmon-ID"
# hold the runtime's monitor process, not the container, so they do not match.
_ID = r"(?P<id>[0-9a-f]{64})"
_SCOPE = re.compile(rf"^(?P<prefix>docker|cri-containerd|crio|libpod|nerdctl)-{_ID}(?:\.scope)?$")
_BARE = re.compile(rf"^{_ID}$")
_RUNTIMES = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "nerdctl": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}
# Pod UIDs: "pod<uid>" (cgroupfs driver) or "kubepods-<qos>-pod<uid with _>.slice" (systemd).
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"(?:^|-)pod(?P<uid>{_UID})(?:\.slice)?$")


@dataclass(frozen=True)
class Container:
    """The container a process runs in, as its cgroup path tells it."""

    id: str  # 64 hex digits
    runtime: str  # docker, containerd, cri-o, podman, or "" when the path does not say
    pod_uid: str = ""  # the Kubernetes pod's UID, "" outside Kubernetes


def parse_cgroup_path(path: str) -> Container | None:
    """The container named by one cgroup path, or None for a host process.

    Works on paths relative to another cgroup namespace too (``/../../kubepods...``):
    the innermost container component is searched from the end.
    """
    parts = [p for p in path.split("/") if p and p != ".."]
    for index in range(len(parts) - 1, -1, -1):
        part = parts[index]
        runtime = ""
        match = _SCOPE.match(part)
        if match:
            runtime = _RUNTIMES[match["prefix"]]
        else:
            match = _BARE.match(part)
            if match and index > 0:
                # Docker's and Podman's cgroupfs drivers name their parent; Kubernetes'
                # does not say which runtime (dockershim or containerd).
                runtime = {"docker": "docker", "libpod_parent": "podman"}.get(parts[index - 1], "")
        if match:
            pod_uid = ""
            for parent in reversed(parts[:index]):
                pod = _POD.search(parent)
                if pod:
                    pod_uid = pod["uid"].replace("_", "-")
                    break
            return Container(id=match["id"], runtime=runtime, pod_uid=pod_uid)
    return None


def parse_cgroup(text: str) -> Container | None:
    """The container named by the contents of a ``/proc/PID/cgroup`` file (v1 or v2)."""
    for line in text.splitlines():
        # hierarchy-ID:controller-list:path; the path itself may hold ':'.
        fields = line.split(":", 2)
        if len(fields) == 3:
            container = parse_cgroup_path(fields[2])
            if container is not None:
                return container
    return None


def container_of(pid: int, proc: Path = Path("/proc")) -> Container | None:
    """The container of a live process, or None (host process, or the process is gone)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    return parse_cgroup(text)


def identity_labels(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``node``/``pod``/``namespace`` labels from the downward-API variables that are set.

    A value that cannot be a label is a :class:`UsageError` naming the variable.
    """
    env = os.environ if environ is None else environ
    labels = {}
    for variable, key in ENV_LABELS.items():
        value = env.get(variable, "").strip()
        if not value:
            continue
        if len(value) > MAX_VALUE or not value.isprintable():
            raise UsageError(
                f"{variable} must be printable and at most {MAX_VALUE} characters: "
                "check the agent's environment (the downward API fields it comes from)."
            )
        labels[key] = value
    return labels


def node_name(environ: Mapping[str, str] | None = None) -> str | None:
    """The Kubernetes node this agent runs on, when the downward API says so."""
    env = os.environ if environ is None else environ
    return env.get("APERTURE_NODE_NAME", "").strip() or None
