"""The assembler at scale (issue 12): linear work, bounded memory, clear limits.

Deterministic checks only (tracemalloc peaks, call counts), never wall-clock
time; benchmarks/assembler_scale.py measures the time and peak RSS of 1-50 MB
sources. The fast line reader is checked against Lark line by line: every
line it accepts must give exactly the statements Lark gives.
"""

from __future__ import annotations

import difflib
import glob
import os
import sys
import tracemalloc

import pytest

from minivm import assembler
from minivm.assembler import (MAX_CODE, MAX_SOURCE, AssemblyError, _fast_line, _item_pos,
                              _lark_line, _ToStatements, assemble)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import assembler_scale  # noqa: E402


# --- the fast reader gives what Lark gives ----------------------------------------

TRICKY = [
    "", "   ", "; only a comment", "\t\f nop \r", "loop: nop", "a: b:c :  halt ; x",
    "mov r1, 5", "MOV R1, 0x1F", "mov r1,0b101", "mov sp, r15", "mov r1, r16", "mov r1, sp.x",
    "add r1, r2, -3", "add r1, r2, - 3", "ld r1, [r2]", "ld r1, [ r2 + 4 ]", "ld r1, [r2-x]",
    "ld r1, [r2 + r3]", "ld r1, [table]", "ld r1, [16]", "ld r1, [r1x]", "ld r1, [sp.x]",
    "st [r1 + 0x10], r2", "jmp[r1]", "movr1, 2", "mov r1 5", "mov r1, 1 + 2", "mov r1, 0x",
    "mov r1, 123abc", "mov r1, 0b12", "mov r1,", "mov ,r1", ".data", ".DATA", ".byte 1, 2, 255",
    ".byte -1, -128, 300", ".word 1, -2147483648, 4294967295, 4294967296", ".word r1, sp, x",
    ".equ N, 5", ".equ N, -5", ".space 16", ".align 4", ".entry main", ".byte.x 1",
    "x: .byte 1,,2", ".ascii \"a;b\"", "mov r1, ';'", ".byte 'a', 1", "nop ; 'quote\"",
    "5: nop", "$", "mov r1, [r2", "r1: nop", "sp: nop", "nop: nop", "foo bar:", "a.b: mov r1, a.b",
    "mov r1, (5)", "out 0x01, r2", "beq r1, r2, loop", "mov r1, ~1", "  \u00a0nop",
    # one string argument (the fast reader's _string_line)
    'msg: .asciz "Hello, world!\\n"', '.ascii "a;b" ; "c"', 'a: b: .ASCIZ\t"q\\"x\\\\"\r',
    '.asciz ""', '.asciz"x"', '.asciz "x" y', '.asciz "bad\\q"', '.asciz "a", "b"',
    '.ascii "caf\u00e9"', 'x: .asciz "tab\\there" ;', '.asciz "unterminated',
]


def program_lines():
    lines = []
    for path in sorted(glob.glob(os.path.join(ROOT, "programs", "*.asm"))):
        with open(path, encoding="utf-8") as f:
            lines += f.read().split("\n")
    return lines


def lark_statements(line: str, lineno: int):
    try:
        return _lark_line(line, lineno, _ToStatements())
    except assembler._SyntaxError:
        return "syntax error"


@pytest.mark.parametrize("lineno", [1, 7])
def test_fast_reader_agrees_with_lark_on_every_line(lineno):
    lines = TRICKY + program_lines()
    fast = 0
    for line in lines:
        got = _fast_line(line, lineno, pack=False)
        if got is None:
            continue                      # Lark reads that line: nothing to compare
        fast += 1
        assert got == lark_statements(line, lineno), line
    assert fast > len(lines) // 2         # the shapes that matter are read fast


def test_packed_items_have_lark_values_and_positions():
    for line in [".byte 1, -2, 0x7f, 0b11, x", "  t: .word   4294967295 ,-  7, 0", ".byte 300"]:
        packed = _fast_line(line, 3)[-1]
        packed.line_text = line
        (reference,) = [s for s in lark_statements(line, 3) if s.kind == "directive"]
        for i, (item, ref) in enumerate(zip(packed.args, reference.args, strict=True)):
            if type(item) is int:
                assert assembler._evaluate(ref, None) == item
                assert _item_pos(packed, i) == ref.pos
            else:
                assert item == ref


def test_fast_lines_never_reach_lark(monkeypatch):
    """The generated shapes of the benchmark, but for .equ and [reg + a + b]
    expressions and strings, are read without Lark: count its parses."""
    calls = []
    real = assembler._parse_source
    monkeypatch.setattr(assembler, "_parse_source", lambda text: calls.append(text) or real(text))
    assemble(assembler_scale.line(200_000), "line.asm")
    assemble(assembler_scale.labels(200_000), "labels.asm")
    assert calls == []
    source = assembler_scale.mixed(200_000)
    assemble(source, "mixed.asm")
    assert 0 < len(calls) <= 0.4 * source.count("\n")


