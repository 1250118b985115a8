"""speedscope output, validated against the file-format schema."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import jsonschema
import pytest
from test_formats import (
    SCHEMA,
    empty_profile,
    lock_profile,
    python_profile,
    rich_profile,
    simple_profile,
)

from aperture.formats import to_speedscope
from aperture.model import Profile, fold


@pytest.mark.parametrize(
    "make", [simple_profile, rich_profile, lock_profile, empty_profile, python_profile]
)
def test_speedscope_matches_the_schema_and_the_totals(make: Callable[[], Profile]) -> None:
    profile: Profile = make()
    doc = json.loads(to_speedscope(profile))
    jsonschema.validate(doc, SCHEMA)
    assert sum(sum(p["weights"]) for p in doc["profiles"]) == profile.total
    for p in doc["profiles"]:
        assert p["startValue"] == 0 and p["endValue"] == sum(p["weights"])
        assert len(p["samples"]) == len(p["weights"])


def test_speedscope_stacks_rebuild_the_folded_profile() -> None:
    profile = rich_profile()
    doc = json.loads(to_speedscope(profile))
    frames = doc["shared"]["frames"]
    rebuilt: Counter[tuple[str, ...]] = Counter()
    for p in doc["profiles"]:
        for stack, weight in zip(p["samples"], p["weights"], strict=True):
            rebuilt[(p["name"], *(frames[i]["name"] for i in stack))] += weight
    assert rebuilt == {
        ("app (pid 100)", *path[1:]): v for path, v in fold(profile).items() if path[0] == "app"
    } | {("node (pid 200)", "node", "LazyCompile:*render app.js:10"): 30, ("unknown (pid 300)",): 5}
    assert doc["profiles"][0]["name"] == "app (pid 100)"
    assert {"name": "ksys_read", "file": "[kernel]"} in frames
    assert len(frames) == len({(f["name"], f.get("file")) for f in frames})


def test_speedscope_units() -> None:
    assert json.loads(to_speedscope(simple_profile()))["profiles"][0]["unit"] == "none"
    assert json.loads(to_speedscope(lock_profile()))["profiles"][0]["unit"] == "nanoseconds"


def test_the_speedscope_schema_rejects_a_broken_document() -> None:
    doc = json.loads(to_speedscope(simple_profile()))
    del doc["profiles"][0]["weights"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_python_functions_are_one_frame_with_their_file_and_hottest_line() -> None:
    doc = json.loads(to_speedscope(python_profile()))
    frames = doc["shared"]["frames"]
    hot = [f for f in frames if f["name"] == "hot_a"]
    assert hot == [{"name": "hot_a", "file": "/srv/app/work.py", "line": 12}]  # 60 at 12, 30 at 14
    dumps = next(f for f in frames if f["name"] == "dumps")
    assert dumps == {"name": "dumps", "file": "/usr/lib/python3.11/json/__init__.py", "line": 231}
    assert "line" not in next(f for f in frames if f["name"] == "Py_RunMain")
