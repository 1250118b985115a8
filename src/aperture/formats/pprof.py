"""pprof's ``profile.proto`` (gzip-compressed), written from a profile and read back.

Writing: CPU profiles carry ``samples/count`` and ``cpu/nanoseconds`` (period
``1e9 / frequency`` ns), lock profiles ``contentions/count`` and
``delay/nanoseconds``; one mapping per module, one location per frame, one
function per name; process id, name and thread as sample labels. pprof wants
each sample's locations leaf first, the reverse of our root-first stacks.

Reading: any pprof (gzip or raw) becomes profiles of our event types, every
index checked first so a malformed file is refused with the reason, never
half-read. Samples are split by their other string labels (Go's pprof labels,
Pyroscope's tags): each distinct label set is returned with its own profile so
it can be stored and queried under those labels. What a profile may make us
build is counted against a :class:`~aperture.formats.limits.Budget` first: its
inflated size, then its samples, locations, functions, mappings and strings
(off the wire, before any of them is parsed), then its lines, stack frames and
labels (before any Python object per sample is built).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from google.protobuf.message import DecodeError, Message

from aperture.formats.limits import Budget, TooLarge
from aperture.formats.protoscan import count_fields
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample
from aperture.profile_types import (
    LOCK_CONTENTIONS,
    LOCK_DELAY,
    PROFILE_TYPES,
    SampleType,
    stack_types,
    value_unit,
)
from aperture.proto.pprof import profile_pb2 as pb
from aperture.transforms import lock_samples

# A pprof of this many bytes once inflated is not a profile any tool would write
# in one piece; refusing it bounds the memory a hostile gzip can make us spend.
MAX_INFLATED_BYTES = 64 << 20
_INT64_MAX = 2**63 - 1  # pprof sample values are int64
_DAY_NS = 86_400 * 10**9
# Distinct sample label sets kept apart; past this the labels are dropped (the
# samples stay) so a per-request label (span ids) cannot fan out into batches.
MAX_LABEL_SETS = 100

# Labels that fill Sample fields instead of becoming label sets.
_PID_KEYS = ("pid", "process_id")
_TID_KEYS = ("tid", "thread_id")
_COMM_KEYS = ("comm", "process_name")
_THREAD_KEYS = ("thread", "thread_name")
_RESERVED_KEYS = frozenset(_PID_KEYS + _TID_KEYS + _COMM_KEYS + _THREAD_KEYS)

# Bracketed module names that are user-space mappings, not kernel modules.
_USER_PSEUDO = frozenset({"[vdso]", "[vsyscall]", "[vvar]", "[heap]", "[stack]", "[anon]"})


class MalformedPprof(ValueError):
    """Bytes that are not a valid pprof profile; the message says why."""


class PprofTooLarge(MalformedPprof, TooLarge):
    """A profile past what is left of its request's :class:`Budget` (answered 413)."""


# ---------------------------------------------------------------------------
# Writing


class _Strings:
    def __init__(self, table: list[str]) -> None:
        self._table = table
        self._index: dict[str, int] = {"": 0}
        table.append("")

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self._table)
            self._table.append(text)
        return index


def _lock_rows(profile: Profile) -> list[tuple[Sample, int, int]]:
    """(sample, contentions, wait ns) per process and waiting stack of a lock profile (hold
    and wake records are other views of the same waits: pprof gets the waits)."""
    if not profile.locks:
        return [(s, 0, s.value) for s in profile.samples]
    counts: Counter[tuple[int, str, tuple[Frame, ...]]] = Counter()
    waits: Counter[tuple[int, str, tuple[Frame, ...]]] = Counter()
    for lock in profile.locks:
        if lock.role != "wait":
            continue
        key = (lock.pid, lock.comm, lock.stack)
        counts[key] += lock.contentions
        waits[key] += lock.wait_ns
    return [
        (Sample(key[2], waits[key], pid=key[0], comm=key[1]), counts[key], waits[key])
        for key in counts
    ]


