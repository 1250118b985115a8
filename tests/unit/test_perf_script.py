"""perf script text: folded exactly as inferno-collapse-perf folds it, and read into profiles.

The expected folds are inferno's and FlameGraph's own results on their test inputs
(../shared/interop/collapse-perf, see its README); every result file there is a test.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aperture.formats.perf_script import (
    CollapseOptions,
    UnsupportedPerfEvent,
    collapse,
    looks_like_perf_script,
    read_perf_script,
)
from aperture.model import EventType, Frame, FrameKind, fold
from interop_files import INTEROP

COLLAPSE_PERF = INTEROP / "collapse-perf"
needs_fixtures = pytest.mark.skipif(
    not COLLAPSE_PERF.is_dir(),
    reason=f"{COLLAPSE_PERF} is missing: these tests read inferno's and FlameGraph's perf "
    "script fixtures from ../shared/interop beside the project",
)
RESULT_NAME = re.compile(r"(?P<stem>.+)-collapsed(?:-(?P<opt>pid|tid|kernel|jit|all|addrs))?\.txt")
OPTIONS = {
    None: CollapseOptions(),
    "pid": CollapseOptions(include_pid=True),
    "tid": CollapseOptions(include_tid=True),
    "kernel": CollapseOptions(annotate_kernel=True),
    "jit": CollapseOptions(annotate_jit=True),
    "all": CollapseOptions.all(),
    "addrs": CollapseOptions(include_addrs=True),
}


def perf_text(stem: str) -> str:
    """A fixture's perf script text (``<stem>.txt`` or ``<stem>.txt.gz``)."""
    plain = COLLAPSE_PERF / f"{stem}.txt"
    raw = (
        plain.read_bytes()
        if plain.exists()
        else gzip.decompress((COLLAPSE_PERF / f"{stem}.txt.gz").read_bytes())
    )
    return raw.decode("utf-8", errors="replace")


def expected_lines(result: Path) -> list[str]:
    """A result file's folded lines, sorted; FlameGraph's may quote the line or its stack."""
    lines = []
    for raw in result.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) > 1 and line[0] == line[-1] == '"':
            line = line[1:-1]
        stack, _, weight = line.rpartition(" ")
        if len(stack) > 1 and stack[0] == stack[-1] == '"':
            line = f"{stack[1:-1]} {weight}"
        lines.append(line)
    return sorted(lines)


def expected_weights(result: Path) -> dict[str, int]:
    weights: dict[str, int] = {}
    for line in expected_lines(result):
        stack, _, weight = line.rpartition(" ")
        weights[stack] = int(weight)
    return weights


def result_files() -> list[Any]:
    results = sorted((COLLAPSE_PERF / "results").glob("*-collapsed*.txt"))
    if not results:
        return [pytest.param(None, id="no-fixtures", marks=needs_fixtures)]
    return [pytest.param(path, id=path.stem) for path in results]


@needs_fixtures
@pytest.mark.parametrize("result", result_files())
def test_collapse_gives_inferno_folds(result: Path) -> None:
    match = RESULT_NAME.fullmatch(result.name)
    assert match is not None, f"unexpected result file name {result.name}"
    folded = collapse(perf_text(match["stem"]), OPTIONS[match["opt"]])
    assert folded.lines() == expected_lines(result)


@needs_fixtures
@pytest.mark.parametrize(
    ("stem", "kept", "says"),
    [
        ("empty-line", ["inline-counter;main 250000"], "where an event header was expected"),
        ("weird-stack-line", ["inline-counter;main 250000"], "THIS_IS_A_WEIRD_LINE"),
        ("no-events", [], "no perf script events"),
    ],
    ids=["empty-line", "weird-stack-line", "no-events"],
)
def test_odd_input_warns_and_keeps_the_rest(stem: str, kept: list[str], says: str) -> None:
    folded = collapse(perf_text(stem))
    assert folded.lines() == kept
    assert len(folded.warnings) == 1 and says in folded.warnings[0], folded.warnings
    imported = read_perf_script(perf_text(stem))
    assert imported.warnings == folded.warnings
    assert imported.profile.event_type is EventType.CPU


