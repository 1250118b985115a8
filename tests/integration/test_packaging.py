"""The wheel: built as `make dist` builds it, installed into a fresh venv, run without clang.

The venv gets the wheel and its dependencies from the package index (pip's cache
makes a repeated run fast); the agent then runs from it with a PATH that holds the
venv alone, so nothing of this checkout (sources, clang, the dev venv) is in reach.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Never in the agent's install: the aggregator's storage and web stack.
SERVER_ONLY = ("chdb", "pandas", "pyarrow", "fastapi", "uvicorn", "clickhouse-connect")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        # As `make dist`: the wheel is built from the sdist, never from a stale build/.
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [built] = out.glob("aperture-*.whl")
    return built


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(zf.read(name))


def test_wheel_holds_bpf_objects_and_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    built = sorted(p.name for p in (REPO / "src/aperture/bpf").glob("*.bpf.o"))
    if not built:
        pytest.skip("BPF objects are not built: run `make bpf`")
    assert {f"aperture/bpf/{name}" for name in built} <= names
    if (REPO / "src/aperture/agent/_native.so").exists():  # `make native`
        assert "aperture/agent/_native.so" in names
    assert "aperture/py.typed" in names
    assert "aperture/proto/v1/profile_pb2.py" in names
    web = REPO / "src/aperture/aggregator/web"
    for path in web.rglob("*") if web.is_dir() else []:  # the dashboard, once `make ui` ran
        if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts:
            assert f"aperture/{path.relative_to(REPO / 'src/aperture').as_posix()}" in names


def test_bare_wheel_has_no_server_dependencies(wheel: Path) -> None:
    requires = metadata(wheel).get_all("Requires-Dist") or []
    bare = [r for r in requires if "extra ==" not in r]
    names = {re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in bare}
    assert names and not names & set(SERVER_ONLY), bare
    aggregator = {
        re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower()
        for r in requires
        if re.search(r"extra\s*==\s*['\"]aggregator['\"]", r)
    }
    assert {"fastapi", "uvicorn", "prometheus-client"} <= aggregator, aggregator
    scripts = zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("entry_points.txt"))
    )
    for script in (b"aperture-agent", b"aperture-aggregator", b"aperture ="):
        assert script in scripts


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv (from the base interpreter, not this venv) with the bare wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


def venv_env(venv: Path, home: Path) -> dict[str, str]:
    """The venv's bin alone on PATH: no clang, no checkout, no dev venv."""
    env = {"PATH": str(venv / "bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    assert shutil.which("clang", path=env["PATH"]) is None
    assert shutil.which("aperture-agent", path=env["PATH"]) == str(venv / "bin/aperture-agent")
    return env


def test_installed_package_is_the_wheel(fresh_venv: Path, tmp_path: Path) -> None:
    env = venv_env(fresh_venv, tmp_path)
    where = subprocess.run(
        ["python", "-c", "import aperture; print(aperture.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(fresh_venv)), where
    installed = subprocess.run(
        ["python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True, timeout=60,
    ).stdout.lower()  # fmt: skip
    for name in SERVER_ONLY:
        assert f"{name}==" not in installed, f"{name} came with the bare wheel"


def test_aggregator_without_extras_says_what_to_install(fresh_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["aperture-aggregator", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, env=venv_env(fresh_venv, tmp_path), cwd=tmp_path,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "aperture[aggregator]" in result.stderr and "Traceback" not in result.stderr


def test_agent_from_the_wheel_without_clang(bpf: None, fresh_venv: Path, tmp_path: Path) -> None:
    env = venv_env(fresh_venv, tmp_path)
    result = subprocess.run(
        ["aperture-agent", "--mode", "cpu", "--duration", "5s", "--output", "x.svg"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if (REPO / "src/aperture/agent/_native.so").exists():
        # the installed agent loads the compiled .eh_frame interpreter the wheel carries
        loads = "from aperture.agent import native; print(native.available())"
        check = subprocess.run(
            ["python", "-c", loads], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert check.stdout.strip() == "True", check.stderr
    svg = (tmp_path / "x.svg").read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert "wrote x.svg" in result.stderr
    assert os.path.getsize(tmp_path / "x.svg") > 1000
