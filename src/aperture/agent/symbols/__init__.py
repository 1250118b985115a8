"""Symbolization: raw stack addresses → :class:`aperture.model.Frame`.

The agent uses :class:`Symbolizer`; the other classes are its parts (kernel
kallsyms, ELF files and their debug files, JIT perf maps, process mappings).
"""

from aperture.agent.symbols.demangle import demangle
from aperture.agent.symbols.elf import ElfSymbols
from aperture.agent.symbols.kernel import KernelSymbols
from aperture.agent.symbols.perfmap import PerfMap
from aperture.agent.symbols.process import Mapping, ProcessMaps
from aperture.agent.symbols.symbolizer import Symbolizer, SymbolizerStats

__all__ = [
    "ElfSymbols",
    "KernelSymbols",
    "Mapping",
    "PerfMap",
    "ProcessMaps",
    "Symbolizer",
    "SymbolizerStats",
    "demangle",
]
