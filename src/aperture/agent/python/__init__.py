"""CPython frames for the agent: find the interpreter, its layout, and resolve code objects.

``offsets`` has the structure offsets per minor version (and reads 3.13's
``_Py_DebugOffsets``), ``interpreter`` finds CPython in a process, ``code`` turns a
code object and instruction offset into a name and line, ``frames`` walks a
thread's frames the way the BPF walker does.
"""
