"""Bad flags and files given to the three programs: one sentence, a non-zero exit, no traceback.

Every case runs the real program as a subprocess and fails before anything listens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from one_sentence import assert_one_sentence


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def run_aggregator(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Port 0 and no store: nothing to clash with if a check were missing.
    return run(
        "aperture.aggregator.cli", "--no-storage", "--data-dir", str(tmp_path / "data"),
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *args,
    )  # fmt: skip


# 10. A URL urlsplit itself rejects (an unclosed IPv6 bracket).


def test_agent_aggregator_url_that_does_not_parse() -> None:
    result = run("aperture.agent.cli", "--duration", "1s", "--aggregator", "http://[::1")
    assert_one_sentence(
        result,
        "aperture-agent",
        "--aggregator 'http://[::1' is not a valid URL (Invalid IPv6 URL): use http://HOST:PORT, "
        "with an IPv6 address in brackets (http://[::1]:50051).",
    )


def test_cli_endpoint_that_does_not_parse() -> None:
    result = run("aperture.cli.main", "query", "--endpoint", "http://[::1")
    assert_one_sentence(result, "aperture", "--endpoint 'http://[::1' is not a valid URL")


def test_cli_api_that_does_not_parse() -> None:
    result = run("aperture.cli.main", "top", "--api", "http://[::1")
    assert_one_sentence(result, "aperture", "--api 'http://[::1' is not a valid URL")


# 10. Rule files that are not text, or not YAML.


def alerts_create(rule: Path, content: bytes) -> subprocess.CompletedProcess[str]:
    """`aperture alerts create RULE`, with ``content`` written to RULE first."""
    rule.write_bytes(content)
    return run("aperture.cli.main", "alerts", "create", str(rule))


def test_alerts_create_on_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    rule = tmp_path / "rule.yaml"
    result = alerts_create(rule, b"name: caf\xe9\n")  # Latin-1
    text = f"{rule} is not UTF-8 text (byte 0xe9 at offset 9): save it as UTF-8."
    assert_one_sentence(result, "aperture", text)


def test_alerts_create_on_bad_yaml(tmp_path: Path) -> None:
    rule = tmp_path / "rule.yaml"
    result = alerts_create(rule, b"name: [cpu\nthreshold: : 5\n")
    text = f"{rule} is not valid YAML: expected ',' or ']', but got ':' at line 2, column 10."
    assert_one_sentence(result, "aperture", text)


def test_alerts_create_on_bad_json(tmp_path: Path) -> None:
    result = alerts_create(tmp_path / "rule.json", b'{"name": }')
    assert_one_sentence(result, "aperture", "is not valid JSON: Expecting value at line 1")


# 10. TLS files that are not a certificate and its key (it used to blame the address).


def test_aggregator_tls_files_that_are_not_pem(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = run_aggregator(tmp_path, "--tls-cert", str(junk), "--tls-key", str(junk))
    assert_one_sentence(
        result, "aperture-aggregator", f"--tls-cert {junk} holds no PEM certificate"
    )
    assert "choose another address" not in result.stderr


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")
def test_aggregator_tls_key_of_another_certificate(tmp_path: Path) -> None:
    cert, _key = _self_signed(tmp_path, "one")
    _cert, other_key = _self_signed(tmp_path, "two")
    result = run_aggregator(tmp_path, "--tls-cert", str(cert), "--tls-key", str(other_key))
    assert_one_sentence(
        result, "aperture-aggregator", f"--tls-key {other_key} is not the private key of"
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")
def test_aggregator_tls_damaged_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "one")
    text = cert.read_text().splitlines()
    cert.write_text("\n".join([text[0], text[1][::-1], *text[2:]]) + "\n")
    result = run_aggregator(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    assert_one_sentence(result, "aperture-aggregator", "do not load as a PEM certificate")


# 11. Values the aggregator took and should not.


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--buffer-batches", "-5"], "--buffer-batches -5 must be at least 1."),
        (["--buffer-batches", "0"], "--buffer-batches 0 must be at least 1."),
        (["--alert-webhook", "ftp://x"], "--alert-webhook 'ftp://x' is not an http:// or https://"),
        (["--alert-webhook", "http://"], "--alert-webhook 'http://' is not an http:// or https://"),
        (["--alert-webhook", "http://[::1"], "is not an http:// or https:// URL"),
        (["--alert-interval", "1ms"], "--alert-interval 1ms is too short"),
        (["--alert-interval", "0.5s"], "--alert-interval 0.5s is too short"),
        (["--alert-interval", "soon"], "--alert-interval: 'soon' is not a duration"),
        (["--alert-renotify", "soon"], "--alert-renotify: 'soon' is not a duration"),
        (["--alert-renotify", "1ms"], "--alert-renotify 1ms must be 0 (never) or at least 60s"),
        (["--instance-id", "two words"], "--instance-id 'two words' must be"),
    ],
)
def test_aggregator_refuses(tmp_path: Path, args: list[str], expected: str) -> None:
    assert_one_sentence(run_aggregator(tmp_path, *args), "aperture-aggregator", expected)


def test_alert_webhook_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    result = subprocess.run(
        [sys.executable, "-m", "aperture.aggregator.cli", "--no-storage",
         "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
        env={**env, "APERTURE_ALERT_WEBHOOK": "mailto:ops@example.com"},
    )  # fmt: skip
    assert_one_sentence(result, "aperture-aggregator", "$APERTURE_ALERT_WEBHOOK")


def test_aggregator_store_path_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "store").write_text("")  # the embedded store's directory is a file
    result = run(
        "aperture.aggregator.cli", "--data-dir", str(tmp_path / "data"),
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
    )  # fmt: skip
    assert_one_sentence(result, "aperture-aggregator", f"cannot use {tmp_path}/data/store")
