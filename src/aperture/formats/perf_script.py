"""Linux ``perf script`` text: folded stacks as inferno-collapse-perf makes them, and profiles.

:func:`collapse` gives exactly the folded stacks of inferno's ``inferno-collapse-perf``
(jonhoo/inferno, ``src/collapse/perf.rs``), options included, so a flamegraph of an
imported recording matches the one the usual tools draw. :func:`read_perf_script` turns
the same text into a :class:`aperture.model.Profile` (``cpu-clock``/``task-clock`` as CPU
samples, ``cycles`` as CPU cycles) and :func:`looks_like_perf_script` tells the text from
pprof or folded stacks. Odd input (a blank line inside a stack, a line that is neither a
header nor a frame, no events at all) ends in warnings, never an exception.

The text is a series of events, each a header line and its stack, leaf first::

    go  6157  1224.147545:     250000 cpu-clock:uhH:
            414297 runtime.mapassign_faststr+0x277 (/usr/lib/go/bin/go)
            42f068 runtime.main+0x1c8 (/usr/lib/go/bin/go)

Only the first event type in the text is read, as inferno does: adding up cycles and
instructions, say, would mean nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from aperture.model import EventType, Frame, FrameKind, Profile, Sample

# What Rust's str::trim counts as white space (Python's str.strip also strips \x1c-\x1f).
_WS = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The comm ends before the first all-digit word, ``tid`` or ``pid/tid``, followed by a space.
_PID_WORD = re.compile(r" ([0-9/]+) ")
_U64 = re.compile(r"\+?[0-9]+")
_TIMESTAMP = re.compile(r"([0-9]+)\.([0-9]{1,9})")
# What follows the pid in a header: an optional [cpu], then the time in seconds.
_HEADER_TAIL = re.compile(r" *(?:\[[0-9]+\] +)?[0-9]+\.[0-9]+:\s")
_HEX = frozenset("0123456789abcdefABCDEF")
# An event's modifiers (cycles:uppp, cpu-clock:uhH), not a tracepoint's name.
_MODIFIERS = re.compile(r"[ukhIGHpPSDWebR]+")
_RUST_HASH = re.compile(r"h[0-9a-fA-F]{16}")
_RUST_HASH_LENGTH = 17
_RUST_ESCAPES = (
    ("$SP$", "@"),
    ("$BP$", "*"),
    ("$RF$", "&"),
    ("$LT$", "<"),
    ("$GT$", ">"),
    ("$LP$", "("),
    ("$RP$", ")"),
    ("$C$", ","),
    ("$u7e$", "~"),
    ("$u20$", " "),
    ("$u27$", "'"),
    ("$u3d$", "="),
    ("$u5b$", "["),
    ("$u5d$", "]"),
    ("$u7b$", "{"),
    ("$u7d$", "}"),
    ("$u3b$", ";"),
    ("$u2b$", "+"),
    ("$u21$", "!"),
    ("$u22$", '"'),
)
# Bracketed perf modules that are user-space memory, not kernel code.
_USER_SPACE_MODULES = frozenset({"[vdso]", "[vsyscall]", "[vvar]", "[heap]", "[stack]"})
_CPU_EVENTS = frozenset({"cpu-clock", "task-clock"})
_CYCLE_EVENTS = frozenset({"cycles", "cpu-cycles"})
_SNIFF_BYTES = 64 << 10

# One stack line: (pc, function with its +0x offset cut, module without its parentheses).
_Line = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class CollapseOptions:
    """How :func:`collapse` names frames: inferno-collapse-perf's flags of the same names."""

    include_pid: bool = False  # root frame ``comm-pid``
    include_tid: bool = False  # root frame ``comm-pid/tid`` (implies include_pid)
    annotate_kernel: bool = False  # kernel frames get ``_[k]``
    annotate_jit: bool = False  # JIT frames get ``_[j]``
    include_addrs: bool = False  # unknown frames keep their address: ``[unknown <pc>]``

    @classmethod
    def all(cls) -> CollapseOptions:
        """inferno's ``--all``: kernel and JIT annotations."""
        return cls(annotate_kernel=True, annotate_jit=True)


