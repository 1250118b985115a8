"""deploy/: systemd units, Dockerfiles, docker-compose.yml and Kubernetes manifests.

No Docker engine or cluster here, so these are checked statically, with the real
validators (systemd-analyze verify, hadolint, the compose-spec schema,
kubernetes-validate --strict), plus one real run: the agent under the systemd unit's
user, capabilities and no_new_privs symbolizes another user's deleted binary and the
kernel. Every flag the files pass is parsed by the real argument parser.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aperture.agent import cli as agent_cli
from aperture.agent import k8s
from aperture.aggregator import cli as aggregator_cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
# The agent's capabilities, the same in every deployment (the unit says why).
AGENT_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "CHECKPOINT_RESTORE", "SYSLOG"}


# -- systemd ---------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (continuation lines joined, comments dropped)."""
    settings: dict[str, list[str]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_caps(path: Path, key: str) -> set[str]:
    [value] = unit_settings(path)[key]
    return {cap.removeprefix("CAP_") for cap in value.split()}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this venv instead of /opt/aperture.
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/aperture/bin/", f"{BIN}/"))
        units.append(str(copy))
    assert len(units) == 2
    result = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    # Unknown keys are only warnings (exit 0): any output at all is a failure.
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stderr


def test_agent_unit_capabilities_and_hardening() -> None:
    unit = DEPLOY / "systemd/aperture-agent.service"
    settings = unit_settings(unit)
    assert unit_caps(unit, "CapabilityBoundingSet") == AGENT_CAPS
    assert unit_caps(unit, "AmbientCapabilities") == AGENT_CAPS
    text = unit.read_text()
    for cap in AGENT_CAPS:  # every capability is explained in a comment
        assert re.search(rf"^# CAP_{cap}\s+\S", text, re.M), cap
    assert settings["User"] == ["aperture-agent"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert "sys-kernel-tracing.mount" in settings["Requires"][0]
    # Each of these would silently break profiling (see the unit's comments).
    for key in ("PrivateTmp", "ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset"):
        assert key not in settings, key
    sysusers = (DEPLOY / "systemd/aperture.sysusers.conf").read_text()
    assert re.search(r"^u aperture-agent ", sysusers, re.M)


def test_aggregator_unit_is_unprivileged() -> None:
    settings = unit_settings(DEPLOY / "systemd/aperture-aggregator.service")
    assert settings["DynamicUser"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["StateDirectory"] == ["aperture"]
    assert settings["EnvironmentFile"] == ["/etc/aperture/aggregator.env"]
    env = (DEPLOY / "systemd/aggregator.env.example").read_text()
    assert re.search(r"^APERTURE_AUTH_TOKEN=", env, re.M)


def exec_args(path: Path, env: dict[str, str]) -> list[str]:
    """ExecStart's arguments after systemd's ${VAR} (one word) / $VAR (split) expansion."""
    [command] = unit_settings(path)["ExecStart"]
    command = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m[1]]), command)
    command = re.sub(r"\$(\w+)", lambda m: env[m[1]], command)
    return shlex.split(command)[1:]


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def test_unit_command_lines_parse() -> None:
    agent_env = env_file(DEPLOY / "systemd/agent.env.example")
    args = agent_cli.build_parser().parse_args(
        exec_args(DEPLOY / "systemd/aperture-agent.service", agent_env)
    )
    assert args.mode == "all" and args.aggregator.startswith("http")
    assert args.spool_dir == Path("/var/lib/aperture-agent/spool")
    args = aggregator_cli.build_parser().parse_args(
        exec_args(DEPLOY / "systemd/aperture-aggregator.service", {})
    )
    assert args.data_dir == Path("/var/lib/aperture")


@pytest.fixture
def private_dirs() -> Iterator[tuple[Path, Path]]:
    """A 0700 directory of another user (uid 4242) and one the agent's user can write."""
    theirs = Path(tempfile.mkdtemp(prefix="aperture-theirs-"))
    ours = Path(tempfile.mkdtemp(prefix="aperture-agent-out-"))
    os.chown(theirs, 4242, 4242)
    os.chown(ours, 65534, 65534)
    yield theirs, ours
    shutil.rmtree(theirs, ignore_errors=True)
    shutil.rmtree(ours, ignore_errors=True)


