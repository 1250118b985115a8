"""The documentation: every shell command in docs/ runs, or says why it cannot here.

Convention (docs/contributing-docs.md): the line before a ```sh (bash, shell, console)
block is a marker comment,

    <!-- test -->                           run it; it must exit 0
    <!-- test: bpf -->                      run it where BPF works (root, BTF), else skip
    <!-- test: background; ready=URL -->    start it, wait until URL answers 200, stop it
                                            when the page is done (a server)
    <!-- test: sub OLD=NEW -->              run it with OLD replaced (a host name)
    <!-- not tested: REASON -->             never run; the reason is required

The blocks of one page run in order in one temporary directory, with this venv's
programs on PATH and the variables earlier blocks exported. Every `aperture-agent`,
`aperture-aggregator` and `aperture` command line, run or not, must parse with the
real argument parser, and the site must build with `mkdocs build --strict`.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
SHELL_LANGS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^\s*<!--\s*(test|not tested)\s*(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w-]*)")
BLOCK_TIMEOUT_S = 120
# Variables the docs and deploy files name that no code reads yet, and why they are there.
PENDING_ENV = {
    "APERTURE_CLICKHOUSE_ENDPOINT": "the store's server DSN (DESIGN decision 10), to be "
    "read by the aggregator once storage is wired in",
    "APERTURE_CLICKHOUSE_DATABASE": "likewise",
    "APERTURE_CLICKHOUSE_PASSWORD": "likewise",
}


@dataclass
class Block:
    page: Path
    line: int
    code: str
    marker: str | None  # "test", "not tested" or None (unmarked)
    options: str = ""
    flags: set[str] = field(default_factory=set)
    ready: str | None = None
    subs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def parse_options(self) -> None:
        for item in filter(None, (part.strip() for part in self.options.split(";"))):
            if item.startswith("ready="):
                self.ready = item.removeprefix("ready=")
            elif item.startswith("sub "):
                old, _, new = item.removeprefix("sub ").partition("=")
                self.subs.append((old, new))
            else:
                self.flags.add(item)

    def script(self) -> str:
        code = self.code
        for old, new in self.subs:
            code = code.replace(old, new)
        return code


def shell_blocks(page: Path) -> list[Block]:
    """The shell blocks of a Markdown page, with the marker above each (if any)."""
    lines = page.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        if lang in SHELL_LANGS:
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(above)
            code = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end])
            block = Block(page, i + 1, code, marker[1] if marker else None)
            if marker:
                block.options = marker[2] or ""
                block.parse_options()
            blocks.append(block)
        i = end + 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


ALL_BLOCKS = [block for page in pages() for block in shell_blocks(page)]


def test_docs_have_shell_blocks() -> None:
    assert len([b for b in ALL_BLOCKS if b.marker == "test"]) >= 5


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.where)
def test_every_shell_block_is_marked(block: Block) -> None:
    assert block.marker is not None, (
        f"{block.where}: put <!-- test --> or <!-- not tested: REASON --> above this block"
    )
    if block.marker == "not tested":
        assert len(block.options) > 10, f"{block.where}: say why it is not tested here"
    else:
        unknown = block.flags - {"bpf", "background"}
        assert not unknown, f"{block.where}: unknown marker option(s) {unknown}"
        if "background" in block.flags:
            assert block.ready, f"{block.where}: a background block needs ready=URL"


# -- every documented command line parses ------------------------------------------------


def command_lines(code: str) -> Iterator[list[str]]:
    """The argument lists of aperture commands in a shell block (prefixes stripped)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            while words and (words[0] in ("sudo", "-E", "exec") or re.match(r"^\w+=", words[0])):
                words.pop(0)
            if words and Path(words[0]).name in (
                "aperture-agent",
                "aperture-aggregator",
                "aperture",
            ):
                words = [w for w in words if not re.match(r"^\d?>", w)]
                yield [Path(words[0]).name, *words[1:]]


def _parser(program: str) -> object:
    from aperture.agent import cli as agent_cli
    from aperture.aggregator import cli as aggregator_cli
    from aperture.cli import main as aperture_cli

    return {
        "aperture-agent": agent_cli.build_parser,
        "aperture-aggregator": aggregator_cli.build_parser,
        "aperture": aperture_cli.build_parser,
    }[program]()


