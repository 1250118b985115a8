"""The profile store: ClickHouse through clickhouse-connect, embedded (chDB) or a server.

``Store.open("chdb:///var/lib/aperture/store")`` runs the engine in this
process; ``Store.open("https://ch:8443", username=..., password=...)`` talks
to a server or cluster. Both go through one clickhouse-connect code path.
A chDB path belongs to one process at a time (an exclusive lock file says
which), and a process hosts one chDB path at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from aperture.proto.v1 import profile_pb2 as pb
from aperture.query.stacks import Stack, StackCache
from aperture.query.tree import PathIndex
from aperture.storage import schema
from aperture.storage.pathlock import PathLock, StoreError
from aperture.storage.rows import RowBuilder
from aperture.wire import Decoded, encode

log = logging.getLogger("aperture.storage")

DEFAULT_DSN = "chdb:///var/lib/aperture/store"
# Each aggregator forgets which stacks it wrote this often, so it re-inserts a
# stack about hourly: that refreshes its last_seen (and so its TTL) without
# rewriting it every window.
STACK_REFRESH_S = 3600.0


@dataclass(frozen=True)
class InsertResult:
    batches: int = 0
    duplicates: int = 0  # already stored (or twice in the input): skipped
    rejected: int = 0  # malformed: skipped
    samples: int = 0
    locks: int = 0
    syscalls: int = 0
    stacks: int = 0  # new stack rows written


@dataclass(frozen=True)
class Prepared:
    """Batches turned into Arrow tables, ready for :meth:`Store.write`."""

    tables: dict[str, Any]  # ClickHouse table name -> pyarrow.Table
    token: str  # the insert deduplication token of this group
    new_stacks: list[int]
    batches: int
    duplicates: int
    rejected: int


def as_batch(item: pb.ProfileBatch | Decoded | bytes) -> pb.ProfileBatch:
    """A ProfileBatch from what ingest holds (a parsed message, raw bytes or a Decoded)."""
    if isinstance(item, pb.ProfileBatch):
        return item
    if isinstance(item, bytes | bytearray | memoryview):
        from aperture.wire import parse

        return parse(bytes(item))
    batch = encode(item.profiles.values(), item.identity, item.sequence)
    batch.window_start_ns, batch.window_end_ns = item.start_ns, item.end_ns
    return batch


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Store:
    """Inserts decoded batches and answers SQL; thread-safe (one writer, many readers)."""

    def __init__(
        self,
        dsn: str,
        layout: schema.Layout,
        *,
        path: str | None,
        client_args: dict[str, Any],
        stack_cache: int,
    ) -> None:
        self.dsn = dsn
        self.layout = layout
        self.path = path
        self._client_args = client_args
        self._lock: PathLock | None = PathLock.acquire(path) if path else None
        self._clients: dict[str, Client] = {}
        self._clients_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._known: set[int] = set()
        self._known_since = time.monotonic()
        self._closed = False
        self.stacks = StackCache(stack_cache)
        self._paths = PathIndex()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        dsn: str = DEFAULT_DSN,
        *,
        database: str = "aperture",
        retention_days: int = 7,
        username: str | None = None,
        password: str | None = None,
        cluster: str | None = None,
        stack_cache: int = 300_000,
    ) -> Store:
        """Open (creating or migrating) the store; :class:`StoreError` says what is wrong."""
        try:
            layout = schema.Layout(database, retention_days, cluster, dsn.startswith("chdb:"))
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        parts = urlsplit(dsn)
        args: dict[str, Any]
        if parts.scheme == "chdb":
            raw = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not raw or raw in (":memory:", "memory"):
                raise StoreError(f"{dsn!r} names no directory: use chdb:///path/to/store")
            path: str | None = os.path.realpath(raw)
            args = {"interface": "chdb", "path": path}
        elif parts.scheme in ("http", "https"):
            path = None
            args = {"dsn": dsn, "autogenerate_session_id": False, "connect_timeout": 5}
            if username is not None:
                args["username"] = username
            if password is not None:
                args["password"] = password
        else:
            raise StoreError(
                f"{_redact(dsn)!r} is not a store: use chdb:///path or http(s)://host:8123"
            )
        return cls(dsn, layout, path=path, client_args=args, stack_cache=stack_cache)

    @property
    def database(self) -> str:
        return self.layout.database

    @property
    def embedded(self) -> bool:
        return self.path is not None

    def table(self, name: str) -> str:
        """The qualified name queries use for one of :data:`schema.TABLES`."""
        if name not in schema.TABLES:
            raise ValueError(f"no table {name!r}")
        return f"{self.layout.database}.{name}"

    # -- clients ---------------------------------------------------------

    def _client(self, role: str) -> Client:
        client = self._clients.get(role)
        if client is not None:
            return client
        with self._clients_lock:
            client = self._clients.get(role)
            if client is None:
                if self._closed:
                    raise StoreError("the store is closed")
                try:
                    client = clickhouse_connect.get_client(**self._client_args)
                except Exception as exc:
                    where = self.path or _redact(self.dsn)
                    raise StoreError(f"cannot open the store at {where}: {exc}") from exc
                self._clients[role] = client
            return client

    def _recover(self, role: str) -> None:
        """After a failure: drop the client if it no longer answers, to reconnect next time."""
        client = self._clients.get(role)
        if client is not None and not client.ping():
            self._clients.pop(role, None)
            try:
                client.close()
            except Exception:
                log.debug("closing a broken client failed", exc_info=True)

    def _migrate(self) -> None:
        client = self._client("write")
        lay = self.layout
        for stmt in schema.bootstrap(lay):
            client.command(stmt)
        done = {
            int(row[0])
            for row in client.query(f"SELECT version FROM {lay.database}.schema_migrations FINAL")
            .result_rows
        }  # fmt: skip
        for migration in schema.MIGRATIONS:
            if migration.version in done:
                continue
            log.info("applying schema migration %d: %s", migration.version, migration.description)
            for stmt in migration.statements(lay):
                client.command(stmt)
            client.command(
                f"INSERT INTO {lay.database}.schema_migrations (version, description) "
                "VALUES ({v:UInt32}, {d:String})",
                parameters={"v": migration.version, "d": migration.description},
            )
        for table in schema.TABLES:
            suffix = "_local" if lay.cluster else ""
            rows = client.query(
                "SELECT engine_full FROM system.tables WHERE database = {db:String} "
                "AND name = {t:String}",
                parameters={"db": lay.database, "t": table + suffix},
            ).result_rows
            if rows and schema.ttl_days_of(rows[0][0]) != lay.ttl_days(table):
                log.info("setting %s retention to %d days", table, lay.ttl_days(table))
                for stmt in schema.retention_statements(lay, table):
                    client.command(stmt)

    # -- writing ---------------------------------------------------------

    def stored(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (agent_id, sequence) pairs the store already holds."""
        if not keys:
            return set()
        rows = self.select(
            f"SELECT DISTINCT agent_id, sequence FROM {self.table('batches')} "
            "WHERE (agent_id, sequence) IN {keys:Array(Tuple(String, UInt64))}",
            {"keys": list(keys)},
            role="dedupe",  # its own client: not queued behind an insert or a long query
        )
        return {(str(a), int(s)) for a, s in rows}

    def insert_batches(self, items: Iterable[pb.ProfileBatch | Decoded | bytes]) -> InsertResult:
        """Insert batches not stored yet, one Arrow insert per table.

        Retrying the same list after a failure inserts nothing twice: stacks are
        replaced by hash, the other tables carry a deduplication token, and a
        batch counts as stored once its ``batches`` row (written last) exists.
        """
        return self.write(self.prepare(items))

    def prepare(self, items: Iterable[pb.ProfileBatch | Decoded | bytes]) -> Prepared:
        """The Python half of an insert (dedupe, rows as Arrow tables), to :meth:`write`.

        Runs while another group's :meth:`write` is in ClickHouse (which
        releases the GIL): the writer overlaps the two halves on two cores.
        """
        batches = [as_batch(item) for item in items]
        keys = [(b.agent.agent_id, b.sequence) for b in batches]
        taken = self.stored(keys)
        now = time.monotonic()
        if (
            now - self._known_since > STACK_REFRESH_S
            or len(self._known) > 4 * self.stacks.max_stacks
        ):
            self._known, self._known_since = set(), now
        builder = RowBuilder(self._known)
        accepted: list[tuple[str, int]] = []
        duplicates = rejected = 0
        for batch, key in zip(batches, keys, strict=True):
            if key in taken:
                duplicates += 1
                continue
            try:
                builder.add(batch)
            except (IndexError, ValueError, OverflowError) as exc:
                log.warning("skipping malformed batch %s/%d: %s", key[0], key[1], exc)
                rejected += 1
                continue
            taken.add(key)
            accepted.append(key)
        token = hashlib.blake2b(repr(sorted(accepted)).encode(), digest_size=16).hexdigest()
        return Prepared(builder.tables(), token, builder.new_stacks, len(accepted), duplicates,
                        rejected)  # fmt: skip

    def write(self, prepared: Prepared) -> InsertResult:
        """The ClickHouse half of an insert; retrying the same Prepared is safe."""
        tables = prepared.tables
        with self._write_lock:
            try:
                client = self._client("write")
                for name in ("stacks", "samples", "lock_stats", "syscall_stats", "batches"):
                    table = tables.get(name)
                    if table is None:
                        continue
                    # stacks: no token (ReplacingMergeTree absorbs repeats)
                    token = f"{prepared.token}-{name}"
                    settings = {} if name == "stacks" else {"insert_deduplication_token": token}
                    client.insert_arrow(name, table, database=self.database, settings=settings)
            except StoreError:
                raise
            except Exception as exc:
                self._recover("write")
                raise StoreError(f"the store rejected an insert: {exc}") from exc
            self._known.update(prepared.new_stacks)

        def rows(name: str) -> int:
            table = tables.get(name)
            return 0 if table is None else int(table.num_rows)

        return InsertResult(
            batches=prepared.batches,
            duplicates=prepared.duplicates,
            rejected=prepared.rejected,
            samples=rows("samples"),
            locks=rows("lock_stats"),
            syscalls=rows("syscall_stats"),
            stacks=rows("stacks"),
        )

    # -- reading ---------------------------------------------------------

    def select(
        self, sql: str, parameters: dict[str, Any] | None = None, *, role: str = "read"
    ) -> list[tuple[Any, ...]]:
        """Rows of a query whose every parameter is bound server-side (``{name:Type}``)."""
        params = parameters or {}
        for name in params:
            if "{" + name + ":" not in sql:
                raise ValueError(f"parameter {name!r} is not bound in the query")
        try:
            result = self._client(role).query(sql, parameters=params or None)
        except StoreError:
            raise
        except Exception as exc:
            self._recover(role)
            raise StoreError(f"the store could not answer a query: {exc}") from exc
        return [tuple(row) for row in result.result_rows]

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run one statement (maintenance: OPTIMIZE, SYSTEM ...)."""
        self._client("write").command(sql, parameters=parameters)

    def resolve_stacks(self, hashes: Iterable[int]) -> dict[int, Stack]:
        """Frames of each stack hash (cached; an unknown hash maps to an empty stack)."""

        def fetch(chunk: list[int]) -> list[tuple[Any, ...]]:
            return self.select(
                "SELECT stack_hash, names, modules, kinds, offsets, lines "
                f"FROM {self.table('stacks')} "
                "WHERE stack_hash IN {h:Array(UInt64)} LIMIT 1 BY stack_hash",
                {"h": chunk},
            )

        return self.stacks.resolve(hashes, fetch)

    def paths(self) -> PathIndex:
        """The flamegraph path index (replaced when it grows past its bound)."""
        if len(self._paths) > 20 * self.stacks.max_stacks:
            self._paths = PathIndex()
        return self._paths

    def ping(self) -> bool:
        try:
            return bool(self._client("read").ping())
        except StoreError:
            return False

    def close(self) -> None:
        """Close the clients and give the path up (idempotent)."""
        with self._write_lock, self._clients_lock:
            self._closed = True
            clients, self._clients = self._clients, {}
            for client in clients.values():
                try:
                    client.close()
                except Exception:
                    log.debug("closing a client failed", exc_info=True)
            if self._lock is not None:
                lock, self._lock = self._lock, None
                lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
