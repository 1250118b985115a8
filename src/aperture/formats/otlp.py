"""OpenTelemetry profiles (an OTLP ``ExportProfilesServiceRequest``) read into our profiles.

What the OpenTelemetry eBPF profiler pushes. The wire format is opentelemetry-proto
1.10's profiles ``v1development`` (vendored in :mod:`aperture.proto.otlp`): one
``ProfilesDictionary`` per request holds the strings, mappings, locations,
functions, stacks and attributes every profile's samples point into. 1.9 and
older number ``Sample``'s fields differently: read as 1.10, their samples have
neither values nor timestamps, or dangling indices, and the request is refused.

How a request becomes our profiles:

- Sample types (one per OTLP profile) follow pprof's reader: ``samples/count``
  is CPU in samples at the ``cpu/nanoseconds`` period's frequency (50 ms: 20
  Hz), wall time when the period type is ``wall``; ``cpu/<time unit>`` is CPU
  in samples (value / period); ``off_cpu/<time unit>`` (``events/...`` in older
  eBPF profilers) is off-CPU in nanoseconds; any other is the registry's type
  of that pprof sample type. A type that is none of these refuses the request,
  naming it (:class:`UnknownOtlpSampleType`): never filed under another type.
- A sample's value is its ``values`` summed, or one per timestamp (OTLP's rule).
- Stacks are root first (OTLP's are leaf first, inlined functions first).
  ``profile.frame.type`` gives the kind: ``kernel`` -> KERNEL in ``[kernel]``
  (vmlinux) or ``[module]``; ``native``/``go``/``rust`` -> USER in the mapping's
  base name; ``cpython`` -> PYTHON and the managed runtimes (``jvm``, ``v8js``,
  ``dotnet``, ``beam``, ``php``, ``ruby``, ``perl``) -> JIT, both in their
  source file (a JIT frame without one: ``[jit]``) at offset 0. Without a type,
  the module decides as in pprof's reader. No function name: ``module+0xoffset``.
- ``process.pid``, ``process.executable.name``, ``thread.id`` and ``thread.name``
  (of the sample or its resource) fill Sample.pid, comm, tid and thread; a
  process without an executable (a kernel thread) is named after its main
  thread, as Linux names it. Other ``process.*``/``thread.*`` attributes are
  dropped; every other scalar attribute of a resource, scope or profile, and
  string attribute of a sample, is a label under its OTLP key. A resource without
  ``service.name`` gets OpenTelemetry's default, ``unknown_service:<executable>``
  (``unknown_service`` without one), as Pyroscope names it too.
- Samples of one type and label set make one :class:`OtlpProfile` (a request
  has a profile per process); past :data:`~aperture.formats.pprof.MAX_LABEL_SETS`
  sets the labels are dropped, the samples kept. It spans the profiles'
  ``time_unix_nano`` + ``duration_nano``, widened to their samples' timestamps.

The request is counted against a :class:`~aperture.formats.limits.Budget` like a
pprof: its size, then its samples and dictionary tables off the wire (before
parsing), then its lines, stack frames and sample attributes (before any Python
object per sample is built). Every index is checked as it is followed; any fault
is one :class:`MalformedOtlp` sentence and nothing of the request is returned.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import DecodeError

from aperture.formats.limits import Budget, TooLarge
from aperture.formats.pprof import (
    MAX_INFLATED_BYTES,
    MAX_LABEL_SETS,
    NS_PER_UNIT,
    Column,
    MalformedPprof,
    frame_kind,
    inflate,
    known_sample_types,
    module_basename,
    registry_type,
    sampled_time,
)
from aperture.formats.protoscan import count_fields, payloads
from aperture.model import EventType, Frame, FrameKind, Profile, Sample
from aperture.profile_types import value_unit
from aperture.proto.otlp import common_pb2, profiles_pb2
from aperture.proto.otlp import profiles_service_pb2 as pb


class MalformedOtlp(ValueError):
    """Bytes that are not an OTLP profiles request we can store; the message says why."""


class OtlpTooLarge(MalformedOtlp, TooLarge):
    """A request past what is left of its :class:`Budget` (answered 413)."""


class UnknownOtlpSampleType(MalformedOtlp):
    """A profile whose sample type no profile type of ours stands for (never filed under
    another): the whole request is refused."""


@dataclass
class OtlpProfile:
    """The samples of one profile type that share one set of labels."""

    profile: Profile
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the OTLP sample type it came from ("samples/count")


_PID, _COMM, _TID, _THREAD = "process.pid", "process.executable.name", "thread.id", "thread.name"
_FRAME_TYPE = "profile.frame.type"
_FRAME_KINDS = {
    "kernel": FrameKind.KERNEL,
    "native": FrameKind.USER, "go": FrameKind.USER, "rust": FrameKind.USER,
    "cpython": FrameKind.PYTHON, "python": FrameKind.PYTHON,
    **dict.fromkeys(("jvm", "v8js", "dotnet", "beam", "php", "ruby", "perl"), FrameKind.JIT),
}  # fmt: skip
_HINT = ": the request is damaged, or from an opentelemetry-proto older than 1.10"
_STRING_VALUES = ("string_value", "string_value_strindex")
_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# Bytes to a counted, parsed request


def _refuse_past(budget: Budget, what: str, count: int) -> None:
    """Refuse ``count`` of ``what`` past its limit, spending nothing (tables, containers)."""
    if count > int(getattr(budget.limits, what)):
        Budget(budget.limits).spend(what, count)  # raises, with the limit's sentence


def _nested(parents: Iterable[bytes], number: int, budget: Budget) -> list[bytes]:
    """Field ``number`` of every parent message (at most as many as the samples allowed)."""
    limit = budget.limits.samples
    out: list[bytes] = []
    for parent in parents:
        found = payloads(parent, number, limit - len(out))
        if found is None:
            _refuse_past(budget, "samples", limit + 1)
        out.extend(found or ())
    return out


# Dictionary tables -> the limit each counts against; stacks and links are checked
# against the samples limit without spending it (a sample is counted once).
_TABLES = {1: "mappings", 2: "locations", 3: "functions", 5: "strings", 6: "labels"}
_CHECKED = {4: "samples", 7: "samples"}


def _count(raw: bytes, budget: Budget) -> None:
    """Spend the request's samples and dictionary tables, read off the wire unparsed."""
    profiles = _nested(_nested(_nested([raw], 1, budget), 2, budget), 2, budget)
    left = budget.left("samples")
    budget.spend("samples", sum(count_fields(p, {2: left})[2] for p in profiles))
    limits = {n: budget.left(what) for n, what in _TABLES.items()}
    limits |= {n: budget.limits.samples for n in _CHECKED}
    totals = dict.fromkeys(limits, 0)
    for dictionary in _nested([raw], 2, budget):
        for number, count in count_fields(dictionary, limits).items():
            totals[number] += count
    for number, what in _TABLES.items():
        budget.spend(what, totals[number])
    for number, what in _CHECKED.items():
        _refuse_past(budget, what, totals[number])