def test_only_the_first_event_type_is_kept_with_one_warning() -> None:
    text = (
        "app 10 1.000000: 5 cycles:u:\n\t1 f (/bin/app)\n\n"
        "app 10 1.100000: 7 instructions:u:\n\t1 f (/bin/app)\n\n"
        "app 10 1.200000: 9 instructions:u:\n\t2 g (/bin/app)\n\n"
        "app 10 1.300000: 6 cycles:u:\n\t1 f (/bin/app)\n"
    )
    folded = collapse(text)
    assert folded.lines() == ["app;f 11"]
    assert (folded.event, folded.events) == ("cycles", 2)
    assert len(folded.warnings) == 1
    assert "skipped 2 events" in folded.warnings[0] and "instructions" in folded.warnings[0]


def test_root_names_and_frame_tidying() -> None:
    text = (
        "V8 WorkerThread 24636/25607 [000] 94564.109216: 3 cycles:\n"
        "\tffffffff8103ce3b native_safe_halt+0x1b ([kernel.kallsyms])\n"
        "\t7f00 foo<Vec<usize>>(Vec<usize>) (/usr/lib/libx.so)\n"
        "\t7f01 net/http.(*Client).Do+0x10 (/usr/bin/server)\n"
        "\t7f02 ns::(anonymous namespace)::bar(int) (/usr/lib/liby.so.1)\n"
        "\t7f03 a;b (/usr/lib/liby.so.1)\n"
        "\t7f04 [unknown] (/usr/lib/libz.so)\n"
        "\t7f05 [unknown] ([unknown])\n"
        "\t7f06 (deleted) (/usr/lib/libz.so)\n"
        "\t7f07 LFoo;::run (/tmp/perf-7.map)\n"
    )
    # root first: perf prints the leaf first; "(deleted)" is not a function name
    stack = "LFoo:::run;[unknown];[libz.so];a:b;ns::(anonymous namespace)::bar;"
    stack += "net/http.(*Client).Do;foo<Vec<usize>>;native_safe_halt"
    assert collapse(text).lines() == [f"V8_WorkerThread;{stack} 3"]
    assert collapse(text, CollapseOptions(include_pid=True)).lines() == [
        f"V8_WorkerThread-24636;{stack} 3"
    ]
    assert collapse(text, CollapseOptions(include_tid=True)).lines() == [
        f"V8_WorkerThread-24636/25607;{stack} 3"
    ]
    annotated = collapse(text, CollapseOptions.all()).lines()[0]
    assert "LFoo:::run_[j];" in annotated and annotated.endswith("native_safe_halt_[k] 3")
    addrs = collapse(text, CollapseOptions(include_addrs=True)).lines()[0]
    assert addrs.startswith("V8_WorkerThread;LFoo:::run;[unknown <7f05>];[libz.so <7f04>];")


def test_java_frames_lose_their_type_prefix_and_inlined_ones_are_marked() -> None:
    text = (
        "java 12688/12764 6544038.708352: 1 cpu-clock:\n"
        "\t7f10 Ljava/io/Writer;::write->Ljava/io/Writer;::flush (/tmp/perf-12688.map)\n"
        "\t7f11 Interpreter (/tmp/perf-12688.map)\n"
    )
    assert collapse(text).lines() == [
        "java;Interpreter;java/io/Writer:::write;java/io/Writer:::flush_[i] 1"
    ]
    frames = read_perf_script(text).profile.samples[0].stack
    assert [f.name for f in frames] == [
        "Interpreter",
        "java/io/Writer:::write",
        "java/io/Writer:::flush",
    ]
    assert {f.kind for f in frames} == {FrameKind.JIT}
    assert {f.module for f in frames} == {"[jit]"}  # as the model names perf-map code


