"""An ``http://`` or ``https://`` address given on a command line, checked once.

The agent's ``--aggregator``, the CLI's ``--endpoint`` (gRPC) and ``--api`` (REST)
all take one; a bad one is a :class:`~aperture.errors.UsageError` naming the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from aperture.errors import UsageError


@dataclass(frozen=True)
class HttpAddress:
    parts: SplitResult
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.parts.scheme == "https"

    @property
    def target(self) -> str:
        """``host:port`` as gRPC dials it (an IPv6 address in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_http_address(text: str, flag: str, default_port: int) -> HttpAddress:
    """``text`` as an http(s) address with a host and a valid port (``default_port``
    when it names none); :class:`UsageError` saying what to type otherwise."""
    example = f"e.g. http://HOST:{default_port}, or https:// for TLS"
    try:
        parts = urlsplit(text.strip())
    except ValueError as exc:  # an unclosed IPv6 bracket, say
        raise UsageError(
            f"{flag} {text!r} is not a valid URL ({exc}): use http://HOST:PORT, "
            f"with an IPv6 address in brackets (http://[::1]:{default_port})."
        ) from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{flag} {text!r} is not an http:// or https:// URL ({example}).")
    try:
        port = parts.port or default_port
    except ValueError:
        raise UsageError(f"{flag} {text!r} has an invalid port ({example}).") from None
    if not parts.hostname:
        raise UsageError(f"{flag} {text!r} names no host ({example}).")
    return HttpAddress(parts, parts.hostname, port)