@dataclass
class Collapsed:
    """Folded stacks of one event type: ``"comm;root;...;leaf" -> weight``."""

    stacks: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    event: str = ""  # the event type kept ("cpu-clock"), "" when there was none
    events: int = 0  # events of that type with a stack, folded into ``stacks``

    def lines(self) -> list[str]:
        """``stack weight`` lines, sorted, as inferno-collapse-perf prints them."""
        return sorted(f"{stack} {weight}" for stack, weight in self.stacks.items())


class UnsupportedPerfEvent(ValueError):
    """perf script text of an event type Aperture has no profile type for."""


@dataclass(frozen=True)
class PerfImport:
    """A profile read from perf script text, placed at 0: ``end_ns`` is ``duration_ns``.

    perf's timestamps count from boot, not wall time, so the caller places the profile in
    time (shifting ``start_ns``/``end_ns``).
    """

    profile: Profile
    event: str
    warnings: list[str]
    duration_ns: int = 0


@dataclass(frozen=True, slots=True)
class _Event:
    comm: str
    pid: str  # "?" when perf printed only the thread id
    tid: str
    period: int | None  # the number before the event name, when perf printed one
    stack: tuple[_Line, ...]  # leaf first, as perf prints it


@dataclass
class _Events:
    """The events of the first event type in the text, and what was skipped on the way."""

    event: str
    events: list[_Event]
    warnings: list[str]
    times: list[int]  # of the events kept, in ns since boot
    name: str = ""  # the event's whole name (a tracepoint's sched:sched_switch)


class _Skipped:
    """Lines skipped of one kind: how many, and the first for the warning."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.first = ""

    def add(self, number: int, line: str) -> None:
        if not self.count:
            self.first = f"line {number}: {_preview(line)}"
        self.count += 1

    def warning(self) -> str | None:
        if not self.count:
            return None
        noun = "line" if self.count == 1 else "lines"
        return f"skipped {self.count} {noun} {self.what} (first at {self.first})"


class _Reader:
    """inferno's collapse-perf state machine, single-threaded, keeping whole events."""

    def __init__(self) -> None:
        self.event: str | None = None
        self.full_event = ""
        self.in_event = False
        self.skip = False
        self.comm = ""
        self.pid = ""
        self.tid = ""
        self.period: int | None = None
        self.stack: list[_Line] = []
        self.events: list[_Event] = []
        self.times: list[int] = []
        self.other_events: Counter[str] = Counter()
        self.weird_headers = _Skipped("where an event header was expected")
        self.weird_frames = _Skipped("of a stack not of the form 'address symbol (module)'")

    def read(self, text: str) -> _Events:
        # Split on "\n" only, as inferno does: str.splitlines() also breaks on \x0b, \x1c...
        for number, raw in enumerate(text.split("\n"), start=1):
            if raw.startswith("#"):
                continue
            line = raw.rstrip(_WS)
            if not line:
                self._end_event()
            elif self.in_event:
                self._on_stack_line(number, line)
            else:
                self._on_event_line(number, line)
                if self.stack:  # a header carrying its one-frame stack
                    self._end_event()
        self._end_event()
        return _Events(self.event or "", self.events, self._warnings(), self.times,
                       self.full_event or self.event or "")  # fmt: skip

    def _on_event_line(self, number: int, line: str) -> None:
        self.in_event = True
        parts = _event_line_parts(line)
        if parts is None:
            self.weird_headers.add(number, line)
            self.in_event = False
            return
        comm, pid, tid, end = parts
        pieces = line[end:].split(":", 2)
        if len(pieces) >= 2:
            words = pieces[1].split(" ")
            event = words[-1]
            self.period = _u64(words[-2]) if len(words) > 1 else None
            time_ns = _time_ns(pieces[0])
            if self.event is None:
                self.event = event
                # a tracepoint's whole name (sched:sched_switch), for the messages
                rest = pieces[2].split(" ", 1)[0].removesuffix(":") if len(pieces) == 3 else ""
                if rest and not _MODIFIERS.fullmatch(rest):
                    self.full_event = f"{event}:{rest}"
            elif event != self.event:
                self.other_events[event] += 1
                self.skip = True
                return
            if time_ns is not None:
                self.times.append(time_ns)
        self.comm, self.pid, self.tid = comm, pid, tid
        if len(pieces) == 3:
            # "cycles:u:  ffff... sym (mod)" or "cycles:  ffff... sym (mod)": a one-frame
            # stack on the header line; "cycles:uppp:" alone is not one.
            post = pieces[2]
            cut = min((i for i in (post.find(":"), post.find(" ")) if i >= 0), default=-1)
            post = post[cut + 1 :].strip(_WS)
            if post:
                self._on_stack_line(number, post)
                self.in_event = False

    def _on_stack_line(self, number: int, line: str) -> None:
        if self.skip:
            return
        parts = _stack_line_parts(line)
        if parts is None:
            self.weird_frames.add(number, line)
            return
        pc, func, module = parts
        offset = func.rfind("+0x")
        if offset >= 0 and all(c in _HEX for c in func[offset + 3 :]):
            func = func[:offset]
        # perf prints a process name in parentheses in some stacks: not a frame
        if func.startswith("("):
            return
        self.stack.append((pc, _fix_rust_symbol(func), module))

    def _end_event(self) -> None:
        if self.stack:
            stack = tuple(self.stack)
            self.events.append(_Event(self.comm, self.pid, self.tid, self.period, stack))
        self.in_event = False
        self.skip = False
        self.stack = []
        self.period = None

    def _warnings(self) -> list[str]:
        warnings = [w for w in (self.weird_headers.warning(), self.weird_frames.warning()) if w]
        if self.other_events:
            skipped = sum(self.other_events.values())
            names = ", ".join(sorted(self.other_events))
            warnings.append(
                f"read only {self.event!r} events, the first type in the text: skipped "
                f"{skipped} {'event' if skipped == 1 else 'events'} of other types ({names})"
            )
        if not self.events:
            warnings.append("no perf script events with a stack found in the text")
        return warnings


