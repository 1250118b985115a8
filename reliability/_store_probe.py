"""Print what an embedded store holds, as JSON: run in its own process (chDB binds one path
per process), after the aggregator that owns the store has stopped.

usage: python reliability/_store_probe.py STORE_DIR
"""

from __future__ import annotations

import json
import sys

from aperture.storage import Store


def probe(path: str) -> dict[str, object]:
    """Per agent: stored sequences, duplicate rows, CPU samples and loss counters."""
    with Store.open(f"chdb://{path}") as store:
        rows = store.select(
            f"SELECT agent_id, groupArray(sequence), count() - uniqExact(sequence) "
            f"FROM {store.table('batches')} GROUP BY agent_id"
        )
        samples = store.select(
            f"SELECT agent_id, sum(value) FROM {store.table('samples')} "
            "WHERE event_type = 'cpu' GROUP BY agent_id"
        )
        # CPU batches whose window has no sample rows at all (a batch row without its data).
        empty = store.select(
            f"SELECT b.agent_id, count() FROM {store.table('batches')} AS b "
            f"LEFT ANTI JOIN (SELECT DISTINCT agent_id, window_start FROM "
            f"{store.table('samples')}) AS s "
            "ON b.agent_id = s.agent_id AND b.window_start = s.window_start "
            "WHERE has(b.event_types, 'cpu') GROUP BY b.agent_id"
        )
        losses = store.select(
            f"SELECT agent_id, sumMap(losses) FROM {store.table('batches')} GROUP BY agent_id"
        )
    return {
        "sequences": {str(a): sorted(int(s) for s in seqs) for a, seqs, _ in rows},
        "duplicate_rows": sum(int(d) for _, _, d in rows),
        "cpu_samples": {str(a): int(v) for a, v in samples},
        "cpu_batches_without_samples": {str(a): int(n) for a, n in empty},
        "losses": {str(a): {str(k): int(v) for k, v in dict(m).items()} for a, m in losses},
    }


if __name__ == "__main__":
    json.dump(probe(sys.argv[1]), sys.stdout)
