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

import gzip
import io
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from google.protobuf.message import DecodeError, Message

from aperture.formats.limits import Budget, TooLarge
from aperture.formats.protoscan import count_fields
from aperture.model import EventType, Frame, FrameKind, LockStat, Profile, Sample
from aperture.profile_types import (
    CPU_SAMPLES,
    CPU_TIME,
    LOCK_CONTENTIONS,
    LOCK_DELAY,
    PROFILE_TYPES,
    SampleType,
    stack_types,
)
from aperture.proto.pprof import profile_pb2 as pb
from aperture.transforms import lock_samples

# A pprof of this many bytes once inflated is not a profile any tool would write
# in one piece; refusing it bounds the memory a hostile gzip can make us spend.
MAX_INFLATED_BYTES = 64 << 20
_INT64_MAX = 2**63 - 1  # pprof sample values are int64
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
    """The ``perftools.profiles.Profile`` message of a CPU or lock profile."""
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
    elif profile.unit in ("samples", "count"):
        if period_ns:
            declare(kind.pprof, period_ns)  # samples, cpu time
            rows = [(s, [s.value, s.value * period_ns]) for s in profile.samples]
        else:
            declare(kind.pprof[:1], 0)
            rows = [(s, [s.value]) for s in profile.samples]
    else:
        # A CPU-like profile imported with another unit (bytes, ...) keeps it.
        name = profile.labels.get("sample_type", "value")
        out.sample_type.add(type=string(name), unit=string(profile.unit))
        rows = [(s, [s.value]) for s in profile.samples]

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
    """The gzip-compressed pprof file of a CPU or lock profile."""
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
    data: bytes, *, max_bytes: int = MAX_INFLATED_BYTES, budget: Budget | None = None
) -> pb.Profile:
    """Bytes (gzip or raw) to a checked pprof message; :class:`MalformedPprof` otherwise.

    ``budget``: what the request may still carry (:class:`PprofTooLarge` past it);
    none: this profile alone against the default limits.
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
    """Samples of one pprof that share one set of (string) sample labels."""

    profile: Profile
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Kind:
    """How one pprof's sample values become ours."""

    event_type: EventType
    unit: str
    value: int  # index of the value to keep (the wait time for locks)
    contentions: int = -1  # lock profiles: index of the contention count
    divide_by: int = 1  # cpu/nanoseconds -> samples
    frequency_hz: int = 0
    sample_type: str = ""


def _kind(p: pb.Profile) -> _Kind:
    """Pick the event type: samples or cpu -> CPU, contentions/delay -> LOCK, else the first."""
    s = p.string_table
    types = [(s[vt.type], s[vt.unit]) for vt in p.sample_type]
    period = p.period if p.period > 0 else 0
    period_is_ns = s[p.period_type.unit] == "nanoseconds"
    freq = round(1e9 / period) if period and period_is_ns else 0
    names = [t for t, _ in types]
    if LOCK_CONTENTIONS.type in names or LOCK_DELAY.type in names:
        delay = names.index(LOCK_DELAY.type) if LOCK_DELAY.type in names else -1
        count = names.index(LOCK_CONTENTIONS.type) if LOCK_CONTENTIONS.type in names else -1
        return _Kind(EventType.LOCK, LOCK_DELAY.unit, delay, count, sample_type=LOCK_DELAY.type)
    for t in stack_types():  # a registry type's own sample type (off_cpu/nanoseconds, ...)
        for vt in t.pprof:
            if (vt.type, vt.unit) in types:
                return _Kind(t.event_type, vt.unit, types.index((vt.type, vt.unit)))
    if (CPU_SAMPLES.type, CPU_SAMPLES.unit) in types:
        return _Kind(EventType.CPU, "samples", types.index((CPU_SAMPLES.type, CPU_SAMPLES.unit)),
                     frequency_hz=freq)  # fmt: skip
    if (CPU_TIME.type, CPU_TIME.unit) in types:
        index = types.index((CPU_TIME.type, CPU_TIME.unit))
        if freq:
            return _Kind(EventType.CPU, "samples", index, divide_by=period, frequency_hz=freq)
        return _Kind(EventType.CPU, "nanoseconds", index, sample_type="cpu")
    first, unit = types[0]
    return _Kind(EventType.CPU, unit or "count", 0, sample_type=first)


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
            module_name = _basename(s[mapping.filename])
            if mapping.memory_start <= loc.address < mapping.memory_limit:
                offset = loc.address - mapping.memory_start + mapping.file_offset
        if not loc.line:
            name = f"{module_name or '[unknown]'}+0x{offset:x}"
            return (Frame(name, module_name or "[unknown]", _frame_kind(module_name), offset),)
        frames = []
        for line in loc.line:
            fn = self._functions[line.function_id]
            name = s[fn.name] or s[fn.system_name]
            file_module = module_name or _basename(s[fn.filename])
            if not name:
                name = f"{file_module or '[unknown]'}+0x{offset:x}"
            frames.append(
                Frame(name, file_module, _frame_kind(file_module), offset, max(0, line.line))
            )
        return tuple(frames)


