"""Output formats: each a pure function of a :class:`aperture.model.Profile`.

The names below are imported on first use (PEP 562): the agent imports this package
for its output flags, and most runs write one format or none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aperture.formats.collapsed import parse_collapsed, to_collapsed
    from aperture.formats.json_format import load_json, to_json
    from aperture.formats.registry import (
        UnknownFormatError,
        Writer,
        split_suffix,
        supported_suffixes,
        write_profile,
        writer_for,
    )
    from aperture.formats.speedscope import to_speedscope
    from aperture.formats.svg import to_svg

_WHERE = {
    "parse_collapsed": "collapsed",
    "to_collapsed": "collapsed",
    "load_json": "json_format",
    "to_json": "json_format",
    "UnknownFormatError": "registry",
    "Writer": "registry",
    "split_suffix": "registry",
    "supported_suffixes": "registry",
    "write_profile": "registry",
    "writer_for": "registry",
    "to_speedscope": "speedscope",
    "to_svg": "svg",
}

__all__ = [
    "UnknownFormatError",
    "Writer",
    "load_json",
    "parse_collapsed",
    "split_suffix",
    "supported_suffixes",
    "to_collapsed",
    "to_json",
    "to_speedscope",
    "to_svg",
    "write_profile",
    "writer_for",
]


if not TYPE_CHECKING:  # mypy sees the imports above, and flags a name not among them

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
