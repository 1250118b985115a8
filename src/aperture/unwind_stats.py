"""How agents say their user stacks were unwound, as bounded numbers, and their sum.

A CPU window's ``cpu.unwind*`` window labels (``agent/collectors/cpu.py`` sets
them) become a mode and a map of counts and gauges with :func:`unwind_stats`;
the store keeps that map per batch (``batches.window_stats``) and the buffer
computes it from the batch itself, so :class:`UnwindTotals` gives both query
backends the same ``/api/v1/unwind`` answer. A batch from an agent that does not
report unwinding has no mode and no stats: it counts in ``batches`` only, never
as 0% complete.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODE_KEY = "cpu.unwind"
STAT_PREFIX = "cpu.unwind_"
# A rogue or future agent cannot grow a batch row or a metric without bound: keys
# longer than MAX_KEY_LEN, not made of [a-z0-9_.], or not decimal UInt64 values
# are dropped, and of the rest the first MAX_KEYS in sorted order are kept. Nothing
# counts the dropped ones: docs/api.md says so.
MAX_KEYS = 64
MAX_KEY_LEN = 64
# States at the window's end (kernel memory, binaries with a table), not counts:
# summed over windows they would mean nothing, so the answer takes their maximum.
GAUGES = {"cpu.unwind_table_bytes": "bytes_max", "cpu.unwind_tables_loaded": "loaded_max"}
SAMPLES = ("table_walks", "complete", "truncated", "fp_only", "fp_frames")
# enum unwind_end of the BPF unwinder; "bottom" is a complete walk
ENDS = ("bottom", "depth", "no_mapping", "no_table", "no_info", "unsupported", "read_fault",
        "bad_frame")  # fmt: skip
LOSSES = ("unwound_stack_collisions", "unwound_stacks_full", "unwind_tables_evicted",
          "unwind_tables_too_large")  # fmt: skip
NAME = re.compile(r"[a-z0-9_.]{1,64}")
_UINT64 = re.compile(r"[0-9]{1,20}")


def unwind_stats(window_labels: Mapping[str, str]) -> tuple[str, dict[str, int]]:
    """(mode, bounded numeric ``cpu.unwind_*`` labels) of one batch; ``""`` for no mode."""
    mode = window_labels.get(MODE_KEY, "")
    if mode and not NAME.fullmatch(mode):
        mode = "other"
    stats: dict[str, int] = {}
    for key in sorted(window_labels):
        if len(stats) == MAX_KEYS:
            break
        if not key.startswith(STAT_PREFIX) or len(key) > MAX_KEY_LEN or not NAME.fullmatch(key):
            continue
        value = window_labels[key]
        if _UINT64.fullmatch(value) and int(value) < 2**64:
            stats[key] = int(value)
    return mode, stats


def reported(mode: str, stats: Mapping[str, int]) -> bool:
    """Whether a batch said anything about unwinding (an old agent says nothing)."""
    return bool(mode) or bool(stats)


@dataclass
class UnwindTotals:
    """Sums over batches (added one by one or as groups already summed by SQL)."""

    batches: int = 0
    with_data: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    sums: Counter[str] = field(default_factory=Counter)
    maxes: dict[str, int] = field(default_factory=dict)
    losses: Counter[str] = field(default_factory=Counter)

    def add(
        self,
        mode: str,
        batches: int,
        has_data: bool,
        sums: Mapping[str, int],
        maxes: Mapping[str, int],
        losses: Mapping[str, int],
    ) -> None:
        """``batches`` batches of one mode: their stats summed and maximal, their losses.

        ``has_data``: whether these batches reported unwinding (:func:`reported`).
        """
        self.batches += batches
        if not has_data:
            return
        self.with_data += batches
        if mode:
            self.modes[mode] += batches
        self.sums.update({k: int(v) for k, v in sums.items()})
        for key, value in maxes.items():
            self.maxes[key] = max(self.maxes.get(key, 0), int(value))
        self.losses.update({k: int(v) for k, v in losses.items() if k.startswith("cpu.")})

    def answer(self) -> dict[str, Any]:
        """The ``/api/v1/unwind`` answer (docs/api.md); sections are null without data."""
        out: dict[str, Any] = {
            "batches": self.batches,
            "batches_with_unwind_data": self.with_data,
            "modes": dict(sorted(self.modes.items())),
            "samples": None,
            "ends": None,
            "tables": None,
            "losses": None,
        }
        if not self.with_data:
            return out
        s = self.sums
        out["samples"] = {name: s[STAT_PREFIX + name] for name in SAMPLES}
        ends = {name: s[f"{STAT_PREFIX}end_{name}"] for name in ENDS}
        for key in sorted(s):  # end reasons of a newer agent, as it names them
            name = key.removeprefix(f"{STAT_PREFIX}end_")
            if name != key and name not in ends:
                ends[name] = s[key]
        out["ends"] = ends
        out["tables"] = {name: self.maxes.get(key, 0) for key, name in GAUGES.items()}
        out["losses"] = {name: self.losses["cpu." + name] for name in LOSSES}
        return out
