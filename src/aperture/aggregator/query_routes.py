"""REST routes of the analysis API (docs/api.md), over either :class:`StackSource`."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from aperture.formats.registry import EXPORTS
from aperture.model import LOCK_ROLES, EventType, Profile
from aperture.profile_types import PROFILE_TYPES, no_stacks_message
from aperture.query import answers, models
from aperture.query.filter import QueryFilter
from aperture.query.source import StackSource
from aperture.timeparse import parse_time
from aperture.units import parse_duration

_FILTER_KEYS = ("host", "agent", "comm", "pid", "address", "role")
# Each label filter adds a condition to the SQL text, which ClickHouse bounds (256 KiB).
MAX_LABEL_FILTERS = 64


def _bad(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def _int(text: str, name: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise _bad(f"{name}={text!r} is not a number") from None


def parse_filter(
    request: Request,
    *,
    event_type: EventType,
    from_key: str = "from",
    to_key: str = "to",
    prefix: str = "",
    default_from: str = "-1h",
    default_to: str = "now",
) -> QueryFilter:
    """A QueryFilter from query parameters; ``prefix`` (``baseline.``) overrides per side."""
    params = request.query_params
    now = time.time_ns()

    def get(key: str) -> str | None:
        return params.get(prefix + key) if prefix and prefix + key in params else params.get(key)

    try:
        from_ns = parse_time(params.get(from_key) or default_from, now_ns=now)
        to_ns = parse_time(params.get(to_key) or default_to, now_ns=now)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if to_ns <= from_ns:
        raise _bad(f"{to_key} must be later than {from_key}")
    labels = {}
    for key, value in params.multi_items():
        for p in ("", prefix) if prefix else ("",):
            if key.startswith(p + "label."):
                labels[key[len(p + "label.") :]] = value
    if len(labels) > MAX_LABEL_FILTERS:
        raise _bad(f"{len(labels)} label filters: at most {MAX_LABEL_FILTERS} are allowed")
    pid, address, role = get("pid"), get("address"), get("role")
    if role and event_type is not EventType.LOCK:
        raise _bad(f"role applies to lock profiles only, not {event_type}")
    if role and role not in LOCK_ROLES:
        raise _bad(f"role={role!r} is not a lock role: use one of {', '.join(LOCK_ROLES)}")
    return QueryFilter(
        event_type=event_type,
        from_ns=from_ns,
        to_ns=to_ns,
        host=get("host") or None,
        agent=get("agent") or None,
        comm=get("comm") or None,
        pid=_int(pid, "pid") if pid else None,
        address=_int(address, "address") if address else None,
        lock_role=role or None,
        labels=labels,
    )


TypeParam = Annotated[EventType, Query(alias="type", description=", ".join(EventType))]
_TIME_DOC = "RFC 3339, unix ns, or relative (-1h, now)"


def add_query_routes(router: APIRouter, source: StackSource) -> None:
    """Register /profile-types, /flamegraph, /top, /diff, /timeline, /syscalls, /locks,
    /unwind and /export."""

    @router.get("/profile-types")
    def profile_types(
        request: Request,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.ProfileTypes:
        """Every profile type: its label, units, whether it has stacks, its pprof types;
        with ``from`` (and ``to``), whether that range has data of it (``present``)."""
        if from_ is None and to is None:
            return answers.profile_types()
        f = parse_filter(request, event_type=EventType.CPU)
        return answers.profile_types(source.types_present(f))

    @router.get("/flamegraph")
    def flamegraph(
        request: Request,
        event_type: TypeParam = EventType.CPU,
        max_nodes: Annotated[int, Query(ge=10, le=200_000)] = 5000,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Flamegraph:
        """A flamegraph tree as flat arrays (depth-first pre-order)."""
        if not PROFILE_TYPES[event_type].has_stacks:
            raise _bad(no_stacks_message(event_type))
        f = parse_filter(request, event_type=event_type)
        return answers.flamegraph(source, f, max_nodes)

    @router.get("/wallclock")
    def wallclock(
        request: Request,
        pid: Annotated[int, Query(ge=1, description="the process")],
        max_nodes: Annotated[int, Query(ge=10, le=200_000)] = 5000,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.WallClock:
        """One process's time on CPU (samples x period) and off CPU (by task state) as one tree."""
        f = parse_filter(request, event_type=EventType.CPU)
        try:
            return answers.wallclock(source, f, max_nodes)
        except ValueError as exc:
            raise _bad(str(exc)) from None

    @router.get("/top")
    def top(
        request: Request,
        event_type: TypeParam = EventType.CPU,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        sort: Annotated[str, Query(pattern="^(self|total)$")] = "self",
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Top:
        """Functions by self (leaf) or total (anywhere on the stack) value."""
        if not PROFILE_TYPES[event_type].has_stacks:
            raise _bad(no_stacks_message(event_type))
        return answers.top(source, parse_filter(request, event_type=event_type), limit, sort)

    @router.get("/diff")
    def diff(
        request: Request,
        event_type: TypeParam = EventType.CPU,
        max_nodes: Annotated[int, Query(ge=10, le=200_000)] = 5000,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
        baseline_from: Annotated[str, Query(description=_TIME_DOC)] = "-2h",
        baseline_to: Annotated[str, Query(description=_TIME_DOC)] = "-1h",
        comparison_from: Annotated[str, Query(description=_TIME_DOC)] = "-1h",
        comparison_to: Annotated[str, Query(description=_TIME_DOC)] = "now",
    ) -> models.Diff:
        """Baseline vs comparison, per node on both sides; compare shares of each side."""
        if not PROFILE_TYPES[event_type].has_stacks:
            raise _bad(no_stacks_message(event_type))
        base = parse_filter(request, event_type=event_type, from_key="baseline_from",
                            to_key="baseline_to", prefix="baseline.",
                            default_from=baseline_from, default_to=baseline_to)  # fmt: skip
        comp = parse_filter(request, event_type=event_type, from_key="comparison_from",
                            to_key="comparison_to", prefix="comparison.",
                            default_from=comparison_from,
                            default_to=comparison_to)  # fmt: skip
        return answers.diff(source, base, comp, max_nodes, limit)

    @router.get("/timeline")
    def timeline(
        request: Request,
        event_type: TypeParam = EventType.CPU,
        step: Annotated[str, Query(description="bucket width: 10s, 1m, 1h")] = "60s",
        group_by: Annotated[str | None, Query(pattern="^(host|comm|pid)$")] = None,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Timeline:
        """Samples, wait ns or syscalls per time bucket, optionally per host/comm/pid."""
        try:
            step_s = max(1, int(parse_duration(step)))
        except ValueError as exc:
            raise _bad(str(exc)) from None
        f = parse_filter(request, event_type=event_type)
        if (f.to_ns - f.from_ns) / (step_s * 1e9) > 10_000:
            raise _bad("more than 10,000 buckets: use a larger step or a shorter range")
        return answers.timeline(source, f, step_s, group_by)

    @router.get("/syscalls")
    def syscalls(
        request: Request,
        per_process: bool = False,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Syscalls:
        """Per syscall: count, errors, top errno, total time, latency quantiles, histogram."""
        f = parse_filter(request, event_type=EventType.SYSCALL)
        return answers.syscalls(source, f, per_process)

    @router.get("/locks")
    def locks(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Locks:
        """Top locks by wait time, each with its kind, contention or idle, hold times
        where seen, and its top waiting and holding stacks."""
        return answers.locks(source, parse_filter(request, event_type=EventType.LOCK), limit)

    @router.get("/unwind")
    def unwind(
        request: Request,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> models.Unwind:
        """How user stacks of the CPU batches were unwound (complete, truncated, FP only)."""
        for key in ("pid", "comm", "address", "role"):
            if request.query_params.get(key):
                raise _bad(
                    f"{key} does not apply: unwinding is counted per agent window, not per "
                    "process; filter by host, agent or label"
                )
        return answers.unwind(source, parse_filter(request, event_type=EventType.CPU))

    @router.get("/export")
    def export(
        request: Request,
        format: Annotated[str, Query(description=f"one of {', '.join(EXPORTS)}")],
        event_type: TypeParam = EventType.CPU,
        from_: Annotated[str | None, Query(alias="from", description=_TIME_DOC)] = None,
        to: Annotated[str | None, Query(description=_TIME_DOC)] = None,
    ) -> Response:
        """The selected profile as a file in an interchange format."""
        writer = EXPORTS.get(format)
        if writer is None:
            raise _bad(f"format={format!r} is not available: use one of {', '.join(EXPORTS)}")
        profile: Profile = source.export_profile(parse_filter(request, event_type=event_type))
        try:
            body = writer.render(profile)
        except ValueError as exc:  # e.g. syscall statistics as pprof
            raise _bad(str(exc)) from None
        name = f"aperture-{event_type}{writer.suffixes[0]}"
        return Response(
            body,
            media_type=writer.media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}"',
                     models.TYPE_HEADER: str(event_type), models.UNIT_HEADER: profile.unit},
        )  # fmt: skip
