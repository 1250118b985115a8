"""Folded/lines text and Pyroscope's request parts: parsed, or refused with a ValueError."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from aperture.aggregator.pyroscope import (
    MAX_TAGS,
    folded_profile,
    multipart_fields,
    parse_app_name,
    parse_unix_time,
    push_request,
)
from aperture.formats.collapsed import parse_collapsed, sanitize_frame
from aperture.model import EventType

FOLDED_CHARS = st.sampled_from(list("ab; \n\r\t0123456789{}=,.\x00\x0b\u2028é"))
folded_text = st.text(FOLDED_CHARS, max_size=120) | st.text(max_size=60)
paths = st.lists(
    st.lists(st.text(min_size=1, max_size=8).map(sanitize_frame), min_size=1, max_size=5).map(
        tuple
    ),
    max_size=6,
)


@given(folded_text)
def test_folded_text_parses_or_is_refused(text: str) -> None:
    try:
        folded = parse_collapsed(text)
    except ValueError as exc:
        assert str(exc).startswith("folded stacks line ")
        return
    assert all(v >= 0 and all(path) for path, v in folded.items())


@given(paths, st.lists(st.integers(0, 2**64), min_size=6, max_size=6))
def test_folded_round_trip(stacks: list[tuple[str, ...]], counts: list[int]) -> None:
    # a sanitized name holds no ';' or newline; a trailing space would merge into the count
    expected: Counter[tuple[str, ...]] = Counter()
    lines = []
    for path, count in zip(stacks, counts, strict=False):
        if any(name != name.strip() or not name.strip() for name in path):
            continue
        expected[path] += count
        lines.append(f"{';'.join(path)} {count}")
    assert parse_collapsed("\n".join(lines)) == expected


UNITS = st.sampled_from(["", "samples", "lock_nanoseconds", "lock_samples", "objects", "bytes"])


@given(folded_text, st.booleans(), UNITS, st.sampled_from(["cpu", "wall", "inuse_space"]))
def test_pyroscope_folded_bodies(text: str, lines: bool, units: str, profile_type: str) -> None:
    try:
        profile = folded_profile(text, lines=lines, service="svc", profile_type=profile_type,
                                 units=units, sample_rate=100, start_ns=1, end_ns=2)  # fmt: skip
    except ValueError as exc:
        assert str(exc)
        return
    if lines and profile.event_type is EventType.CPU:  # each non-blank line is one sample
        assert sum(s.value for s in profile.samples) == sum(
            1 for line in text.split("\n") if line.strip()
        )


NAME_CHARS = st.sampled_from([*"ab.{}=,_ \n\t\"'\\;-*/%`\x00é", "cpu", ".cpu", "x=y"])
names = st.lists(NAME_CHARS, max_size=40).map("".join) | st.text(max_size=40)


@given(names)
def test_app_names_parse_or_are_refused(name: str) -> None:
    try:
        app = parse_app_name(name)
    except ValueError as exc:
        assert "name=" in str(exc)
        return
    assert app.service and "{" not in app.service and "}" not in app.service
    assert len(app.tags) <= MAX_TAGS


@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True),
                       st.text(st.characters(exclude_characters=",{}"), max_size=10)
                       .map(str.strip), max_size=MAX_TAGS))  # fmt: skip
def test_app_name_tags_round_trip(tags: dict[str, str]) -> None:
    name = "svc.cpu{" + ",".join(f"{k}={v}" for k, v in tags.items()) + "}"
    app = parse_app_name(name)
    assert (app.service, app.profile_type, app.tags) == ("svc", "cpu", tags)


@given(st.one_of(st.none(), st.text(max_size=30), st.integers(-(2**70), 2**70).map(str)))
def test_unix_times_parse_or_are_refused(text: str | None) -> None:
    try:
        ns = parse_unix_time(text, default_ns=5, name="from")
    except ValueError as exc:
        assert "from=" in str(exc)
        return
    assert ns >= 0


@given(st.binary(max_size=300), st.sampled_from(["application/proto", "application/json",
       "application/x-protobuf; charset=x", "text/plain", ""]))  # fmt: skip
def test_push_bodies_parse_or_are_refused(body: bytes, content_type: str) -> None:
    try:
        series = push_request(body, content_type)
    except ValueError as exc:
        assert str(exc)
        return
    assert all(isinstance(s.labels, dict) for s in series)


@given(st.binary(max_size=300), st.text(max_size=40))
def test_multipart_bodies_parse_or_are_refused(body: bytes, boundary: str) -> None:
    try:
        fields = multipart_fields(body, f"multipart/form-data; boundary={boundary}")
    except ValueError as exc:
        assert str(exc)
        return
    assert all(isinstance(v, bytes) for v in fields.values())
