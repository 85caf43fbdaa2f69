"""The assembly language, straight from docs/isa.md, section 2.

Values are checked by running tiny programs (``mov r1, EXPR`` / ``halt``) or
by looking at ``image.data`` and ``image.symbols``, so the tests do not depend
on the instruction encoding. Error tests check the ``file:line:col`` header,
the words of the message and the caret under the offending text.
"""

from __future__ import annotations

import re

import pytest

from minivm.assembler import AssemblyError, assemble
from tests.support import run_source

MASK = 0xFFFF_FFFF
FILE = "prog.asm"


# --- helpers -------------------------------------------------------------------

def run(src: str, **kw):
    result = run_source(src, filename=FILE, **kw)
    assert result.stop.reason == "halt", result.stop
    return result


def reg(result, i: int) -> int:
    """Register i as an unsigned 32-bit word."""
    return result.machine.regs[i] & MASK


def value_of(expr: str) -> int:
    """What ``mov r1, EXPR`` puts in r1 (unsigned)."""
    return reg(run(f"mov r1, {expr}\nhalt\n"), 1)


def error_report(src: str) -> AssemblyError:
    with pytest.raises(AssemblyError) as info:
        assemble(src, FILE)
    return info.value


def assert_error(src: str, line: int, col: int, *patterns: str, caret: bool = True) -> str:
    """The report has FILE:line:col, every regex in ``patterns`` (case-insensitive)
    in that error's message, and the source line with a caret under column col."""
    report = str(error_report(src))
    header = f"{FILE}:{line}:{col}:"
    assert header in report, f"no {header!r} in:\n{report}"
    # the text of this one error: from its header to the next header
    chunk = report[report.index(header):]
    nxt = re.search(rf"\n{re.escape(FILE)}:\d+:\d+:", chunk)
    if nxt:
        chunk = chunk[:nxt.start()]
    message = chunk.splitlines()[0]
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), \
            f"{pattern!r} not in message {message!r}\n{report}"
    assert "Traceback" not in report
    if caret:
        source_line = src.split("\n")[line - 1].rstrip()
        lines = chunk.splitlines()
        found = any(lines[i].rstrip() == source_line
                    and lines[i + 1].rstrip() == " " * (col - 1) + "^"
                    for i in range(len(lines) - 1))
        assert found, f"no caret under column {col} of {source_line!r}:\n{report}"
    return report


# --- lines, comments, labels ------------------------------------------------------

def test_comments_and_blank_lines():
    src = ("; a comment on its own line\n"
           "\n"
           "      ; an indented comment\n"
           "   \t  \n"
           "mov r1, 5 ; a trailing comment, with ; inside, and 'quotes\"\n"
           "\n"
           "halt;no space before the comment\n")
    image = assemble(src, FILE)
    assert len(image.code) == 2
    assert reg(run(src), 1) == 5


def test_no_final_newline():
    assert reg(run("mov r1, 3\nhalt"), 1) == 3


def test_semicolon_inside_string_and_char_is_not_a_comment():
    image = assemble('halt\n.data\ns: .ascii "a;b"\nc: .byte \';\'\n', FILE)
    assert image.data == b"a;b;"


def test_label_alone_on_a_line_and_sharing_a_line():
    src = ("start:\n"
           "    nop\n"
           "mid: nop\n"
           "\n"
           "end:\n"
           "\n"
           "    halt\n")
    image = assemble(src, FILE)
    assert image.symbols["start"] == ("text", 0)
    assert image.symbols["mid"] == ("text", 1)
    assert image.symbols["end"] == ("text", 2)


def test_label_names_allow_digits_underscores_and_dots():
    src = "_a.b_1: nop\nx.y.z: halt\nmov r1, x.y.z\n"
    image = assemble(src, FILE)
    assert image.symbols["_a.b_1"] == ("text", 0)
    assert image.symbols["x.y.z"] == ("text", 1)


def test_labels_are_case_sensitive():
    src = ("loop: nop\n"
           "Loop: nop\n"
           "LOOP: nop\n"
           "mov r1, loop\nmov r2, Loop\nmov r3, LOOP\nhalt\n")
    image = assemble(src, FILE)
    assert image.symbols["loop"] == ("text", 0)
    assert image.symbols["Loop"] == ("text", 1)
    assert image.symbols["LOOP"] == ("text", 2)
    r = run(src)
    assert (reg(r, 1), reg(r, 2), reg(r, 3)) == (0, 1, 2)


