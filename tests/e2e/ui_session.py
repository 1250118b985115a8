"""A browser page on the dashboard, with helpers that read what a person sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aggregator_proc import AggregatorProcess


def wait_stored(agg: AggregatorProcess, timeout: float = 60.0) -> None:
    """Wait until queries see every accepted batch (an aggregator with a store writes
    batches in the background and says how many are pending in /api/v1/health)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = agg.get("/api/v1/health", headers=agg.headers()).json()
        storage = health.get("storage")
        if not storage or not storage.get("pending_batches"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the aggregator's store still has pending batches after {timeout}s")


class Session:
    """A page with the token already in sessionStorage, and a few helpers."""

    def __init__(self, page: Any, agg: AggregatorProcess, artifacts: Path) -> None:
        self.page = page
        self.agg = agg
        self.artifacts = artifacts
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str) -> Any:
        self.page.goto(self.agg.http + path)
        return self.page

    def api(self, path: str, **params: Any) -> Any:
        r = self.agg.get(path, params=params, headers=self.agg.headers())
        r.raise_for_status()
        return r.json()

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def frames(self, testid: str = "flame-main") -> list[dict[str, Any]]:
        canvas = self.page.locator(f"[data-testid={testid}] canvas.flame-canvas")
        canvas.wait_for()
        self.page.wait_for_function(
            "el => el.dataset.renderMs !== undefined",
            arg=canvas.element_handle(),
        )
        frames: list[dict[str, Any]] = canvas.evaluate("el => el.apertureFrames()")
        return frames

    def frame(self, name: str, testid: str = "flame-main") -> dict[str, Any]:
        """The widest drawn frame of that function, with its page coordinates."""
        found = [f for f in self.frames(testid) if f["name"] == name]
        assert found, f"no frame {name!r} drawn in {testid}"
        f = max(found, key=lambda f: f["w"])
        box = self.page.locator(f"[data-testid={testid}] canvas.flame-canvas").bounding_box()
        f["cx"] = box["x"] + f["x"] + min(f["w"] / 2, 40)
        f["cy"] = box["y"] + f["y"] + 9
        return f

    def hover(self, name: str, testid: str = "flame-main") -> str:
        f = self.frame(name, testid)
        self.page.mouse.move(f["cx"], f["cy"])
        tip = self.page.locator(f"[data-testid={testid}] [data-testid=flame-tooltip]")
        tip.wait_for(state="visible")
        text: str = tip.inner_text()
        assert name in text
        return text

    def pixel(self, name: str, testid: str = "flame-main") -> tuple[int, int, int]:
        """The colour a person sees inside that function's frame."""
        f = self.frame(name, testid)
        rgba = self.page.locator(f"[data-testid={testid}] canvas.flame-canvas").evaluate(
            """(el, [x, y]) => {
                const dpr = window.devicePixelRatio || 1;
                return Array.from(el.getContext('2d').getImageData(
                    Math.round(x * dpr), Math.round(y * dpr), 1, 1).data);
            }""",
            [f["x"] + 2, f["y"] + 9],  # left of the label (it starts 4 px in)
        )
        return rgba[0], rgba[1], rgba[2]
