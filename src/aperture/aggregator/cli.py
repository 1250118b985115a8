"""``aperture-aggregator``: receive profiles from agents, keep them, serve them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aperture import __version__
from aperture.errors import UsageError, UserError
from aperture.filters.options import add_filter_arguments, build_filter

PROG = "aperture-aggregator"
# Rules run queries: evaluating them more often than this only loads the store.
MIN_ALERT_INTERVAL_S = 1.0
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_listen(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) to a pair, or a UsageError naming the flag."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{flag} {text!r} is not HOST:PORT (e.g. 0.0.0.0:9090).")
    return host, int(port)


def check_tls_pair(cert: Path, key: Path) -> None:
    """Refuse a certificate and key that TLS would not load, before any port is bound."""
    import ssl

    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}.") from None
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise UsageError(
            f"--tls-cert {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)."
        )
    if b"PRIVATE KEY-----" not in key_pem:
        raise UsageError(f"--tls-key {key} holds no PEM private key (-----BEGIN PRIVATE KEY-----).")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key would prompt for its passphrase: refuse it (gRPC cannot use one).
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise UsageError(
                f"--tls-key {key} is not the private key of --tls-cert {cert}: give the key "
                "the certificate was made for."
            ) from None
        raise UsageError(
            f"--tls-cert {cert} and --tls-key {key} do not load as a PEM certificate and its "
            f"unencrypted private key ({exc.reason or exc}): check both files."
        ) from None


def check_webhook(url: str) -> str:
    """The --alert-webhook URL, or a UsageError unless it is http(s)://HOST[...]."""
    from aperture.aggregator.alerts.rules import is_webhook_url

    if not is_webhook_url(url):
        raise UsageError(
            f"--alert-webhook {url!r} is not an http:// or https:// URL: give the full URL the "
            "notifications are posted to (also for $APERTURE_ALERT_WEBHOOK)."
        )
    return url


def check_data_dir(data_dir: Path, journal: bool) -> None:
    """Create --data-dir (and its journal directory) and prove them writable, before serving."""
    from aperture.aggregator.ingest import journal_dir

    for path in (data_dir, journal_dir(data_dir)) if journal else (data_dir,):
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".aperture-check-"):
                pass
        except OSError as exc:
            raise UsageError(
                f"cannot write to {path} ({exc.strerror or exc}): give a --data-dir this user "
                "can write to."
            ) from None