def to_pprof_message(profile: Profile) -> pb.Profile:
    """The ``perftools.profiles.Profile`` message of a profile of any type with stacks."""
    kind = PROFILE_TYPES[profile.event_type]
    if not kind.has_stacks:
        raise ValueError(
            f"{profile.event_type} statistics have no stacks: pprof cannot represent them"
        )
    out = pb.Profile()
    table: list[str] = []
    string = _Strings(table)
    period_ns = round(1e9 / profile.frequency_hz) if profile.frequency_hz > 0 else 0

    def declare(types: tuple[SampleType, ...], period: int) -> None:
        for vt in types:
            out.sample_type.add(type=string(vt.type), unit=string(vt.unit))
        if kind.pprof_period is not None and period:
            out.period_type.type = string(kind.pprof_period.type)
            out.period_type.unit = string(kind.pprof_period.unit)
            out.period = period
            out.default_sample_type = string(kind.pprof_default)

    rows: list[tuple[Sample, list[int]]]
    if profile.event_type is EventType.LOCK:
        declare(kind.pprof, 1)  # contentions, delay
        rows = [(s, [n, wait]) for s, n, wait in _lock_rows(profile)]
    elif kind.wire == "stacks":  # a registry type's weighted stacks, in its own unit
        declare(kind.pprof, 0)
        out.default_sample_type = string(kind.pprof_default)
        rows = [(s, [s.value]) for s in profile.samples]
    elif period_ns:
        declare(kind.pprof, period_ns)  # samples, cpu time
        rows = [(s, [s.value, s.value * period_ns]) for s in profile.samples]
    else:
        declare(kind.pprof[:1], 0)
        rows = [(s, [s.value]) for s in profile.samples]
    out.comment.append(string(f"{TYPE_COMMENT}{profile.event_type}"))

    mappings: dict[str, int] = {}
    functions: dict[tuple[str, str], int] = {}
    locations: dict[Frame, int] = {}

    def location(frame: Frame) -> int:
        loc_id = locations.get(frame)
        if loc_id is not None:
            return loc_id
        mapping_id = 0
        python = frame.kind is FrameKind.PYTHON
        # A Python frame's module is its source file (Function.filename), not a mapping.
        if frame.module and not python:
            mapping_id = mappings.get(frame.module, 0)
            if not mapping_id:
                mapping_id = mappings[frame.module] = len(mappings) + 1
                # We resolve every frame ourselves: has_functions tells pprof
                # not to look for the binary to symbolize it again.
                out.mapping.add(id=mapping_id, filename=string(frame.module), has_functions=True)
        key = (frame.name, frame.module)
        function_id = functions.get(key)
        if function_id is None:
            function_id = functions[key] = len(functions) + 1
            out.function.add(id=function_id, name=string(frame.name),
                             system_name=string(frame.name),
                             filename=string(frame.module) if python else 0)  # fmt: skip
        # One Location per frame, line included: Functions group a Python function's
        # lines (pprof's views by function) while each Location keeps its own Line.line.
        loc_id = locations[frame] = len(locations) + 1
        loc = out.location.add(id=loc_id, mapping_id=mapping_id, address=frame.offset)
        loc.line.add(function_id=function_id, line=frame.line)
        return loc_id

    pid_key, comm_key, thread_key, tid_key = (string(k) for k in ("pid", "comm", "thread", "tid"))
    for sample, values in rows:
        if not any(values):
            continue
        if max(values) > _INT64_MAX:
            raise ValueError(
                f"a sample value of {max(values)} does not fit pprof's signed 64-bit values: "
                "export a shorter time range or another format"
            )
        message = out.sample.add(
            location_id=[location(f) for f in reversed(sample.stack)], value=values
        )
        if sample.pid:
            message.label.add(key=pid_key, num=sample.pid)
        if sample.tid:
            message.label.add(key=tid_key, num=sample.tid)
        if sample.comm:
            message.label.add(key=comm_key, str=string(sample.comm))
        if sample.thread:
            message.label.add(key=thread_key, str=string(sample.thread))
    out.time_nanos = profile.start_ns
    out.duration_nanos = max(0, profile.end_ns - profile.start_ns)
    out.string_table.extend(table)
    return out