def _event_line_parts(line: str) -> tuple[str, str, str, int] | None:
    """``(comm, pid, tid, end)`` of a header line, ``end`` just past the pid word."""
    match = _PID_WORD.search(line)
    if match is None:
        return None
    pid, slash, tid = match.group(1).rpartition("/")
    return line[: match.start()].strip(_WS), pid if slash else "?", tid, match.end()


def _stack_line_parts(line: str) -> _Line | None:
    """``(pc, function, module)`` of ``pc function (module)``; None for anything else."""
    pc, sep, rest = line.lstrip(_WS).partition(" ")
    if not sep:
        return None
    func, sep, module = rest.rpartition(" ")
    if not sep or not (module.startswith("(") and module.endswith(")")):
        return None
    # "7f1e2215d058  (/lib/libc.so)": no symbol at all reads as " ", as in the Perl original
    return pc.rstrip(_WS), func.strip(_WS) or " ", module[1:-1]


def _u64(text: str) -> int | None:
    if _U64.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value < 1 << 64 else None


def _time_ns(before_event: str) -> int | None:
    """The header's ``seconds.fraction`` timestamp in nanoseconds, None when it has none."""
    words = before_event.split()
    match = _TIMESTAMP.fullmatch(words[-1]) if words else None
    if match is None:
        return None
    return int(match.group(1)) * 1_000_000_000 + int(match.group(2).ljust(9, "0"))


def _fix_rust_symbol(symbol: str) -> str:
    """Finish what perf leaves of a legacy Rust symbol (``..``, ``$LT$``, the hash), as
    inferno does; anything else comes back unchanged."""
    tail = symbol[-_RUST_HASH_LENGTH:]
    if len(symbol) < _RUST_HASH_LENGTH or _RUST_HASH.fullmatch(tail) is None:
        return symbol
    rest = symbol[:-_RUST_HASH_LENGTH].removesuffix("::")
    if rest.startswith("_$"):
        rest = rest[1:]
    out: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        if c == ".":
            double = rest.startswith(".", i + 1)
            out.append("::" if double else ".")
            i += 2 if double else 1
        elif c == "$":
            for escape, char in _RUST_ESCAPES:
                if rest.startswith(escape, i):
                    out.append(char)
                    i += len(escape)
                    break
            else:
                out.append(rest[i:])  # an escape inferno does not know: the rest as it is
                break
        else:
            j = min((k for k in (rest.find("$", i), rest.find(".", i)) if k >= 0), default=n)
            out.append(rest[i:j])
            i = j
    return "".join(out)


def _with_module_fallback(module: str, func: str, pc: str, include_addrs: bool) -> str:
    """An unknown symbol named after its module's file (``[libc.so.6]``), if it has one."""
    if func != "[unknown]":
        return func
    if module == "[unknown]":
        return f"[unknown <{pc}>]" if include_addrs else func
    name = module[module.rfind("/") + 1 :]
    return f"[{name} <{pc}>]" if include_addrs else f"[{name}]"


