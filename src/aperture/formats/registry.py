"""Output formats picked by file suffix, and an atomic profile writer."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aperture.formats.collapsed import to_collapsed
from aperture.formats.json_format import to_json
from aperture.formats.speedscope import to_speedscope
from aperture.formats.svg import to_svg
from aperture.model import Profile

# Suffixes kept back for formats that are planned but not written yet.
_RESERVED = {".pb.gz": "pprof"}


class UnknownFormatError(ValueError):
    """No output format matches a file name."""


@dataclass(frozen=True, slots=True)
class Writer:
    """An output format: its name, the suffixes that select it and its renderer."""

    name: str
    suffixes: tuple[str, ...]
    render: Callable[[Profile], bytes]

    def write(self, profile: Profile, path: str | os.PathLike[str]) -> None:
        """Render ``profile`` and write it to ``path`` atomically."""
        write_atomic(path, self.render(profile))


def _text(render: Callable[[Profile], str]) -> Callable[[Profile], bytes]:
    return lambda profile: render(profile).encode("utf-8")


WRITERS: tuple[Writer, ...] = (
    Writer("collapsed", (".collapsed", ".folded"), _text(to_collapsed)),
    Writer("svg", (".svg",), _text(to_svg)),
    Writer("speedscope", (".speedscope.json",), _text(to_speedscope)),
    Writer("json", (".json",), _text(to_json)),
)

_BY_SUFFIX = {suffix: writer for writer in WRITERS for suffix in writer.suffixes}


def supported_suffixes() -> tuple[str, ...]:
    """Every file suffix that selects an output format, sorted."""
    return tuple(sorted(_BY_SUFFIX))


def writer_for(path: str | os.PathLike[str]) -> Writer:
    """The writer for ``path``'s suffix, the longest match winning (``.speedscope.json``)."""
    name = Path(path).name.lower()
    supported = ", ".join(supported_suffixes())
    for suffix, planned in _RESERVED.items():
        if name.endswith(suffix):
            raise UnknownFormatError(
                f"{planned} output ({os.fspath(path)!r}) is not supported yet; name the file"
                f" with one of {supported}."
            )
    for suffix in sorted(_BY_SUFFIX, key=len, reverse=True):
        if name.endswith(suffix):
            return _BY_SUFFIX[suffix]
    raise UnknownFormatError(
        f"cannot tell the output format of {os.fspath(path)!r}; name the file with one"
        f" of {supported}."
    )


def write_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write ``profile`` to ``path`` in the format its suffix names, atomically."""
    writer_for(path).write(profile, path)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old file or the new, never a part."""
    target = Path(path)
    # Same directory, so os.replace is a rename on one filesystem. os.open with 0o666
    # lets the umask decide the mode, as for any new file (mkstemp would force 0600).
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
