"""The agent's push flags, checked before anything starts: aggregator URL, labels, token.

Each bad value is a :class:`~aperture.errors.UsageError` with one sentence
saying what to type instead.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aperture.agent.identity import agent_identity
from aperture.errors import UsageError
from aperture.units import parse_duration, parse_size
from aperture.urls import parse_http_address

if TYPE_CHECKING:
    from aperture.agent.push import Pusher

DEFAULT_PORT = 50051
DEFAULT_QUEUE_BYTES = 64 << 20
DEFAULT_SPOOL_BYTES = 1 << 30
DEFAULT_FLUSH_TIMEOUT = 10.0
# Flags that mean nothing without --aggregator.
_PUSH_ONLY = ("token", "tls_ca", "agent_id", "queue_bytes", "spool_dir", "spool_bytes",
              "flush_timeout")  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """Where the aggregator listens: the URL as given and what gRPC dials."""

    url: str
    target: str
    tls: bool = False
    ca_pem: bytes | None = None


def parse_endpoint(url: str, ca_file: Path | None = None) -> Endpoint:
    """``http://HOST[:PORT]`` (plain) or ``https://`` (TLS); :class:`UsageError` otherwise."""
    address = parse_http_address(url, "--aggregator", DEFAULT_PORT)
    parts = address.parts
    example = "e.g. http://aggregator:50051, or https:// for TLS"
    if parts.username or parts.password:
        raise UsageError(
            "--aggregator must not carry credentials: set APERTURE_AUTH_TOKEN instead."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--aggregator {url!r} takes no path ({example}).")
    tls = address.tls
    ca_pem = None
    if ca_file is not None:
        if not tls:
            raise UsageError("--tls-ca needs an https:// aggregator URL.")
        try:
            ca_pem = ca_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --tls-ca {ca_file}: {exc.strerror or exc}.") from None
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise UsageError(f"--tls-ca {ca_file} holds no PEM certificate.")
    return Endpoint(url=url.strip().rstrip("/"), target=address.target, tls=tls, ca_pem=ca_pem)


def check_token(token: str | None) -> str | None:
    """The token stripped, None if empty; :class:`UsageError` if it cannot go in a header."""
    if token is None or not token.strip():
        return None
    token = token.strip()
    if not all(33 <= ord(c) < 127 for c in token):
        raise UsageError(
            "the auth token holds spaces or non-ASCII characters, which cannot be sent "
            "in a header: check APERTURE_AUTH_TOKEN / --token."
        )
    return token


def duration_arg(text: str) -> float:
    """argparse type: seconds in ``30s``, ``5m``, ``1h``."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def size_arg(text: str) -> int:
    """argparse type: bytes in ``64MiB``, ``1GiB`` (at least 1 MiB)."""
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r} is too small (at least 1MiB)")
    return value


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``push to an aggregator`` flags of ``aperture-agent``."""
    group = parser.add_argument_group(
        "push to an aggregator",
        "With --aggregator, every window of every mode is sent as one batch (gzip); "
        "--output can be given too. The token comes from APERTURE_AUTH_TOKEN (or --token).",
    )
    group.add_argument(
        "--aggregator",
        metavar="URL",
        default=None,
        help="push profiles to this aggregator: http://HOST:50051, or https:// for TLS",
    )
    group.add_argument(
        "--token",
        default=None,
        help="bearer token (prefer the APERTURE_AUTH_TOKEN environment variable: "
        "flags show in `ps`)",
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM CA certificate that signed the aggregator's certificate (https:// only; "
        "default: the system's CAs)",
    )
    group.add_argument(
        "--agent-id",
        default=None,
        help="this agent's stable name (default: $APERTURE_NODE_NAME, else the host name)",
    )
    group.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add a label to this agent's identity, in its pushes and its output files "
        "(repeatable); kernel=RELEASE is always set, "
        "and in Kubernetes node, pod and namespace from APERTURE_NODE_NAME, APERTURE_POD_NAME "
        "and APERTURE_POD_NAMESPACE (downward API; a --label of the same key wins)",
    )
    group.add_argument(
        "--queue-bytes",
        type=size_arg,
        default=None,
        metavar="SIZE",
        help="memory for batches not yet delivered; the oldest go first when full "
        f"(default: {DEFAULT_QUEUE_BYTES >> 20}MiB)",
    )
    group.add_argument(
        "--spool-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="also keep undelivered batches on disk here, so a restart (even after a "
        "crash) sends them (default: memory only)",
    )
    group.add_argument(
        "--spool-bytes",
        type=size_arg,
        default=None,
        metavar="SIZE",
        help="disk cap of --spool-dir; the oldest go first "
        f"(default: {DEFAULT_SPOOL_BYTES >> 30}GiB)",
    )
    group.add_argument(
        "--flush-timeout",
        type=duration_arg,
        default=None,
        metavar="DURATION",
        help="at the end, try this long to deliver what is queued (default: 10s)",
    )


_AGENT_ID = re.compile(r"^[^\s/][^\s]{0,127}$")


def _spool_dir(path: Path) -> Path:
    """Create the spool directory and prove it writable, before anything starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --spool-dir {path}: {exc.strerror or exc}.") from None
    if not path.is_dir():
        raise UsageError(f"--spool-dir {path} is not a directory.")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".aperture-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to --spool-dir {path}: {exc.strerror or exc}.") from None
    return path


def build_pusher(args: argparse.Namespace, log: Callable[[str], None]) -> Pusher | None:
    """The pusher the flags ask for, or None; :class:`UsageError` for a bad flag."""
    from aperture import __version__
    from aperture.agent.push import Pusher
    from aperture.agent.spool import Spool
    from aperture.wire import Identity

    if args.aggregator is None:
        given = [name for name in _PUSH_ONLY if getattr(args, name) not in (None, [])]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} only applies with --aggregator URL.")
        return None
    endpoint = parse_endpoint(args.aggregator, args.tls_ca)
    token_text = args.token if args.token is not None else os.environ.get("APERTURE_AUTH_TOKEN")
    token = check_token(token_text)
    me = agent_identity(args.label)
    agent_id = args.agent_id if args.agent_id is not None else me.host
    if not _AGENT_ID.match(agent_id):
        raise UsageError(
            f"--agent-id {agent_id!r} must be 1-128 characters without spaces, not starting with /."
        )
    spool = None
    if args.spool_dir is not None:
        spool_dir = _spool_dir(args.spool_dir)
        spool = Spool(spool_dir, args.spool_bytes or DEFAULT_SPOOL_BYTES, warn=log)
    identity = Identity(agent_id, me.host, me.labels, __version__)
    return Pusher(
        endpoint,
        identity,
        token=token,
        queue_bytes=args.queue_bytes or DEFAULT_QUEUE_BYTES,
        spool=spool,
        log=log,
    )
