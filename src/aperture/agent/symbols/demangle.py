"""C++ and Rust symbol demangling.

C++ and Rust legacy names go through libstdc++'s ``__cxa_demangle``: Rust legacy names
are Itanium-mangled with a ``17h<16 hex>E`` hash element and ``$LT$``-style escapes, both
cleaned up after demangling. Rust v0 names (``_R...``) go to the pure-Python
:mod:`aperture.agent.symbols.rust_v0`. Without libstdc++ only v0 names are demangled.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Callable

from aperture.agent.symbols.rust_v0 import demangle_v0

_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")
_RUST_LEGACY = re.compile(r"17h[0-9a-f]{16}E(?:\.|$)")
_RUST_ESCAPES = {
    "$SP$": "@",
    "$BP$": "*",
    "$RF$": "&",
    "$LT$": "<",
    "$GT$": ">",
    "$LP$": "(",
    "$RP$": ")",
    "$C$": ",",
}
_RUST_ESCAPE = re.compile(r"\$(?:SP|BP|RF|LT|GT|LP|RP|C|u[0-9a-f]{2,6})\$")
_CACHE_SIZE = 65536

_DemangleFn = Callable[[str], "str | None"]


def _load_cxa_demangle() -> _DemangleFn | None:
    try:
        libstdcxx = ctypes.CDLL("libstdc++.so.6")
        libc = ctypes.CDLL(None)  # the C library is already in the process
        cxa = libstdcxx.__cxa_demangle
    except (OSError, AttributeError):
        return None
    cxa.restype = ctypes.c_void_p  # a malloc'd char*: keep the pointer to free it
    cxa.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    ]
    free = libc.free
    free.restype = None
    free.argtypes = [ctypes.c_void_p]

    def demangle(name: str) -> str | None:
        status = ctypes.c_int(0)
        ptr = cxa(name.encode("utf-8", "surrogateescape"), None, None, ctypes.byref(status))
        if not ptr:
            return None
        try:
            raw = ctypes.string_at(ptr)
        finally:
            free(ptr)
        return raw.decode("utf-8", "replace") if status.value == 0 else None

    return demangle


_cxa_demangle = _load_cxa_demangle()


def available() -> bool:
    """Whether a native demangler was found (otherwise only Rust v0 names are demangled)."""
    return _cxa_demangle is not None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def demangle(name: str) -> str:
    """Demangle a C++ or Rust symbol; anything else or malformed comes back unchanged."""
    if name.startswith(("_R", "__R")):
        return demangle_v0(name) or name
    if _cxa_demangle is None or not name.startswith("_Z"):
        return name
    out = _cxa_demangle(name)
    if out is None:
        return name
    if _RUST_LEGACY.search(name):
        out = _rust_unescape(_RUST_HASH.sub("", out))
    return out


def _rust_unescape(name: str) -> str:
    """Undo the legacy Rust escapes ``$LT$``, ``$u20$``, ``..`` in a demangled path."""
    name = name.replace("..", "::")
    return _RUST_ESCAPE.sub(_rust_escape, name) if "$" in name else name


def _rust_escape(match: re.Match[str]) -> str:
    token = match.group(0)
    known = _RUST_ESCAPES.get(token)
    if known is not None:
        return known
    try:
        return chr(int(token[2:-1], 16))
    except ValueError:
        return token
