"""Output formats: each a pure function of a :class:`aperture.model.Profile`."""

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