# --- memory: a small factor of the source -------------------------------------------

def peak_per_byte(source: str) -> float:
    tracemalloc.start()
    try:
        assemble(source, "big.asm")
        return tracemalloc.get_traced_memory()[1] / len(source)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape, size, bound", [("line", 1_000_000, 10),
                                               ("labels", 500_000, 45), ("mixed", 500_000, 20)])
def test_peak_memory_per_source_byte(shape, size, bound):
    """Before: 200, 240 and 130 bytes per source byte (a parse tree and a
    statement object per item). Now about 5, 37 and 14: the source is read
    line by line, and a label costs its symbol and its image entry."""
    source = assembler_scale.GENERATORS[shape](size)
    assert peak_per_byte(source) < bound


def test_a_long_byte_line_holds_one_int_per_item():
    source = ".data\nb: .byte " + ", ".join(["7"] * 500_000) + "\n.text\nhalt\n"
    assert peak_per_byte(source) < 10     # before: about 200 (a tree node per item)
    assert assemble(source).data == bytes([7]) * 500_000


# --- the error path is bounded too ---------------------------------------------------

def test_only_reported_errors_search_for_a_suggestion(monkeypatch):
    calls = []
    real = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    source = "".join(f"l{k}: jmp m{k}\n" for k in range(5000))
    with pytest.raises(AssemblyError) as info:
        assemble(source, "many.asm")
    assert len(calls) == assembler.MAX_ERRORS
    report = str(info.value)
    assert report.count("error: undefined name") == assembler.MAX_ERRORS
    assert "many.asm:1:9: error: undefined name 'm0'\n" in report
    assert "many.asm:20:10: error: undefined name 'm19'; did you mean 'l19'?" in report


def test_no_suggestion_search_in_a_huge_symbol_table(monkeypatch):
    calls = []
    monkeypatch.setattr(difflib, "get_close_matches", lambda *a, **k: calls.append(1) or [])
    source = "".join(f"l{k}: nop\n" for k in range(assembler.MAX_SUGGEST + 1)) + "jmp l0x\n"
    with pytest.raises(AssemblyError, match=r"undefined name 'l0x'\n"):
        assemble(source)
    assert calls == []


def test_errors_are_the_first_twenty_by_position_in_the_old_order():
    source = "".join(f"mov r1, x{k}\n" for k in range(30, 0, -1)) + ".byte 1\n" + "halt\n"
    report = str(pytest.raises(AssemblyError, assemble, source, "p.asm").value)
    headers = [line.split(" error:")[0] for line in report.splitlines() if " error: " in line]
    assert headers == [f"p.asm:{n}:9:" for n in range(1, 21)]


def test_a_line_hint_is_given_only_on_the_first_line_as_before():
    """match_examples depends on the parser's state, which differs after a
    first line: the per-line parser keeps that (messages do not change)."""
    first = str(pytest.raises(AssemblyError, assemble, "5\n", "p.asm").value)
    later = str(pytest.raises(AssemblyError, assemble, "nop\n5\n", "p.asm").value)
    assert "p.asm:1:1: error: a line starts with a label" in first
    assert "p.asm:2:1: error: unexpected '5'; expected a directive, a name or" in later


# --- limits ------------------------------------------------------------------------

def test_more_instructions_than_an_image_holds_is_one_clear_error():
    with pytest.raises(AssemblyError) as info:
        assemble("nop\n" * (MAX_CODE + 3), "huge.asm")
    report = str(info.value)
    assert report.startswith(f"huge.asm:{MAX_CODE + 1}:1: error: the program has more than "
                             f"{MAX_CODE} instructions, the limit of an image")
    assert report.count("error:") == 1


def test_a_source_over_the_limit_is_refused_before_any_work():
    with pytest.raises(AssemblyError) as info:
        assemble("x" * (MAX_SOURCE + 1), "big.asm")
    assert str(info.value) == (f"big.asm:1:1: error: the source is {MAX_SOURCE + 1} characters "
                               f"long, more than the limit of {MAX_SOURCE}")


def test_a_source_the_fast_reader_takes_whole_never_imports_lark():
    """hello.asm (labels, instructions, a string directive) is read without
    Lark: the assembler imports it only for a line the fast reader leaves."""
    import subprocess
    probe = ("import sys\nfrom minivm.assembler import assemble\n"
             f"assemble(open({os.path.join(ROOT, 'programs', 'hello.asm')!r}).read(), 'h.asm')\n"
             "print('lark' in sys.modules)\n"
             "assemble('mov r1, (5)\\nhalt\\n', 'p.asm')\n"
             "print('lark' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr
