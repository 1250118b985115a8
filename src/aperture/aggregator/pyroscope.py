"""Pyroscope's ingest protocols, parsed: the Connect push API and the legacy ``/ingest``.

Pure functions from request parts to labels and profiles; the routes live in
:mod:`aperture.aggregator.interop_routes`. Every refusal is a :class:`ValueError`
whose message says what is wrong, for a 400 answer, or a
:class:`~aperture.formats.limits.TooLarge` (413) for a request past its
:class:`~aperture.formats.limits.Budget`, counted before anything is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from aperture.formats.collapsed import parse_collapsed
from aperture.formats.limits import Budget, TooLarge
from aperture.formats.protoscan import count_fields, payloads
from aperture.model import EventType, Frame, Profile, Sample
from aperture.profile_types import PROFILE_TYPES
from aperture.proto.pyroscope import push_pb2

# Profile types a legacy application name may end with (``app.cpu``, ``app.inuse_space``),
# and the type of ours its folded stacks are.
FOLDED_TYPES = {
    "cpu": EventType.CPU, "itimer": EventType.CPU, "wall": EventType.WALL,
    "alloc_objects": EventType.ALLOC_OBJECTS, "alloc_space": EventType.ALLOC_SPACE,
    "inuse_objects": EventType.INUSE_OBJECTS, "inuse_space": EventType.INUSE_SPACE,
    "goroutines": EventType.GOROUTINES, "mutex_count": EventType.MUTEX_CONTENTIONS,
    "mutex_duration": EventType.MUTEX_DELAY, "block_count": EventType.BLOCK_CONTENTIONS,
    "block_duration": EventType.BLOCK_DELAY, "lock_count": EventType.MUTEX_CONTENTIONS,
    "lock_duration": EventType.MUTEX_DELAY, "exceptions": EventType.EXCEPTIONS,
}  # fmt: skip
_NAME = re.compile(r"^([^{}]+?)(?:\{(.*)\})?$", re.DOTALL)
_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
MAX_TAGS = 64


@dataclass(frozen=True)
class AppName:
    """A legacy ``name`` parameter: ``service.profile_type{key=value,...}``."""

    service: str
    profile_type: str = "cpu"
    tags: dict[str, str] = field(default_factory=dict)


def parse_app_name(text: str) -> AppName:
    """``app.cpu{env=prod,region=eu}`` -> service ``app``, type ``cpu``, the tags."""
    match = _NAME.match(text.strip())
    if not match:
        raise ValueError(f"name={text!r} is not 'app.cpu{{key=value,...}}'")
    base, tag_text = match.group(1).strip(), match.group(2)
    service, _, suffix = base.rpartition(".")
    if not service or suffix not in FOLDED_TYPES:
        service, suffix = base, "cpu"
    tags: dict[str, str] = {}
    for item in (tag_text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _TAG_KEY.match(key):
            raise ValueError(f"name={text!r}: tag {item.strip()!r} is not key=value")
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise ValueError(f"name={text!r} has more than {MAX_TAGS} tags")
    return AppName(service, suffix, tags)


def parse_unix_time(text: str | None, *, default_ns: int, name: str) -> int:
    """A legacy ``from``/``until``: unix seconds, or ms, us or ns told apart by size."""
    if not text:
        return default_ns
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a unix time in seconds") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} is negative")
    for limit, scale in ((10**17, 1), (10**14, 10**3), (10**11, 10**6)):
        if value >= limit:
            return value * scale
    return value * 10**9


def folded_profile(
    text: str,
    *,
    lines: bool,
    service: str,
    profile_type: str,
    units: str,
    sample_rate: int,
    start_ns: int,
    end_ns: int,
    budget: Budget | None = None,
) -> Profile:
    """Folded stacks (``a;b;c 12``, root first) or ``lines`` (one stack per line, count 1).

    Its lines and frames are counted against ``budget`` before any is parsed.
    """
    budget = budget or Budget()
    stacks = text.count("\n") + 1
    budget.spend("samples", stacks)
    budget.spend("frames", text.count(";") + stacks)
    if lines:
        text = "".join(f"{line} 1\n" for line in text.split("\n") if line.strip())
    folded = parse_collapsed(text)
    names: dict[str, Frame] = {}

    def frames(path: tuple[str, ...]) -> tuple[Frame, ...]:
        return tuple(names.get(n) or names.setdefault(n, Frame(n)) for n in path)

    event_type = FOLDED_TYPES[profile_type]
    if event_type is EventType.CPU and units in ("lock_nanoseconds", "lock_samples"):
        # old clients (Java's lock events) send lock contention as app.cpu: a mutex
        # profile, as their pprof is (our lock type is our agent's futex waits)
        event_type = {"lock_samples": EventType.MUTEX_CONTENTIONS,
                      "lock_nanoseconds": EventType.MUTEX_DELAY}[units]  # fmt: skip
    want = PROFILE_TYPES[event_type].value_unit
    ours = {"lock_samples": "contentions", "lock_nanoseconds": "nanoseconds"}.get(units, units)
    # wall time arrives as samples at the sample rate
    per_sample = 1
    if event_type is EventType.WALL and ours in ("", "samples"):
        if sample_rate <= 0:
            raise ValueError("wall time in samples needs a sampleRate")
        per_sample, ours = round(1e9 / sample_rate), want
    if ours not in ("", want):
        raise ValueError(
            f"units={units} do not fit {profile_type} profiles, whose values are {want}"
        )
    profile = Profile(event_type, want, start_ns=start_ns, end_ns=end_ns,
                      frequency_hz=sample_rate if event_type is EventType.CPU else 0)  # fmt: skip
    profile.samples = [
        Sample(frames(path), value * per_sample, comm=service)
        for path, value in folded.items()
        if value > 0
    ]
    return profile


class UnsupportedMediaType(ValueError):
    """A push in a codec other than Connect's proto or JSON."""


