"""The flame graph's script, run by node against a minimal DOM built from the real SVG."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from test_formats import user

from aperture.formats import to_svg
from aperture.formats.svg_assets import SCRIPT
from aperture.model import EventType, Profile, Sample

# Just enough DOM for the script: attributes, classList, style, textContent, events.
FAKE_DOM = r"""
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
class El {
  constructor(node, parent) {
    this.tagName = node.tag; this.attrs = Object.assign({}, node.attrs);
    this.parentNode = parent; this.style = { display: "" }; this.listeners = {};
    this.text = node.text; this.children = node.children.map((c) => new El(c, this));
    const self = this;
    const classes = () => (self.attrs["class"] || "").split(" ").filter(Boolean);
    this.classList = {
      add(c) { self.attrs["class"] = classes().filter((x) => x !== c).concat([c]).join(" "); },
      remove(c) { self.attrs["class"] = classes().filter((x) => x !== c).join(" "); },
    };
  }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  hasAttribute(k) { return k in this.attrs; }
  removeAttribute(k) { delete this.attrs[k]; }
  all() { return this.children.flatMap((c) => [c].concat(c.all())); }
  getElementsByTagName(t) { return this.all().filter((e) => e.tagName === t); }
  get textContent() {
    return this.children.length ? this.children.map((c) => c.textContent).join("") : this.text;
  }
  set textContent(v) { this.children = []; this.text = String(v); }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  fire(type) {
    const evt = { target: this };
    for (let e = this; e; e = e.parentNode) (e.listeners[type] || []).forEach((fn) => fn(evt));
  }
}
const root = new El(input.svg, null);
const document = { getElementById: (id) => root.all().find((e) => e.attrs.id === id) || null };
const windowListeners = {};
const window = {
  prompt: () => null, alert: (m) => { throw new Error(m); },
  addEventListener: (type, fn) => { windowListeners[type] = fn; },
};
new Function("window", "document", input.script)(window, document);

const frames = document.getElementById("frames").getElementsByTagName("g");
const titleOf = (g) => g.getElementsByTagName("title")[0].text;
const byName = (n) => frames.find((g) => titleOf(g).startsWith(n + " ("));
const state = () => {
  const out = { matched: document.getElementById("matched").textContent,
    search: document.getElementById("search").textContent,
    unzoom: document.getElementById("unzoom").attrs["class"],
    details: document.getElementById("details").textContent, frames: {} };
  for (const g of frames) {
    const r = g.getElementsByTagName("rect")[0];
    const name = titleOf(g).replace(/ \([^()]*\)$/, "");
    out.frames[name] = { shown: g.style.display !== "none",
      faded: (g.attrs["class"] || "") === "faded",
      x: +r.attrs.x, width: +r.attrs.width, fill: r.attrs.fill,
      label: g.getElementsByTagName("text")[0].textContent };
  }
  return out;
};
const key = (k, ctrl) => windowListeners.keydown({ key: k, ctrlKey: ctrl, preventDefault() {} });
const states = { initial: state() };
byName("compute").getElementsByTagName("rect")[0].fire("click");
states.zoomed = state();
document.getElementById("unzoom").fire("click");
states.unzoomed = state();
window.prompt = () => "^hot_";
key("f", true);
states.searched = state();
window.prompt = () => "^hot_|main";
key("F", true);
states.nested = state();
key("Escape", false);
states.reset = state();
byName("hot_a").getElementsByTagName("rect")[0].fire("mouseover");
states.hovered = state();
process.stdout.write(JSON.stringify(states));
"""


def to_tree(el: ET.Element) -> dict[str, Any]:
    return {
        "tag": el.tag.rpartition("}")[2],
        "attrs": dict(el.attrib),
        "text": el.text or "",
        "children": [to_tree(child) for child in el],
    }


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the flame graph script is not exercised")
    main, compute = user("main"), user("compute")
    profile = Profile(
        EventType.CPU,
        "samples",
        [
            Sample((main, compute, user("hot_a")), 75, comm="app"),
            Sample((main, compute, user("hot_b")), 25, comm="app"),
            Sample((main, user("read_file")), 50, comm="app"),
            Sample((user("other"),), 50, comm="app"),
        ],
    )
    svg = {"svg": to_tree(ET.fromstring(to_svg(profile))), "script": SCRIPT}
    result = subprocess.run(
        [node, "-e", FAKE_DOM],
        input=json.dumps(svg),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    states: dict[str, Any] = json.loads(result.stdout)
    return states


def test_click_zooms_a_frame_to_full_width(states: dict[str, Any]) -> None:
    frames = states["zoomed"]["frames"]
    assert frames["compute"] | {"fill": ""} == {
        "shown": True, "faded": False, "x": 10, "width": 1180, "fill": "", "label": "compute"
    }  # fmt: skip
    assert (frames["hot_a"]["x"], frames["hot_a"]["width"]) == (10, 885)
    assert (frames["hot_b"]["x"], frames["hot_b"]["width"]) == (895, 295)
    for ancestor in ("all", "app", "main"):
        assert frames[ancestor]["shown"] and frames[ancestor]["faded"]
        assert frames[ancestor]["width"] == 1180
    assert not frames["read_file"]["shown"] and not frames["other"]["shown"]
    assert "hide" not in states["zoomed"]["unzoom"]


def test_reset_zoom_restores_the_full_view(states: dict[str, Any]) -> None:
    assert states["unzoomed"]["frames"] == states["initial"]["frames"]
    assert states["unzoomed"]["unzoom"] == "btn hide"
    assert states["initial"]["frames"]["compute"]["width"] == pytest.approx(1180 * 100 / 200)


def test_search_highlights_matches_and_reports_the_matched_share(states: dict[str, Any]) -> None:
    searched = states["searched"]
    assert searched["matched"] == "Matched: 50.0%"
    assert searched["search"] == "Reset Search"
    assert searched["frames"]["hot_a"]["fill"] == "rgb(230,0,230)"
    assert searched["frames"]["compute"]["fill"] == states["initial"]["frames"]["compute"]["fill"]
    # hot_a and hot_b sit inside main: counted once, as main's 150 of 200.
    assert states["nested"]["matched"] == "Matched: 75.0%"


def test_escape_clears_the_search(states: dict[str, Any]) -> None:
    reset = states["reset"]
    assert reset["matched"] == "" and reset["search"] == "Search"
    assert reset["frames"] == states["initial"]["frames"]


def test_hover_shows_the_frame_details(states: dict[str, Any]) -> None:
    assert states["hovered"]["details"] == "hot_a (75 samples, 37.50%)"
