"""Aperture's own JSON profile format: lossless, with frames interned, and its reader."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aperture.model import (
    LOCK_ROLES,
    EventType,
    Frame,
    FrameKind,
    LockStat,
    Profile,
    Sample,
    SyscallStat,
)

FORMAT = "aperture-profile"
VERSION = 1

_T = TypeVar("_T")
_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object"}


def to_json_dict(profile: Profile) -> dict[str, Any]:
    """``profile`` as JSON-ready data; :func:`profile_from_dict` reverses it exactly."""
    frame_index: dict[Frame, int] = {}
    frames: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []

    def intern(stack_frames: tuple[Frame, ...]) -> list[int]:
        stack = []
        for frame in stack_frames:
            index = frame_index.get(frame)
            if index is None:
                index = frame_index[frame] = len(frames)
                frames.append(
                    {
                        "name": frame.name,
                        "module": frame.module,
                        "kind": str(frame.kind),
                        "offset": frame.offset,
                        "line": frame.line,
                    }
                )
            stack.append(index)
        return stack

    for sample in profile.samples:
        samples.append(
            {
                "stack": intern(sample.stack),
                "value": sample.value,
                "pid": sample.pid,
                "tid": sample.tid,
                "comm": sample.comm,
                "thread": sample.thread,
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "event_type": str(profile.event_type),
        "unit": profile.unit,
        "start_ns": profile.start_ns,
        "end_ns": profile.end_ns,
        "frequency_hz": profile.frequency_hz,
        "total": profile.total,
        "losses": dict(profile.losses),
        "labels": dict(profile.labels),
        "frames": frames,
        "samples": samples,
        # Per-lock records (lock profiles): the address is a number, the stack
        # indexes the same frame table as the samples.
        "locks": [
            {
                "pid": lock.pid,
                "comm": lock.comm,
                "address": lock.address,
                "stack": intern(lock.stack),
                "contentions": lock.contentions,
                "wait_ns": lock.wait_ns,
                "max_ns": lock.max_ns,
                "eagain": lock.eagain,
                "timeouts": lock.timeouts,
                "timeout_ns": lock.timeout_ns,
                "interrupted": lock.interrupted,
                "hist": list(lock.hist),
                "kind": lock.kind,
                "role": lock.role,
                "releases": lock.releases,
            }
            for lock in profile.locks
        ],
        "syscalls": [
            {
                "pid": call.pid,
                "comm": call.comm,
                "nr": call.nr,
                "name": call.name,
                "count": call.count,
                "errors": call.errors,
                "total_ns": call.total_ns,
                "min_ns": call.min_ns,
                "max_ns": call.max_ns,
                "hist": list(call.hist),
                "errnos": {str(err): n for err, n in sorted(call.errnos.items())},
            }
            for call in profile.syscalls
        ],
    }


def to_json(profile: Profile) -> str:
    """``profile`` as compact JSON text ending in a newline."""
    return json.dumps(to_json_dict(profile), ensure_ascii=False, separators=(",", ":")) + "\n"


def load_json(text: str | bytes) -> Profile:
    """Read a profile written by :func:`to_json`; ``ValueError`` says what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"Aperture JSON: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})."
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"Aperture JSON: the file is not UTF-8 text ({e.reason}).") from None
    return profile_from_dict(data)


def profile_from_dict(data: object) -> Profile:
    """Build a profile from parsed Aperture JSON, checking every field."""
    doc = _expect(data, dict, "the document")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise ValueError(f"Aperture JSON: 'format' is {fmt!r}, expected {FORMAT!r}.")
    version = _field(doc, "version", int, "the document")
    if version != VERSION:
        raise ValueError(
            f"Aperture JSON: version {version} is not supported (this Aperture reads"
            f" version {VERSION}); use a matching Aperture release."
        )
    event_name = _field(doc, "event_type", str, "the document")
    try:
        event_type = EventType(event_name)
    except ValueError:
        allowed = ", ".join(e.value for e in EventType)
        raise ValueError(
            f"Aperture JSON: unknown event_type {event_name!r} (expected one of {allowed})."
        ) from None

    frames = [
        _frame(_expect(raw, dict, f"frames[{i}]"), f"frames[{i}]")
        for i, raw in enumerate(_field(doc, "frames", list, "the document"))
    ]
    samples = [
        _sample(_expect(raw, dict, f"samples[{i}]"), frames, f"samples[{i}]")
        for i, raw in enumerate(_field(doc, "samples", list, "the document"))
    ]
    profile = Profile(
        event_type=event_type,
        unit=_field(doc, "unit", str, "the document"),
        samples=samples,
        start_ns=_field(doc, "start_ns", int, "the document"),
        end_ns=_field(doc, "end_ns", int, "the document"),
        frequency_hz=_field(doc, "frequency_hz", int, "the document"),
        losses=_mapping(doc, "losses", int),
        labels=_mapping(doc, "labels", str),
        locks=[
            _lock(_expect(raw, dict, f"locks[{i}]"), frames, f"locks[{i}]")
            for i, raw in enumerate(_optional_list(doc, "locks"))
        ],
        syscalls=[
            _syscall(_expect(raw, dict, f"syscalls[{i}]"), f"syscalls[{i}]")
            for i, raw in enumerate(_optional_list(doc, "syscalls"))
        ],
    )
    total = _field(doc, "total", int, "the document")
    if total != profile.total:
        raise ValueError(
            f"Aperture JSON: 'total' is {total} but the samples add up to {profile.total};"
            " the file is damaged or was edited by hand."
        )
    return profile


