"""Folded stacks, the format registry and atomic writes; shared test profiles."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from aperture.formats import (
    UnknownFormatError,
    load_json,
    parse_collapsed,
    supported_suffixes,
    to_collapsed,
    write_profile,
    writer_for,
)
from aperture.formats.collapsed import fold_sanitized, sanitize_frame
from aperture.formats.humanize import describe_value
from aperture.model import EventType, Frame, FrameKind, Profile, Sample, fold

SVG_NS = "{http://www.w3.org/2000/svg}"
SCHEMA = json.loads((Path(__file__).parent / "speedscope_schema.json").read_text())
CPP = "std::vector<int, std::allocator<int> >::push_back(int&&) & co"


def user(name: str, module: str = "app") -> Frame:
    return Frame(name, module, FrameKind.USER, 0x1000 + len(name))


def kernel(name: str) -> Frame:
    return Frame(name, "[kernel]", FrameKind.KERNEL, 0xFFFF_FFFF_8100_0000)


MAIN, COMPUTE, HOT_A, HOT_B = user("main"), user("compute"), user("hot_a"), user("hot_b")


def simple_profile() -> Profile:
    """app: main;compute;hot_a 75 (over two threads) and main;compute;hot_b 25."""
    return Profile(
        EventType.CPU,
        "samples",
        [
            Sample((MAIN, COMPUTE, HOT_A), 50, pid=100, tid=100, comm="app", thread="app"),
            Sample((MAIN, COMPUTE, HOT_A), 25, pid=100, tid=101, comm="app", thread="worker"),
            Sample((MAIN, COMPUTE, HOT_B), 25, pid=100, tid=100, comm="app", thread="app"),
        ],
        start_ns=1_000_000_000,
        end_ns=11_000_000_000,
        frequency_hz=99,
    )


def py(name: str, line: int, file: str = "/srv/app/work.py") -> Frame:
    return Frame(name, file, FrameKind.PYTHON, 0, line)


def python_profile() -> Profile:
    """python3: native entry, then <module>;main;hot_a at two lines (60+30) and json (10)."""
    start = Frame("Py_RunMain", "libpython3.11.so.1.0", FrameKind.USER, 0x4000)
    mod, main = py("<module>", 40), py("main", 33)
    dumps = py("dumps", 231, "/usr/lib/python3.11/json/__init__.py")
    encode = Frame("encoder_listencode", "_json.cpython-311-x86_64-linux-gnu.so", offset=0x900)
    return Profile(
        EventType.CPU,
        "samples",
        [
            Sample((start, mod, main, py("hot_a", 12)), 60, pid=7, tid=7, comm="python3"),
            Sample((start, mod, main, py("hot_a", 14)), 30, pid=7, tid=7, comm="python3"),
            Sample((start, mod, main, dumps, encode), 10, pid=7, tid=7, comm="python3"),
        ],
        start_ns=1_000_000_000,
        end_ns=11_000_000_000,
        frequency_hz=99,
    )


def rich_profile() -> Profile:
    """Two processes, kernel frames above user frames, a JIT frame and a C++ name."""
    read = (MAIN, user("read_file"), kernel("entry_SYSCALL_64"), kernel("ksys_read"))
    jit = (user("node", "node"), Frame("LazyCompile:*render app.js:10", "[jit]", FrameKind.JIT))
    return Profile(
        EventType.CPU,
        "samples",
        [
            *simple_profile().samples,
            Sample(read, 40, pid=100, tid=100, comm="app"),
            Sample((MAIN, user(CPP, "libstdc++.so.6")), 10, pid=100, tid=102, comm="app"),
            Sample(jit, 30, pid=200, tid=200, comm="node"),
            Sample((), 5, pid=300, tid=300, comm=""),
        ],
        start_ns=0,
        end_ns=10_000_000_000,
        frequency_hz=99,
        losses={"stack_collisions": 3},
        labels={"host": "web-1", "kernel": "6.1.0"},
    )


def lock_profile() -> Profile:
    """Futex wait in nanoseconds: 1.23 ms in one stack, 0.77 ms in another."""
    lock = user("pthread_mutex_lock", "libc.so.6")
    return Profile(
        EventType.LOCK,
        "nanoseconds",
        [
            Sample((MAIN, user("worker"), lock), 1_230_000, pid=7, tid=8, comm="db"),
            Sample((MAIN, user("flush"), lock), 770_000, pid=7, tid=9, comm="db"),
        ],
    )


def empty_profile() -> Profile:
    return Profile(EventType.CPU, "samples")


# --- folded stacks -------------------------------------------------------------------


def test_collapsed_text_is_sorted_and_rooted_at_the_process() -> None:
    assert to_collapsed(simple_profile()) == (
        "app;main;compute;hot_a 75\napp;main;compute;hot_b 25\n"
    )


def test_collapsed_round_trips_through_the_parser() -> None:
    profile = rich_profile()
    text = to_collapsed(profile)
    assert parse_collapsed(text) == fold(profile)
    lines = text.splitlines()
    assert lines == sorted(lines)
    assert f"app;main;{CPP} 10" in lines
    assert "pid 300 5" in lines


def test_collapsed_sanitizes_separators_and_merges_what_becomes_equal() -> None:
    assert sanitize_frame("a;b\nc\rd") == "a:b c d"
    assert sanitize_frame("") == "[unknown]"
    profile = Profile(
        EventType.CPU,
        "samples",
        [
            Sample((user("f;g"),), 2, comm="p"),
            Sample((user("f:g"),), 3, comm="p"),
            Sample((user("x\ny"),), 1, comm="p"),
        ],
    )
    assert to_collapsed(profile) == "p;f:g 5\np;x y 1\n"
    assert parse_collapsed(to_collapsed(profile)) == fold_sanitized(profile)


def test_collapsed_of_an_empty_profile_is_empty() -> None:
    assert to_collapsed(empty_profile()) == ""
    assert parse_collapsed("") == Counter()


def test_parse_collapsed_accepts_spaces_crlf_blank_lines_and_repeats() -> None:
    text = "a;operator new(unsigned long) 3\r\n\n  \na;b 2\na;b 4\n"
    assert parse_collapsed(text) == {("a", "operator new(unsigned long)"): 3, ("a", "b"): 6}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("a;b", "expected 'frame;frame;... COUNT'"),
        ("a;b x", "non-negative integer count"),
        ("a;b -1", "non-negative integer count"),
        ("a;b 1.5", "non-negative integer count"),
        (" 7", "empty frame name"),
        ("a;;b 1", "empty frame name"),
    ],
)
def test_parse_collapsed_rejects_bad_lines_naming_the_line(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        parse_collapsed(f"ok;fine 1\n{line}\n")
    assert str(info.value).startswith("folded stacks line 2:")


# --- registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("out.svg", "svg"),
        ("out.collapsed", "collapsed"),
        ("out.folded", "collapsed"),
        ("out.json", "json"),
        ("out.speedscope.json", "speedscope"),
        ("/tmp/dir.svg/PROFILE.SPEEDSCOPE.JSON", "speedscope"),
        (Path("a/b.FOLDED"), "collapsed"),
    ],
)
def test_writer_for_picks_the_longest_matching_suffix(path: str | Path, name: str) -> None:
    assert writer_for(path).name == name


def test_supported_suffixes_include_pprof_for_stacks_only() -> None:
    assert supported_suffixes() == (
        ".collapsed", ".folded", ".json", ".pb.gz", ".speedscope.json", ".svg"
    )  # fmt: skip
    assert ".pb.gz" in supported_suffixes(EventType.LOCK)
    assert ".pb.gz" not in supported_suffixes(EventType.SYSCALL)


@pytest.mark.parametrize("path", ["out.txt", "out", "out.svg.bak", "out.pb"])
def test_writer_for_an_unknown_suffix_names_the_supported_ones(path: str) -> None:
    with pytest.raises(UnknownFormatError) as info:
        writer_for(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert ".collapsed, .folded, .json, .pb.gz, .speedscope.json, .svg." in message
    assert message.count(". ") == 0 and repr(path) in message


def test_write_profile_writes_every_format_readably(tmp_path: Path) -> None:
    profile = rich_profile()
    for suffix in supported_suffixes():
        write_profile(profile, tmp_path / f"profile{suffix}")
    assert parse_collapsed((tmp_path / "profile.folded").read_text()) == fold(profile)
    assert load_json((tmp_path / "profile.json").read_text()) == profile
    ET.parse(tmp_path / "profile.svg")
    speedscope = json.loads((tmp_path / "profile.speedscope.json").read_text())
    jsonschema.validate(speedscope, SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"profile{s}" for s in supported_suffixes()
    )


def test_write_profile_replaces_atomically_and_honours_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "out.collapsed"
    target.write_text("old\n")
    old_umask = os.umask(0o027)
    try:
        write_profile(simple_profile(), target)
    finally:
        os.umask(old_umask)
    assert target.read_text() == to_collapsed(simple_profile())
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.collapsed"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    target = tmp_path / "out.svg"
    target.write_text("old\n")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_profile(simple_profile(), target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.svg"]


def test_describe_value_is_unit_aware() -> None:
    assert describe_value(1, "samples", EventType.CPU) == "1 sample"
    assert describe_value(1234, "samples", EventType.CPU) == "1,234 samples"
    assert describe_value(1_230_000, "nanoseconds", EventType.LOCK) == "1.23 ms of wait"
    assert describe_value(999_950_000, "nanoseconds", EventType.SYSCALL) == "1000 ms in syscalls"
    assert describe_value(512, "ns", EventType.LOCK) == "512 ns of wait"
    assert describe_value(2048, "bytes", EventType.CPU) == "2,048 bytes"
