"""Other projects' real profiles, read from ../shared/interop beside the project (its README).

Tests that read them are marked ``needs_interop``: they skip, saying why, when the
folder is not there (a clone elsewhere); CI and the team's machines have it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[1].parent / "shared" / "interop"

needs_interop = pytest.mark.skipif(
    not INTEROP.is_dir(),
    reason=f"{INTEROP} is missing: these tests read other projects' profiles from "
    "../shared/interop beside the project",
)