def _request(data: bytes, max_bytes: int, budget: Budget) -> pb.ExportProfilesServiceRequest:
    """Bytes (raw or gzip) to a parsed request, counted against ``budget`` first."""
    if not data:
        raise MalformedOtlp("the OTLP request is empty")
    if len(data) > max_bytes:
        raise MalformedOtlp(f"the OTLP request is larger than {max_bytes} bytes")
    try:
        limit = min(max_bytes, budget.left("inflated_bytes"))
        raw = inflate(data, max_bytes=limit, what="OTLP request")
    except MalformedPprof as exc:
        raise MalformedOtlp(str(exc)) from None
    budget.spend("inflated_bytes", len(raw))
    if not any(count_fields(raw, {1: 1, 2: 1}).values()):
        raise MalformedOtlp(
            "not an OTLP profiles export request: it has neither resource profiles nor a dictionary"
        )
    _count(raw, budget)
    request = pb.ExportProfilesServiceRequest()
    try:
        request.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedOtlp(f"not an OTLP profiles export request ({exc})") from None
    return request


# ---------------------------------------------------------------------------
# The dictionary


def _get(table: Sequence[_T], index: int, what: str, name: str) -> _T:
    if not 0 <= index < len(table):
        raise MalformedOtlp(
            f"{what} refers to {name} {index}, but the {name} table has {len(table)}{_HINT}"
        )
    return table[index]


def _kind(name: str, unit: str, period_type: str, period_ns: int) -> Column | None:
    """Our type for an OTLP sample type: pprof's rules for one column (sampled time, the
    registry's types), and off-CPU time, which pprof has no name of its own for."""
    sampled = sampled_time([(0, name, unit)], period_type, period_ns)
    if sampled:
        return sampled[0]
    source, scale = f"{name}/{unit}", NS_PER_UNIT.get(unit, 0)
    if name in ("off_cpu", "events") and scale:  # "events": older eBPF profilers' off-CPU
        return Column(EventType.OFFCPU, 0, source, scale=scale)
    event_type = registry_type(name, unit)
    return Column(event_type, 0, source) if event_type else None


