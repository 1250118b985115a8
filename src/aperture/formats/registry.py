"""Output formats picked by file suffix, and an atomic profile writer."""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aperture.model import EventType, Profile
from aperture.profile_types import with_stacks

_STACKS = frozenset(t.event_type for t in with_stacks())
_ALL = frozenset(EventType)
_PLAIN = "text/plain; charset=utf-8"
_JSON = "application/json"


class UnknownFormatError(ValueError):
    """No output format matches a file name."""


@dataclass(frozen=True, slots=True)
class Writer:
    """An output format: its name, the suffixes that select it and its renderer."""

    name: str
    suffixes: tuple[str, ...]
    render: Callable[[Profile], bytes]
    # The event types this format can represent (syscall stats have no stacks).
    event_types: frozenset[EventType] = _STACKS
    # Served by the REST API's /export with this media type (None: files only); the
    # download is named with the first suffix.
    media_type: str | None = None

    def write(self, profile: Profile, path: str | os.PathLike[str]) -> None:
        """Render ``profile`` and write it to ``path`` atomically."""
        write_atomic(path, self.render(profile))


def _render(module: str, name: str, text: bool = True) -> Callable[[Profile], bytes]:
    """``module.name`` as a renderer, imported at its first use: an agent that pushes
    (or writes one format) does not pay for importing every other format."""

    def render(profile: Profile) -> bytes:
        out = getattr(importlib.import_module(f"aperture.formats.{module}"), name)(profile)
        return out.encode("utf-8") if text else out  # type: ignore[no-any-return]

    return render


WRITERS: tuple[Writer, ...] = (
    Writer("collapsed", (".folded", ".collapsed"), _render("collapsed", "to_collapsed"),
           media_type=_PLAIN),
    Writer("svg", (".svg",), _render("svg", "to_svg")),
    Writer("speedscope", (".speedscope.json",), _render("speedscope", "to_speedscope"),
           media_type=_JSON),
    Writer("pprof", (".pb.gz",), _render("pprof", "to_pprof", text=False),
           media_type="application/octet-stream"),
    Writer("json", (".json",), _render("json_format", "to_json"), _ALL, media_type=_JSON),
    Writer("lock table", (".txt",), _render("tables", "format_lock_table"),
           frozenset({EventType.LOCK})),
    Writer("syscall table", (".txt",), _render("tables", "format_syscall_table"),
           frozenset({EventType.SYSCALL})),
    Writer("syscall csv", (".csv",), _render("tables", "syscall_csv"),
           frozenset({EventType.SYSCALL})),
)  # fmt: skip

EXPORTS: dict[str, Writer] = {w.name: w for w in WRITERS if w.media_type is not None}

_BY_SUFFIX = {
    (event_type, suffix): writer
    for writer in WRITERS
    for suffix in writer.suffixes
    for event_type in writer.event_types
}


def supported_suffixes(event_type: EventType = EventType.CPU) -> tuple[str, ...]:
    """Every file suffix that selects an output format for ``event_type``, sorted."""
    return tuple(sorted(suffix for et, suffix in _BY_SUFFIX if et is event_type))


def split_suffix(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(stem, format suffix)`` of a path, the longest known suffix winning."""
    name = os.fspath(path)
    lower = name.lower()
    for suffix in sorted({s for _, s in _BY_SUFFIX}, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


def writer_for(path: str | os.PathLike[str], event_type: EventType = EventType.CPU) -> Writer:
    """The writer for ``path``'s suffix, the longest match winning (``.speedscope.json``)."""
    name = Path(path).name.lower()
    supported = ", ".join(supported_suffixes(event_type))
    for suffix in sorted({s for _, s in _BY_SUFFIX}, key=len, reverse=True):
        if name.endswith(suffix):
            writer = _BY_SUFFIX.get((event_type, suffix))
            if writer is None:
                raise UnknownFormatError(
                    f"{event_type} data cannot be written as {suffix} ({os.fspath(path)!r});"
                    f" name the file with one of {supported}."
                )
            return writer
    raise UnknownFormatError(
        f"cannot tell the output format of {os.fspath(path)!r}; name the file with one"
        f" of {supported}."
    )


def write_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write ``profile`` to ``path`` in the format its suffix names, atomically."""
    writer_for(path, profile.event_type).write(profile, path)


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
