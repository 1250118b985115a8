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


def where(
    f: QueryFilter, table: str, *, any_type: bool = False, prefix: str = ""
) -> tuple[str, dict[str, Any]]:
    """``cond AND cond ...`` for ``table`` and its parameters.

    A row matches when its window end ``ts`` is in ``[from_ns, to_ns)``, so
    adjacent ranges never count a window twice. A pid or address outside its
    column's range matches nothing. ``any_type``: rows of every profile type.
    ``prefix`` names the parameters apart, for a second condition in one statement.
    """
    has = _HAS[table]
    params: dict[str, Any] = {}
    conds: list[str] = []

    def add(cond: str, **values: Any) -> None:
        for name, value in values.items():
            cond = cond.replace("{" + name + ":", "{" + prefix + name + ":")
            params[prefix + name] = value
        conds.append(cond)

    add("ts >= fromUnixTimestamp64Nano({from_ns:Int64}, 'UTC')",
        from_ns=max(-MAX_NS, min(f.from_ns, MAX_NS)))  # fmt: skip
    add("ts < fromUnixTimestamp64Nano({to_ns:Int64}, 'UTC')",
        to_ns=max(-MAX_NS, min(f.to_ns, MAX_NS)))  # fmt: skip
    if "event_type" in has and not any_type:
        add("event_type = {event_type:String}", event_type=str(f.event_type))
    if "event_types" in has and not any_type:
        add("has(event_types, {event_type:String})", event_type=str(f.event_type))
    if f.host is not None:
        add("host = {host:String}", host=f.host)
    if f.agent is not None:
        add("agent_id = {agent:String}", agent=f.agent)
    if f.pid is not None and "pid" in has:
        if 0 <= f.pid < 2**32:
            add("pid = {pid:UInt32}", pid=f.pid)
        else:
            conds.append("0")
    if f.comm is not None and "comm" in has:
        add("comm = {comm:String}", comm=f.comm)
    if f.address is not None and "address" in has:
        if 0 <= f.address < 2**64:
            add("address = {address:UInt64}", address=f.address)
        else:
            conds.append("0")
    if f.lock_role is not None and "role" in has:
        add("role = {role:String}", role=f.lock_role)
    for i, (key, value) in enumerate(sorted(f.labels.items())):
        add(f"mapContains(labels, {{lk{i}:String}}) AND labels[{{lk{i}:String}}] = "
            f"{{lv{i}:String}}", **{f"lk{i}": key, f"lv{i}": value})  # fmt: skip
    return " AND ".join(conds), params
