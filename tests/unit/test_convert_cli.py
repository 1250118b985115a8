"""``aperture convert IN OUT``: other tools' files in our formats, offline, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.cli.main import main as cli
from aperture.formats.collapsed import parse_collapsed
from aperture.formats.pprof import from_pprof
from aperture.model import EventType
from interop_files import INTEROP, needs_interop

PERF = INTEROP / "collapse-perf"
HEAP = INTEROP / "pyroscope/pkg/pprof/testdata/heap"
OPTIONS = {"pid": ["--pid"], "tid": ["--tid"], "kernel": ["--kernel"], "jit": ["--jit"],
           "all": ["--all"], "addrs": ["--addrs"]}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli(["convert", *args])
    out, err = capsys.readouterr()
    return code, out, err


@needs_interop
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_perf_script_to_folded_with_each_option_is_inferno_s_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    expected = PERF / "results" / f"perf-rust-Yamakaky-dcpu-collapsed-{option}.txt"
    out = tmp_path / "out.folded"
    code, said, err = run(capsys, str(PERF / "perf-rust-Yamakaky-dcpu.txt"), str(out),
                          *OPTIONS[option])  # fmt: skip
    assert code == 0, err
    assert "weighted by their period" in said
    lines = [line.strip().strip('"') for line in expected.read_text().splitlines() if line.strip()]
    assert sorted(out.read_text().splitlines()) == sorted(lines)


@needs_interop
def test_a_heap_profile_needs_a_type_and_keeps_its_unit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "heap.pb.gz"
    code, _, err = run(capsys, str(HEAP), str(out))
    assert code == 2 and not out.exists()
    assert err.strip().endswith(
        "has alloc_objects, alloc_space, inuse_objects, inuse_space data: choose one with --type."
    )
    code, said, err = run(capsys, str(HEAP), str(out), "--type", "inuse_space")
    assert code == 0, err
    assert "inuse_space, 541,672,846 bytes" in said
    [back] = from_pprof(out.read_bytes())
    assert (back.profile.event_type, back.profile.total) == (EventType.INUSE_SPACE, 541_672_846)
    folded = tmp_path / "heap.folded"
    assert run(capsys, str(HEAP), str(folded), "--type", "alloc_objects")[0] == 0
    assert sum(parse_collapsed(folded.read_text()).values()) == 18_245_264_435


@needs_interop
def test_perf_script_to_other_formats_goes_through_the_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "go.speedscope.json"
    code, said, err = run(capsys, str(PERF / "go-stacks.txt"), str(out))
    assert code == 0, err
    assert "cpu, 5 samples in 5 stacks" in said
    assert '"unit":"none"' in out.read_text() and "(samples)" in out.read_text()


def test_bad_input_is_one_sentence_and_a_nonzero_exit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty, text, perf = tmp_path / "empty.txt", tmp_path / "notes.txt", tmp_path / "sched.txt"
    flat = tmp_path / "flat.txt"  # perf script of a recording made without -g
    flat.write_text("app 12 [000] 1.000000: 250000 cpu-clock:uhH: \n\n")
    empty.write_text("")
    text.write_text("hello, these are notes\n")
    perf.write_text("app 12 [000] 1.000000: 1 sched:sched_switch: \n\tffff f ([kernel.kallsyms])\n")
    cases = [
        (empty, "out.folded", "is empty: there is no profile in it."),
        (text, "out.folded", "is neither perf script text nor a pprof profile"),
        (perf, "out.folded", "'sched:sched_switch' cannot be imported"),
        (tmp_path / "missing.pb.gz", "out.folded", "cannot read"),
        (flat, "out.svg", "has no perf events with a stack: record with -g"),
    ]
    for source, target, says in cases:
        code, _, err = run(capsys, str(source), str(tmp_path / target))
        assert code == 2, err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err, err
    code, _, err = run(capsys, str(PERF / "go-stacks.txt"), str(tmp_path / "x.folded"), "--pid")
    assert code == 0
    code, _, err = run(capsys, str(PERF / "go-stacks.txt"), str(tmp_path / "x.svg"), "--pid")
    assert code == 2 and "apply to perf script text converted to folded stacks" in err
    code, _, err = run(capsys, str(PERF / "go-stacks.txt"), str(tmp_path / "x.unknown"))
    assert code == 2 and "cannot tell the output format" in err
    code, _, err = run(capsys, str(PERF / "go-stacks.txt"), str(tmp_path / "no/such/dir/x.svg"))
    assert code == 1 and err.startswith("aperture: error: cannot write") and "Traceback" not in err


@needs_interop
def test_a_go_contention_profile_needs_its_kind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Go's mutex and block profiles have the same sample types: never guessed."""
    mutex = INTEROP / "pyroscope/pkg/og/convert/pprof/testdata/req_4.pprof"
    code, _, err = run(capsys, str(mutex), str(tmp_path / "m.folded"), "--type", "mutex_delay")
    assert code == 2 and "say which this is" in err
    code, said, err = run(capsys, str(mutex), str(tmp_path / "m.folded"), "--kind", "mutex",
                          "--type", "mutex_delay")  # fmt: skip
    assert code == 0, err
    assert "mutex_delay, 4.69 s of mutex delay" in said
    code, said, err = run(capsys, str(mutex), str(tmp_path / "b.folded"), "--kind", "block",
                          "--type", "block_contentions")  # fmt: skip
    assert code == 0 and "block_contentions, 21 contentions" in said, err