def test_label_case_mismatch_is_undefined():
    assert_error("here: nop\njmp HERE\n", 2, 5, "undefined|not defined", "HERE")


def test_text_label_is_code_address_data_label_is_byte_address():
    src = ("nop\nnop\ncode3: halt\n"
           ".data\n.byte 1, 2, 3\nd3: .word 7\n")
    image = assemble(src, FILE)
    assert image.symbols["code3"] == ("text", 2)
    assert image.symbols["d3"] == ("data", 3)


def test_labels_count_instructions_across_sections():
    src = (".data\nx: .word 1\n.text\nnop\n.data\ny: .byte 5\n.text\nz: halt\n")
    image = assemble(src, FILE)
    assert image.symbols["z"] == ("text", 1)
    assert image.symbols["y"] == ("data", 4)
    assert image.data == b"\x01\x00\x00\x00\x05"


# --- case-insensitivity, sp ------------------------------------------------------

def test_mnemonics_directives_and_registers_are_case_insensitive():
    src = ("MOV R1, 5\n"
           "Add r2, R1, 1\n"
           "LD R3, [R0 + val]\n"
           "HaLt\n"
           ".DATA\n"
           "val: .WORD 77\n"
           ".Text\n"
           "NOP\n")
    r = run(src)
    assert (reg(r, 1), reg(r, 2), reg(r, 3)) == (5, 6, 77)


def test_sp_is_r15():
    r = run("mov r1, sp\nmov r15, 100\nmov r2, sp\nmov SP, 200\nmov r3, r15\n"
            "mov Sp, 300\nmov r4, R15\nhalt\n", memory_size=65536)
    assert (reg(r, 1), reg(r, 2), reg(r, 3), reg(r, 4)) == (65536, 100, 200, 300)


def test_sp_and_r15_assemble_identically():
    a = assemble("mov sp, r1\nadd sp, sp, 4\nld r1, [sp + 4]\nhalt\n", FILE)
    b = assemble("mov r15, r1\nadd r15, r15, 4\nld r1, [r15 + 4]\nhalt\n", FILE)
    assert a.same_program(b)


# --- integer literals ---------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("0", 0), ("12", 12), ("-12", -12), ("4294967295", 0xFFFFFFFF),
    ("0x1F", 0x1F), ("0x1f", 0x1F), ("0X1F", 0x1F), ("0xdeadBEEF", 0xDEADBEEF),
    ("-0x10", -16), ("0b101", 5), ("0B101", 5), ("0b0", 0), ("-0b11", -3),
    ("'A'", 65), ("'a'", 97), ("' '", 32), ("'\"'", 34), ("';'", 59),
    (r"'\n'", 10), (r"'\t'", 9), (r"'\r'", 13), (r"'\0'", 0), (r"'\\'", 92), (r"'\''", 39),
    ("-'A'", -65), ("'A' + 1", 66),
])
def test_integer_literals(text, value):
    assert value_of(text) == value & MASK


# --- strings ------------------------------------------------------------------------

def test_string_escapes():
    src = 'halt\n.data\n.ascii "a\\n\\t\\r\\0\\\\\\"\\\'z"\n'
    assert assemble(src, FILE).data == b"a\n\t\r\0\\\"'z"


def test_string_plain_characters():
    src = "halt\n.data\n.ascii \"Hello, world! ; 'x' [r1] 1+2\"\n"
    assert assemble(src, FILE).data == b"Hello, world! ; 'x' [r1] 1+2"


def test_ascii_and_asciz():
    src = 'halt\n.data\na: .ascii "ab"\nb: .asciz "cd"\nc: .asciz ""\nd: .ascii ""\ne: .byte 9\n'
    image = assemble(src, FILE)
    assert image.data == b"abcd\0\0\x09"
    assert image.symbols["b"] == ("data", 2)
    assert image.symbols["c"] == ("data", 5)
    assert image.symbols["e"] == ("data", 6)