def _size(text: str) -> int:
    from aperture.units import parse_size

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def scoped_tokens(flags: Sequence[str], variable: str) -> tuple[str, ...]:
    """Tokens from repeated, comma-separated flags, else from the environment variable."""
    texts = flags or [os.environ.get(variable, "")]
    return tuple(t.strip() for text in texts for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Receive profiles from Aperture agents over gRPC, keep recent ones in "
        "memory (and in a crash-safe journal), serve the REST API, metrics and health.",
        epilog="Environment: APERTURE_AUTH_TOKEN (admin token), APERTURE_INGEST_TOKEN and "
        "APERTURE_READ_TOKEN (scoped tokens, comma-separated), "
        "APERTURE_AGGREGATOR_LISTEN, APERTURE_ADMIN_LISTEN, APERTURE_CLICKHOUSE_ENDPOINT, "
        "APERTURE_CLICKHOUSE_DATABASE, APERTURE_CLICKHOUSE_USER, APERTURE_CLICKHOUSE_PASSWORD. "
        "Flags override the environment.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--listen",
        default=env("APERTURE_AGGREGATOR_LISTEN", "0.0.0.0:50051"),
        help="gRPC ingest address (default: $APERTURE_AGGREGATOR_LISTEN or 0.0.0.0:50051)",
    )
    parser.add_argument(
        "--admin-listen",
        default=env("APERTURE_ADMIN_LISTEN", "0.0.0.0:9090"),
        help="HTTP address for the API, metrics and UI (default: $APERTURE_ADMIN_LISTEN "
        "or 0.0.0.0:9090)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="admin bearer token: allowed every gRPC call and /api route (prefer the "
        "APERTURE_AUTH_TOKEN environment variable: flags show in `ps`)",
    )
    parser.add_argument(
        "--ingest-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token that may only push profiles (agents, pprof and Pyroscope ingest); "
        "repeat, or comma-separate, to rotate (default: $APERTURE_INGEST_TOKEN)",
    )
    parser.add_argument(
        "--read-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token that may only read: queries, exports, the dashboard, alert state; "
        "repeat or comma-separate (default: $APERTURE_READ_TOKEN)",
    )
    parser.add_argument(
        "--metrics-public",
        action="store_true",
        help="serve /metrics without a token (otherwise a read or admin token)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, help="PEM certificate: serve gRPC and HTTP over TLS"
    )
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument(
        "--max-message-bytes",
        type=_size,
        default=16 << 20,
        metavar="SIZE",
        help="largest accepted batch, decompressed (default: 16MiB)",
    )
    parser.add_argument(
        "--buffer-bytes",
        type=_size,
        default=256 << 20,
        metavar="SIZE",
        help="memory for recent batches; oldest evicted first (default: 256MiB)",
    )
    parser.add_argument(
        "--buffer-batches",
        type=int,
        default=1_000_000,
        metavar="N",
        help="most batches kept in memory (default: 1000000)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env("APERTURE_DATA_DIR", "data")),
        help="where the journal (and later the store) live (default: ./data)",
    )
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="do not journal accepted batches (a crash then loses the buffer)",
    )
    store = parser.add_argument_group(
        "storage",
        "Profiles are stored in ClickHouse: embedded chDB under --data-dir by default, or a "
        "ClickHouse server or cluster. One aggregator process owns an embedded store.",
    )
    store.add_argument(
        "--storage",
        default=env("APERTURE_CLICKHOUSE_ENDPOINT"),
        metavar="DSN",
        help="chdb:///PATH or http(s)://HOST:8123 (default: $APERTURE_CLICKHOUSE_ENDPOINT "
        "or chdb://DATA_DIR/store)",
    )
    store.add_argument(
        "--clickhouse-database",
        default=env("APERTURE_CLICKHOUSE_DATABASE", "aperture"),
        help="database name (default: $APERTURE_CLICKHOUSE_DATABASE or aperture)",
    )
    store.add_argument(
        "--clickhouse-user",
        default=env("APERTURE_CLICKHOUSE_USER"),
        help="server user (default: $APERTURE_CLICKHOUSE_USER)",
    )
    store.add_argument(
        "--retention",
        default="7d",
        help="how long profiles are kept, in whole days: 7d, 30d (default: 7d)",
    )
    store.add_argument(
        "--no-storage",
        action="store_true",
        help="keep only the in-memory buffer (queries see recent batches only)",
    )
    alerts = parser.add_argument_group("alerts", "Alert rules are managed with `aperture alerts`.")
    alerts.add_argument(
        "--alert-interval",
        default="30s",
        metavar="DURATION",
        help="how often alert rules are evaluated (default: 30s)",
    )
    alerts.add_argument(
        "--alert-webhook",
        default=env("APERTURE_ALERT_WEBHOOK"),
        metavar="URL",
        help="webhook for rules without their own (default: $APERTURE_ALERT_WEBHOOK)",
    )
    alerts.add_argument(
        "--alert-renotify",
        default="0",
        metavar="DURATION",
        help="repeat a firing alert's notification this often; 0: never (default: 0)",
    )
    add_filter_arguments(parser, prefix="ingest-")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--instance-id",
        default=None,
        metavar="ID",
        help="the name this process gives in /readyz (header X-Aperture-Instance), so whoever "
        "started it can tell it from another process answering on the same port; letters, "
        "digits, . _ - (default: random)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> object:
    from aperture.aggregator.server import Settings

    grpc_host, grpc_port = parse_listen(args.listen, "--listen")
    http_host, http_port = parse_listen(args.admin_listen, "--admin-listen")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together: give both or neither.")
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not os.access(path, os.R_OK):
            raise UsageError(f"cannot read {path}: check the path and its permissions.")
    if args.tls_cert and args.tls_key:
        check_tls_pair(args.tls_cert, args.tls_key)
    if args.buffer_batches < 1:
        raise UsageError(f"--buffer-batches {args.buffer_batches} must be at least 1.")
    if args.instance_id is not None and not _INSTANCE_ID.match(args.instance_id):
        raise UsageError(
            f"--instance-id {args.instance_id!r} must be 1-64 letters, digits, '.', '_' or '-'."
        )
    token = args.token or os.environ.get("APERTURE_AUTH_TOKEN") or None
    ingest_tokens = scoped_tokens(args.ingest_token, "APERTURE_INGEST_TOKEN")
    read_tokens = scoped_tokens(args.read_token, "APERTURE_READ_TOKEN")
    given = [t for t in (token, *ingest_tokens, *read_tokens) if t]
    if len(set(given)) != len(given):
        raise UsageError(
            "the same token is given twice among --token, --ingest-token and --read-token: "
            "give each scope its own tokens."
        )
    storage = None
    if not args.no_storage:
        from aperture.aggregator.storage_link import StorageSettings
        from aperture.units import parse_duration

        try:
            days = parse_duration(args.retention) / 86400
        except ValueError as exc:
            raise UsageError(f"--retention: {exc}.") from None
        if days < 1 or days != int(days):
            raise UsageError("--retention must be a whole number of days (e.g. 7d).")
        dsn = args.storage or f"chdb://{(args.data_dir / 'store').resolve()}"
        storage = StorageSettings(
            dsn=dsn,
            database=args.clickhouse_database,
            username=args.clickhouse_user,
            password=os.environ.get("APERTURE_CLICKHOUSE_PASSWORD") or None,
            retention_days=int(days),
        )
    from aperture.units import parse_duration as _duration

    try:
        alert_interval = _duration(args.alert_interval)
    except ValueError as exc:
        raise UsageError(f"--alert-interval: {exc}.") from None
    if alert_interval < MIN_ALERT_INTERVAL_S:
        raise UsageError(
            f"--alert-interval {args.alert_interval} is too short: rules are evaluated at most "
            "once a second (e.g. 30s)."
        )
    try:
        renotify = 0.0 if args.alert_renotify in ("0", "0s") else _duration(args.alert_renotify)
    except ValueError as exc:
        raise UsageError(f"--alert-renotify: {exc}.") from None
    from aperture.aggregator.alerts.rules import RuleError, check_renotify

    try:
        check_renotify(renotify, f"--alert-renotify {args.alert_renotify}")
    except RuleError as exc:
        raise UsageError(f"{exc}.") from None
    return Settings(
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        http_host=http_host,
        http_port=http_port,
        token=token,
        ingest_tokens=ingest_tokens,
        read_tokens=read_tokens,
        metrics_public=args.metrics_public,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_message_bytes=args.max_message_bytes,
        buffer_bytes=args.buffer_bytes,
        buffer_batches=args.buffer_batches,
        data_dir=args.data_dir,
        journal=not args.no_journal,
        storage=storage,
        ingest_filter=build_filter(args, prefix="ingest-"),
        alert_interval_s=alert_interval,
        alert_webhook=check_webhook(args.alert_webhook) if args.alert_webhook else None,
        alert_renotify_s=renotify,
        instance_id=args.instance_id,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (callable from tests)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        from aperture.aggregator.server import Settings, serve

        settings = settings_from(args)
        assert isinstance(settings, Settings)
        check_data_dir(settings.data_dir, settings.journal)
        asyncio.run(serve(settings))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        print(
            f"{PROG}: error: {exc.name} is not installed: install the aggregator extras "
            "(pip install 'aperture[aggregator]').",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
