"""What a query selects, turned into a WHERE clause with bound parameters only.

Every value a user gives travels as a ClickHouse server-side parameter
(``{name:Type}``); the SQL text holds only fixed column names and generated
parameter names, so no filter value can change a statement.
"""

from __future__ import annotations

from typing import Any

from aperture.query.filter import MAX_NS, QueryFilter

# Columns each table has beyond ts/host/agent_id/labels.
_HAS = {
    "samples": {"event_type", "pid", "comm"},
    "lock_stats": {"pid", "comm", "address", "role"},
    "syscall_stats": {"pid", "comm"},
    "batches": {"event_types"},
}


def where(f: QueryFilter, table: str) -> tuple[str, dict[str, Any]]:
    """``cond AND cond ...`` for ``table`` and its parameters.

    A row matches when its window end ``ts`` is in ``[from_ns, to_ns)``, so
    adjacent ranges never count a window twice. A pid or address outside its
    column's range matches nothing.
    """
    has = _HAS[table]
    conds = [
        "ts >= fromUnixTimestamp64Nano({from_ns:Int64}, 'UTC')",
        "ts < fromUnixTimestamp64Nano({to_ns:Int64}, 'UTC')",
    ]
    params: dict[str, Any] = {
        "from_ns": max(-MAX_NS, min(f.from_ns, MAX_NS)),
        "to_ns": max(-MAX_NS, min(f.to_ns, MAX_NS)),
    }
    if "event_type" in has:
        conds.append("event_type = {event_type:String}")
        params["event_type"] = str(f.event_type)
    if "event_types" in has:
        conds.append("has(event_types, {event_type:String})")
        params["event_type"] = str(f.event_type)
    if f.host is not None:
        conds.append("host = {host:String}")
        params["host"] = f.host
    if f.agent is not None:
        conds.append("agent_id = {agent:String}")
        params["agent"] = f.agent
    if f.pid is not None and "pid" in has:
        if 0 <= f.pid < 2**32:
            conds.append("pid = {pid:UInt32}")
            params["pid"] = f.pid
        else:
            conds.append("0")
    if f.comm is not None and "comm" in has:
        conds.append("comm = {comm:String}")
        params["comm"] = f.comm
    if f.address is not None and "address" in has:
        if 0 <= f.address < 2**64:
            conds.append("address = {address:UInt64}")
            params["address"] = f.address
        else:
            conds.append("0")
    if f.lock_role is not None and "role" in has:
        conds.append("role = {role:String}")
        params["role"] = f.lock_role
    for i, (key, value) in enumerate(sorted(f.labels.items())):
        conds.append(
            f"mapContains(labels, {{lk{i}:String}}) AND labels[{{lk{i}:String}}] = {{lv{i}:String}}"
        )
        params[f"lk{i}"] = key
        params[f"lv{i}"] = value
    return " AND ".join(conds), params