def to_pprof(profile: Profile) -> bytes:
    """The gzip-compressed pprof file of a profile of any type with stacks."""
    # mtime=0: the same profile always gives the same bytes.
    return gzip.compress(to_pprof_message(profile).SerializeToString(), mtime=0)


# ---------------------------------------------------------------------------
# Reading


_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(data: bytes, max_bytes: int, what: str) -> bytes:
    """At most ``max_bytes + 1`` bytes of gzip ``data`` inflated: more means over the limit."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            return f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise MalformedPprof(f"the {what}'s gzip data is damaged or truncated ({exc})") from None


def inflate(data: bytes, *, max_bytes: int = MAX_INFLATED_BYTES, what: str = "profile") -> bytes:
    """``data`` un-gzipped if it is gzip, refusing damage and more than ``max_bytes``."""
    if data[:2] != _GZIP_MAGIC:
        return data
    raw = _gunzip(data, max_bytes, what)
    if len(raw) > max_bytes:
        raise MalformedPprof(f"the {what} inflates to more than {max_bytes} bytes")
    return raw


# Profile's repeated top-level fields -> the limit each counts against.
_COUNTED = {2: "samples", 3: "mappings", 4: "locations", 5: "functions", 6: "strings"}


def _parse(message: Message, raw: bytes) -> None:
    try:
        message.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedPprof(f"not a pprof profile ({exc})") from None


def read_pprof(
    data: bytes,
    *,
    max_bytes: int = MAX_INFLATED_BYTES,
    budget: Budget | None = None,
    number_functions: bool = False,
) -> pb.Profile:
    """Bytes (gzip or raw) to a checked pprof message; :class:`MalformedPprof` otherwise.

    ``budget``: what the request may still carry (:class:`PprofTooLarge` past it);
    none: this profile alone against the default limits. ``number_functions``: a
    profile whose functions all have id 0 (Pyroscope's old .NET profiler, whose
    lines then name functions by position) has them numbered 1, 2, ... in order,
    as Pyroscope's legacy ingest does; otherwise id 0 is refused.
    """
    budget = budget or Budget()
    if not data:
        raise MalformedPprof("the profile is empty")
    if len(data) > max_bytes:
        raise MalformedPprof(f"the profile is larger than {max_bytes} bytes")
    limit = min(max_bytes, budget.left("inflated_bytes"))
    raw = data
    # A .pb.gz sent with gzip content-encoding arrives compressed twice.
    for _ in range(2):
        if raw[:2] == _GZIP_MAGIC and len(raw) <= limit:
            raw = _gunzip(raw, limit, "profile")
    if len(raw) > max_bytes:
        raise MalformedPprof(f"the profile inflates to more than {max_bytes} bytes")
    try:
        budget.spend("inflated_bytes", len(raw))
        counts = count_fields(raw, {n: budget.left(what) for n, what in _COUNTED.items()})
        for number, what in _COUNTED.items():
            budget.spend(what, counts[number])
        message = pb.Profile()
        _parse(message, raw)
        if number_functions and message.function and not any(f.id for f in message.function):
            for i, fn in enumerate(message.function, start=1):
                fn.id = i
        check(message, budget)
    except TooLarge as exc:
        raise PprofTooLarge(str(exc)) from None
    return message


def check(p: pb.Profile, budget: Budget | None = None) -> None:
    """Refuse a profile with a dangling string, mapping, location or function reference.

    Its location lines, stack frames and sample labels are counted against
    ``budget`` (:class:`TooLarge` past it) as they are checked.
    """
    budget = budget or Budget()
    n = len(p.string_table)
    if n == 0 or p.string_table[0] != "":
        raise MalformedPprof(
            "not a pprof profile: its string table must start with an empty string"
        )
    if not p.sample_type:
        raise MalformedPprof("not a pprof profile: it declares no sample types")

    def string(index: int, what: str) -> None:
        if not 0 <= index < n:
            raise MalformedPprof(f"{what} refers to string {index}, but the table has {n}")

    for i, vt in enumerate(p.sample_type):
        string(vt.type, f"sample type {i}")
        string(vt.unit, f"sample type {i} unit")
    string(p.period_type.type, "the period type")
    string(p.period_type.unit, "the period unit")
    string(p.drop_frames, "drop_frames")
    string(p.keep_frames, "keep_frames")
    string(p.default_sample_type, "default_sample_type")
    for i, comment in enumerate(p.comment):
        string(comment, f"comment {i}")
    mapping_ids = _ids((m.id for m in p.mapping), "mapping")
    for m in p.mapping:
        string(m.filename, f"mapping {m.id} file name")
        string(m.build_id, f"mapping {m.id} build id")
    function_ids = _ids((f.id for f in p.function), "function")
    for fn in p.function:
        string(fn.name, f"function {fn.id} name")
        string(fn.system_name, f"function {fn.id} system name")
        string(fn.filename, f"function {fn.id} file name")
    _ids((loc.id for loc in p.location), "location")
    budget.spend("lines", sum(len(loc.line) for loc in p.location))
    # Location id -> the frames it stands for (one per line, inlined callers included).
    frames_of: dict[int, int] = {}
    for loc in p.location:
        if loc.mapping_id and loc.mapping_id not in mapping_ids:
            raise MalformedPprof(f"location {loc.id} refers to mapping {loc.mapping_id}, "
                                 "which the profile does not have")  # fmt: skip
        for line in loc.line:
            if line.function_id not in function_ids:
                raise MalformedPprof(f"location {loc.id} refers to function {line.function_id}, "
                                     "which the profile does not have")  # fmt: skip
        frames_of[loc.id] = max(1, len(loc.line))
    n_types = len(p.sample_type)
    frames = labels = 0
    frames_left, labels_left = budget.left("frames"), budget.left("labels")
    for i, sample in enumerate(p.sample):
        if len(sample.value) != n_types:
            raise MalformedPprof(
                f"sample {i} has {len(sample.value)} values for {n_types} sample types"
            )
        for loc_id in sample.location_id:
            count = frames_of.get(loc_id)
            if count is None:
                raise MalformedPprof(
                    f"sample {i} refers to location {loc_id}, which the profile does not have"
                )
            frames += count
        labels += len(sample.label)
        if frames > frames_left or labels > labels_left:
            break  # spent below, which refuses
        for label in sample.label:
            string(label.key, f"a label of sample {i}")
            string(label.str, f"a label value of sample {i}")
            string(label.num_unit, f"a label unit of sample {i}")
    budget.spend("frames", frames)
    budget.spend("labels", labels)


def _ids(ids: Iterable[int], what: str) -> set[int]:
    seen: set[int] = set()
    for id_ in ids:
        if id_ == 0:
            raise MalformedPprof(f"a {what} has id 0 (ids must be nonzero)")
        if id_ in seen:
            raise MalformedPprof(f"two {what}s have id {id_} (ids must be unique)")
        seen.add(id_)
    return seen


@dataclass
class Imported:
    """Samples of one pprof that share one set of (string) sample labels, of one type."""

    profile: Profile
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the pprof column it came from ("alloc_space/bytes")
    columns: tuple[int, ...] = ()  # the pprof value columns it stands for


@dataclass(frozen=True)
class Column:
    """How one pprof value column becomes one of our profile types."""

    event_type: EventType
    index: int  # the value column kept (the wait time for locks)
    source: str  # the column's own ``type/unit``, as the answer names it
    covers: tuple[int, ...] = ()  # every column it stands for (samples and cpu time)
    contentions: int = -1  # lock profiles: the contention count's column
    scale: int = 1  # a time unit -> nanoseconds, before divide_by
    divide_by: int = 1  # cpu/nanoseconds -> samples
    multiply_by: int = 1  # microseconds -> nanoseconds, samples -> wall time
    frequency_hz: int = 0

    def convert(self, value: int) -> int:
        """A value of the column in our unit (a nonzero CPU time is at least one sample)."""
        value *= self.scale
        if self.divide_by > 1 and value:
            value = max(1, round(value / self.divide_by))
        return value * self.multiply_by


class UnknownSampleType(ValueError):
    """A pprof value column no profile type of ours stands for (never filed under another)."""


# A pprof we wrote names its profile type in a comment, so a contentions/delay pair comes
# back as our lock type and not as Go's mutex profile, which has the same sample types.
TYPE_COMMENT = "aperture.type="
NS_PER_UNIT = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000,
               "seconds": 1_000_000_000}  # fmt: skip
_SAMPLE_NAMES = frozenset({"samples", "sample"})


@dataclass(frozen=True)
class SampleTypeConfig:
    """Pyroscope's ``sample_type_config``: which columns to keep and what they are called.

    ``{"alloc_samples": {"display-name": "alloc_objects", ...}, ...}``: only the
    sample types it names are kept, each under its display name when it has one.
    """

    names: dict[str, str]

    @classmethod
    def parse(cls, data: bytes | str) -> SampleTypeConfig:
        import json

        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"the sample_type_config is not JSON ({exc})") from None
        except RecursionError:
            raise ValueError("the sample_type_config is nested too deeply to be one") from None
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise ValueError(
                "the sample_type_config must be a JSON object of sample type -> settings"
            )
        return cls({str(k): str(v.get("display-name") or k) for k, v in raw.items()})


def _types_of(p: pb.Profile, config: SampleTypeConfig | None) -> list[tuple[int, str, str]]:
    """(column, type, unit) of every column that has a nonzero value, config applied."""
    s = p.string_table
    nonzero = [False] * len(p.sample_type)
    for sample in p.sample:
        for i, v in enumerate(sample.value):
            if v:
                nonzero[i] = True
    out = []
    for i, vt in enumerate(p.sample_type):
        name, unit = s[vt.type], s[vt.unit]
        if config is not None:
            if name not in config.names:
                continue
            name = config.names[name]
        if nonzero[i]:
            out.append((i, name, unit))
    return out


def _marked_type(p: pb.Profile) -> EventType | None:
    for index in p.comment:
        text = p.string_table[index]
        if text.startswith(TYPE_COMMENT):
            try:
                return EventType(text[len(TYPE_COMMENT) :])
            except ValueError:
                return None
    return None


def columns(
    p: pb.Profile, *, config: SampleTypeConfig | None = None, hint: str = ""
) -> list[Column]:
    """Which of our types a checked pprof's columns become, one :class:`Column` each.

    A column without a nonzero value is left out; a column no type of ours stands
    for refuses the whole profile (:class:`UnknownSampleType`). ``hint`` is the
    sender's name for the profile (Pyroscope's ``__name__``, the legacy name's type,
    ``kind=``): a Go contentions/delay pair is a mutex profile if it says ``mutex``,
    a block profile if ``block``, and refused if it says neither (the two are alike).
    """
    s = p.string_table
    present = _types_of(p, config)
    period = p.period if p.period > 0 else 0
    period_type, period_unit = s[p.period_type.type], s[p.period_type.unit]
    period_ns = period * NS_PER_UNIT[period_unit] if period_unit in NS_PER_UNIT else 0
    marked = _marked_type(p)
    by_name = {(name, unit): i for i, name, unit in present}
    out: list[Column] = []
    taken: set[int] = set()

    def take(column: Column, *also: int) -> None:
        covers = tuple(sorted({column.index, *also} - {-1}))
        out.append(dataclasses.replace(column, covers=covers))
        taken.update(covers)

    if marked is EventType.LOCK or (marked is None and hint == "lock"):
        delay = by_name.get((LOCK_DELAY.type, LOCK_DELAY.unit), -1)
        count = by_name.get((LOCK_CONTENTIONS.type, LOCK_CONTENTIONS.unit), -1)
        if delay >= 0 or count >= 0:
            take(Column(EventType.LOCK, delay, "delay/nanoseconds", contentions=count), count)
    for column in sampled_time([c for c in present if c[0] not in taken], period_type, period_ns):
        take(column, *column.covers)
    kind = next((k for k in ("mutex", "block") if k in hint), "")
    if marked in (EventType.BLOCK_CONTENTIONS, EventType.BLOCK_DELAY):
        kind = "block"
    elif marked in (EventType.MUTEX_CONTENTIONS, EventType.MUTEX_DELAY):
        kind = "mutex"
    for i, name, unit in present:
        if i in taken:
            continue
        event_type = registry_type(name, unit, marked=marked, hint=kind)
        if event_type is None and len(registry_types(name, unit)) > 1:
            raise UnknownSampleType(
                f"sample type {name}/{unit} is in Go's mutex profiles (delay at the unlock of "
                "a contended mutex) and its block profiles (time waiters were blocked) alike: "
                "say which this is (kind=mutex or kind=block; aperture import or convert "
                "--kind; Pyroscope's __name__)"
            )
        if event_type is None:
            raise UnknownSampleType(
                f"sample type {name}/{unit} (value {i}) is not a profile type Aperture "
                f"knows ({known_sample_types()})"
            )
        take(Column(event_type, i, f"{name}/{unit}"))
    return out


def sampled_time(
    present: Sequence[tuple[int, str, str]], period_type: str, period_ns: int
) -> list[Column]:
    """The columns of ``present`` ((index, type, unit)) that are time sampled at a period:
    CPU, kept in samples at 1e9 / period Hz (``samples/count``; a CPU time column beside
    it is the same data; alone, divided by the period, or 1 ns a sample without one), or
    wall time in nanoseconds (a ``wall`` time column, or samples of a ``wall`` period).
    The rules every reader of sampled profiles shares (pprof, OTLP)."""
    cpu_time = next((i for i, n, u in present if n == "cpu" and u in NS_PER_UNIT), None)
    wall = next((i for i, n, u in present if n == "wall" and u in NS_PER_UNIT), None)
    counts = next((i for i, n, u in present if n in _SAMPLE_NAMES and u == "count"), None)
    names = {i: (n, u) for i, n, u in present}
    out: list[Column] = []

    def with_covers(column: Column, *also: int | None) -> None:
        covers = {column.index, *(a for a in also if a is not None)}
        out.append(dataclasses.replace(column, covers=tuple(sorted(covers))))

    walled = wall is not None or (counts is not None and period_type == "wall")
    if wall is not None:
        unit = names[wall][1]
        # samples of the wall period are the same data
        with_covers(Column(EventType.WALL, wall, f"wall/{unit}", scale=NS_PER_UNIT[unit]), counts)
    elif walled and counts is not None and period_ns:
        with_covers(Column(EventType.WALL, counts, f"{names[counts][0]}/count",
                           multiply_by=period_ns))  # fmt: skip
    if counts is not None and not walled:
        freq = round(1e9 / period_ns) if period_ns else 0
        with_covers(Column(EventType.CPU, counts, f"{names[counts][0]}/count",
                           frequency_hz=freq), cpu_time)  # fmt: skip
    elif cpu_time is not None:  # CPU time beside wall time, or alone
        unit = names[cpu_time][1]
        per = period_ns if period_ns and period_type in ("cpu", "") else 1
        with_covers(Column(EventType.CPU, cpu_time, f"cpu/{unit}", scale=NS_PER_UNIT[unit],
                           divide_by=per, frequency_hz=round(1e9 / per)))  # fmt: skip
    return out


def registry_types(name: str, unit: str) -> list[EventType]:
    """Our types whose pprof sample type (or an alias of it) is ``name/unit``: one, or
    none, or for Go's contentions/delay both the mutex and the block type."""
    return [
        t.event_type
        for t in stack_types()
        if any(vt.type == name and vt.unit in (unit, "") for vt in (*t.pprof, *t.aliases))
    ]