class _Dictionary:
    """The request's tables, every index checked as it is followed; frames cached."""

    def __init__(self, d: profiles_pb2.ProfilesDictionary) -> None:
        self.d = d
        self._locations: dict[int, tuple[Frame, ...]] = {}
        self._stacks: dict[int, tuple[Frame, ...]] = {}

    def string(self, index: int, what: str) -> str:
        return _get(self.d.string_table, index, what, "string")

    def value(self, v: common_pb2.AnyValue, what: str) -> str | None:
        """A scalar attribute value as text; None for arrays, maps, bytes and no value."""
        which = v.WhichOneof("value")
        if which == "string_value":
            return v.string_value
        if which == "string_value_strindex":
            return self.string(v.string_value_strindex, what)
        if which == "int_value":
            return str(v.int_value)
        if which == "bool_value":
            return "true" if v.bool_value else "false"
        if which == "double_value":
            return repr(v.double_value)
        return None

    def key_values(self, attrs: Iterable[common_pb2.KeyValue], what: str) -> dict[str, str]:
        """Resource or scope attributes (keys inline or in the string table)."""
        out: dict[str, str] = {}
        for kv in attrs:
            key = kv.key or self.string(kv.key_strindex, f"an attribute key of {what}")
            text = self.value(kv.value, f"attribute {key} of {what}")
            if key and text is not None:
                out[key] = text
        return out

    def attributes(
        self, indices: Iterable[int], what: str, *, strings_only: bool = False
    ) -> dict[str, str]:
        """Attribute-table entries as ``{key: text}`` (only string values: ``strings_only``)."""
        out: dict[str, str] = {}
        for index in indices:
            attr = _get(self.d.attribute_table, index, what, "attribute")
            if strings_only and attr.value.WhichOneof("value") not in _STRING_VALUES:
                continue
            key = self.string(attr.key_strindex, f"attribute {index}")
            text = self.value(attr.value, f"attribute {index}")
            if key and text is not None:
                out[key] = text
        return out

    def kind(self, p: profiles_pb2.Profile, where: str) -> Column:
        """What ``p``'s sample type is to us; :class:`UnknownOtlpSampleType` if nothing."""
        name = self.string(p.sample_type.type_strindex, f"the sample type of {where}")
        unit = self.string(p.sample_type.unit_strindex, f"the sample unit of {where}")
        period_type = self.string(p.period_type.type_strindex, f"the period type of {where}")
        period_unit = self.string(p.period_type.unit_strindex, f"the period unit of {where}")
        period_ns = p.period * NS_PER_UNIT.get(period_unit, 0) if p.period > 0 else 0
        kind = _kind(name, unit, period_type, period_ns)
        if kind is None:
            raise UnknownOtlpSampleType(
                f"{where} has sample type {name}/{unit}, which is not a profile type Aperture "
                f"knows ({known_sample_types()}): nothing was stored"
            )
        return kind

    def frame_count(self, stack_index: int, what: str) -> int:
        """How many frames stack ``stack_index`` makes, every index in it checked."""
        stack = _get(self.d.stack_table, stack_index, what, "stack")
        count = 0
        for index in stack.location_indices:
            loc = _get(self.d.location_table, index, f"stack {stack_index}", "location")
            count += max(1, len(loc.lines))
        return count

    def stack(self, index: int) -> tuple[Frame, ...]:
        """Stack ``index`` root first (its indices checked by :meth:`frame_count`)."""
        frames = self._stacks.get(index)
        if frames is None:
            leaf_first = [
                f for i in self.d.stack_table[index].location_indices for f in self._location(i)
            ]
            frames = self._stacks[index] = tuple(reversed(leaf_first))
        return frames

    def _location(self, index: int) -> tuple[Frame, ...]:
        frames = self._locations.get(index)
        if frames is None:
            frames = self._locations[index] = self._resolve(index)
        return frames

    def _resolve(self, index: int) -> tuple[Frame, ...]:
        """Location ``index``'s frames leaf first (inlined functions before their caller)."""
        what = f"location {index}"
        loc = self.d.location_table[index]
        frame_type = self.attributes(loc.attribute_indices, what).get(_FRAME_TYPE, "")
        kind = _FRAME_KINDS.get(frame_type)
        mapping = _get(self.d.mapping_table, loc.mapping_index, what, "mapping")
        module = module_basename(
            self.string(mapping.filename_strindex, f"mapping {loc.mapping_index}")
        )
        if kind is FrameKind.KERNEL and not module.startswith("["):
            module = "[kernel]" if module in ("", "vmlinux") else f"[{module}]"
        offset = loc.address
        if mapping.memory_start <= loc.address < mapping.memory_limit:
            offset = loc.address - mapping.memory_start + mapping.file_offset
        if not loc.lines:
            return (_frame(kind, "", module, "", offset, 0),)
        frames = []
        for line in loc.lines:
            fn = _get(self.d.function_table, line.function_index, what, "function")
            of = f"function {line.function_index}"
            name = self.string(fn.name_strindex, of) or self.string(fn.system_name_strindex, of)
            source = self.string(fn.filename_strindex, of)
            frames.append(_frame(kind, name, module, source, offset, line.line))
        return tuple(frames)