def test_a_header_without_a_period_weighs_one() -> None:
    text = "perf   977/977   [000] 7628263.042515: cycles: \n\tffff81 f ([kernel.kallsyms])\n"
    assert collapse(text).lines() == ["perf;f 1"]
    assert read_perf_script(text).profile.samples[0].value == 1


def test_legacy_rust_symbols_are_finished() -> None:
    text = (
        "emulator  4152 75695.008865: 1 cycles:u:\n"
        "\t3c003a _$LT$term..TerminfoTerminal$LT$T$GT$$GT$::new::hcd1c44cd143417f6+0xffff53cc"
        " (/bin/emulator)\n"
    )
    assert collapse(text).lines() == ["emulator;<term::TerminfoTerminal<T>>::new 1"]


def profile_folds(text: str) -> Counter[str]:
    """The imported profile folded by frame name, rooted at the comm as collapse roots it."""
    profile = read_perf_script(text).profile
    folded: Counter[str] = Counter()
    for path, value in fold(profile).items():
        folded[";".join((path[0].replace(" ", "_"), *path[1:]))] += value
    return folded


@needs_fixtures
def test_cpu_clock_reads_as_cpu_samples_at_the_recorded_rate() -> None:
    text = perf_text("go-stacks")
    imported = read_perf_script(text)
    profile = imported.profile
    assert (imported.event, profile.event_type) == ("cpu-clock", EventType.CPU)
    assert (profile.unit, profile.frequency_hz) == ("samples", 4000)
    expected = expected_weights(COLLAPSE_PERF / "results" / "go-stacks-collapsed.txt")
    assert {stack: v * 250_000 for stack, v in profile_folds(text).items()} == expected
    # seconds since boot, first to last event; the caller places it in time
    assert imported.duration_ns == 1224_164725_000 - 1224_147545_000
    assert (profile.start_ns, profile.end_ns) == (0, imported.duration_ns)
    assert {(s.pid, s.tid, s.comm) for s in profile.samples} == {(0, 6157, "go")}


@needs_fixtures
def test_java_cpu_clock_keeps_kernel_jit_and_unknown_frames_apart() -> None:
    text = perf_text("java-inline")
    profile = read_perf_script(text).profile
    assert profile.frequency_hz == 99  # a period of 10101010 ns
    expected = expected_weights(COLLAPSE_PERF / "results" / "java-inline-collapsed.txt")
    inline_free = {stack.replace("_[i]", ""): w for stack, w in expected.items()}
    assert {stack: v * 10101010 for stack, v in profile_folds(text).items()} == inline_free
    frames = {f.name: f for s in profile.samples for f in s.stack}
    assert frames["fput"] == Frame(
        "fput", "[kernel.kallsyms]", FrameKind.KERNEL, 0xFFFFFFFFAEE8017B
    )
    assert frames["__GI___libc_write"] == Frame(
        "__GI___libc_write", "libc-2.28.so", FrameKind.USER, 0x7F89E341D84F
    )
    assert frames["java/io/BufferedWriter:::flushBuffer"].kind is FrameKind.JIT
    assert frames["[unknown]"].kind is FrameKind.UNKNOWN
    assert frames["[libjvm.so]"].module == "libjvm.so"
    assert not any(name.endswith(("_[k]", "_[j]", "_[i]")) for name in frames)


@needs_fixtures
def test_cycles_read_as_their_summed_periods() -> None:
    text = perf_text("perf-rust-Yamakaky-dcpu")
    imported = read_perf_script(text)
    assert (imported.event, imported.profile.event_type) == ("cycles", EventType.CYCLES)
    assert (imported.profile.unit, imported.profile.frequency_hz) == ("cycles", 0)
    # the input has no JIT frames, so its -jit result is its plain fold
    result = COLLAPSE_PERF / "results" / "perf-rust-Yamakaky-dcpu-collapsed-jit.txt"
    assert "_[j]" not in result.read_text(encoding="utf-8")
    assert dict(profile_folds(text)) == expected_weights(result)


