"""The flame graph SVG: well-formed, sized by value, labelled, coloured and pruned."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from test_formats import (
    CPP,
    SVG_NS,
    empty_profile,
    lock_profile,
    python_profile,
    rich_profile,
    simple_profile,
    user,
)

from aperture.formats import to_svg
from aperture.formats.svg import fit_label, frame_color
from aperture.formats.svg_assets import SCRIPT
from aperture.model import EventType, FrameKind, Profile, Sample


def svg_frames(svg: str) -> dict[str, tuple[str, ET.Element]]:
    """``{frame name: (title, rect)}`` for every drawn frame; the SVG must be well formed."""
    root = ET.fromstring(svg.encode("utf-8"))
    frames = {}
    for g in root.iter(f"{SVG_NS}g"):
        title, rect = g.find(f"{SVG_NS}title"), g.find(f"{SVG_NS}rect")
        if title is not None and rect is not None and title.text:
            frames[re.sub(r" \([^()]*\)$", "", title.text)] = (title.text, rect)
    return frames


def test_svg_titles_carry_values_and_percentages() -> None:
    frames = svg_frames(to_svg(simple_profile()))
    assert frames["hot_a"][0] == "hot_a (75 samples, 75.00%)"
    assert frames["hot_b"][0] == "hot_b (25 samples, 25.00%)"
    assert frames["compute"][0] == "compute (100 samples, 100.00%)"
    assert frames["all"][0] == "all (100 samples, 100.00%)"
    assert set(frames) == {"all", "app", "main", "compute", "hot_a", "hot_b"}


def test_svg_frames_are_sized_by_value_and_stacked_root_at_the_bottom() -> None:
    frames = svg_frames(to_svg(simple_profile()))
    usable = 1200 - 20
    width = {name: float(rect.get("width", "")) for name, (_, rect) in frames.items()}
    assert width["all"] == pytest.approx(usable)
    assert width["hot_a"] == pytest.approx(0.75 * usable, abs=0.01)
    assert width["hot_b"] == pytest.approx(0.25 * usable, abs=0.01)
    y = {name: float(rect.get("y", "")) for name, (_, rect) in frames.items()}
    assert y["all"] > y["app"] > y["main"] > y["compute"] > y["hot_a"] == y["hot_b"]
    hot_b_x = float(frames["hot_b"][1].get("x", ""))
    assert hot_b_x == pytest.approx(10 + 0.75 * usable, abs=0.01)


def test_svg_escapes_names_and_colours_by_kind() -> None:
    svg = to_svg(rich_profile())
    assert "&lt;int, std::allocator&lt;int&gt; &gt;" in svg
    frames = svg_frames(svg)
    assert frames[CPP][0] == f"{CPP} (10 samples, 5.41%)"

    def rgb(name: str) -> tuple[int, ...]:
        fill = frames[name][1].get("fill", "")
        return tuple(int(c) for c in re.findall(r"\d+", fill))

    for name in ("entry_SYSCALL_64", "ksys_read"):
        r, g, b = rgb(name)
        assert r >= 205 and b <= 40 and g < r  # kernel: orange
    for name in ("main", "hot_a", CPP):
        r, g, b = rgb(name)
        assert r >= 205 and g == b and g < r  # user: red
    r, g, b = rgb("LazyCompile:*render app.js:10")
    assert g >= 185 and r == b < g  # jit: green


def test_frame_colour_is_stable_per_name_and_differs_between_names() -> None:
    assert frame_color("hot_a", FrameKind.USER) == frame_color("hot_a", FrameKind.USER)
    assert frame_color("hot_a", FrameKind.USER) != frame_color("hot_b", FrameKind.USER)
    # crc32 rather than hash(): the same name must get the same shade in every process.
    assert frame_color("main", FrameKind.USER) == (245, 114, 114)


def test_svg_subtitle_and_lock_units() -> None:
    svg = to_svg(rich_profile())
    assert "Event: cpu · Duration: 10.0 s · 99 Hz · Total: 185 samples" in svg
    assert "Host: web-1 · Lost: stack_collisions 3" in svg
    lock = svg_frames(to_svg(lock_profile()))
    assert lock["worker"][0] == "worker (1.23 ms of wait, 61.50%)"
    assert lock["flush"][0] == "flush (770 µs of wait, 38.50%)"
    assert lock["main"][0] == "main (2.00 ms of wait, 100.00%)"
    assert "Lock Contention Flame Graph" in to_svg(lock_profile())


def test_svg_labels_fit_their_frames() -> None:
    assert fit_label("compute", 200) == "compute"
    assert fit_label("a_rather_long_function_name", 50) == "a_rat.."
    assert fit_label("compute", 15) == ""
    profile = Profile(EventType.CPU, "samples", [Sample((user("x" * 300),), 1, comm="p")])
    text = ET.fromstring(to_svg(profile)).findall(f".//{SVG_NS}text")[-1].text or ""
    assert text == "x" * 164 + ".."


def test_svg_prunes_subpixel_frames_but_keeps_their_value_in_the_parent() -> None:
    big = Sample((user("main"), user("big")), 10_000_000, comm="p")
    tiny = [Sample((user("main"), user(f"tiny_{i}")), 1, comm="p") for i in range(2000)]
    svg = to_svg(Profile(EventType.CPU, "samples", [big, *tiny]))
    frames = svg_frames(svg)
    assert not any(name.startswith("tiny_") for name in frames)
    assert frames["main"][0] == "main (10,002,000 samples, 100.00%)"
    assert len(svg) < 20_000


def test_svg_is_interactive_and_its_script_parses() -> None:
    svg = to_svg(simple_profile())
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {"frames", "details", "matched", "search", "unzoom", "title", "subtitle"} <= ids
    assert "Matched: " in svg and "ctrlKey" in svg and "new RegExp(term)" in svg
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the script's syntax is not checked")
    result = subprocess.run(
        [node, "--check"], input=SCRIPT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_svg_of_an_empty_profile_says_no_samples() -> None:
    root = ET.fromstring(to_svg(empty_profile()))
    texts = [el.text for el in root.iter(f"{SVG_NS}text")]
    assert "no samples" in texts
    assert root.find(f".//{SVG_NS}g") is None


def test_svg_survives_characters_xml_forbids() -> None:
    profile = Profile(EventType.CPU, "samples", [Sample((user("bad\x01name"),), 1, comm="p")])
    assert "bad\ufffdname" in svg_frames(to_svg(profile))


def test_svg_colours_python_frames_apart_and_titles_show_file_and_line() -> None:
    frames = svg_frames(to_svg(python_profile()))
    # hot_a: one frame for its two lines (60 at line 12, 30 at 14), titled with the hottest
    assert frames["hot_a"][0] == "hot_a (/srv/app/work.py:12, 90 samples, 90.00%)"
    assert frames["dumps"][0] == (
        "dumps (/usr/lib/python3.11/json/__init__.py:231, 10 samples, 10.00%)"
    )
    assert frames["Py_RunMain"][0] == "Py_RunMain (100 samples, 100.00%)"  # native: no place

    def rgb(name: str) -> tuple[int, ...]:
        return tuple(int(c) for c in re.findall(r"\d+", frames[name][1].get("fill", "")))

    for name in ("<module>", "main", "hot_a", "dumps"):
        r, g, b = rgb(name)
        assert r <= 90 and g >= 160 and b >= 200  # python: aqua
    r, g, b = rgb("encoder_listencode")
    assert r >= 205 and g == b < r  # the C extension under it: user red
    assert frame_color("hot_a", FrameKind.PYTHON) != frame_color("hot_a", FrameKind.USER)
