"""WASM filters wired in: agent flags, `aperture filter-test`, the aggregator's ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("wasmtime", reason="wasmtime is in the filters extra (make setup)")

from aperture.agent.cli import build_parser
from aperture.agent.cli import main as agent_main
from aperture.aggregator.buffer import BatchBuffer
from aperture.aggregator.cli import build_parser as aggregator_parser
from aperture.aggregator.ingest import Ingest, Outcome
from aperture.aggregator.metrics import Metrics
from aperture.cli.main import main as cli_main
from aperture.filters import FilterOptions, WasmFilter
from aperture.filters.batch import filter_batch
from aperture.filters.collector import FilteredCollector
from aperture.formats.json_format import load_json, to_json
from aperture.model import EventType, Frame, Profile, Sample, SyscallStat
from aperture.wire import Identity, decode, encode, parse

WAT = Path(__file__).resolve().parents[2] / "src/aperture/filters/examples"


def profile() -> Profile:
    stack = (Frame("main", "app"), Frame("work", "app"))
    return Profile(
        EventType.CPU,
        "samples",
        start_ns=1,
        end_ns=2,
        frequency_hz=99,
        losses={"stack_collisions": 3},
        samples=[
            Sample(stack, 4, pid=0, comm="swapper/0"),
            Sample(stack, 5, pid=10, tid=11, comm="python3", thread="worker"),
            Sample(stack, 6, pid=12, tid=12, comm="nginx"),
        ],
    )


def test_agent_flags_parse() -> None:
    args = build_parser().parse_args(
        ["--filter", "f.wasm", "--filter-arg", "ng", "--filter-fuel", "1000",
         "--filter-memory", "2M", "--filter-failure", "closed"]
    )  # fmt: skip
    assert (args.filter, args.filter_arg, args.filter_fuel) == (Path("f.wasm"), "ng", 1000)
    assert (args.filter_memory, args.filter_failure) == (2 << 20, "closed")


def test_agent_refuses_a_bad_filter_before_any_bpf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"garbage")
    assert agent_main(["--filter", str(junk), "-d", "1s"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a valid WASM module" in err


def test_filtered_collector_filters_each_drain() -> None:
    class Fake:
        def start(self) -> None: ...
        def drain(self) -> Profile:
            return profile()

        def sample_count(self) -> int:
            return 3

        def close(self) -> None: ...

    collector = FilteredCollector(Fake(), WasmFilter(WAT / "drop_idle.wat"))
    assert [s.comm for s in collector.drain().samples] == ["python3", "nginx"]


def test_filter_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "batch.json"
    src.write_text(to_json(profile()))
    out = tmp_path / "kept.json"
    code = cli_main(["filter-test", str(WAT / "comm_prefix.wat"), "--input", str(src),
                     "--filter-arg", "py", "-o", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "keep  pid 10" in text and "drop  pid 12" in text
    assert "kept 1 of 3 records (5 of 15 samples)" in text
    assert [s.comm for s in load_json(out.read_text()).samples] == ["python3"]


def test_filter_test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli_main(["filter-test", str(WAT / "drop_idle.wat"), "--input", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_filter_batch_keeps_identity_window_and_syscalls() -> None:
    sys_profile = Profile(
        EventType.SYSCALL, "nanoseconds", start_ns=1, end_ns=2,
        syscalls=[SyscallStat(pid=1, comm="a", nr=0, name="read", count=3)],
    )  # fmt: skip
    ident = Identity("agent-1", "host-a", {"env": "prod"}, "0.1")
    batch = encode([profile(), sys_profile], ident, 7)
    out, summary = filter_batch(WasmFilter(WAT / "drop_idle.wat"), batch)
    decoded = decode(out)
    assert decoded.identity == ident and decoded.sequence == 7
    assert (out.window_start_ns, out.window_end_ns) == (1, 2)
    assert dict(out.losses) == dict(batch.losses)
    cpu = decoded.profiles[EventType.CPU]
    assert [s.comm for s in cpu.samples] == ["python3", "nginx"]
    assert cpu.samples[0].thread == "worker" and cpu.frequency_hz == 99
    assert summary.cpu_samples == 11
    assert decoded.profiles[EventType.SYSCALL].syscalls == sys_profile.syscalls


def test_ingest_stores_the_filtered_batch() -> None:
    flt = WasmFilter(WAT / "comm_prefix.wat", FilterOptions(arg=b"nginx"))
    ingest = Ingest(BatchBuffer(1 << 20), Metrics(), ingest_filter=flt)
    data = encode([profile()], Identity("a", "h"), 1).SerializeToString()
    assert ingest.push(data).outcome is Outcome.ACCEPTED
    [stored] = ingest.buffer.snapshot()
    cpu = decode(parse(stored.data)).profiles[EventType.CPU]
    assert [s.comm for s in cpu.samples] == ["nginx"] and stored.cpu_samples == 6
    assert flt.stats.batches == 1


def test_aggregator_ingest_filter_flags() -> None:
    args = aggregator_parser().parse_args(
        ["--ingest-filter", "f.wasm", "--ingest-filter-arg", "x", "--ingest-filter-failure",
         "closed"]
    )  # fmt: skip
    assert (args.ingest_filter, args.ingest_filter_arg) == (Path("f.wasm"), "x")
    assert args.ingest_filter_failure == "closed" and args.ingest_filter_fuel > 0