def _optional_list(doc: dict[str, Any], key: str) -> list[Any]:
    # Absent in files written before lock/syscall records existed.
    return _field(doc, key, list, "the document") if key in doc else []


def _ints(raw: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    values = _field(raw, key, list, where)
    return tuple(_expect(v, int, f"{where}.{key}[{i}]") for i, v in enumerate(values))


def _lock(raw: dict[str, Any], frames: list[Frame], where: str) -> LockStat:
    def num(key: str) -> int:
        return _field(raw, key, int, where)

    return LockStat(
        pid=num("pid"),
        comm=_field(raw, "comm", str, where),
        address=num("address"),
        stack=_stack(_field(raw, "stack", list, where), frames, where),
        contentions=num("contentions"),
        wait_ns=num("wait_ns"),
        max_ns=num("max_ns"),
        eagain=num("eagain"),
        timeouts=num("timeouts"),
        timeout_ns=num("timeout_ns"),
        interrupted=num("interrupted"),
        hist=_ints(raw, "hist", where),
        # Files from before lock roles hold waits only.
        kind=_expect(raw.get("kind", ""), str, f"{where}.kind"),
        role=_role(raw.get("role", "wait"), where),
        releases=_expect(raw.get("releases", 0), int, f"{where}.releases"),
    )


def _role(value: object, where: str) -> str:
    role = _expect(value, str, f"{where}.role")
    if role not in LOCK_ROLES:
        raise ValueError(
            f"Aperture JSON: {where}.role is {role!r}; a lock record's role is one of "
            f"{', '.join(LOCK_ROLES)}."
        )
    return role


def _syscall(raw: dict[str, Any], where: str) -> SyscallStat:
    def num(key: str) -> int:
        return _field(raw, key, int, where)

    errnos: dict[int, int] = {}
    for err, count in _field(raw, "errnos", dict, where).items():
        if not str(err).isdigit():
            raise ValueError(f"Aperture JSON: {where}.errnos has a non-numeric key {err!r}.")
        errnos[int(err)] = _expect(count, int, f"{where}.errnos[{err}]")
    return SyscallStat(
        pid=num("pid"),
        comm=_field(raw, "comm", str, where),
        nr=num("nr"),
        name=_field(raw, "name", str, where),
        count=num("count"),
        errors=num("errors"),
        total_ns=num("total_ns"),
        min_ns=num("min_ns"),
        max_ns=num("max_ns"),
        hist=_ints(raw, "hist", where),
        errnos=errnos,
    )


def _frame(raw: dict[str, Any], where: str) -> Frame:
    kind_name = _field(raw, "kind", str, where)
    try:
        kind = FrameKind(kind_name)
    except ValueError:
        allowed = ", ".join(k.value for k in FrameKind)
        raise ValueError(
            f"Aperture JSON: {where}.kind is {kind_name!r}, expected one of {allowed}."
        ) from None
    return Frame(
        name=_field(raw, "name", str, where),
        module=_field(raw, "module", str, where),
        kind=kind,
        offset=_field(raw, "offset", int, where),
        # files written before frames had lines have none: line 0
        line=_field(raw, "line", int, where) if "line" in raw else 0,
    )


def _sample(raw: dict[str, Any], frames: list[Frame], where: str) -> Sample:
    return Sample(
        stack=_stack(_field(raw, "stack", list, where), frames, f"{where}.stack"),
        value=_field(raw, "value", int, where),
        pid=_field(raw, "pid", int, where),
        tid=_field(raw, "tid", int, where),
        comm=_field(raw, "comm", str, where),
        thread=_field(raw, "thread", str, where),
    )


def _stack(indices: list[Any], frames: list[Frame], where: str) -> tuple[Frame, ...]:
    # Fast path first: stacks hold most of a file's numbers, and checking each one
    # through _expect would triple the load time of a large profile.
    if all(type(i) is int for i in indices) and (
        not indices or (min(indices) >= 0 and max(indices) < len(frames))
    ):
        return tuple(frames[i] for i in indices)
    for j, index in enumerate(indices):
        index = _expect(index, int, f"{where}[{j}]")
        if not 0 <= index < len(frames):
            raise ValueError(
                f"Aperture JSON: {where}[{j}] refers to frame {index}, but the file"
                f" defines {len(frames)} frames."
            )
    raise AssertionError("unreachable: the fast path accepts every valid stack")


def _mapping(doc: dict[str, Any], key: str, value_type: type[_T]) -> dict[str, _T]:
    raw = _field(doc, key, dict, "the document")
    return {name: _expect(value, value_type, f"{key}[{name!r}]") for name, value in raw.items()}


def _field(obj: dict[str, Any], key: str, expected: type[_T], where: str) -> _T:
    if key not in obj:
        raise ValueError(f"Aperture JSON: {where} has no {key!r} field.")
    return _expect(obj[key], expected, f"{where}.{key}" if where != "the document" else key)


def _expect(value: object, expected: type[_T], where: str) -> _T:
    # bool is an int subclass, but true/false where a number belongs is a malformed file.
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ValueError(
        f"Aperture JSON: {where} must be {_TYPE_NAMES.get(expected, expected.__name__)},"
        f" not {_json_type(value)}."
    )


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return names.get(type(value), type(value).__name__)
