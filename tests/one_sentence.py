"""What a user's mistake given to a program ends in: one sentence, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess


def assert_one_sentence(result: subprocess.CompletedProcess[str], prog: str, text: str) -> None:
    """``result`` failed with one ``PROG: error: ...`` line on stderr that ends in a period
    and holds ``text``."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].endswith("."), lines[0]
    assert text in lines[0], lines[0]