def _tidy_generic(func: str) -> str:
    """``;`` to ``:`` and the argument list cut, except in Go's ``pkg.(*T).M``, C++'s
    ``(anonymous namespace)`` and inside ``<>``, ``{}`` or ``[]``."""
    func = func.replace(";", ":")
    if "(" not in func:
        return func
    depth = 0
    after_dot = -1
    for i, c in enumerate(func):
        if c in "<{[":
            depth += 1
        elif c in ">}])":
            depth -= 1
        elif c == "(":
            if depth == 0 and after_dot != i and not func.startswith("(anonymous namespace)", i):
                return func[:i]
            depth += 1
        elif c == ".":
            after_dot = i + 1
    return func


def _tidy_java(func: str) -> str:
    """``Ljava/lang/Thread:.run`` to ``java/lang/Thread:.run``."""
    return func[1:] if func.startswith("L") and "/" in func else func


def _names(line: _Line, java: bool, include_addrs: bool) -> list[str]:
    """The tidied names of one stack line, caller first: more than one when Java inlined."""
    pc, func, module = line
    names = []
    for part in func.split("->"):
        name = _tidy_generic(_with_module_fallback(module, part, pc, include_addrs))
        names.append(_tidy_java(name) if java else name)
    return names


def _is_kernel(module: str) -> bool:
    """``[kernel.kallsyms]``, ``[nf_conntrack]``, ``*.ko`` or a vmlinux, versioned or not."""
    if module == "[unknown]":
        return False
    if module.startswith("[") or module.endswith(".ko"):
        return True
    at = module.rfind("vmlinux")
    return at >= 0 and all(c.isascii() and (c.isalnum() or c in "-._") for c in module[at:])


def _is_jit(module: str) -> bool:
    """A perf map (``/tmp/perf-PID.map``) or a jitdump image (``.../jitted-PID-N.so``)."""
    return (module.startswith("/tmp/perf-") and module.endswith(".map")) or (
        "/jitted-" in module and module.endswith(".so")
    )


def collapse(text: str, options: CollapseOptions = CollapseOptions()) -> Collapsed:
    """Fold perf script text into the stacks inferno-collapse-perf gives with ``options``."""
    read = _Reader().read(text)
    stacks: dict[str, int] = {}
    named: dict[tuple[_Line, bool], list[str]] = {}
    for event in read.events:
        root = event.comm.replace(" ", "_")
        if options.include_tid:
            root = f"{root}-{event.pid}/{event.tid}"
        elif options.include_pid:
            root = f"{root}-{event.pid}"
        java = root.startswith("java")
        frames = [root]
        for line in reversed(event.stack):
            names = named.get((line, java))
            if names is None:
                names = named[(line, java)] = _annotated(line, java, options)
            frames.extend(names)
        key = ";".join(frames)
        stacks[key] = stacks.get(key, 0) + (1 if event.period is None else event.period)
    return Collapsed(stacks, read.warnings, read.event, len(read.events))


def _annotated(line: _Line, java: bool, opts: CollapseOptions) -> list[str]:
    """:func:`_names` with inferno's suffixes: ``_[i]`` inlined, ``_[k]`` kernel, ``_[j]`` JIT."""
    module = line[2]
    names = _names(line, java, opts.include_addrs)
    for i, name in enumerate(names):
        if i:
            if "_[i]" not in name:
                names[i] = f"{name}_[i]"
        elif opts.annotate_kernel and _is_kernel(module):
            names[i] = f"{name}_[k]"
        elif opts.annotate_jit and _is_jit(module) and "_[j]" not in name:
            names[i] = f"{name}_[j]"
    return names