COMMANDS = [(b, words) for b in ALL_BLOCKS for words in command_lines(b.code)]


@pytest.mark.parametrize(
    ("block", "words"), COMMANDS, ids=[f"{b.where}:{w[0]}" for b, w in COMMANDS]
)
def test_documented_command_lines_parse(
    block: Block, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parser = _parser(words[0])
    assert isinstance(parser, argparse.ArgumentParser)
    try:
        parser.parse_args(words[1:])
    except SystemExit as exc:
        assert exc.code == 0, f"{block.where}: {shlex.join(words)}: {capsys.readouterr().err}"


def test_environment_variables_in_docs_exist() -> None:
    """Every APERTURE_* variable the docs or deploy files name is read by the code."""
    code = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    code += "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py") if p != Path(__file__))
    named: dict[str, str] = {}
    texts = [*pages(), *(p for p in (REPO / "deploy").rglob("*") if p.is_file())]
    for path in texts:
        for name in re.findall(r"\bAPERTURE_[A-Z_]*[A-Z]\b", path.read_text()):
            named.setdefault(name, str(path.relative_to(REPO)))
    unknown = {n: where for n, where in named.items() if n not in code and n not in PENDING_ENV}
    assert not unknown, f"named in the docs/deploy but read by no code: {unknown}"


# -- running the blocks ------------------------------------------------------------------


def _port_free(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) != 0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the background command exited ({proc.returncode}):\n{log.read_text()}")
        # Readiness only: a page's private CA is not this process's to trust.
        context = ssl._create_unverified_context() if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _bpf_unavailable(request: pytest.FixtureRequest) -> str | None:
    """Why BPF blocks cannot run here (the conftest `bpf` gate), or None."""
    try:
        request.getfixturevalue("bpf")
    except pytest.skip.Exception as exc:
        return str(exc)
    return None


RUN_PAGES = sorted({b.page for b in ALL_BLOCKS if b.marker == "test"})


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_snippets_run(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blocks = [b for b in shell_blocks(page) if b.marker == "test"]
    no_bpf = _bpf_unavailable(request)
    for block in blocks:
        if "background" in block.flags and block.ready and not _port_free(block.ready):
            pytest.skip(f"{block.where}: {block.ready} is already in use on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env.update(PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(tmp_path))
    saved = tmp_path / ".docs-env"
    saved.write_text("")
    background: list[subprocess.Popen[bytes]] = []
    skipped = []
    try:
        for n, block in enumerate(blocks):
            if "bpf" in block.flags and no_bpf:
                skipped.append(block.where)
                continue
            prologue = f"set -euo pipefail\nsource {shlex.quote(str(saved))}\n"
            if "background" in block.flags:
                log = tmp_path / f".docs-background-{n}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        ["bash", "-c", prologue + block.script()],
                        cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                background.append(proc)
                assert block.ready is not None
                _wait_ready(block.ready, proc, log, timeout=60)
                continue
            script = prologue + block.script() + f"\nexport -p > {shlex.quote(str(saved))}\n"
            result = subprocess.run(
                ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=BLOCK_TIMEOUT_S,
            )  # fmt: skip
            assert result.returncode == 0, (
                f"{block.where} failed ({result.returncode}):\n{block.script()}\n"
                f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
    finally:
        for proc in background:
            _stop(proc)
    if skipped:
        pytest.skip(f"ran the others; skipped {', '.join(skipped)}: {no_bpf}")


# -- the site ---------------------------------------------------------------------------


def test_site_builds_strictly(tmp_path: Path) -> None:
    """What `make docs` does: generate the reference pages, then mkdocs build --strict."""
    for tool in ("tools/gen_cli_docs.py", "tools/gen_reference_docs.py"):
        subprocess.run([sys.executable, str(REPO / tool)], check=True, timeout=120, cwd=REPO)
    mkdocs = BIN / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (make venv installs the docs extras)")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    agent = (tmp_path / "site/reference/agent.html").read_text()
    from aperture.agent.cli import build_parser

    for action in build_parser()._actions:
        if action.help != "==SUPPRESS==" and action.option_strings:
            assert action.option_strings[-1] in agent, action.option_strings
    assert (tmp_path / "site/api.html").exists()
