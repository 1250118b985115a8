"""Where rules, states and history survive a restart: the store, or a JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

HISTORY_KEEP = 10_000


class AlertPersistence(Protocol):
    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(rules, states, history oldest first) as JSON objects."""
        ...

    def put_rule(self, rule: dict[str, Any]) -> None: ...
    def delete_rule(self, rule_id: str) -> None: ...
    def put_state(self, state: dict[str, Any]) -> None: ...
    def add_history(self, entries: list[dict[str, Any]]) -> None: ...


class JsonFilePersistence:
    """One JSON file, rewritten atomically (temp file, fsync, rename) on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"rules": {}, "states": {}, "history": []}
        if path.exists():
            self._data.update(json.loads(path.read_text()))
            if path.stat().st_mode & 0o077:
                # Written by an older version with the umask's mode; another owner's
                # file is replaced by one of ours, 0600, at the next write.
                with contextlib.suppress(OSError):
                    path.chmod(0o600)

    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        d = self._data
        return list(d["rules"].values()), list(d["states"].values()), list(d["history"])

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # 0600 like the journal: rules hold webhook URLs, which often carry a secret.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # a temp file left by a crash keeps its old mode otherwise
        with os.fdopen(fd, "w") as f:
            json.dump(self._data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def put_rule(self, rule: dict[str, Any]) -> None:
        with self._lock:
            self._data["rules"][rule["id"]] = rule
            self._write()

    def delete_rule(self, rule_id: str) -> None:
        with self._lock:
            self._data["rules"].pop(rule_id, None)
            self._data["states"].pop(rule_id, None)
            self._write()

    def put_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._data["states"][state["rule_id"]] = state
            self._write()

    def add_history(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self._data["history"] = (self._data["history"] + entries)[-HISTORY_KEEP:]
            self._write()


class StorePersistence:
    """Tables of our own in the store: latest version per rule id wins (read with FINAL)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._seq = 0
        db = store.database
        self.rules, self.states, self.history = (
            f"{db}.alert_rules", f"{db}.alert_states", f"{db}.alert_history"
        )  # fmt: skip
        for table in (self.rules, self.states):
            store.command(
                f"CREATE TABLE IF NOT EXISTS {table} (id String, version UInt64, "
                "deleted UInt8, body String) ENGINE = ReplacingMergeTree(version) ORDER BY id"
            )
        store.command(
            f"CREATE TABLE IF NOT EXISTS {self.history} (seq UInt64, rule_id String, "
            "body String) ENGINE = MergeTree ORDER BY seq"
        )

    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        def latest(table: str) -> list[dict[str, Any]]:
            rows = self.store.select(f"SELECT body FROM {table} FINAL WHERE deleted = 0")
            return [json.loads(r[0]) for r in rows]

        history = self.store.select(
            f"SELECT body FROM {self.history} ORDER BY seq DESC LIMIT {HISTORY_KEEP}"
        )
        return (latest(self.rules), latest(self.states),
                [json.loads(r[0]) for r in reversed(history)])  # fmt: skip

    def _put(self, table: str, key: str, body: dict[str, Any] | None) -> None:
        self.store.command(
            f"INSERT INTO {table} VALUES ({{id:String}}, {{v:UInt64}}, {{d:UInt8}}, {{b:String}})",
            {"id": key, "v": time.time_ns(), "d": int(body is None), "b": json.dumps(body or {})},
        )

    def put_rule(self, rule: dict[str, Any]) -> None:
        self._put(self.rules, rule["id"], rule)

    def delete_rule(self, rule_id: str) -> None:
        self._put(self.rules, rule_id, None)
        self._put(self.states, rule_id, None)

    def put_state(self, state: dict[str, Any]) -> None:
        self._put(self.states, state["rule_id"], state)

    def add_history(self, entries: list[dict[str, Any]]) -> None:
        # seq keeps the order of entries that share a timestamp (pending, then firing).
        rows, params = [], {}
        for i, e in enumerate(entries):
            self._seq = max(self._seq + 1, time.time_ns())
            rows.append(f"({{s{i}:UInt64}}, {{r{i}:String}}, {{b{i}:String}})")
            params.update({f"s{i}": self._seq, f"r{i}": e["rule_id"], f"b{i}": json.dumps(e)})
        self.store.command(f"INSERT INTO {self.history} VALUES {', '.join(rows)}", params)
