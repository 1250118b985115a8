"""Rust v0 demangling, checked against binutils' c++filt on symbols rustc really emits."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aperture.agent.symbols import demangle
from aperture.agent.symbols.rust_v0 import demangle_v0

# Exercises closures, shims, inherent and trait impls, dyn traits with associated types,
# fn pointers with binders and ABIs, arrays, tuples, raw pointers, const generics of each
# kind, and non-ASCII (punycode) identifiers. Built without optimisation so the generic
# instances survive as symbols.
RUST_PROGRAM = r"""
use std::collections::HashMap;
use std::fmt::Debug;
trait Shape { fn area(&self) -> f64; }
struct Sq<T>(T);
impl Shape for Sq<f64> { fn area(&self) -> f64 { self.0 * self.0 } }
impl<T: Debug> Sq<T> { fn show(&self) { println!("{:?}", self.0); } }
fn arr<const N: usize>(a: [u8; N]) -> usize { a.len() }
fn cb<const B: bool, const C: char>() -> bool { B && C == 'x' }
fn neg<const I: i32>() -> i32 { I }
fn dynf(s: &dyn Shape, f: fn(&u8, *const i16) -> (u8, i64)) -> f64 {
    let _ = f(&1, std::ptr::null());
    s.area()
}
fn rawmut(p: *mut [u16], s: &mut str, t: (char, &[&str])) -> usize { p.len() + s.len() + t.1.len() }
fn helper(a: &u8, _b: *const i16) -> (u8, i64) { (*a, 2) }
fn unicode_fn_ä() -> u8 { 3 }
mod 日本 { pub fn 関数() -> u8 { 4 } }
fn boxed(b: Box<dyn Fn(u8) -> u8 + Send + Sync>) -> u8 { b(1) }
fn iter_dyn(i: &mut dyn Iterator<Item = u32>) -> u32 { i.sum() }
fn size<T>(_t: T) -> usize { std::mem::size_of::<T>() }
unsafe extern "C" fn ext(_: i32) {}
fn main() {
    let v: Vec<u32> = (0..10).collect();
    println!("{}", v.iter().map(|x: &u32| x + 1).sum::<u32>());
    let mut m: HashMap<String, Vec<Option<u64>>> = HashMap::new();
    m.insert("a".into(), vec![Some(1)]);
    println!("{:?}", m);
    Sq(3u8).show(); Sq("x").show();
    println!("{}", Sq(2.0).area() + arr([1, 2, 3]) as f64 + arr([0u8; 0x10000]) as f64);
    println!("{} {} {}", cb::<true, 'x'>(), cb::<false, '\u{1F600}'>(), neg::<-5>());
    println!("{}", dynf(&Sq(1.0), helper));
    let mut s = String::from("hi"); let mut w = [1u16, 2];
    println!("{}", rawmut(&mut w[..] as *mut [u16], s.as_mut_str(), ('c', &["a"])));
    println!("{} {}", unicode_fn_ä(), 日本::関数());
    println!("{}", boxed(Box::new(|x| x * 2)));
    println!("{}", iter_dyn(&mut (0..4u32)));
    println!("{}", size::<for<'a> fn(&'a u8) -> &'a u8>(|x| x));
    println!("{}", size::<unsafe extern "C" fn(i32)>(ext));
    println!("{}", size::<&dyn for<'a> Fn(&'a str) -> &'a str>(&|s| s));
    println!("{}", size::<[(u128, i128, isize); 0]>([]) + size::<(bool,)>((true,)));
    println!("{}", size::<*const dyn Send>(std::ptr::null::<u8>() as *const dyn Send));
    std::thread::spawn(|| println!("t")).join().unwrap();
}
"""

PARK_TIMEOUT = "_RNvMs_NtNtCsalM65ksrrJu_3std6thread6threadNtB4_6Thread12park_timeout"
HAND_PICKED = {
    PARK_TIMEOUT: "<std::thread::thread::Thread>::park_timeout",
    "_RNvCs1234_7mycrate3foo": "mycrate::foo",
    "_RNvCs1234_7mycrate3foo.llvm.1234": "mycrate::foo",
    "_RNvNtCs6xxl1lAjzDf_1au6wgv71au7kdvt68h": "a::日本::関数",
    "_RINvCs1234_7mycrate3fooKc27_Kc5c_Kca_Kb0_Kan1_KpKc20_Kc7e_Kc7d_E": (
        r"mycrate::foo::<''', '\', '\n', false, -1, _, '\u{20}', '\u{7e}', '}'>"
    ),
    "_RINvC1a1fFK8C_unwindEuE": 'a::f::<extern "C-unwind" fn()>',
    "_RINvC1a1fFUKCEuE": 'a::f::<unsafe extern "C" fn()>',
    "_RINvC1a1fFG0_RL0_hERL1_hE": "a::f::<for<'a, 'b> fn(&'b u8) -> &'a u8>",
    "_RINvC1a1fRL_hE": "a::f::<&u8>",
}
# binutils 2.40 garbles constants wider than 64 bits (it drops the first hex digit and
# keeps the "_"), so this one is checked against the right answer only.
WIDE_CONST = (
    "_RINvCs1234_7mycrate3fooKo123456789abcdef0123456789abcdef_E",
    "mycrate::foo::<0x123456789abcdef0123456789abcdef>",
)
MALFORMED = [
    "_R",
    "_Rx",
    "_RNvCs1234_7mycrate3fo",  # truncated identifier
    "_RNvCs1234_7mycrate3foo!",  # not a symbol character
    "_RNvB9_3foo",  # backref pointing forwards
    "_RNvC1a1bX",  # trailing garbage
    "_RINvC1a1fKb2_E",  # bool that is not 0 or 1
    "_RINvC1a1fDG_NtC1b2TrEL0_E",  # lifetime from outside any binder
    "_RNvC1au4abc_",  # punycode without any encoded part
    "__RNvCs1234_7mycrate",
]


def _cxxfilt(symbols: list[str]) -> list[str]:
    """c++filt's names with its verbose-only details removed: ``[hash]`` and ``: usize``."""
    out = subprocess.run(
        ["c++filt"], input="\n".join(symbols) + "\n", capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == len(symbols)
    out = [re.sub(r"\[[0-9a-f]+\]", "", line) for line in out]
    return [re.sub(r": (?:[iu](?:8|16|32|64|128|size)|bool|char)\b", "", line) for line in out]


def _compile(source: Path, binary: Path) -> None:
    """Build with v0 mangling: a stable flag since Rust 1.59, unstable (-Z) before."""
    errors = []
    for flag, env in (("-C", {}), ("-Z", {"RUSTC_BOOTSTRAP": "1"})):
        proc = subprocess.run(
            ["rustc", flag, "symbol-mangling-version=v0", str(source), "-o", str(binary)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        if proc.returncode == 0:
            return
        errors.append(proc.stderr)
    pytest.fail("rustc could not build the v0 corpus:\n" + "\n".join(errors))


@pytest.fixture(scope="module")
def cxxfilt() -> None:
    if shutil.which("c++filt") is None:
        pytest.skip("c++filt (binutils) is not installed: no oracle for Rust v0 names")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ``_R`` symbols of a small program and the parts of std it pulls in."""
    for tool in ("rustc", "nm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: no corpus of real Rust v0 symbols")
    tmp = tmp_path_factory.mktemp("rust_v0")
    source = tmp / "corpus.rs"
    source.write_text(RUST_PROGRAM, encoding="utf-8")
    _compile(source, tmp / "corpus")
    nm = subprocess.run(["nm", str(tmp / "corpus")], capture_output=True, text=True, check=True)
    names = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()}
    return sorted(name for name in names if name.startswith("_R"))


@pytest.mark.usefixtures("cxxfilt")
def test_real_symbols_match_cxxfilt(corpus: list[str]) -> None:
    assert len(corpus) > 500, "rustc did not emit v0 names"
    expected = _cxxfilt(corpus)
    assert sum(name != raw for name, raw in zip(expected, corpus, strict=True)) > 500
    mismatches = [
        (raw, got, want)
        for raw, want in zip(corpus, expected, strict=True)
        if (got := demangle(raw)) != want
    ]
    assert not mismatches, f"{len(mismatches)} of {len(corpus)} differ, e.g. {mismatches[:5]}"


@pytest.mark.usefixtures("cxxfilt")
def test_hand_picked_match_cxxfilt() -> None:
    symbols = list(HAND_PICKED)
    assert [demangle(s) for s in symbols] == _cxxfilt(symbols)


def test_hand_picked() -> None:
    for raw, want in [*HAND_PICKED.items(), WIDE_CONST]:
        assert demangle(raw) == want, raw
    assert demangle("_" + PARK_TIMEOUT) == "<std::thread::thread::Thread>::park_timeout"


def test_malformed_comes_back_unchanged() -> None:
    for raw in MALFORMED:
        assert demangle_v0(raw) is None, raw
        assert demangle(raw) == raw


def test_hostile_nesting_and_backrefs_give_up_quickly() -> None:
    deep = "_R" + "Nv" * 5000 + "C1a" + "1b" * 5000
    # Each tuple holds the previous one twice: 2**60 elements from a short symbol.
    body, offsets = "INvC1a1fh", [8]
    for _ in range(60):
        offsets.append(len(body))
        body += f"TB{_base62(offsets[-2])}B{_base62(offsets[-2])}E"
    bomb = "_R" + body + "E"
    for raw in (deep, bomb):
        start = time.monotonic()
        assert demangle_v0(raw) is None
        assert time.monotonic() - start < 10


def test_mutated_real_symbols_never_raise(corpus: list[str]) -> None:
    rng = random.Random(2603)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
    for raw in rng.sample(corpus, 300):
        cut = rng.randrange(2, len(raw))
        for mutated in (
            raw[:cut] + rng.choice(alphabet) + raw[cut + 1 :],
            raw[:cut],
            raw[:cut] + raw[cut + 1 :],
        ):
            assert demangle(mutated) == (demangle_v0(mutated) or mutated)


def _base62(value: int) -> str:
    """Encode a backref offset the way v0 does (``_`` for 0, else base 62 of n-1, ``_``)."""
    if value == 0:
        return "_"
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    value -= 1
    out = ""
    while True:
        value, rem = divmod(value, 62)
        out = digits[rem] + out
        if value == 0:
            return out + "_"