# --- operators and precedence ---------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("1 << 2 + 1", 8),
    ("(1 << 2) + 1", 5),
    ("1 + 2 << 3", 24),
    ("6 & 3 | 8", 10),
    ("1 | 6 & 3", 3),
    ("1 | 2 ^ 3", 1),          # ^ binds tighter than |
    ("8 & 12 ^ 4", 12),        # & binds tighter than ^
    ("1 ^ 3 & 1", 0),
    ("5 ^ 3", 6),
    ("~0", -1),
    ("~0x0F & 0xFF", 0xF0),
    ("-~0", 1),
    ("~-1", 0),
    ("- -5", 5),
    ("-(2 + 3)", -5),
    ("2 * -3", -6),
    ("10 - 3 - 2", 5),         # left associative
    ("100 / 10 / 5", 2),
    ("2 * 3 % 4", 2),
    ("7 % 3 * 2", 2),
    ("-7 / 2", -3),            # truncation toward zero
    ("-7 % 2", -1),
    ("7 / -2", -3),
    ("7 % -2", 1),
    ("-7 / -2", 3),
    ("-7 % -2", -1),
    ("7 / 2", 3),
    ("256 >> 4", 16),
    ("1 << 31", 0x80000000),
    ("0xFF00 >> 8 & 0x0F", 0x0F),
    ("(((((1)))))", 1),
    ("3*4+5*6", 42),
    ("1<<4>>2", 4),
])
def test_operators_with_c_precedence(expr, value):
    assert value_of(expr) == value & MASK


def test_equ_names_and_labels_in_expressions():
    src = (".equ N, 10\n"
           ".equ M, N * 2 + 1\n"
           "start: mov r1, N\n"
           "mov r2, M\n"
           "mov r3, end - start\n"
           "mov r4, buf + 4\n"
           "mov r5, LATER\n"
           "mov r6, LATER2\n"
           "end: halt\n"
           ".equ LATER, LATER2 + 1\n"
           ".equ LATER2, end * 100\n"
           ".data\n"
           ".space 3\n"
           "buf: .word 1\n")
    r = run(src)
    assert [reg(r, i) for i in range(1, 7)] == [10, 21, 6, 7, 601, 600]
    image = assemble(src, FILE)
    assert image.symbols["N"] == ("equ", 10)
    assert image.symbols["M"] == ("equ", 21)
    assert image.symbols["LATER"] == ("equ", 601)


def test_equ_used_before_definition():
    assert reg(run("mov r1, K + 1\nhalt\n.equ K, 41\n"), 1) == 42


# --- the 32-bit range rule -------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("4294967295", 0xFFFFFFFF),
    ("0xFFFFFFFF", 0xFFFFFFFF),
    ("-2147483648", 0x80000000),
    ("-0x80000000", 0x80000000),
    ("(0x100000000 - 1)", 0xFFFFFFFF),
    ("0x100000000 - 1", 0xFFFFFFFF),
    ("0x100000000 * 0x100000000 / 0x100000000 - 0x100000000 + 5", 5),
    ("-2147483649 + 1", 0x80000000),
    ("1 << 40 >> 40", 1),
])
def test_values_in_range_are_accepted(expr, value):
    assert value_of(expr) == value


@pytest.mark.parametrize("expr", [
    "4294967296", "0x100000000", "-2147483649", "0xFFFFFFFF + 1",
    "-0x80000000 - 1", "1 << 32", "0x10000 * 0x10000", "~0xFFFFFFFF - 0x80000000",
])
def test_values_out_of_range_are_rejected(expr):
    report = str(error_report(f"mov r1, {expr}\nhalt\n"))
    assert f"{FILE}:1:" in report
    assert re.search(r"32 bits|range|fit", report, re.IGNORECASE)


@pytest.mark.parametrize("src", [
    "push 0x100000000\nhalt\n",
    "beq r1, -2147483649, x\nx: halt\n",
    "add r1, r2, 4294967296\nhalt\n",
    "ld r1, [r2 + 0x100000000]\nhalt\n",
    "ld r1, [0x100000000]\nhalt\n",
    "halt\n.data\n.word 0x100000000\n",
    "halt\n.data\n.word -2147483649\n",
])
def test_range_rule_applies_to_every_operand_and_word(src):
    report = str(error_report(src))
    assert re.search(r"32 bits|range|fit", report, re.IGNORECASE), report