def registry_type(name: str, unit: str, *, marked: EventType | None = None,
                  hint: str = "") -> EventType | None:  # fmt: skip
    """Our one type for ``name/unit``: the ``marked`` one or the one ``hint`` names (mutex,
    block) when the sample type alone cannot tell; None when there is none, or no way to
    tell (:func:`registry_types` says which)."""
    found = registry_types(name, unit)
    if marked in found:
        return marked
    if len(found) > 1:
        found = [t for t in found if hint and t.value.startswith(hint)]
    return found[0] if len(found) == 1 else None


def known_sample_types() -> str:
    """The sample types an import maps to a type of ours, for the sentence refusing another."""
    names = {f"{vt.type}/{vt.unit}" for t in stack_types() for vt in (*t.pprof, *t.aliases)}
    return ", ".join(sorted(names)) + "; samples/count and cpu/<time> (CPU), wall/<time>"


class _Frames:
    """Location id -> its frames, leaf first (inlined functions before their caller)."""

    def __init__(self, p: pb.Profile) -> None:
        s = p.string_table
        self._strings = s
        self._mappings = {m.id: m for m in p.mapping}
        self._functions = {fn.id: fn for fn in p.function}
        self._locations = {loc.id: loc for loc in p.location}
        self._cache: dict[int, tuple[Frame, ...]] = {}

    def __call__(self, loc_id: int) -> tuple[Frame, ...]:
        frames = self._cache.get(loc_id)
        if frames is None:
            frames = self._cache[loc_id] = self._resolve(loc_id)
        return frames

    def _resolve(self, loc_id: int) -> tuple[Frame, ...]:
        s = self._strings
        loc = self._locations[loc_id]
        mapping = self._mappings.get(loc.mapping_id)
        module_name = ""
        offset = loc.address
        if mapping is not None:
            module_name = module_basename(s[mapping.filename])
            if mapping.memory_start <= loc.address < mapping.memory_limit:
                offset = loc.address - mapping.memory_start + mapping.file_offset
        if not loc.line:
            name = f"{module_name or '[unknown]'}+0x{offset:x}"
            return (Frame(name, module_name or "[unknown]", frame_kind(module_name), offset),)
        frames = []
        for line in loc.line:
            fn = self._functions[line.function_id]
            name = s[fn.name] or s[fn.system_name]
            file_module = module_name or module_basename(s[fn.filename])
            if not name:
                name = f"{file_module or '[unknown]'}+0x{offset:x}"
            frames.append(
                Frame(name, file_module, frame_kind(file_module), offset, max(0, line.line))
            )
        return tuple(frames)


