"""The dashboard's API types are generated from the answers' models: they must not drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aperture.profile_types import EventType

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "gen_api_types.py"


def test_the_ui_api_types_are_what_the_models_generate() -> None:
    result = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_generated_types_name_every_answer_and_its_fields() -> None:
    sys.path.insert(0, str(REPO / "tools"))
    import gen_api_types

    doc = gen_api_types.openapi_document()
    text = gen_api_types.render(doc)
    for answer in ("Flamegraph", "Top", "Diff", "Timeline", "Syscalls", "Locks", "Unwind"):
        assert f"export interface {answer} {{" in text
    # the wire names, not the Python ones: FlameNodes.self_ is sent as "self"
    assert "  self: number[];" in text and "self_:" not in text
    names = [f'"{t}"' for t in EventType]  # every type the registry knows, in its order
    assert f"export type EventType = {' | '.join(names)};" in text
    assert f"export const EventTypeValues = [{', '.join(names)}] as const;" in text
    assert "  pid: number | null;" in text  # syscalls not per process
    assert "  points: [number, number][];" in text
    # each answer route publishes its model, so the document and the types agree
    paths = doc["paths"]
    for route, model in (("/api/v1/flamegraph", "Flamegraph"), ("/api/v1/locks", "Locks")):
        schema = paths[route]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
