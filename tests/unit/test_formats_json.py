"""Aperture's JSON format: exact round trips and clear errors for malformed files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from test_formats import empty_profile, lock_profile, python_profile, rich_profile, simple_profile

from aperture.formats import load_json, to_json
from aperture.model import Profile


@pytest.mark.parametrize(
    "make", [simple_profile, rich_profile, lock_profile, empty_profile, python_profile]
)
def test_json_round_trips_exactly(make: Callable[[], Profile]) -> None:
    profile: Profile = make()
    assert load_json(to_json(profile)) == profile
    assert load_json(to_json(profile).encode()) == profile


def test_json_interns_frames_and_records_the_total() -> None:
    doc = json.loads(to_json(rich_profile()))
    assert doc["format"] == "aperture-profile" and doc["version"] == 1
    assert doc["total"] == 185
    names = [f["name"] for f in doc["frames"]]
    assert len(names) == len(set(names)) == 10
    assert doc["samples"][0] == {
        "stack": [0, 1, 2],
        "value": 50,
        "pid": 100,
        "tid": 100,
        "comm": "app",
        "thread": "app",
    }
    assert doc["frames"][0] == {
        "name": "main",
        "module": "app",
        "kind": "user",
        "offset": 4100,
        "line": 0,
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: d | {"format": "pprof"}, "'format' is 'pprof'"),
        (lambda d: d | {"version": 2}, "version 2 is not supported"),
        (lambda d: d | {"event_type": "gpu"}, "unknown event_type 'gpu'"),
        (lambda d: {k: v for k, v in d.items() if k != "unit"}, "has no 'unit' field"),
        (lambda d: d | {"start_ns": True}, "start_ns must be an integer, not a boolean"),
        (lambda d: d | {"labels": {"host": 1}}, "labels['host'] must be a string"),
        (lambda d: d | {"total": 1}, "'total' is 1 but the samples add up to 100"),
        (lambda d: d | {"samples": [{"stack": [9]}]}, "samples[0].stack[0] refers to frame 9"),
        (lambda d: d | {"samples": [{"stack": [0, -1]}]}, "samples[0].stack[1] refers to frame -1"),
        (lambda d: d | {"samples": [{"stack": [True]}]}, "samples[0].stack[0] must be an integer"),
        (lambda d: d | {"samples": ["x"]}, "samples[0] must be an object, not a string"),
        (lambda d: d | {"frames": [{**d["frames"][0], "kind": "gpu"}]}, "frames[0].kind"),
        (lambda d: [], "the document must be an object, not a list"),
    ],
)
def test_load_json_explains_malformed_input(edit: Callable[[Any], Any], message: str) -> None:
    edited = edit(json.loads(to_json(simple_profile())))
    text = edited if isinstance(edited, str) else json.dumps(edited)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_json(text)


def test_python_frames_keep_kind_and_line_and_older_files_read_line_zero() -> None:
    doc = json.loads(to_json(python_profile()))
    hot = [f for f in doc["frames"] if f["name"] == "hot_a"]
    assert [(f["kind"], f["line"]) for f in hot] == [("python", 12), ("python", 14)]
    for frame in doc["frames"]:
        del frame["line"]  # as written before frames had lines
    old = load_json(json.dumps(doc))
    assert {f.line for s in old.samples for f in s.stack} == {0}
