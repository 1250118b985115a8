"""Who this agent is, the same in its local output files and in its pushes.

The host (the Kubernetes node when in a pod: the pod's host name is not the
machine being profiled), the kernel release, the downward-API labels and each
``--label`` (a ``--label`` of the same key wins). Checked before anything starts.
"""

from __future__ import annotations

import platform
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from aperture import __version__
from aperture.agent import k8s
from aperture.errors import UsageError


@dataclass(frozen=True)
class AgentIdentity:
    host: str
    labels: dict[str, str]  # kernel, Kubernetes, --label

    def profile_labels(self, pid: int | None = None) -> dict[str, str]:
        """The labels of a profile written to a local file (``pid``: ``--pid``)."""
        out = {**self.labels, "host": self.host, "agent": __version__}
        if pid:
            out["pid"] = str(pid)
        return out


def agent_identity(label_args: Sequence[str] = ()) -> AgentIdentity:
    """This agent's identity; :class:`UsageError` for a bad ``--label`` or
    downward-API value."""
    labels = {"kernel": platform.release(), **k8s.identity_labels(), **parse_labels(label_args)}
    return AgentIdentity(k8s.node_name() or socket.gethostname(), labels)


_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,62}$")
MAX_LABEL_VALUE = 256


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``key=value`` pairs from ``--label``; :class:`UsageError` for a bad or repeated one."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise UsageError(f"--label {item!r} is not KEY=VALUE (e.g. --label env=prod).")
        if not _LABEL_KEY.match(key):
            raise UsageError(
                f"--label key {key!r} must start with a letter or _ and hold only letters, "
                "digits, _ . - / (at most 63 characters)."
            )
        if len(value) > MAX_LABEL_VALUE or not value.isprintable():
            raise UsageError(
                f"--label {key}: the value must be printable and at most "
                f"{MAX_LABEL_VALUE} characters."
            )
        if key in labels:
            raise UsageError(f"--label {key} is given twice.")
        labels[key] = value
    return labels
