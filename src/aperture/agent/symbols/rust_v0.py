"""Rust v0 symbol demangling (RFC 2603, ``_R...`` names) in pure Python.

The output is the short form: rustc-demangle's ``{:#}`` and binutils' ``c++filt -i``
(crate disambiguator hashes and const type suffixes left out), e.g.
``<std::thread::Thread>::park_timeout``. Anything that does not parse gives ``None``.
Constants follow binutils (``'\\u{1f600}'`` rather than the character itself) so the
two can be compared name for name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["demangle_v0"]

_T = TypeVar("_T")

_SYMBOL_CHARS = re.compile(r"[0-9A-Za-z_]+", re.ASCII)
_PUNYCODE_DIGITS = re.compile(r"[0-9a-z]+", re.ASCII)
# fmt: off
_BASIC_TYPES = {
    "a": "i8", "s": "i16", "l": "i32", "x": "i64", "n": "i128", "i": "isize",
    "h": "u8", "t": "u16", "m": "u32", "y": "u64", "o": "u128", "j": "usize",
    "b": "bool", "c": "char", "e": "str", "f": "f32", "d": "f64",
    "u": "()", "z": "!", "p": "_", "v": "...",
}
# fmt: on
_BASE_62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNSIGNED = frozenset("hjmoty")
_SIGNED = frozenset("ailnsx")
_CHAR_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
# Backrefs let a short symbol expand to a huge name, so every character read (again at
# each backref) is counted, and past a limit the symbol is taken as hostile.
_BUDGET = 250_000  # characters read: about 100k characters of demangled name


class _Invalid(Exception):
    """The symbol is not valid v0 mangling."""


def demangle_v0(name: str) -> str | None:
    """Demangle a Rust v0 symbol (``_R...``, or ``__R...``); ``None`` if it is not one."""
    if name.startswith("__R"):
        name = name[1:]  # the extra leading underscore of Mach-O symbol names
    if not name.startswith("_R"):
        return None
    # A ".llvm.123"-style suffix added by LLVM is not part of the mangling.
    sym = name[2:].split(".", 1)[0]
    if not sym or not "A" <= sym[0] <= "Z" or not _SYMBOL_CHARS.fullmatch(sym):
        return None
    parser = _Parser(sym)
    try:
        out = parser.path(in_value=True)
        if parser.pos < len(sym):
            parser.path(in_value=False)  # the instantiating crate: not shown
    except (_Invalid, RecursionError):  # rustc's names nest ~30 deep, not hundreds
        return None
    return out if parser.pos == len(sym) else None


class _Parser:
    """Recursive descent over the grammar of RFC 2603, building the text as it goes."""

    def __init__(self, sym: str) -> None:
        self.sym = sym
        self.pos = 0
        self.budget = _BUDGET
        self.bound_lifetimes = 0  # binder depth, for naming lifetimes 'a, 'b, ...

    def peek(self) -> str:
        return self.sym[self.pos] if self.pos < len(self.sym) else ""

    def eat(self, char: str) -> bool:
        if self.peek() == char:
            self.advance()
            return True
        return False

    def next(self) -> str:
        char = self.peek()
        if not char:
            raise _Invalid
        self.advance()
        return char

    def advance(self, count: int = 1) -> None:
        self.pos += count
        self.charge(count)

    def charge(self, amount: int) -> None:
        self.budget -= amount
        if self.budget < 0:
            raise _Invalid

    def integer_62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while not self.eat("_"):
            digit = _BASE_62.find(self.next())
            if digit < 0:
                raise _Invalid
            value = value * 62 + digit
        return value + 1

    def opt_integer_62(self, tag: str) -> int:
        return self.integer_62() + 1 if self.eat(tag) else 0

    def hex_nibbles(self) -> str:
        start = self.pos
        while not self.eat("_"):
            if self.next() not in "0123456789abcdef":
                raise _Invalid
        return self.sym[start : self.pos - 1]

    def ident(self) -> str:
        punycode = self.eat("u")
        start = self.pos
        if not self.next().isdigit():
            raise _Invalid
        if self.sym[start] != "0":
            while self.peek().isdigit():
                self.advance()
        length = int(self.sym[start : self.pos])
        self.eat("_")  # separates the length from an identifier starting with a digit or _
        end = self.pos + length
        if end > len(self.sym):
            raise _Invalid
        raw = self.sym[self.pos : end]
        self.advance(length)
        if not punycode:
            return raw
        # Punycode with "_" instead of "-" before the encoded part (RFC 3492).
        basic, _, digits = raw.rpartition("_")
        if not _PUNYCODE_DIGITS.fullmatch(digits):
            raise _Invalid
        try:
            decoded = f"{basic}-{digits}".encode("ascii").decode("punycode")
        except UnicodeError as exc:
            raise _Invalid from exc
        if not decoded.isprintable():  # e.g. a lone surrogate, which could not be written out
            raise _Invalid
        return decoded

    def backref(self, parse: Callable[[], _T]) -> _T:
        """Parse what the ``B<offset>`` just read points at, then carry on after it."""
        start = self.pos - 1
        target = self.integer_62()
        if target >= start:  # only backwards, or a symbol could loop on itself
            raise _Invalid
        saved, self.pos = self.pos, target
        try:
            return parse()
        finally:
            self.pos = saved

    def path(self, in_value: bool) -> str:
        tag = self.next()
        if tag == "C":  # crate root; its disambiguator is the hash left out here
            self.opt_integer_62("s")
            return self.ident()
        if tag == "N":
            namespace = self.next()
            if not namespace.isalpha():
                raise _Invalid
            parent = self.path(in_value)
            index = self.opt_integer_62("s")
            name = self.ident()
            if namespace.isupper():  # closures, shims: {closure#0}, {shim:vtable#0}
                kind = {"C": "closure", "S": "shim"}.get(namespace, namespace)
                label = f"{kind}:{name}" if name else kind
                return f"{parent}::{{{label}#{index}}}"
            return f"{parent}::{name}" if name else parent
        if tag in ("M", "X"):  # inherent / trait impl: the impl's own path is not shown
            self.opt_integer_62("s")
            self.path(in_value)
        if tag in ("M", "X", "Y"):
            self_type = self.type()
            if tag == "M":
                return f"<{self_type}>"
            return f"<{self_type} as {self.path(in_value=False)}>"
        if tag == "I":
            base = self.path(in_value)
            args = ", ".join(self.until_end(self.generic_arg))
            return f"{base}::<{args}>" if in_value else f"{base}<{args}>"
        if tag == "B":
            return self.backref(lambda: self.path(in_value))
        raise _Invalid

    def until_end(self, parse: Callable[[], str]) -> list[str]:
        items: list[str] = []
        while not self.eat("E"):
            items.append(parse())
        return items

    def generic_arg(self) -> str:
        if self.eat("L"):
            return self.lifetime(self.integer_62())
        if self.eat("K"):
            return self.const()
        return self.type()

    def lifetime(self, index: int) -> str:
        if index == 0:
            return "'_"
        depth = self.bound_lifetimes - index
        if depth < 0:
            raise _Invalid
        return f"'{chr(ord('a') + depth)}" if depth < 26 else f"'_{depth}"

    def binder(self) -> str:
        """Enter a ``for<'a, ...>`` binder; the caller restores ``bound_lifetimes``."""
        count = self.opt_integer_62("G")
        self.charge(count)  # a few characters can name many lifetimes
        names = []
        for _ in range(count):
            self.bound_lifetimes += 1
            names.append(self.lifetime(1))
        return f"for<{', '.join(names)}> " if names else ""

    def type(self) -> str:
        tag = self.next()
        if tag in _BASIC_TYPES:
            return _BASIC_TYPES[tag]
        if tag in ("R", "Q"):
            lifetime = ""
            if self.eat("L"):
                index = self.integer_62()
                lifetime = f"{self.lifetime(index)} " if index else ""
            return f"&{lifetime}{'mut ' if tag == 'Q' else ''}{self.type()}"
        if tag in ("P", "O"):
            return f"*{'const' if tag == 'P' else 'mut'} {self.type()}"
        if tag == "A":
            element = self.type()
            return f"[{element}; {self.const()}]"
        if tag == "S":
            return f"[{self.type()}]"
        if tag == "T":
            items = self.until_end(self.type)
            return f"({', '.join(items)},)" if len(items) == 1 else f"({', '.join(items)})"
        if tag in ("F", "D"):
            saved = self.bound_lifetimes
            try:
                text = self.fn_sig() if tag == "F" else "dyn " + self.dyn_bounds()
            finally:
                self.bound_lifetimes = saved
            if tag == "D":  # the object lifetime is outside the binder
                if not self.eat("L"):
                    raise _Invalid
                index = self.integer_62()
                text += f" + {self.lifetime(index)}" if index else ""
            return text
        if tag == "B":
            return self.backref(self.type)
        self.pos -= 1
        return self.path(in_value=False)

    def fn_sig(self) -> str:
        text = self.binder()
        if self.eat("U"):
            text += "unsafe "
        if self.eat("K"):
            if self.eat("C"):
                abi = "C"
            else:  # a plain identifier, with "-" mangled as "_"
                abi = "" if self.peek() == "u" else self.ident().replace("_", "-")
                if not abi:
                    raise _Invalid
            text += f'extern "{abi}" '
        text += f"fn({', '.join(self.until_end(self.type))})"
        return text if self.eat("u") else f"{text} -> {self.type()}"

    def dyn_bounds(self) -> str:
        text = self.binder()
        return text + " + ".join(self.until_end(self.dyn_trait))

    def dyn_trait(self) -> str:
        text, is_open = self.path_open_generics()
        while self.eat("p"):  # associated type bindings go inside the trait's <...>
            text += ", " if is_open else "<"
            is_open = True
            name = self.ident()
            text += f"{name} = {self.type()}"
        return f"{text}>" if is_open else text

    def path_open_generics(self) -> tuple[str, bool]:
        """A trait path, leaving its generic ``<...`` open for ``Item = T`` bindings."""
        if self.eat("B"):
            return self.backref(self.path_open_generics)
        if self.eat("I"):
            base = self.path(in_value=False)
            return f"{base}<{', '.join(self.until_end(self.generic_arg))}", True
        return self.path(in_value=False), False

    def const(self) -> str:
        if self.eat("B"):
            return self.backref(self.const)
        tag = self.next()
        if tag == "p":
            return "_"
        if tag in _UNSIGNED:
            return self.const_uint()
        if tag in _SIGNED:
            sign = "-" if self.eat("n") else ""
            return sign + self.const_uint()
        if tag == "b":
            value = {"0": "false", "1": "true"}.get(self.hex_nibbles())
            if value is None:
                raise _Invalid
            return value
        if tag == "c":
            digits = self.hex_nibbles()
            if not 1 <= len(digits) <= 8:
                raise _Invalid
            code = int(digits, 16)
            if code in _CHAR_ESCAPES:
                return f"'{_CHAR_ESCAPES[code]}'"
            return f"'{chr(code)}'" if 0x20 < code < 0x7E else f"'\\u{{{code:x}}}'"
        raise _Invalid

    def const_uint(self) -> str:
        digits = self.hex_nibbles()
        if not digits:
            raise _Invalid
        # Like binutils: decimal when it fits in 64 bits, the hex digits otherwise.
        return f"0x{digits}" if len(digits) > 16 else str(int(digits, 16))