def _agent_as_unit_user(caps: set[str], pid: int, out: Path) -> set[str]:
    """The frames the agent records when run as the unit would run it: another user,
    these capabilities, no_new_privs."""
    spec = "-all," + ",".join(f"+{cap.lower()}" for cap in sorted(caps))
    result = subprocess.run(
        [
            *("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"),
            f"--inh-caps={spec}",
            f"--ambient-caps={spec}",
            f"--bounding-set={spec}",
            str(BIN / "aperture-agent"),
            *("--pid", str(pid), "-F", "499", "--duration", "2s", "-o", str(out), "-q"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(out.parent)},
    )
    assert result.returncode == 0, result.stderr
    stacks = (line.rsplit(" ", 1)[0] for line in out.read_text().splitlines())
    return {frame for stack in stacks for frame in stack.split(";")}


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_agent_unit_capabilities_are_enough_and_needed(
    bpf: None,
    workloads: Path,
    private_dirs: tuple[Path, Path],
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    """Another user's process whose binary sits in a 0700 directory and was deleted while it
    runs: the unit's set resolves its frames (map_files) and kernel frames (kallsyms).
    Without CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE and CAP_SYSLOG the agent still records
    (CAP_DAC_READ_SEARCH is what lets a non-root user read tracefs) but resolves neither."""
    theirs, ours = private_dirs
    binary = theirs / "syscall_heavy"
    shutil.copy(workloads / "syscall_heavy", binary)
    os.chown(binary, 4242, 4242)
    proc = subprocess.Popen(
        ["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", str(binary), "30"]
    )
    spawn.append(proc)
    deadline = 50
    while binary.exists() and deadline:  # wait for the exec, then delete the file
        if Path(f"/proc/{proc.pid}/exe").resolve().name == "syscall_heavy":
            binary.unlink()
        else:
            subprocess.run(["sleep", "0.1"], check=True)
            deadline -= 1
    assert not binary.exists()

    frames = _agent_as_unit_user(AGENT_CAPS, proc.pid, ours / "unit.collapsed")
    assert "main" in frames, sorted(frames)[:20]  # the deleted binary, through map_files
    assert "vfs_read" in frames, sorted(frames)[:20]  # the kernel, through kallsyms

    bare = {"BPF", "PERFMON", "DAC_READ_SEARCH"}
    frames = _agent_as_unit_user(bare, proc.pid, ours / "bare.collapsed")
    assert frames, "recording needs only CAP_BPF, CAP_PERFMON (and tracefs access)"
    assert "main" not in frames and "vfs_read" not in frames, sorted(frames)[:20]


# -- Docker ------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


DOCKERFILES = [DEPLOY / "docker/Dockerfile.agent", DEPLOY / "docker/Dockerfile.aggregator"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_what_exists(dockerfile: Path) -> None:
    """Every COPY source from the build context exists in the repository (context: root)."""
    stages = []
    for word, args in dockerfile_instructions(dockerfile):
        if word == "FROM":
            stages.append(args.split()[-1])
        if word != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert source == "." or (REPO / source).exists(), f"{dockerfile.name}: {source}"
    assert len(stages) >= 2, "multi-stage: the compiler stays out of the final image"
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.exists(), f"{ignore.name} keeps .venv and node_modules out of the context"


def test_dockerfiles_final_stages() -> None:
    agent = dockerfile_instructions(DEPLOY / "docker/Dockerfile.agent")
    aggregator = dockerfile_instructions(DEPLOY / "docker/Dockerfile.aggregator")
    for steps in (agent, aggregator):  # the wheel built in an earlier stage is installed
        final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
        assert any(w == "COPY" and a.startswith("--from=build") for w, a in final)
        assert any(w == "RUN" and "pip install" in a and ".whl" in a for w, a in final)
    users = [args for word, args in aggregator if word == "USER"]
    assert users and not users[-1].startswith(("0", "root")), "the aggregator runs as non-root"
    assert ("ENTRYPOINT", '["aperture-agent"]') in agent
    assert ("ENTRYPOINT", '["aperture-aggregator"]') in aggregator


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make venv installs the dev extras)")
    return path


def test_hadolint() -> None:
    result = subprocess.run(
        [
            _tool("hadolint"),
            "--config",
            str(DEPLOY / "docker/.hadolint.yaml"),
            *map(str, DOCKERFILES),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_file_against_the_compose_spec(tmp_path: Path) -> None:
    check = _tool("check-jsonschema")
    ok = subprocess.run(
        [check, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The validator is not vacuous: a misspelt key fails.
    bad = tmp_path / "bad.yml"
    bad.write_text((DEPLOY / "docker-compose.yml").read_text().replace("pid: host", "pidd: host"))
    result = subprocess.run(
        [check, "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "pidd" in result.stdout


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) == {"clickhouse", "aggregator", "agent"}
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    aggregator, agent = services["aggregator"], services["agent"]
    assert aggregator["environment"]["APERTURE_CLICKHOUSE_ENDPOINT"] == "http://clickhouse:8123"
    assert agent["environment"]["APERTURE_AUTH_TOKEN"].startswith("${APERTURE_INGEST_TOKEN")
    assert "clickhouse" in aggregator["depends_on"]
    for service in (aggregator, agent):
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO and (context / build["dockerfile"]).is_file()
    assert agent["pid"] == "host"
    assert agent["privileged"] is False
    assert set(agent["cap_add"]) == AGENT_CAPS and agent["cap_drop"] == ["ALL"]
    mounts = {volume.split(":")[1] for volume in agent["volumes"]}
    assert {"/sys/kernel/btf", "/sys/kernel/tracing"} <= mounts
    args = agent_cli.build_parser().parse_args(agent["command"])
    assert args.aggregator == "http://aggregator:50051" and args.mode == "all"


# -- Kubernetes --------------------------------------------------------------------------

MANIFESTS = sorted(DEPLOY.glob("k8s/**/*.yaml"))


def resources() -> dict[str, dict[str, Any]]:
    """Every manifest document by "Kind/name"."""
    out = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_manifests_validate_strictly(version: str) -> None:
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "-k", version, *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == sum(
        len(list(yaml.safe_load_all(p.read_text()))) for p in MANIFESTS
    )


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg)


def test_agent_daemonset() -> None:
    docs = resources()
    pod = docs["DaemonSet/aperture-agent"]["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod.get("hostNetwork") is not True
    assert pod["automountServiceAccountToken"] is False  # metadata is derived locally
    [container] = pod["containers"]
    security = container["securityContext"]
    assert set(security["capabilities"]["add"]) == AGENT_CAPS
    assert security["capabilities"]["drop"] == ["ALL"] and security["privileged"] is False
    paths = {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}
    mounts = {m["mountPath"]: paths[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/sys/kernel/btf"] == "/sys/kernel/btf"
    assert mounts["/sys/kernel/tracing"] == "/sys/kernel/tracing"
    limits = container["resources"]["limits"]
    assert limits["memory"] and limits["cpu"]
    # The downward-API variables are the ones the agent reads.
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert fields == {
        "APERTURE_NODE_NAME": "spec.nodeName",
        "APERTURE_POD_NAME": "metadata.name",
        "APERTURE_POD_NAMESPACE": "metadata.namespace",
    }
    assert set(fields) == set(k8s.ENV_LABELS)
    token = next(e for e in container["env"] if e["name"] == "APERTURE_AUTH_TOKEN")
    # agents get the push-only token, never the admin one
    assert token["valueFrom"]["secretKeyRef"] == {"name": "aperture-token", "key": "ingest-token"}
    env = {e["name"]: e.get("value", "node-a") for e in container["env"]}
    args = agent_cli.build_parser().parse_args([_expand(a, env) for a in container["args"]])
    assert args.agent_id == "node-a" and args.mode == "all"
    assert args.label == ["cluster=my-cluster"]
    service = docs["Service/aperture-aggregator"]
    host = args.aggregator.split("//")[1].split(".")[0]
    assert host == service["metadata"]["name"]


def test_aggregator_deployment() -> None:
    docs = resources()
    pod = docs["Deployment/aperture-aggregator"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["APERTURE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "aperture-token"
    assert env["APERTURE_INGEST_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "aperture-token",
        "key": "ingest-token",
    }
    assert env["APERTURE_CLICKHOUSE_ENDPOINT"]["value"].startswith("http://clickhouse.")
    args = aggregator_cli.build_parser().parse_args(container["args"])
    assert args.data_dir == Path("/var/lib/aperture")
    ports = {p["name"]: p["port"] for p in docs["Service/aperture-aggregator"]["spec"]["ports"]}
    assert ports == {"grpc": 50051, "http": 9090}
    clickhouse = docs["StatefulSet/clickhouse"]["spec"]
    assert clickhouse["volumeClaimTemplates"]
    assert clickhouse["template"]["spec"]["containers"][0]["image"].startswith(
        "clickhouse/clickhouse-server:"
    )