def test_word_extremes():
    image = assemble("halt\n.data\n.word 0xFFFFFFFF, -2147483648, -1, 0x12345678\n", FILE)
    assert image.data == (b"\xff\xff\xff\xff" b"\x00\x00\x00\x80"
                          b"\xff\xff\xff\xff" b"\x78\x56\x34\x12")


# --- data directives ----------------------------------------------------------------------

def test_data_is_laid_out_from_zero_in_source_order():
    src = ("halt\n"
           ".data\n"
           "a: .word 1\n"
           "b: .byte 2\n"
           "c: .ascii \"hi\"\n"
           "d: .asciz \"x\"\n"
           "e: .space 2\n"
           ".align 4\n"
           "g: .word 0x11223344\n"
           "h: .byte 5, 6, 7\n")
    image = assemble(src, FILE)
    assert image.data == (b"\x01\x00\x00\x00" b"\x02" b"hi" b"x\0" b"\0\0"
                          b"\0" b"\x44\x33\x22\x11" b"\x05\x06\x07")
    expect = {"a": 0, "b": 4, "c": 5, "d": 7, "e": 9, "g": 12, "h": 16}
    for name, addr in expect.items():
        assert image.symbols[name] == ("data", addr), name


def test_word_is_four_bytes_little_endian_each():
    image = assemble("halt\n.data\n.word 1, 0x0A0B0C0D, -2\n", FILE)
    assert image.data == b"\x01\0\0\0" b"\x0d\x0c\x0b\x0a" b"\xfe\xff\xff\xff"


def test_byte_range_and_values():
    image = assemble("halt\n.data\n.byte -128, 255, 0, 'A', -1, 127\n", FILE)
    assert image.data == b"\x80\xff\x00\x41\xff\x7f"


def test_space_and_align():
    src = ("halt\n.data\n"
           ".byte 1\n"
           ".align 4\n"        # 3 bytes of padding
           "x: .byte 2\n"
           ".space 5\n"        # now at 10
           ".align 8\n"        # to 16
           "y: .byte 3\n"
           ".align 1\n"        # nothing
           "z: .byte 4\n"
           ".align 2\n"        # to 20
           ".align 4\n"        # already aligned
           "w: .space 0\n"
           ".byte 5\n")
    image = assemble(src, FILE)
    assert image.symbols["x"] == ("data", 4)
    assert image.symbols["y"] == ("data", 16)
    assert image.symbols["z"] == ("data", 17)
    assert image.symbols["w"] == ("data", 20)
    assert image.data == (b"\x01\0\0\0" b"\x02" + bytes(5) + bytes(6) + b"\x03\x04\0\0\x05")


def test_space_and_align_take_expressions():
    image = assemble(".equ N, 3\nhalt\n.data\n.space N * 2\n.align N + 1\nx: .byte 1\n", FILE)
    assert image.symbols["x"] == ("data", 8)
    assert image.data == bytes(8) + b"\x01"


def test_data_is_loaded_into_memory():
    src = ("ld r1, [w]\nldb r2, [s + 1]\nhalt\n"
           ".data\nw: .word 0x01020304\ns: .asciz \"AZ\"\n")
    r = run(src)
    assert reg(r, 1) == 0x01020304
    assert reg(r, 2) == ord("Z")


def test_entry_defaults_to_first_instruction():
    image = assemble(".data\n.word 5\n.text\nmov r1, 1\nhalt\n", FILE)
    assert image.entry == 0
    assert reg(run(".data\n.word 5\n.text\nmov r1, 1\nhalt\n"), 1) == 1


def test_entry_label():
    src = (".entry main\n"
           "sub: mov r1, 99\n"
           "     ret\n"
           "main: call sub\n"
           "     mov r2, 1\n"
           "     halt\n")
    image = assemble(src, FILE)
    assert image.entry == 2
    r = run(src)
    assert (reg(r, 1), reg(r, 2)) == (99, 1)
    assert r.machine.tick == 5        # call, mov, ret, mov, halt


def test_entry_after_the_code():
    src = "nop\nmain: halt\n.entry main\n"
    assert assemble(src, FILE).entry == 1


# --- operand kinds ---------------------------------------------------------------------------

def test_memory_operand_kinds():
    src = ("mov r2, buf + 4\n"
           "ld r1, [r2]\n"          # 22
           "ld r3, [r2 + 4]\n"      # 33
           "ld r4, [r2 - 4]\n"      # 11
           "ld r5, [8]\n"           # 33
           "ld r6, [buf]\n"         # 11
           "ld r7, [buf + 2 * 4]\n"  # 33
           "ld r8, [r2 + 2 * 2]\n"  # 33
           "ld r9, [r2 - (1 + 3)]\n"  # 11
           "ldb r10, [r2+1]\n"      # 0
           "ld r11, [ r2 + 8 - 4 ]\n"  # 33
           "halt\n"
           ".data\nbuf: .word 11, 22, 33\n")
    r = run(src)
    assert [reg(r, i) for i in range(1, 12)] == [22, 4, 33, 11, 33, 11, 33, 33, 11, 0, 33]


@pytest.mark.parametrize("offset, value", [
    ("1 << 2", 4), ("6 & 12", 4), ("8 | 4", 12), ("12 ^ 8", 4), ("32 >> 3", 4),
    ("2 * 4 - 4", 4), ("4 + 4 - 4", 4),
])
def test_memory_operand_reg_plus_any_expression(offset, value):
    # docs/isa.md, Operands: [mem] is one of [reg], [reg + expr], [reg - expr], [expr]; expr is
    # any integer expression, so [r2 + 1 << 2] means r2 + (1 << 2).
    src = (f"mov r2, 0x100\nmov r3, 0x5A5A\nst r3, [0x100 + {value}]\n"
           f"ld r1, [r2 + {offset}]\nhalt\n")
    r = run(src)
    assert reg(r, 1) == 0x5A5A


def test_register_and_immediate_sources():
    r = run("mov r1, 7\nadd r2, r1, r1\nadd r3, r1, 1\npush r1\npush 5\npop r4\npop r5\n"
            "out 0x01, r1\nout 0x01, 8\nhalt\n")
    assert (reg(r, 2), reg(r, 3), reg(r, 4), reg(r, 5)) == (14, 8, 5, 7)
    assert r.text == "78"


def test_decimal_with_leading_zeros_is_a_value_or_a_clean_error():
    # docs/isa.md, Errors: a bad program gets file:line:column ..., never a Python traceback.
    try:
        image = assemble("mov r1, 007\nhalt\n", FILE)
    except AssemblyError as exc:
        assert f"{FILE}:1:9:" in str(exc)
    else:
        assert image.same_program(assemble("mov r1, 7\nhalt\n", FILE))


def test_every_register_name():
    for i in range(16):
        r = run(f"mov r{i}, {1000 + i}\nmov r0, r{i}\nhalt\n")
        assert reg(r, 0) == 1000 + i


# --- errors ----------------------------------------------------------------------------------

def test_error_unknown_mnemonic():
    assert_error("nop\n    frob r1, r2\nhalt\n", 2, 5, "unknown mnemonic", "frob")


def test_error_unknown_directive():
    assert_error("halt\n.data\n.wrod 5\n", 3, 1, "unknown directive", r"\.wrod")


@pytest.mark.parametrize("src, col, words", [
    ("add r1, r2\n", 1, ["add", "3"]),
    ("mov r1\n", 1, ["mov", "2"]),
    ("halt r1\n", 1, ["halt"]),
    ("  ret 1\n", 3, ["ret"]),
    ("not r1, r2, r3\n", 1, ["not", "2"]),
    ("beq r1, r2\n", 1, ["beq", "3"]),
])
def test_error_wrong_operand_count(src, col, words):
    assert_error(src + "halt\n", 1, col, "operand", *map(re.escape, words))


@pytest.mark.parametrize("src, col, word", [
    ("mov 5, r1", 5, "register"),
    ("ld r1, r2", 8, "memory"),
    ("ld r1, 16", 8, "memory"),
    ("st r1, 4", 8, "memory"),
    ("add r1, 2, r3", 9, "register"),
    ("mov r1, [r2]", 9, "register|expression"),
    ("pop 5", 5, "register"),
    ("push [r1]", 6, "register|expression"),
    ("jmp [r1]", 5, "register|expression|label"),
    ("not r1, 5", 9, "register"),
])
def test_error_wrong_operand_kind(src, col, word):
    assert_error(src + "\nhalt\n", 1, col, word)


def test_error_register_16():
    assert_error("mov r1, r16\nhalt\n", 1, 9, "r16", "register")


def test_error_register_16_as_destination():
    assert_error("add r16, r1, r2\nhalt\n", 1, 5, "r16")


def test_error_duplicate_label():
    assert_error("x: nop\nnop\nx: halt\n", 3, 1, "already defined|duplicate|twice", r"\bx\b")


def test_error_duplicate_label_and_equ():
    assert_error("x: nop\nhalt\n.equ x, 5\n", 3, 6, "already defined|duplicate|twice")


def test_error_undefined_name():
    assert_error("mov r1, nowhere\nhalt\n", 1, 9, "undefined|not defined", "nowhere")


def test_error_undefined_jump_target():
    assert_error("nop\njmp nowhere\n", 2, 5, "undefined|not defined", "nowhere")


def test_error_out_of_range_immediate():
    assert_error("mov r1, 0x100000000\nhalt\n", 1, 9, "32 bits|range|fit")


def test_error_out_of_range_immediate_negative():
    assert_error("halt\nmov r2, -2147483649\n", 2, 9, "32 bits|range|fit")


def test_error_out_of_range_expression_points_into_the_expression():
    src = "mov r1, 0xFFFFFFFF + 1\nhalt\n"
    report = str(error_report(src))
    match = re.search(rf"{FILE}:1:(\d+):", report)
    assert match, report
    assert 9 <= int(match.group(1)) <= 22
    assert re.search("32 bits|range|fit", report, re.IGNORECASE)


def test_error_out_of_range_byte():
    assert_error("halt\n.data\n.byte 1, 256\n", 3, 10, "256", "byte|range|fit")


def test_error_out_of_range_byte_negative():
    assert_error("halt\n.data\n.byte -129\n", 3, 7, "-129", "byte|range|fit")


def test_error_instruction_in_data():
    assert_error("halt\n.data\n  nop\n", 3, 3, r"\.data", "instruction|nop")


def test_error_data_directive_in_text():
    assert_error("halt\n.word 5\n", 2, 1, r"\.text", r"\.word|data")


@pytest.mark.parametrize("directive", [".byte 1", ".ascii \"a\"", ".asciz \"a\"", ".space 4",
                                       ".align 4", ".word 1"])
def test_error_every_data_directive_in_text(directive):
    assert_error(f"nop\n{directive}\nhalt\n", 2, 1, r"\.text|data")


@pytest.mark.parametrize("src", ["", "\n\n", "; just a comment\n", ".data\n.word 1\n",
                                 "label:\n", ".equ X, 1\n"])
def test_error_no_instructions(src):
    report = str(error_report(src))
    assert re.search(rf"{FILE}:\d+:\d+:", report), report
    assert re.search(r"no instructions|at least one instruction|empty", report, re.I), report


def test_error_unterminated_string():
    assert_error('halt\n.data\n.ascii "abc\n', 3, 8, "unterminated|unclosed|missing.*\"")


def test_error_bad_escape_in_char():
    assert_error("mov r1, '\\q'\nhalt\n", 1, 10, "escape", r"\\q")


def test_error_bad_escape_in_string():
    assert_error('halt\n.data\n.ascii "ab\\x"\n', 3, 11, "escape", r"\\x")


def test_error_escaped_double_quote_is_not_a_char_escape_is_fine_in_string():
    # \" is a string escape; the string must still end at the next real quote
    assert assemble('halt\n.data\n.ascii "\\""\n', FILE).data == b'"'


@pytest.mark.parametrize("expr", ["4 / 0", "4 % 0", "1 / (2 - 2)", "5 % (3 & 4)"])
def test_error_division_by_zero_in_expression(expr):
    src = f"mov r1, {expr}\nhalt\n"
    report = str(error_report(src))
    match = re.search(rf"{FILE}:1:(\d+): .*division by zero", report, re.IGNORECASE)
    assert match, report
    assert 9 <= int(match.group(1)) < 9 + len(expr)
    assert "^" in report


