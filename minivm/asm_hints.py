"""The assembler's words for what went wrong (assembler.py uses them).

The parser's expected tokens in words and the typical syntax mistakes
Lark's ``match_examples`` recognises; the hints for the slips a parse error
or a pass can name exactly (a label without its ':', a missing ',',
``out`` with its operands swapped); and the sections a label must come
from where a code or data address is needed.
"""

from __future__ import annotations

import re

from . import isa
from .errors import show

DATA_DIRECTIVES = {".word", ".byte", ".ascii", ".asciz", ".space", ".align"}
DIRECTIVES = DATA_DIRECTIVES | {".text", ".data", ".equ", ".entry"}
#: other assemblers' names for minivm's directives (``.code`` is not close to
#: ``.text`` in spelling, so the spelling hint alone would say ``.word``)
DIRECTIVE_ALIASES = {".code": ".text", ".section": ".text or .data", ".rodata": ".data",
                     ".bss": ".data (with .space)", ".string": ".asciz", ".long": ".word",
                     ".int": ".word", ".set": ".equ", ".zero": ".space"}


TOKEN_WORDS = {
    "REGISTER": "a register", "NAME": "a name", "NUMBER": "a number",
    "CHAR": "a character literal", "STRING": "a string",
    "DIRECTIVE": "a directive", "_NL": "the end of the line",
    "COMMA": "','", "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'",
    "COLON": "':'", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/' or '%'",
    "SHIFT_OP": "'<<' or '>>'", "BAND": "'&'", "BOR": "'|'", "BXOR": "'^'",
    "BNOT": "'~'", "$END": "the end of the file",
}
EXPRESSION_START = {"NUMBER", "NAME", "CHAR", "LPAR", "ADD_OP", "BNOT"}
BINARY_OPS = {"ADD_OP", "MUL_OP", "SHIFT_OP", "BAND", "BOR", "BXOR"}

# Typical mistakes, recognised by the parser state they fail in.
EXAMPLES = {
    "missing ',' between operands": [
        "mov r1 r2\n", "mov r1 5\n", "add r1, r2 r3\n", "out 1 r2\n",
        "beq r1, r2 loop\n", "mov r1 [r2]\n"],
    "a memory operand is [reg], [reg + expr], [reg - expr] or [expr]": [
        "ld r1, [r2 r3]\n", "ld r1, [r2 * 4]\n", "ld r1, [r2, 4]\n", "ld r1, [r2 << 1]\n"],
    "missing ']' to close the memory operand": [
        "ld r1, [r2\n", "ld r1, [r2 + 4\n", "ld r1, [4\n"],
    "missing ')'": ["mov r1, (1 + 2\n", "mov r1, (5\n"],
    "an operator is missing its right-hand operand": [
        "mov r1, 1 +\n", "mov r1, 2 *\n", "mov r1, 1 <<\n", "mov r1, 1 |\n"],
    "an operand is missing after ','": ["mov r1,\n", "add r1, r2,\n", ".word 1,\n"],
    "a line starts with a label, a mnemonic or a directive": [
        "5\n", "5: nop\n", "[r1]\n", ",\n"],
}


OPERAND_START = {"NAME", "NUMBER", "REGISTER", "CHAR", "LSQB"}
LABEL_THEN_WORD = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_.]*)[ \t]+"
                              r"([A-Za-z_][A-Za-z0-9_.]*|\.[A-Za-z_]\w*)\b")


def missing_colon(line: str) -> str | None:
    """``loop add r1, r1, 1``: a name that is not a mnemonic, then a mnemonic
    or a directive; the hint that the label lacks its ':' (or None)."""
    match = LABEL_THEN_WORD.match(line)
    if match is None:
        return None
    first, second = match.group(1), match.group(2).lower()
    if first.lower() in isa.MNEMONICS or not (second in isa.MNEMONICS or second in DIRECTIVES):
        return None
    return f"missing ':' after the label '{first}' (write '{first}: {match.group(2)} ...')"


def in_words(expected) -> str:
    """A parser's expected token types in words: "an expression, ',' or ']'"."""
    names = set(expected)
    words = []
    if names & EXPRESSION_START == EXPRESSION_START or {"NUMBER", "NAME"} <= names:
        names -= EXPRESSION_START
        words.append("an expression")
    if names >= BINARY_OPS:
        names -= BINARY_OPS
        words.append("an operator")
    words += sorted(TOKEN_WORDS.get(n, repr(n)) for n in names)
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def describe_token(token) -> str:
    """The token a parse error found, for its message."""
    if token.type == "_NL":
        return "end of line"
    if token.type == "$END":
        return "end of file"
    return f"'{show(token)}'"


ORDER_HINTS = {"out": " (the port comes first: 'out PORT, src', e.g. 'out 0x01, r1')",
               "in": " (the register comes first: 'in rd, PORT', e.g. 'in r1, 0x02')"}
#: a memory operand where only ld/st/ldb/stb take one
MEMORY_HINTS = {"mov": " (to read the word at an address: 'ld rd, [ADDR]'; its byte: 'ldb')",
                **{op: " (memory is read with 'ld rd, [ADDR]' into a register first)"
                   for op in (*isa.ALU_MNEMONICS, *isa.BRANCH_MNEMONICS, "push", "out")}}
TARGETED = frozenset(isa.BRANCH_MNEMONICS) | {"jmp", "call"}   # whose last operand is a code address
#: The ports whose value is a handler's code address (devices.py: the timer's
#: and the disk's; tests/test_asm_sections.py checks this against the devices).
HANDLER_PORTS = {0x11: "0x11", 0x26: "0x26"}


def wrong_section(name: str, sym, where: str) -> str:
    """``sym`` (a label) is in the wrong section for ``where``: "memory" (a
    memory operand) or the instruction that needs a code address."""
    if where == "memory":
        return (f"'{name}' is a code label (instruction {sym.value}), not a data address; "
                "a memory operand reads data: use a .data label, or 'mov' for the "
                "label's value as a number")
    return (f"'{name}' is a data label (byte address {sym.value:#x}), not a code address; "
            f"'{where}' needs a label in .text")