def _basename(path: str) -> str:
    return PurePosixPath(path).name if path and not path.startswith("[") else path


def _frame_kind(module: str) -> FrameKind:
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


def _merged(buckets: Iterable[dict[_SampleKey, list[int]]]) -> dict[_SampleKey, list[int]]:
    """Samples of several label sets in one, their values summed."""
    merged: dict[_SampleKey, list[int]] = {}
    for bucket in buckets:
        for sample_key, (value, count) in bucket.items():
            acc = merged.setdefault(sample_key, [0, 0])
            acc[0] += value
            acc[1] += count
    return merged


def from_pprof_message(
    p: pb.Profile, *, comm: str = "", now_ns: int | None = None
) -> list[Imported]:
    """Profiles of a checked pprof message, one per distinct set of sample string labels.

    ``comm`` names the process of samples without a ``comm`` label (the service
    name); a profile without ``time_nanos`` is taken to end at ``now_ns``.
    """
    s = p.string_table
    kind = _kind(p)
    frames = _Frames(p)
    duration = max(0, p.duration_nanos)
    if p.time_nanos > 0:
        start = p.time_nanos
    else:
        start = (time.time_ns() if now_ns is None else now_ns) - duration
    # (label set) -> {(pid, tid, comm, thread, stack): [value, contentions]}
    groups: dict[tuple[tuple[str, str], ...], dict[_SampleKey, list[int]]] = {}
    # Past MAX_LABEL_SETS every sample goes to one set without labels, from then on too.
    labelled = True
    for i, sample in enumerate(p.sample):
        values = sample.value
        value = values[kind.value] if kind.value >= 0 else 0
        count = values[kind.contentions] if kind.contentions >= 0 else 0
        if value < 0 or count < 0:
            raise MalformedPprof(
                f"sample {i} has a negative value: a difference of profiles cannot be imported"
            )
        if kind.divide_by > 1 and value:
            value = max(1, round(value / kind.divide_by))
        if not value and not count:
            continue
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
        bucket = groups.get(label_key)
        if bucket is None:
            if len(groups) < MAX_LABEL_SETS:
                bucket = groups[label_key] = {}
            else:
                groups, labelled = {(): _merged(groups.values())}, False
                bucket = groups[()]
        acc = bucket.setdefault((pid, tid, comm_of, thread, tuple(stack)), [0, 0])
        acc[0] += value
        acc[1] += count
    out = []
    for label_key, bucket in groups.items():
        profile = Profile(kind.event_type, kind.unit, start_ns=start, end_ns=start + duration,
                          frequency_hz=kind.frequency_hz)  # fmt: skip
        if kind.sample_type:
            profile.labels["sample_type"] = kind.sample_type
        if kind.event_type is EventType.LOCK:
            profile.locks = [
                LockStat(pid=pid, comm=c, address=0, stack=stack, contentions=n, wait_ns=wait)
                for (pid, _tid, c, _thread, stack), (wait, n) in bucket.items()
            ]
            profile.samples = lock_samples(profile.locks)
        else:
            profile.samples = [
                Sample(stack, value, pid=pid, tid=tid, comm=c, thread=thread)
                for (pid, tid, c, thread, stack), (value, _n) in bucket.items()
                if value
            ]
        out.append(Imported(profile, dict(label_key)))
    return out


def from_pprof(
    data: bytes,
    *,
    comm: str = "",
    now_ns: int | None = None,
    max_bytes: int = MAX_INFLATED_BYTES,
    budget: Budget | None = None,
) -> list[Imported]:
    """Profiles of pprof bytes (gzip or raw); :class:`MalformedPprof` says what is wrong."""
    message = read_pprof(data, max_bytes=max_bytes, budget=budget)
    return from_pprof_message(message, comm=comm, now_ns=now_ns)