def test_error_missing_comma():
    report = assert_error("mov r1 r2\nhalt\n", 1, 8, "expected", r"','|comma")
    assert "COMMA" not in report and "_NL" not in report and "$END" not in report


def test_error_missing_comma_in_three_operand_instruction():
    report = assert_error("add r1, r2 5\nhalt\n", 1, 12, "expected", r"','|comma")
    assert "COMMA" not in report and "NUMBER" not in report


def test_error_bad_token_is_described_in_words():
    report = assert_error("mov r1, (1 + 2\nhalt\n", 1, 15, "expected", r"'\)'|paren")
    assert "RPAR" not in report


def test_error_several_errors_all_reported():
    src = ("nop\n"
           "frob r1\n"             # 2:1 unknown mnemonic
           "mov r1, nowhere\n"     # 3:9 undefined name
           "mov r2, r16\n"         # 4:9 bad register
           "add r1, r2\n"          # 5:1 operand count
           "halt\n"
           ".data\n"
           ".byte 300\n")          # 8:7 byte range
    err = error_report(src)
    report = str(err)
    headers = re.findall(rf"^{re.escape(FILE)}:(\d+):(\d+):", report, re.MULTILINE)
    assert [(int(a), int(b)) for a, b in headers] == [(2, 1), (3, 9), (4, 9), (5, 1), (8, 7)]
    assert len(err.diagnostics) == 5
    assert report.count("^") >= 5


def test_error_report_never_a_traceback_for_garbage():
    for src in ["\x00\x01", "mov r1, 'ab'\n", "]]]\n", "mov r1, ,\n", ":\n", "1: nop\n",
                "ld r1, [r2 * 4]\n", "ld r1, [r2\n", "mov r1, 1 +\n", '"abc"\n']:
        report = str(error_report(src))
        assert re.search(rf"{FILE}:\d+:\d+: ", report), (src, report)
        assert "Traceback" not in report


@pytest.mark.parametrize("src, shown, caret_col", [
    # a parse error (Lark's context) and a later-stage error (the assembler's own caret)
    ("mov r1, \x1b[2J ,\nhalt\n", "mov r1, \\x1b[2J ,", 8),
    ("\tmov r1, \x07x\nhalt\n", "\tmov r1, \\x07x", 9),
    ("\tmov r1, nowhere ; \x1b[2J\u200b\nhalt\n", "\tmov r1, nowhere ; \\x1b[2J\\u200b", 9),
    # an escape before the column: the caret moves with it, under the shown text
    ("halt\n.data\n.byte '\x1b', nowhere\n", ".byte '\\x1b', nowhere", 14),
    ("halt\n.data\n\t.ascii \"\x1b[2J\" ,,\n", "\t.ascii \"\\x1b[2J\" ,,", 19),
])
def test_source_lines_in_errors_are_shown_escaped(src, shown, caret_col):
    """A control character in a source line is shown as errors.show escapes it:
    the report cannot clear the terminal, and the caret still lines up (tabs
    are kept, and the padding copies them)."""
    report = str(error_report(src))
    assert "\x1b" not in report and "\x07" not in report and "\u200b" not in report, report
    lines = report.split("\n")
    assert shown in lines, report
    caret = lines[lines.index(shown) + 1]
    assert caret.endswith("^") and set(caret[:-1]) <= {" ", "\t"}, caret
    assert len(caret[:-1]) == caret_col and caret[:-1].count("\t") == shown[:caret_col].count("\t")


@pytest.mark.parametrize("sep", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_the_line_under_an_error_is_the_line_lark_counted(sep):
    """Lines are counted at '\\n' only (Lark, the grammar); str.splitlines also
    breaks at these characters, which once showed no line, or another line
    (a forged one, from a comment), under the error."""
    report = str(error_report(f"nop ; a{sep}b\nmov r1, x\n"))
    assert report.startswith(f"{FILE}:2:9: error: undefined name 'x'\nmov r1, x\n        ^"), report
