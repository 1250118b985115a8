"""Aperture's own JSON profile format: lossless, with frames interned, and its reader."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aperture.model import EventType, Frame, FrameKind, Profile, Sample

FORMAT = "aperture-profile"
VERSION = 1

_T = TypeVar("_T")
_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object"}


def to_json_dict(profile: Profile) -> dict[str, Any]:
    """``profile`` as JSON-ready data; :func:`profile_from_dict` reverses it exactly."""
    frame_index: dict[Frame, int] = {}
    frames: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for sample in profile.samples:
        stack = []
        for frame in sample.stack:
            index = frame_index.get(frame)
            if index is None:
                index = frame_index[frame] = len(frames)
                frames.append(
                    {
                        "name": frame.name,
                        "module": frame.module,
                        "kind": str(frame.kind),
                        "offset": frame.offset,
                    }
                )
            stack.append(index)
        samples.append(
            {
                "stack": stack,
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
    )
    total = _field(doc, "total", int, "the document")
    if total != profile.total:
        raise ValueError(
            f"Aperture JSON: 'total' is {total} but the samples add up to {profile.total};"
            " the file is damaged or was edited by hand."
        )
    return profile


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
