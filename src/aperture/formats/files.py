"""Other tools' profile files read into profiles: pprof (gzip or raw) and ``perf script`` text.

What ``aperture convert`` and ``aperture import`` read; each file is told apart
by its content, not its name. A file of several types (a Go heap profile has
four) gives one profile per type; nothing is ever read as a type it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from aperture.errors import UsageError
from aperture.formats.perf_script import UnsupportedPerfEvent, looks_like_perf_script
from aperture.formats.perf_script import read_perf_script as _read_perf_script
from aperture.formats.pprof import MalformedPprof, PprofTooLarge, UnknownSampleType, from_pprof
from aperture.model import Profile
from aperture.transforms import merge


def name_of(path: str) -> str:
    """What a profile file is named after: its name without the format's suffixes."""
    name = PurePath(path).name
    for suffix in (".pb.gz", ".pprof", ".pb", ".gz", ".txt", ".perf"):
        name = name.removesuffix(suffix)
    return name or "pprof"


@dataclass
class ReadFile:
    """The profiles of one file, by type name, and what its reader warned about."""

    kind: str  # "pprof" or "perf script"
    profiles: dict[str, Profile]
    warnings: list[str] = field(default_factory=list)
    event: str = ""  # perf script: the event kept
    placed: bool = False  # its times are not wall-clock times (perf script): placed at now


def read_file(data: bytes, name: str, *, now_ns: int, kind: str = "") -> ReadFile:
    """The profiles in ``data`` (the file ``name``); :class:`UsageError` says what is wrong.

    ``kind``: what a Go contentions/delay pprof is (mutex, block). Samples without a
    process name are named after the file.
    """
    if not data.strip():
        raise UsageError(f"{name} is empty: there is no profile in it.")
    if looks_like_perf_script(data):
        try:
            perf = _read_perf_script(data.decode("utf-8", "replace"))
        except UnsupportedPerfEvent as exc:
            raise UsageError(f"{name}: {exc}") from None
        profile = perf.profile
        if not profile.samples:
            raise UsageError(
                f"{name} has no perf events with a stack: record with -g "
                "(perf record -g -e cpu-clock) and run perf script on that."
            )
        # perf script times count from boot: the recording is placed to end now
        profile.end_ns = now_ns
        profile.start_ns = now_ns - perf.duration_ns
        return ReadFile("perf script", {str(profile.event_type): profile}, perf.warnings,
                        perf.event, placed=True)  # fmt: skip
    try:
        imported = from_pprof(data, now_ns=now_ns, hint=kind, comm=name_of(name))
    except UnknownSampleType as exc:
        raise UsageError(f"{name}: {exc}.") from None
    except PprofTooLarge as exc:
        raise UsageError(f"{name} is larger than a profile may be: {exc}.") from None
    except MalformedPprof as exc:
        raise UsageError(
            f"{name} is neither perf script text nor a pprof profile ({exc}): convert and "
            "import read pprof (.pb.gz or raw) and `perf script` output."
        ) from None
    by_type: dict[str, list[Profile]] = {}
    for one in imported:  # one per type and label set: a file's label sets are merged
        by_type.setdefault(str(one.profile.event_type), []).append(one.profile)
    return ReadFile("pprof", {t: ps[0] if len(ps) == 1 else merge(ps) for t, ps in by_type.items()})