def _frames(line: _Line, java: bool) -> tuple[Frame, ...]:
    """The model's frames of one stack line, caller first; the kind says kernel or JIT."""
    pc, _, module = line
    if _is_kernel(module) and module not in _USER_SPACE_MODULES:
        kind = FrameKind.KERNEL
    elif _is_jit(module):
        kind = FrameKind.JIT
    elif module == "[unknown]":
        kind = FrameKind.UNKNOWN
    else:
        kind = FrameKind.USER
    # Named as the model names them (aperture.model.Frame): kernel code [kernel] or
    # [modname], perf-map code [jit], so the kind survives a pprof round trip.
    base = module if module.startswith("[") else PurePosixPath(module).name
    if kind is FrameKind.KERNEL and not base.startswith("["):
        base = "[kernel]" if base.startswith("vmlinux") else f"[{base.split('.ko')[0]}]"
    elif kind is FrameKind.JIT:
        base = "[jit]"
    offset = int(pc, 16) if pc and all(c in _HEX for c in pc) else 0
    return tuple(Frame(name, base, kind, offset) for name in _names(line, java, False))


def _event_type(event: str, has_events: bool, name: str = "") -> tuple[EventType, str]:
    if event in _CPU_EVENTS or not has_events:
        return EventType.CPU, "samples"
    if event in _CYCLE_EVENTS:
        return EventType.CYCLES, "cycles"
    if not event:
        raise UnsupportedPerfEvent(
            "perf script text without event names cannot be imported: run perf script "
            "with -F +event on a recording made with -e cpu-clock or -e cycles."
        )
    raise UnsupportedPerfEvent(
        f"perf script events of type {(name or event)!r} cannot be imported: record with "
        "-e cpu-clock or -e cycles instead."
    )


def read_perf_script(text: str) -> PerfImport:
    """Read perf script text into a profile of its first event type, placed at time 0.

    ``cpu-clock``/``task-clock`` give CPU samples (a stack's value is its periods over the
    most common period: its sample count at a fixed rate), ``cycles`` CPU cycles (the
    periods' sum); any other event raises :class:`UnsupportedPerfEvent`.
    """
    read = _Reader().read(text)
    event_type, unit = _event_type(read.event, bool(read.events), read.name)
    stacks: dict[tuple[_Line, bool], tuple[Frame, ...]] = {}
    periods: dict[tuple[int, int, str, tuple[Frame, ...]], list[int | None]] = {}
    for event in read.events:
        java = event.comm.startswith("java")
        stack: list[Frame] = []
        for line in reversed(event.stack):
            frames = stacks.get((line, java))
            if frames is None:
                frames = stacks[(line, java)] = _frames(line, java)
            stack.extend(frames)
        key = (_int(event.pid), _int(event.tid), event.comm, tuple(stack))
        periods.setdefault(key, []).append(event.period)

    frequency_hz = 0
    if event_type is EventType.CPU:
        common = Counter(p for values in periods.values() for p in values if p)
        period = min(common, key=lambda p: (-common[p], p)) if common else 0
        frequency_hz = round(1e9 / period) if period else 0
        values = {key: _samples(ps, period) for key, ps in periods.items()}
    else:
        values = {key: sum(1 if p is None else p for p in ps) for key, ps in periods.items()}

    samples = [
        Sample(stack, value, pid=pid, tid=tid, comm=comm)
        for (pid, tid, comm, stack), value in values.items()
    ]
    duration_ns = max(read.times) - min(read.times) if read.times else 0
    profile = Profile(
        event_type, unit, samples, start_ns=0, end_ns=duration_ns, frequency_hz=frequency_hz
    )
    return PerfImport(profile, read.event, read.warnings, duration_ns)


def _samples(periods: list[int | None], period: int) -> int:
    """How many samples at ``period`` ns the periods make; an event without one counts one."""
    if not period:
        return len(periods)
    total = sum(period if p is None else p for p in periods)
    # never 0: a stack perf sampled stays in the profile even if its periods were short
    return max(1, round(total / period))


def _int(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() else 0


def looks_like_perf_script(data: bytes) -> bool:
    """Whether ``data`` starts like perf script text: its first line that is neither blank
    nor a ``#`` comment is an event header (``comm pid [cpu] time: period event:``)."""
    head = data[:_SNIFF_BYTES]
    lines = head.decode("utf-8", errors="replace").split("\n")
    if len(data) > _SNIFF_BYTES:
        lines.pop()  # cut short: not a whole line
    for raw in lines:
        line = raw.strip(_WS)
        if not line or line.startswith("#"):
            continue
        parts = _event_line_parts(line + " ")
        return parts is not None and _HEADER_TAIL.match(line + " ", parts[3] - 1) is not None
    return False


def _preview(line: str, limit: int = 80) -> str:
    line = line.strip(_WS)
    return repr(line if len(line) <= limit else line[: limit - 1] + "…")
