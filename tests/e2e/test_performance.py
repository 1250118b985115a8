"""A 100k-node flame graph in the browser: build + layout + draw time, and hover cost.

Each case is loaded a few times and the fastest load is kept: on a shared machine
the minimum is the steadiest estimate of what the code costs (the others add
whatever else was running). Every run's numbers go to tests/artifacts/perf.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_seed import Host, Pusher, big_tree
from ui_session import Session, wait_stored

from aggregator_proc import AggregatorProcess

NODES = 100_000
LOADS = 2
PHASES = ("layout", "allocate", "raster", "upload_and_labels")


@pytest.fixture(scope="module")
def big_agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("e2e-big") / "agg").start()
    try:
        pusher = Pusher(proc.grpc_target, proc.token)
        pusher.push(Host("agent-big", "big-1", 777, {}), 1, [big_tree(NODES)])
        pusher.push(Host("agent-deep", "deep-1", 778, {}), 1, [big_tree(NODES, deep=True)])
        pusher.close()
        wait_stored(proc)
        yield proc
    finally:
        assert proc.stop() == 0, proc.log.read_text()


HOVER_JS = """
async (canvas) => {
  const r = canvas.getBoundingClientRect();
  const handler = [], frames = [], idle = [];
  // the page's own frame rate first: a loaded machine slows every frame
  let last = performance.now();
  for (let i = 0; i < 60; i++) {
    await new Promise(requestAnimationFrame);
    const now = performance.now();
    idle.push(now - last);
    last = now;
  }
  last = performance.now();
  for (let i = 0; i < 300; i++) {
    const x = r.left + ((i * 37) % Math.floor(r.width));
    const y = r.top + 9 + 18 * (2 + (i % 3));
    const t0 = performance.now();
    canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
    handler.push(performance.now() - t0);
    await new Promise(requestAnimationFrame);
    const now = performance.now();
    frames.push(now - last);
    last = now;
  }
  const q = (a, p) => [...a].sort((x, y) => x - y)[Math.floor(a.length * p)];
  return {handler_p50: q(handler, 0.5), handler_p95: q(handler, 0.95),
          frame_p50: q(frames, 0.5), frame_p95: q(frames, 0.95), idle_frame_p50: q(idle, 0.5)};
}
"""

# From the flamegraph response's last byte to the painted canvas: JSON parsing, the
# tree's typed arrays, colours, layout, raster and labels; what a person waits for
# once the aggregator has answered.
RESPONSE_TO_PAINT_JS = """
(el) => {
  const fetches = performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/api/v1/flamegraph'));
  return Number(el.dataset.paintedAt) - fetches[fetches.length - 1].responseEnd;
}
"""


def load(ui: Session, path: str) -> dict[str, Any]:
    """Open the page fresh and read the canvas' own timings."""
    page = ui.open(path)
    ui.frames()
    canvas = page.locator("[data-testid=flame-main] canvas.flame-canvas")
    data = canvas.evaluate("el => ({...el.dataset})")
    build_ms = float(page.get_by_test_id("flame-status").get_attribute("data-build-ms"))
    render_ms = float(data["renderMs"])
    return {
        "nodes": int(data["nodes"]),
        "rects_drawn": int(data["rects"]),
        "culled": int(data["culled"]),
        "labels_drawn": int(data["labels"]),
        "build_ms": build_ms,
        "render_ms": render_ms,
        "render_phases_ms": dict(zip(PHASES, map(float, data["phases"].split()), strict=True)),
        "first_paint_ms": round(build_ms + render_ms, 1),
        "response_to_paint_ms": round(canvas.evaluate(RESPONSE_TO_PAINT_JS), 1),
    }


def best_of(ui: Session, path: str) -> dict[str, Any]:
    runs = [load(ui, path) for _ in range(LOADS)]
    best = dict(min(runs, key=lambda r: r["first_paint_ms"]))
    best["all_first_paints_ms"] = [r["first_paint_ms"] for r in runs]
    return best


def test_100k_node_flamegraph_renders_fast(
    browser: Any, big_agg: AggregatorProcess, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('aperture.token', {big_agg.token!r})")
    ui = Session(context.new_page(), big_agg, artifacts)
    try:
        # a bushy, heavy-tailed profile: most of its 100k frames are under half a pixel
        bushy = best_of(ui, "/flamegraph?max_nodes=200000&comm=bigtree")
        assert bushy["nodes"] > NODES, bushy
        assert bushy["culled"] > 0 and bushy["rects_drawn"] + bushy["culled"] == bushy["nodes"]
        ui.shot("flamegraph-100k")
        page = ui.page
        canvas = page.locator("[data-testid=flame-main] canvas.flame-canvas")

        # zoom into a module that is not leftmost, and back: a fresh layout each time
        name = next(f["name"] for f in ui.frames() if f["y"] == 36 and f["x"] > 100)
        zooms = []
        for _ in range(2):
            f = ui.frame(name)
            page.mouse.click(f["cx"], f["cy"])
            page.wait_for_url("**focus=**")
            page.wait_for_function(
                "([el, n]) => el.apertureFrames().find(f => f.name === n).x === 0",
                arg=[canvas.element_handle(), name],
            )
            zooms.append(float(canvas.evaluate("el => el.dataset.renderMs")))
            bushy["zoom_rects_drawn"] = int(canvas.evaluate("el => el.dataset.rects"))
            page.go_back()
            page.wait_for_function(
                "([el, n]) => el.apertureFrames().find(f => f.name === n).x > 0",
                arg=[canvas.element_handle(), name],
            )
        bushy["zoom_render_ms"] = min(zooms)
        bushy["hover"] = canvas.evaluate(HOVER_JS)

        # the worst case: 100k frames all just over half a pixel wide, all drawn
        deep = best_of(ui, "/flamegraph?max_nodes=200000&comm=deeptree")
        assert deep["nodes"] > NODES and deep["rects_drawn"] > 0.9 * deep["nodes"], deep
        ui.shot("flamegraph-100k-deep")
        deep["hover"] = canvas.evaluate(HOVER_JS)

        result = {"bushy": bushy, "all_drawn": deep}
        (artifacts / "perf.json").write_text(json.dumps(result, indent=2))
        assert bushy["first_paint_ms"] < 100, result
        assert bushy["zoom_render_ms"] < 100, result
        assert deep["first_paint_ms"] < 200, result  # ~60-100 ms on a quiet machine
        for case in (bushy, deep):
            hover = case["hover"]
            assert hover["handler_p95"] < 5, result
            # hovering adds less than a frame (16.7 ms at 60 Hz) to the page's frame time
            assert hover["frame_p50"] < hover["idle_frame_p50"] + 16.7, result
    finally:
        context.close()
    assert not ui.errors, ui.errors
