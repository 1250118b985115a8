"""The ClickHouse schema as versioned migrations, for the embedded store and a cluster.

Each migration is a list of idempotent statements (``IF NOT EXISTS``) generated
for a :class:`Layout`: the embedded layout (chDB or a single server) creates
plain ``*MergeTree`` tables; the cluster layout creates ``Replicated*`` local
tables ``ON CLUSTER`` plus a ``Distributed`` table under the name queries use,
so the query code is the same for both. Applied versions are recorded in
``schema_migrations``.

Why stacks are stored as arrays of ``LowCardinality(String)`` (not interned
frame ids): a stack row is written once per distinct stack and 64-bit hash,
never per sample, so its encoding does not show in bytes per sample (a sample
row references it with 8 bytes that compress to ~2-3), and queries read a
stack's frames without a join.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# The tables queries read, by their (distributed) name.
TABLES = ("stacks", "samples", "samples_hourly", "lock_stats", "syscall_stats", "batches")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Embedded: replaced parts are deleted after 10 s instead of 8 minutes, so a
# small disk is not held by merged-away parts (DESIGN decision 6).
_EMBEDDED_SETTINGS = "old_parts_lifetime = 10"
# Retried inserts carry insert_deduplication_token; plain MergeTree only
# honours it with a deduplication window (Replicated tables have one).
_DEDUP_WINDOW = "non_replicated_deduplication_window = 1000"


def check_identifier(name: str, what: str) -> str:
    """``name`` if it is a plain ClickHouse identifier, else ValueError (never quoted in)."""
    if not _IDENT.match(name):
        raise ValueError(
            f"{what} {name!r} must start with a letter or _ and hold only letters, digits and _"
        )
    return name


@dataclass(frozen=True)
class Layout:
    """Where and how tables are created: database, retention, embedded or cluster."""

    database: str = "aperture"
    retention_days: int = 7
    cluster: str | None = None
    embedded: bool = True

    def __post_init__(self) -> None:
        check_identifier(self.database, "the database name")
        if self.cluster is not None:
            check_identifier(self.cluster, "the cluster name")
        if not 1 <= self.retention_days <= 36_500:
            raise ValueError(f"retention must be 1..36500 days, not {self.retention_days}")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def local(self, table: str) -> str:
        """The qualified name of the table that stores the rows."""
        suffix = "_local" if self.cluster else ""
        return f"{self.database}.{table}{suffix}"

    def engine(self, table: str, kind: str, args: str = "") -> str:
        if not self.cluster:
            return f"{kind}({args})" if args else kind
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{table}', '{{replica}}'"
        return f"Replicated{kind}({path}{', ' + args if args else ''})"

    def settings(self, *extra: str) -> str:
        items = [*extra]
        if self.embedded and not self.cluster:
            items.append(_EMBEDDED_SETTINGS)
        if not self.cluster:
            items.append(_DEDUP_WINDOW)
        return f"SETTINGS {', '.join(items)}" if items else ""

    def ttl_days(self, table: str) -> int:
        # A stack outlives the samples that reference it by a day: its
        # last_seen is refreshed at most hourly by each aggregator.
        return self.retention_days + 1 if table == "stacks" else self.retention_days

    def ttl(self, table: str) -> str:
        column = {"stacks": "last_seen", "samples_hourly": "hour"}.get(table, "toDateTime(ts)")
        return f"TTL {column} + INTERVAL {self.ttl_days(table)} DAY"

    def create(self, table: str, columns: str, engine: str, tail: str, shard_key: str) -> list[str]:
        """CREATE for the storage table, and in a cluster the Distributed table over it."""
        out = [
            f"CREATE TABLE IF NOT EXISTS {self.local(table)}{self.on_cluster} ({columns})\n"
            f"ENGINE = {engine}\n{tail}"
        ]
        if self.cluster:
            out.append(
                f"CREATE TABLE IF NOT EXISTS {self.database}.{table}{self.on_cluster} "
                f"AS {self.local(table)} ENGINE = Distributed({self.cluster}, "
                f"{self.database}, {table}_local, {shard_key})"
            )
        return out


_TS = "ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)), "
_WINDOW = "window_start DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD(1)), "
_WHO = (
    "host LowCardinality(String), agent_id LowCardinality(String), "
    "labels Map(LowCardinality(String), LowCardinality(String)), "
)
_KINDS = "Enum8('user' = 1, 'kernel' = 2, 'jit' = 3, 'unknown' = 4)"
_DAILY = "PARTITION BY toDate(ts)"


def _v1(lay: Layout) -> list[str]:
    out: list[str] = []
    out += lay.create(
        "stacks",
        "stack_hash UInt64, names Array(LowCardinality(String)), "
        f"modules Array(LowCardinality(String)), kinds Array({_KINDS}), "
        "offsets Array(UInt64) CODEC(ZSTD(1)), last_seen DateTime('UTC')",
        lay.engine("stacks", "ReplacingMergeTree", "last_seen"),
        f"ORDER BY stack_hash {lay.ttl('stacks')} {lay.settings()}",
        "stack_hash",
    )
    out += lay.create(
        "samples",
        _TS + _WINDOW + "event_type LowCardinality(String), " + _WHO + "pid UInt32 CODEC(ZSTD(1)), "
        "tid UInt32 CODEC(ZSTD(1)), comm LowCardinality(String), thread LowCardinality(String), "
        "stack_hash UInt64 CODEC(ZSTD(1)), value UInt64 CODEC(T64, ZSTD(1))",
        lay.engine("samples", "MergeTree"),
        f"{_DAILY} ORDER BY (event_type, host, ts) {lay.ttl('samples')} "
        + lay.settings("ttl_only_drop_parts = 1"),
        "cityHash64(host)",
    )
    # Fleet-wide hourly rollup, filled by a materialized view: a flamegraph over
    # a day of every host reads ~24 x distinct stacks rows instead of every sample.
    out += lay.create(
        "samples_hourly",
        "hour DateTime('UTC'), event_type LowCardinality(String), comm LowCardinality(String), "
        "proc_pid UInt32, stack_hash UInt64, value UInt64",
        lay.engine("samples_hourly", "SummingMergeTree", "value"),
        "PARTITION BY toDate(hour) ORDER BY (event_type, hour, comm, proc_pid, stack_hash) "
        f"{lay.ttl('samples_hourly')} " + lay.settings("ttl_only_drop_parts = 1"),
        "rand()",
    )
    out.append(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {lay.database}.samples_hourly_mv"
        f"{lay.on_cluster} TO {lay.local('samples_hourly')} AS SELECT toStartOfHour(ts) AS hour, "
        "event_type, comm, if(comm = '', pid, toUInt32(0)) AS proc_pid, stack_hash, "
        f"sum(value) AS value FROM {lay.local('samples')} "
        "GROUP BY hour, event_type, comm, proc_pid, stack_hash"
    )
    out += lay.create(
        "lock_stats",
        _TS + _WINDOW + _WHO + "pid UInt32, comm LowCardinality(String), address UInt64, "
        "stack_hash UInt64, contentions UInt64, wait_ns UInt64, max_ns UInt64, eagain UInt64, "
        "timeouts UInt64, timeout_ns UInt64, interrupted UInt64, hist Array(UInt64)",
        lay.engine("lock_stats", "MergeTree"),
        f"{_DAILY} ORDER BY (host, ts) {lay.ttl('lock_stats')} "
        + lay.settings("ttl_only_drop_parts = 1"),
        "cityHash64(host)",
    )
    out += lay.create(
        "syscall_stats",
        _TS + _WINDOW + _WHO + "pid UInt32, comm LowCardinality(String), nr UInt32, "
        "name LowCardinality(String), count UInt64, errors UInt64, total_ns UInt64, "
        "min_ns UInt64, max_ns UInt64, hist Array(UInt64), errnos Map(UInt32, UInt64)",
        lay.engine("syscall_stats", "MergeTree"),
        f"{_DAILY} ORDER BY (host, ts) {lay.ttl('syscall_stats')} "
        + lay.settings("ttl_only_drop_parts = 1"),
        "cityHash64(host)",
    )
    out += lay.create(
        "batches",
        "agent_id String, sequence UInt64, " + _TS + _WINDOW + "host LowCardinality(String), "
        "labels Map(LowCardinality(String), LowCardinality(String)), "
        "version LowCardinality(String), frequency_hz UInt32, "
        "event_types Array(LowCardinality(String)), losses Map(LowCardinality(String), UInt64), "
        "inserted_at DateTime('UTC') DEFAULT now()",
        lay.engine("batches", "ReplacingMergeTree"),
        f"{_DAILY} ORDER BY (agent_id, sequence) {lay.ttl('batches')} "
        + lay.settings("ttl_only_drop_parts = 1"),
        "cityHash64(agent_id)",
    )
    return out


def _v2(lay: Layout) -> list[str]:
    # How each batch's user stacks were unwound: the numeric cpu.unwind_* window
    # labels (counts and gauges, bounded by aperture.unwind_stats) and the mode.
    # Rows written before this migration read an empty map and '': not reported.
    # A Distributed table does not follow its local table's columns: alter both.
    names = [lay.local("batches")] + ([f"{lay.database}.batches"] if lay.cluster else [])
    return [
        f"ALTER TABLE {name}{lay.on_cluster} "
        "ADD COLUMN IF NOT EXISTS window_stats Map(LowCardinality(String), UInt64) AFTER losses, "
        "ADD COLUMN IF NOT EXISTS unwind_mode LowCardinality(String) AFTER window_stats"
        for name in names
    ]


def _v3(lay: Layout) -> list[str]:
    # Python frames: the 'python' kind (5, FRAME_KIND_PYTHON on the wire) and each
    # frame's source line (0 = unknown). Adding an Enum8 value rewrites no data.
    # Rows written before this migration read lines = []: every frame line 0.
    kinds = "Enum8('user' = 1, 'kernel' = 2, 'jit' = 3, 'unknown' = 4, 'python' = 5)"
    names = [lay.local("stacks")] + ([f"{lay.database}.stacks"] if lay.cluster else [])
    return [
        f"ALTER TABLE {name}{lay.on_cluster} MODIFY COLUMN kinds Array({kinds}), "
        "ADD COLUMN IF NOT EXISTS lines Array(UInt32) CODEC(ZSTD(1)) AFTER offsets"
        for name in names
    ]


def _v4(lay: Layout) -> list[str]:
    # Lock records' kind (mutex, condvar, ...; '' = not known), role (wait: the
    # waiters' stacks; hold: the holder's at release, hold times; wake: the
    # waker's) and, for holds, the releases that woke a waiter. Rows written
    # before this migration read kind '', role 'wait', releases 0: waits, as they were.
    # Their histograms become fine (4 buckets per power of two, as aperture.histogram):
    # each coarse bucket's count at its power's first fine bucket.
    names = [lay.local("lock_stats")] + ([f"{lay.database}.lock_stats"] if lay.cluster else [])
    return [
        f"ALTER TABLE {name}{lay.on_cluster} "
        "ADD COLUMN IF NOT EXISTS kind LowCardinality(String) AFTER address, "
        "ADD COLUMN IF NOT EXISTS role LowCardinality(String) DEFAULT 'wait' AFTER kind, "
        "ADD COLUMN IF NOT EXISTS releases UInt64 AFTER hist"
        for name in names
    ] + [
        f"ALTER TABLE {lay.local('lock_stats')}{lay.on_cluster} "
        "UPDATE hist = arrayFlatten(arrayMap(x -> [x, 0, 0, 0], hist)) "
        "WHERE length(hist) BETWEEN 1 AND 40 SETTINGS mutations_sync = 1"
    ]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Callable[[Layout], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "stacks, samples, lock_stats, syscall_stats, batches", _v1),
    Migration(2, "batches.window_stats and unwind_mode: how user stacks were unwound", _v2),
    Migration(3, "stacks: the python frame kind and each frame's source line", _v3),
    Migration(4, "lock_stats: kind, role (wait, hold, wake) and releases", _v4),
)


def bootstrap(lay: Layout) -> list[str]:
    """The database and the table recording applied migrations."""
    if lay.cluster:
        # One history for the whole cluster: every replica of every shard shares the path.
        engine = (
            f"ReplicatedReplacingMergeTree('/clickhouse/aperture/{lay.database}/"
            "schema_migrations', '{replica}')"
        )
    else:
        engine = "ReplacingMergeTree"
    return [
        f"CREATE DATABASE IF NOT EXISTS {lay.database}{lay.on_cluster}",
        f"CREATE TABLE IF NOT EXISTS {lay.database}.schema_migrations{lay.on_cluster} "
        "(version UInt32, description String, applied_at DateTime('UTC') DEFAULT now()) "
        f"ENGINE = {engine} ORDER BY version",
    ]


def retention_statements(lay: Layout, table: str) -> list[str]:
    """Statements that set one table's TTL to the layout's retention."""
    return [f"ALTER TABLE {lay.local(table)}{lay.on_cluster} MODIFY {lay.ttl(table)}"]


_TTL_DAYS = re.compile(r"toIntervalDay\((\d+)\)")


def ttl_days_of(engine_full: str) -> int | None:
    """The TTL in days that ``system.tables.engine_full`` shows, None without one."""
    match = _TTL_DAYS.search(engine_full)
    return int(match.group(1)) if match else None


def cluster_statements(database: str, cluster: str, retention_days: int = 7) -> list[str]:
    """Every statement that creates the schema on a cluster (bootstrap, then migrations).

    Storage tables are ``Replicated*MergeTree`` named ``<table>_local`` with the
    ``{shard}``/``{replica}`` macros; ``<table>`` is a ``Distributed`` table over
    them (samples and stats sharded by host, stacks by hash, batches by agent).
    """
    lay = Layout(database, retention_days, cluster=cluster, embedded=False)
    out = bootstrap(lay)
    for migration in MIGRATIONS:
        out += migration.statements(lay)
    return out