def _frame(
    kind: FrameKind | None, name: str, module: str, source: str, offset: int, line: int
) -> Frame:
    """One frame; ``name`` "" when the location has no function."""
    if kind in (FrameKind.PYTHON, FrameKind.JIT):
        # An interpreter's or a VM's function: its source file says where it is, not a
        # mapping (which is the interpreter's), and its line which part of it runs.
        module = source or ("[jit]" if kind is FrameKind.JIT else module)
        if name:
            return Frame(name, module, kind, 0, max(0, line))
    else:
        module = module or module_basename(source)
    if not name:
        module = module or "[unknown]"
        name = f"{module}+0x{offset:x}"
    return Frame(name, module, kind or frame_kind(module), offset, max(0, line))


# ---------------------------------------------------------------------------
# Samples


_Labels = tuple[tuple[str, str], ...]


def _labels(attrs: dict[str, str]) -> dict[str, str]:
    """The attributes kept as labels: all but a process's or a thread's own (a label set
    per process would split one profile into hundreds)."""
    return {k: v for k, v in attrs.items() if not k.startswith(("process.", "thread."))}


def _int(text: str | None) -> int:
    """A pid or tid attribute (an int, or a string of digits), 0 otherwise."""
    return int(text) if text and len(text) < 20 and text.isascii() and text.isdigit() else 0


@dataclass
class _Row:
    """One OTLP sample, its frames not yet built."""

    kind: Column
    labels: _Labels
    pid: int
    tid: int
    comm: str
    thread: str
    stack: int
    value: int
    window: tuple[int, int]


def _value(s: profiles_pb2.Sample, kind: Column, what: str) -> int:
    """A sample's value in our unit: its values summed, or one per timestamp (OTLP's rule)."""
    values, stamps = s.values, s.timestamps_unix_nano
    if not values and not stamps:
        raise MalformedOtlp(f"{what} has neither values nor timestamps{_HINT}")
    if values and stamps and len(values) != len(stamps):
        raise MalformedOtlp(f"{what} has {len(values)} values for {len(stamps)} timestamps")
    if any(v < 0 for v in values):
        raise MalformedOtlp(f"{what} has a negative value")
    value = kind.convert(sum(values) if values else len(stamps))
    if value >= 1 << 63:
        raise MalformedOtlp(f"{what} adds up to more than a signed 64-bit value")
    return value


def _window(p: profiles_pb2.Profile, now_ns: int | None) -> tuple[int, int]:
    """A profile's time span, widened to its samples' timestamps."""
    stamps = [t for s in p.samples for t in s.timestamps_unix_nano]
    if p.time_unix_nano:
        start, end = p.time_unix_nano, p.time_unix_nano + p.duration_nano
    elif stamps:
        start = end = stamps[0]
    else:
        end = time.time_ns() if now_ns is None else now_ns
        start = end - p.duration_nano
    if stamps:
        start, end = min(start, min(stamps)), max(end, max(stamps))
    return start, end