@needs_fixtures
def test_versioned_vmlinux_frames_are_kernel_frames() -> None:
    profile = read_perf_script(perf_text("versioned-vmlinux")).profile
    kinds = {f.name: f.kind for f in profile.samples[0].stack}
    assert kinds["net_rx_action"] is FrameKind.KERNEL
    assert kinds["mlx5e_napi_poll"] is FrameKind.KERNEL  # a .ko module
    assert kinds["[vmlinux-5.4.14-cloudflare-2020.1.11]"] is FrameKind.KERNEL


def test_comm_keeps_its_spaces_and_samples_split_by_thread() -> None:
    event = "V8 WorkerThread 24636/{} [000] 94564.{}: {} cpu-clock:u:\n\t7f00 f (/bin/node)\n"
    text = "\n".join(
        event.format(tid, time, period)
        for tid, time, period in [
            (25607, "100000", 250_000),
            (25608, "100250", 250_000),
            (25608, "100500", 500_000),
        ]
    )
    imported = read_perf_script(text)
    samples = sorted((s.pid, s.tid, s.comm, s.value) for s in imported.profile.samples)
    # the most common period, 250 us, is one sample: the 500 us event counts two
    assert samples == [(24636, 25607, "V8 WorkerThread", 1), (24636, 25608, "V8 WorkerThread", 3)]
    assert imported.profile.frequency_hz == 4000
    assert imported.duration_ns == 500_000


def test_task_clock_is_cpu_too() -> None:
    text = "app 10 1.000000: 1000000 task-clock:\n\t1 f (/bin/app)\n"
    imported = read_perf_script(text)
    assert (imported.profile.event_type, imported.profile.frequency_hz) == (EventType.CPU, 1000)


def test_other_events_are_refused_in_one_sentence() -> None:
    text = "app 10 1.000000: 100 instructions:u:\n\t1 f (/bin/app)\n"
    with pytest.raises(UnsupportedPerfEvent) as raised:
        read_perf_script(text)
    message = str(raised.value)
    assert "'instructions'" in message and "record with -e cpu-clock or -e cycles" in message
    assert message.endswith(".") and message.count(". ") == 0
    assert isinstance(raised.value, ValueError)


def test_text_without_event_names_is_refused_in_one_sentence() -> None:
    text = "app 10 1 f\n\t1 f (/bin/app)\n"
    assert collapse(text).lines() == ["app;f 1"]  # inferno folds it all the same
    with pytest.raises(UnsupportedPerfEvent, match=r"-F \+event .*-e cpu-clock or -e cycles\.$"):
        read_perf_script(text)


def test_no_events_is_an_empty_cpu_profile_with_a_warning() -> None:
    imported = read_perf_script("# only a comment\n\n")
    assert imported.profile.samples == [] and imported.profile.event_type is EventType.CPU
    assert imported.event == "" and imported.duration_ns == 0
    assert imported.warnings == ["no perf script events with a stack found in the text"]


@needs_fixtures
def test_perf_script_text_is_recognised() -> None:
    for path in sorted(COLLAPSE_PERF.glob("*.txt")):
        if path.stat().st_size:
            assert looks_like_perf_script(path.read_bytes()), path.name
    gz = (COLLAPSE_PERF / "example-perf-stacks.txt.gz").read_bytes()
    assert looks_like_perf_script(gzip.decompress(gz))
    assert not looks_like_perf_script(gz)  # un-gzipping is the caller's job


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"# comment\n\n",
        b"main;work;compute 12\nmain;idle 3\n",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
        b'{"$schema": "https://www.speedscope.app/file-format-schema.json"}',
        b"java 123 not a header\n",
    ],
)
def test_other_text_is_not_perf_script(data: bytes) -> None:
    assert not looks_like_perf_script(data)
