"""inferno's and FlameGraph's ``perf script`` inputs through ``aperture import`` into a real
aggregator, and the folded stacks exported back compared with their expected output.

``aperture convert`` writes perf's own weights (each event's period), exactly as
inferno does (tests/unit/test_perf_script.py checks every result file). Stored,
a cpu-clock recording is CPU samples (one per event, at 1e9 / period Hz) and a
cycles recording is cycles (the periods): the export, times the period for CPU,
must be the expected folded file line for line. Inlined frames are frames of
their own here, so inferno's ``_[i]`` marks are taken off the expected names.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aggregator_proc import AggregatorProcess
from aperture.cli.main import main as cli
from aperture.formats.collapsed import parse_collapsed
from interop_files import INTEROP, needs_interop

pytestmark = needs_interop
PERF = INTEROP / "collapse-perf"
TOKEN = "test-token"


def _stems() -> list[str]:
    results = sorted((PERF / "results").glob("*-collapsed.txt")) if PERF.is_dir() else []
    return [p.name.removesuffix("-collapsed.txt") for p in results]


def _input(stem: str) -> Path:
    plain = PERF / f"{stem}.txt"
    return plain if plain.is_file() else PERF / f"{stem}.txt.gz"


@pytest.fixture(scope="module")
def agg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path_factory.mktemp("perf") / "agg").start()
    yield proc
    proc.stop()


def _periods(text: str) -> Counter[int]:
    """The period of every event line (``comm pid time: PERIOD event:``)."""
    out: Counter[int] = Counter()
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            words = line.split()
            for prev, word in itertools.pairwise(words):
                if (
                    word.endswith(":")
                    and prev.isdigit()
                    and not word[:-1].replace(".", "").isdigit()
                ):
                    out[int(prev)] += 1
                    break
    return out


@pytest.mark.parametrize("stem", _stems())
def test_perf_script_imported_and_exported_as_folded_is_inferno_s_output(
    agg: AggregatorProcess, stem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _input(stem)
    data = source.read_bytes()
    text = (gzip.decompress(data) if source.suffix == ".gz" else data).decode("utf-8", "replace")
    path = tmp_path / f"{stem}.txt"
    path.write_text(text)
    service = f"perf-{stem}"
    code = cli(["import", str(path), "--service", service, "--api", agg.http, "--token", TOKEN,
                "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    expected = parse_collapsed((PERF / "results" / f"{stem}-collapsed.txt").read_text())
    expected = Counter({tuple(f.removesuffix("_[i]") for f in k): v for k, v in expected.items()})
    if not text.strip():  # no events at all: refused with a sentence, nothing stored
        assert not expected and code != 0
        assert err.strip() == f"aperture: error: {path} is empty: there is no profile in it."
        return
    assert code == 0, err
    stored = json.loads(out)["profiles"]
    [stored_type] = {p["type"] for p in stored}
    assert stored_type in ("cpu", "cycles")
    response = httpx.get(f"{agg.http}/api/v1/export", headers={"Authorization": f"Bearer {TOKEN}"},
                         params={"format": "collapsed", "type": stored_type, "from": "-1h",
                                 "label.service": service})  # fmt: skip
    assert response.status_code == 200, response.text
    got = parse_collapsed(response.text)
    if stored_type == "cpu":
        [(period, _)] = _periods(text).most_common(1)
        got = Counter({k: v * period for k, v in got.items()})
    assert sorted(got.items()) == sorted(expected.items())