def _rows(
    request: pb.ExportProfilesServiceRequest, d: _Dictionary, budget: Budget, now_ns: int | None
) -> list[_Row]:
    """Every sample with a value, its frames and attributes counted against ``budget``."""
    budget.spend("lines", sum(len(loc.lines) for loc in d.d.location_table))
    rows: list[_Row] = []
    frames = attrs = number = 0
    frames_left, attrs_left = budget.left("frames"), budget.left("labels")
    for r, rp in enumerate(request.resource_profiles):
        resource = d.key_values(rp.resource.attributes, f"resource {r}")
        for s, sp in enumerate(rp.scope_profiles):
            scope = d.key_values(sp.scope.attributes, f"scope {s} of resource {r}")
            for p in sp.profiles:
                where = f"profile {number} (resource {r}, scope {s})"
                number += 1
                kind = d.kind(p, where)
                common = {**resource, **scope, **d.attributes(p.attribute_indices, where)}
                labels = _labels(common)
                if "service.name" not in labels:  # OpenTelemetry's default service name
                    exe = resource.get(_COMM)
                    labels["service.name"] = f"unknown_service:{exe}" if exe else "unknown_service"
                window = _window(p, now_ns)
                for i, sample in enumerate(p.samples):
                    what = f"sample {i} of {where}"
                    frames += d.frame_count(sample.stack_index, what)
                    attrs += len(sample.attribute_indices)
                    if frames > frames_left or attrs > attrs_left:
                        break  # spent below, which refuses
                    value = _value(sample, kind, what)
                    if not value:
                        continue
                    own = d.attributes(sample.attribute_indices, what)
                    tags = _labels(d.attributes(sample.attribute_indices, what, strings_only=True))
                    every = {**common, **own}
                    rows.append(_Row(kind, tuple(sorted({**labels, **tags}.items())),
                                     _int(every.get(_PID)), _int(every.get(_TID)),
                                     every.get(_COMM, ""), every.get(_THREAD, ""),
                                     sample.stack_index, value, window))  # fmt: skip
    budget.spend("frames", frames)
    budget.spend("labels", attrs)
    return rows


def _profiles(rows: list[_Row], d: _Dictionary) -> list[OtlpProfile]:
    """Rows merged into one profile per type and label set, their stacks built."""
    # Linux names a process after its main thread: a kernel thread has no executable.
    leaders = {r.pid: r.thread for r in rows if r.pid and r.tid == r.pid and r.thread}
    if len({r.labels for r in rows}) > MAX_LABEL_SETS:
        for r in rows:
            r.labels = ()
    samples: dict[tuple[Column, _Labels], dict[tuple[int, int, str, str, int], int]] = {}
    windows: dict[tuple[Column, _Labels], tuple[int, int]] = {}
    for r in rows:
        key = (r.kind, r.labels)
        sample_key = (r.pid, r.tid, r.comm or leaders.get(r.pid, ""), r.thread, r.stack)
        bucket = samples.setdefault(key, {})
        bucket[sample_key] = bucket.get(sample_key, 0) + r.value
        start, end = windows.get(key, r.window)
        windows[key] = (min(start, r.window[0]), max(end, r.window[1]))
    out = []
    for (kind, labels), bucket in samples.items():
        start, end = windows[(kind, labels)]
        profile = Profile(kind.event_type, value_unit(kind.event_type), start_ns=start,
                          end_ns=end, frequency_hz=kind.frequency_hz)  # fmt: skip
        merged: dict[tuple[int, int, str, str, tuple[Frame, ...]], int] = {}
        for (pid, tid, comm, thread, stack), value in bucket.items():
            one = (pid, tid, comm, thread, d.stack(stack))
            merged[one] = merged.get(one, 0) + value  # duplicate stack entries, one stack
        profile.samples = [
            Sample(stack, value, pid=pid, tid=tid, comm=comm, thread=thread)
            for (pid, tid, comm, thread, stack), value in merged.items()
        ]
        out.append(OtlpProfile(profile, dict(labels), kind.source))
    return out


def read_otlp_profiles(
    data: bytes,
    *,
    budget: Budget | None = None,
    max_bytes: int = MAX_INFLATED_BYTES,
    now_ns: int | None = None,
) -> list[OtlpProfile]:
    """The profiles of an OTLP ``ExportProfilesServiceRequest`` (raw or gzip protobuf).

    ``budget``: what the request may still carry (:class:`OtlpTooLarge` past it);
    a profile without ``time_unix_nano`` or timestamps is taken to end at ``now_ns``.
    """
    budget = budget or Budget()
    try:
        request = _request(data, max_bytes, budget)
        d = _Dictionary(request.dictionary)
        if request.resource_profiles and d.d.string_table[:1] != [""]:
            raise MalformedOtlp(
                "not an OTLP profiles request: its string table must start with an empty string"
            )
        return _profiles(_rows(request, d, budget, now_ns), d)
    except OtlpTooLarge:
        raise
    except TooLarge as exc:
        raise OtlpTooLarge(str(exc)) from None