@dataclass
class Series:
    """One series of a push: its labels and its raw pprof profiles."""

    labels: dict[str, str]
    profiles: list[bytes]


# Objects, arrays and values (``{``, ``[``, ``,``) a JSON push may have per profile it
# may carry: JSON is parsed into Python objects whole, a few bytes each.
_JSON_TOKENS_PER_PROFILE = 400


def _count_push(body: bytes, budget: Budget) -> None:
    """Series, labels and profiles of a proto ``PushRequest``, counted before it is parsed."""
    limit = budget.left("profiles")
    series = payloads(body, 1, limit)
    if series is None:
        raise TooLarge(
            f"the push has more than {limit} series, the most one request may carry: "
            "push fewer at a time"
        )
    profiles = 0
    for i, one in enumerate(series):
        counts = count_fields(one, {1: MAX_TAGS, 2: limit, 3: MAX_TAGS})
        if counts[1] > MAX_TAGS or counts[3] > MAX_TAGS:
            raise ValueError(f"series {i} has more than {MAX_TAGS} labels or annotations")
        profiles += counts[2]
    budget.spend("profiles", profiles)


def push_request(body: bytes, content_type: str, budget: Budget | None = None) -> list[Series]:
    """The series of a Connect ``PushRequest`` (``application/proto`` or ``application/json``).

    Its series, labels and profiles are counted against ``budget`` first.
    """
    budget = budget or Budget()
    request = push_pb2.PushRequest()
    media = content_type.split(";")[0].strip().lower()
    try:
        if media in ("application/proto", "application/protobuf", "application/x-protobuf"):
            _count_push(body, budget)
            request.ParseFromString(body)
        elif media == "application/json":
            limit = budget.left("profiles") * _JSON_TOKENS_PER_PROFILE
            if body.count(b"{") + body.count(b"[") + body.count(b",") > limit:
                raise TooLarge(
                    f"the JSON push has more than {limit:,} objects, arrays and values, the "
                    "most one request may have: push fewer series at a time, or in proto"
                )
            json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
        else:
            raise UnsupportedMediaType(
                f"content type {content_type!r} is not supported: send application/proto "
                "or application/json (Connect unary)"
            )
    except (DecodeError, RuntimeError) as exc:
        raise ValueError(f"not a push.v1.PushRequest ({exc})") from None
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a push.v1.PushRequest in JSON ({exc})") from None
    if media == "application/json":
        _count_json(request, budget)  # JSON has no wire to count on: its parse is bounded above
    out = []
    for i, series in enumerate(request.series):
        labels: dict[str, str] = {}
        for pair in series.labels:
            if not pair.name:
                raise ValueError(f"series {i} has a label without a name")
            labels[pair.name] = pair.value
        out.append(Series(labels, [s.raw_profile for s in series.samples if s.raw_profile]))
    return out


def _count_json(request: push_pb2.PushRequest, budget: Budget) -> None:
    """Series, labels and profiles of a ``PushRequest`` parsed from JSON."""
    for i, series in enumerate(request.series):
        if len(series.labels) > MAX_TAGS or len(series.annotations) > MAX_TAGS:
            raise ValueError(f"series {i} has more than {MAX_TAGS} labels or annotations")
    if len(request.series) > budget.left("profiles"):
        raise TooLarge(
            f"the push has more than {budget.left('profiles')} series, the most one request "
            "may carry: push fewer at a time"
        )
    budget.spend("profiles", sum(len(series.samples) for series in request.series))


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


def multipart_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body, by name (the content exactly as sent)."""
    match = _BOUNDARY.search(content_type)
    if not match:
        raise ValueError("the multipart body has no boundary in its content type")
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, bytes] = {}
    parts = body.split(delimiter)
    if len(parts) < 3:
        raise ValueError("the multipart body has no parts")
    # parts[0] is the preamble; the part after the closing delimiter starts with "--".
    for part in parts[1:]:
        if part.startswith(b"--"):
            return fields
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header/body separator")
        name = _FIELD_NAME.search(head)
        if name:
            fields[name.group(1).decode("utf-8", "replace")] = content.removesuffix(b"\r\n")
    raise ValueError("the multipart body is truncated (no closing boundary)")