def module_basename(path: str) -> str:
    return PurePosixPath(path).name if path and not path.startswith("[") else path


def frame_kind(module: str) -> FrameKind:
    if module == "[jit]":
        return FrameKind.JIT
    if module in ("", "[unknown]"):
        return FrameKind.UNKNOWN if module else FrameKind.USER
    if module.startswith("[") and module not in _USER_PSEUDO:
        return FrameKind.KERNEL  # [kernel], [kernel.kallsyms], [ext4], ...
    return FrameKind.USER


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


_SampleKey = tuple[int, int, str, str, tuple[Frame, ...]]  # pid, tid, comm, thread, stack
_GroupKey = tuple[int, tuple[tuple[str, str], ...]]  # column, label set


def _merged(buckets: Iterable[dict[_SampleKey, list[int]]]) -> dict[_SampleKey, list[int]]:
    """Samples of several label sets in one, their values summed."""
    merged: dict[_SampleKey, list[int]] = {}
    for bucket in buckets:
        for sample_key, (value, count) in bucket.items():
            acc = merged.setdefault(sample_key, [0, 0])
            acc[0] += value
            acc[1] += count
    return merged


def normalize_time_ns(value: int) -> tuple[int, int]:
    """(nanoseconds, scale) of a ``time_nanos`` a tool wrote in seconds, ms or us instead
    (told apart by size, as Pyroscope does: py-spy writes microseconds). Its
    ``duration_nanos`` is taken to be in the same unit when that makes at most a day."""
    for limit, scale in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
        if 0 < value < limit:
            return value * scale, scale
    return value, 1


