"""Running collectors window by window until the duration ends or a signal arrives."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol, TextIO

from aperture.agent.run_totals import RunTotals
from aperture.model import Profile
from aperture.transforms import merge
from aperture.units import format_duration


class Collector(Protocol):
    def start(self) -> None: ...

    def drain(self) -> Profile: ...

    def sample_count(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class Recording:
    """The run's totals for the summary, and every window when an output file needs them.

    Without ``keep_windows`` nothing per window is kept: an agent that pushes for
    weeks holds only :class:`RunTotals`, bounded by the code it profiles.
    """

    totals: RunTotals = field(default_factory=RunTotals)
    windows: dict[str, list[Profile]] = field(default_factory=dict)
    keep_windows: bool = True

    def add(self, name: str, profile: Profile) -> None:
        self.totals.add(name, profile)
        if self.keep_windows:
            self.windows.setdefault(name, []).append(profile)

    def merged(self, name: str) -> Profile | None:
        """Every window of a mode merged (only with ``keep_windows``)."""
        windows = self.windows.get(name)
        return merge(windows) if windows else None


@contextmanager
def stop_on_signals(stop: threading.Event, again: threading.Event | None = None) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` instead of raising, so collected data is written.

    A second signal sets ``again``: the user wants out of the final flush too.
    """

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and again is not None:
            again.set()
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Progress:
    """A single live status line on a terminal; silent elsewhere."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled and stream.isatty()
        self._width = 0
        self._text = ""
        # log() is called from the push thread while show() runs in the main one.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the status line is drawn (a terminal, and not --quiet)."""
        return self._enabled

    def show(self, text: str) -> None:
        with self._lock:
            self._text = text
            if self._enabled:
                self._width = max(self._width, len(text))
                self._stream.write("\r" + text.ljust(self._width))
                self._stream.flush()

    def clear(self) -> None:
        with self._lock:
            self._clear()
            self._text = ""

    def _clear(self) -> None:
        if self._enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()

    def log(self, line: str) -> None:
        """A message line above the status line (printed even when the display is off)."""
        with self._lock:
            self._clear()
            self._stream.write(line + "\n")
            if self._enabled and self._text:
                self._stream.write(self._text.ljust(self._width))
            self._stream.flush()


def record(
    collectors: dict[str, Collector],
    *,
    duration_s: float | None,
    window_s: float,
    stop: threading.Event,
    on_window: Callable[[str, Profile], None] | None = None,
    progress: Progress | None = None,
    status: Callable[[], str] | None = None,
    keep_windows: bool = True,
    per_process: bool = False,
    after_drain: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Recording:
    """Drain every collector each window until ``duration_s`` or ``stop``; final drain always.

    ``status`` adds to the progress line (the push state); ``keep_windows``
    False keeps only the run's totals (``per_process``: syscall rows per process);
    ``after_drain`` runs once after each window's drains (the symbolizer's sweep).
    """
    recording = Recording(RunTotals(per_process=per_process), keep_windows=keep_windows)
    progress = progress or Progress(sys.stderr, enabled=False)
    started = clock()
    next_drain = started + window_s

    def drain_all() -> None:
        for name, collector in collectors.items():
            profile = collector.drain()
            recording.add(name, profile)
            if on_window is not None:
                on_window(name, profile)
        if after_drain is not None:
            after_drain()

    while not stop.is_set():
        now = clock()
        elapsed = now - started
        if duration_s is not None and elapsed >= duration_s:
            break
        if now >= next_drain:
            drain_all()
            next_drain += window_s
            continue
        if progress.enabled:  # counters read for the status line only: none in a service
            samples = sum(c.sample_count() for c in collectors.values())
            left = "" if duration_s is None else f", {format_duration(duration_s - elapsed)} left"
            extra = f" | {status()}" if status is not None else ""
            progress.show(
                f"recording {format_duration(elapsed)}{left}, {samples} samples{extra} "
                "(Ctrl-C stops)"
            )
        deadline = next_drain if duration_s is None else min(next_drain, started + duration_s)
        stop.wait(max(0.0, min(0.5, deadline - now)))
    progress.clear()
    drain_all()
    return recording
