"""The analysis API's answers as typed models: the shapes docs/api.md specifies.

FastAPI publishes them in ``/openapi.json`` (the dashboard's API types are
generated from that document), gRPC and the alert sources read their fields,
and the buffer's and the store's answers are equal because one function builds
each of them (:mod:`aperture.query.answers`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aperture.model import EventType

# Headers of an /export answer saying what its values are (a folded file cannot say).
TYPE_HEADER = "X-Aperture-Profile-Type"
UNIT_HEADER = "X-Aperture-Value-Unit"


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class FlameNodes(Answer):
    """Parallel columns of the tree's nodes in depth-first pre-order."""

    name: list[int] = Field(description="index into names")
    module: list[int] = Field(description="index into names")
    kind: list[int] = Field(
        description="0 root/process, 1 user, 2 kernel, 3 jit, 4 unknown, 5 other, 6 python"
    )
    line: list[int] = Field(description="the node's hottest source line, 0 for none")
    depth: list[int]
    self_: list[int] = Field(
        serialization_alias="self", description="value with the node as the leaf"
    )
    total: list[int] = Field(description="value through the node")


class Flamegraph(Answer):
    """``GET /api/v1/flamegraph``: a tree as flat arrays."""

    type: EventType
    unit: str
    from_ns: int
    to_ns: int
    total: int
    names: list[str] = Field(description="string table of node names and modules")
    nodes: FlameNodes


class WallClock(Answer):
    """``GET /api/v1/wallclock``: one process's threads, on CPU and off, as one tree of time.

    On-CPU samples become time at the sampling period; off-CPU stacks end in their
    task state (``[off-CPU: sleeping]``), so what is not under such a leaf ran.
    """

    unit: str
    from_ns: int
    to_ns: int
    pid: int
    total: int
    on_cpu_ns: int = Field(description="CPU samples x the sampling period")
    off_cpu_ns: int
    frequency_hz: int = Field(description="the CPU samples' rate; 0 when there are none")
    names: list[str] = Field(description="string table of node names and modules")
    nodes: FlameNodes


class TopFunction(Answer):
    name: str
    module: str
    self_: int = Field(serialization_alias="self")
    self_pct: float
    total: int
    total_pct: float


class Top(Answer):
    """``GET /api/v1/top``: functions by self or total value."""

    type: EventType
    unit: str
    total: int
    functions: list[TopFunction]


class DiffNodes(Answer):
    """The union tree's columns, with each side's value per node."""

    name: list[int]
    module: list[int]
    kind: list[int]
    line: list[int]
    depth: list[int]
    baseline: list[int]
    comparison: list[int]
    baseline_self: list[int]
    comparison_self: list[int]


class DiffFunction(Answer):
    name: str
    module: str
    baseline_self: int
    comparison_self: int
    baseline_pct: float
    comparison_pct: float
    delta_pct: float = Field(description="comparison_pct - baseline_pct: compare shares")


class Diff(Answer):
    """``GET /api/v1/diff``: baseline vs comparison."""

    type: EventType
    unit: str
    baseline_total: int
    comparison_total: int
    names: list[str]
    nodes: DiffNodes
    functions: list[DiffFunction]


class Series(Answer):
    key: str
    points: list[tuple[int, int]] = Field(description="[bucket start ns, value], by time")


class Timeline(Answer):
    """``GET /api/v1/timeline``: value per time bucket."""

    type: EventType
    unit: str
    step_s: int
    series: list[Series]


class SyscallSummary(Answer):
    name: str
    nr: int
    pid: int | None = Field(description="null unless per_process")
    comm: str | None = Field(description="null unless per_process")
    count: int
    rate: float = Field(description="calls per second over the window")
    errors: int
    error_rate: float
    top_errno: list[tuple[str, int]]
    total_ns: int
    avg_ns: float
    p50_ns: float
    p90_ns: float
    p99_ns: float
    max_ns: int
    hist: list[int] = Field(description="log2 latency histogram")


class Syscalls(Answer):
    """``GET /api/v1/syscalls``."""

    duration_s: float
    syscalls: list[SyscallSummary]


class FrameName(Answer):
    name: str
    module: str


class LockSummary(Answer):
    address: str = Field(description="hex")
    pid: int
    comm: str
    kind: str = Field(description="mutex, rwlock_read, condvar, ...; '' when not known")
    kind_label: str
    lock_class: str = Field(
        description="contention (a thread wanted a lock another held), idle (waiting for "
        "work or a signal) or unknown"
    )
    contentions: int
    wait_ns: int
    avg_ns: float
    max_ns: int
    p99_ns: float
    eagain: int
    timeouts: int
    releases: int = Field(description="releases that woke a waiter")
    holds: int = Field(description="of the releases, those whose acquisition was seen (timed)")
    hold_ns: int
    hold_p50_ns: float
    hold_p99_ns: float
    hold_max_ns: int
    top_stack: list[FrameName]
    top_holder: list[FrameName] = Field(description="the top holding stack at release")


class Locks(Answer):
    """``GET /api/v1/locks``: top locks by wait time."""

    locks: list[LockSummary]


class ProfileTypeInfo(Answer):
    type: EventType
    label: str = Field(description="the dashboard's name for the type")
    value_unit: str = Field(description="what a stack's value counts")
    series_unit: str = Field(description="what a timeline counts per step")
    has_stacks: bool = Field(description="flamegraph, top, diff and pprof apply")
    pprof_sample_types: list[str] = Field(description="type/unit of each pprof value column")
    aggregation: Literal["sum", "average"] = Field(
        description="how a stack's values over several windows combine: summed, or averaged "
        "per series (a gauge: bytes in use, goroutines)"
    )
    present: bool | None = Field(
        default=None,
        description="whether the asked time range (from, to) has data of this type "
        "(null when no range was asked)",
    )


class ProfileTypes(Answer):
    """``GET /api/v1/profile-types``: every type this aggregator knows."""

    types: list[ProfileTypeInfo]


class UnwindSamples(Answer):
    table_walks: int = Field(description="user stacks made by the table walker")
    complete: int = Field(description="of those, reached the stack's bottom")
    truncated: int = Field(description="of those, stopped early (see ends)")
    fp_only: int = Field(
        description="samples of processes not registered yet: kernel frame-pointer walk"
    )
    fp_frames: int = Field(description="table walks that used a frame pointer for a frame")


class UnwindTables(Answer):
    """Gauges: the largest value one agent reported at a window's end."""

    bytes_max: int
    loaded_max: int


class UnwindLosses(Answer):
    unwound_stack_collisions: int
    unwound_stacks_full: int
    unwind_tables_evicted: int
    unwind_tables_too_large: int


class Unwind(Answer):
    """``GET /api/v1/unwind``: how user stacks were unwound; sections null without data."""

    batches: int = Field(description="CPU batches (agent windows) the filters select")
    batches_with_unwind_data: int = Field(
        description="of those, from agents that report unwinding; the sections are null when 0"
    )
    modes: dict[str, int] = Field(description="batches per --unwind mode (auto, dwarf, fp)")
    samples: UnwindSamples | None
    ends: dict[str, int] | None = Field(
        description="table walks by how they ended: bottom, depth, no_mapping, no_table, "
        "no_info, unsupported, read_fault, bad_frame (and any a newer agent names)"
    )
    tables: UnwindTables | None
    losses: UnwindLosses | None