def from_pprof_message(
    p: pb.Profile,
    *,
    comm: str = "",
    now_ns: int | None = None,
    config: SampleTypeConfig | None = None,
    hint: str = "",
) -> list[Imported]:
    """Profiles of a checked pprof message: one per type its columns stand for
    (:func:`columns`) and distinct set of sample string labels.

    ``comm`` names the process of samples without a ``comm`` label (the service
    name); a profile without ``time_nanos`` is taken to end at ``now_ns``.
    """
    s = p.string_table
    cols = columns(p, config=config, hint=hint)
    frames = _Frames(p)
    start, scale = normalize_time_ns(p.time_nanos)
    duration = max(0, p.duration_nanos)
    if duration * scale <= _DAY_NS:  # a duration in the same unit as the time, if it fits
        duration *= scale
    if start + duration > _INT64_MAX:
        raise MalformedPprof(
            f"its time_nanos ({p.time_nanos}) and duration_nanos ({p.duration_nanos}) end "
            "past the year 2262: not a time a profile was taken"
        )
    if p.time_nanos <= 0:
        start = (time.time_ns() if now_ns is None else now_ns) - duration
    # (column, label set) -> {(pid, tid, comm, thread, stack): [value, contentions]}
    groups: dict[_GroupKey, dict[_SampleKey, list[int]]] = {}
    label_sets: set[tuple[tuple[str, str], ...]] = set()
    # Past MAX_LABEL_SETS every sample goes to one set without labels, from then on too.
    labelled = True
    for i, sample in enumerate(p.sample):
        values = sample.value
        if any(v < 0 for v in values):
            raise MalformedPprof(
                f"sample {i} has a negative value: a difference of profiles cannot be imported"
            )
        pid = tid = 0
        comm_of, thread = comm, ""
        extra: dict[str, str] = {}
        for label in sample.label:
            key = s[label.key]
            text = s[label.str]
            if key in _PID_KEYS:
                pid = label.num or _int(text)
            elif key in _TID_KEYS:
                tid = label.num or _int(text)
            elif key in _COMM_KEYS and text:
                comm_of = text
            elif key in _THREAD_KEYS and text:
                thread = text
            elif text and key and labelled:
                extra[key] = text
        stack: list[Frame] = []
        for loc_id in reversed(sample.location_id):
            stack.extend(reversed(frames(loc_id)))
        label_key = tuple(sorted(extra.items()))
        if label_key not in label_sets:
            if len(label_sets) < MAX_LABEL_SETS:
                label_sets.add(label_key)
            else:
                merged: dict[
                    tuple[int, tuple[tuple[str, str], ...]], list[dict[_SampleKey, list[int]]]
                ] = {}
                for (c, _), bucket in groups.items():
                    merged.setdefault((c, ()), []).append(bucket)
                groups = {k: _merged(v) for k, v in merged.items()}
                label_sets, labelled, label_key = {()}, False, ()
        sample_key = (pid, tid, comm_of, thread, tuple(stack))
        for c, col in enumerate(cols):
            value = col.convert(values[col.index]) if col.index >= 0 else 0
            count = values[col.contentions] if col.contentions >= 0 else 0
            if not value and not count:
                continue
            acc = groups.setdefault((c, label_key), {}).setdefault(sample_key, [0, 0])
            acc[0] += value
            acc[1] += count
    out = []
    for (c, label_key), bucket in groups.items():
        col = cols[c]
        profile = Profile(col.event_type, value_unit(col.event_type), start_ns=start,
                          end_ns=start + duration, frequency_hz=col.frequency_hz)  # fmt: skip
        if col.event_type is EventType.LOCK:
            profile.locks = [
                LockStat(pid=pid, comm=c_, address=0, stack=stack, contentions=n, wait_ns=wait)
                for (pid, _tid, c_, _thread, stack), (wait, n) in bucket.items()
            ]
            profile.samples = lock_samples(profile.locks)
        else:
            profile.samples = [
                Sample(stack, value, pid=pid, tid=tid, comm=c_, thread=thread)
                for (pid, tid, c_, thread, stack), (value, _n) in bucket.items()
                if value
            ]
        out.append(Imported(profile, dict(label_key), col.source, col.covers))
    return out


def from_pprof(
    data: bytes,
    *,
    comm: str = "",
    now_ns: int | None = None,
    max_bytes: int = MAX_INFLATED_BYTES,
    budget: Budget | None = None,
    config: SampleTypeConfig | None = None,
    hint: str = "",
) -> list[Imported]:
    """Profiles of pprof bytes (gzip or raw); :class:`MalformedPprof` says what is wrong,
    :class:`UnknownSampleType` which column no type of ours stands for."""
    message = read_pprof(data, max_bytes=max_bytes, budget=budget)
    return from_pprof_message(message, comm=comm, now_ns=now_ns, config=config, hint=hint)
