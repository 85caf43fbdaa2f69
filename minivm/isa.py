"""The instruction set: every opcode in one place (docs/isa.md, section 3).

An assembly mnemonic may map to several opcodes, one per operand shape
(``add r1, r2, r3`` is ADD_R, ``add r1, r2, 5`` is ADD_I), so that the
interpreter never asks "register or immediate?" at run time.

Each encoded instruction is four integers ``(opcode, a, b, c)``. The table
below says, for each opcode, what its mnemonic is, what a, b and c mean, its
category and which registers it reads and writes; the assembler, the
disassembler, the image loader and the engines all read this one table.
What each opcode *does* is in :mod:`minivm.engine.semantics`.
"""

from __future__ import annotations

from dataclasses import dataclass

WORD_MASK = 0xFFFF_FFFF
SIGN_BIT = 0x8000_0000
NUM_REGS = 16
SP = 15
#: Register index the interpreter keeps at 0: ``[expr]`` addressing uses it
#: as its base, so absolute and register-relative loads share one opcode.
ZERO_REG = 16

# Operand field kinds (what one of a, b, c holds).
REG = "reg"        # register index 0..15
IMM = "imm"        # 32-bit value, stored unsigned
BASE = "base"      # base register of a memory operand, or ZERO_REG for [expr]
OFFSET = "offset"  # displacement of a memory operand (32-bit, unsigned)
TARGET = "target"  # code address
PORT = "port"      # port number


# Opcode categories (what an engine needs to know about an instruction's kind).
MOVE = "move"          # mov
ALU = "alu"            # arithmetic, logic, shifts, not, neg
LOAD = "load"          # ld, ldb
STORE = "store"        # st, stb
BRANCH = "branch"      # conditional branch to a constant target
JUMP = "jump"          # jmp, call, ret: unconditional transfer (target in code, a register or the stack)
STACK = "stack"        # push, pop
IO = "io"              # in, out
SYSTEM = "system"      # halt, wait, ckpt, ei, di, iret: need the machine, never run by a hot loop
NONE = "none"          # nop


@dataclass(frozen=True)
class Opcode:
    code: int
    name: str          # e.g. "ADD_I"
    mnemonic: str      # e.g. "add"
    fields: tuple      # kinds of a, b, c actually used, in order
    category: str = NONE
    reads: str = ""    # which of a, b, c name registers the instruction reads
    writes: str = ""   # "a" when it writes register a
    uses_sp: bool = False  # reads and writes sp (push, pop, call, ret, iret)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{self.name}>"


_TABLE: list[Opcode] = []


def _op(name: str, mnemonic: str, *fields: str, category: str = NONE, reads: str = "",
        writes: str = "", uses_sp: bool = False) -> int:
    code = len(_TABLE)
    _TABLE.append(Opcode(code, name, mnemonic, fields, category, reads, writes, uses_sp))
    return code


# --- the table -------------------------------------------------------------
NOP = _op("NOP", "nop")
HALT = _op("HALT", "halt", category=SYSTEM)
MOV_R = _op("MOV_R", "mov", REG, REG, category=MOVE, reads="b", writes="a")
MOV_I = _op("MOV_I", "mov", REG, IMM, category=MOVE, writes="a")

ALU_MNEMONICS = ("add", "sub", "mul", "div", "mod", "and", "or", "xor",
                 "shl", "shr", "sar")
ADD_R = _op("ADD_R", "add", REG, REG, REG, category=ALU, reads="bc", writes="a")
ADD_I = _op("ADD_I", "add", REG, REG, IMM, category=ALU, reads="b", writes="a")
SUB_R = _op("SUB_R", "sub", REG, REG, REG, category=ALU, reads="bc", writes="a")
SUB_I = _op("SUB_I", "sub", REG, REG, IMM, category=ALU, reads="b", writes="a")
MUL_R = _op("MUL_R", "mul", REG, REG, REG, category=ALU, reads="bc", writes="a")
MUL_I = _op("MUL_I", "mul", REG, REG, IMM, category=ALU, reads="b", writes="a")
DIV_R = _op("DIV_R", "div", REG, REG, REG, category=ALU, reads="bc", writes="a")
DIV_I = _op("DIV_I", "div", REG, REG, IMM, category=ALU, reads="b", writes="a")
MOD_R = _op("MOD_R", "mod", REG, REG, REG, category=ALU, reads="bc", writes="a")
MOD_I = _op("MOD_I", "mod", REG, REG, IMM, category=ALU, reads="b", writes="a")
AND_R = _op("AND_R", "and", REG, REG, REG, category=ALU, reads="bc", writes="a")
AND_I = _op("AND_I", "and", REG, REG, IMM, category=ALU, reads="b", writes="a")
OR_R = _op("OR_R", "or", REG, REG, REG, category=ALU, reads="bc", writes="a")
OR_I = _op("OR_I", "or", REG, REG, IMM, category=ALU, reads="b", writes="a")
XOR_R = _op("XOR_R", "xor", REG, REG, REG, category=ALU, reads="bc", writes="a")
XOR_I = _op("XOR_I", "xor", REG, REG, IMM, category=ALU, reads="b", writes="a")
SHL_R = _op("SHL_R", "shl", REG, REG, REG, category=ALU, reads="bc", writes="a")
SHL_I = _op("SHL_I", "shl", REG, REG, IMM, category=ALU, reads="b", writes="a")
SHR_R = _op("SHR_R", "shr", REG, REG, REG, category=ALU, reads="bc", writes="a")
SHR_I = _op("SHR_I", "shr", REG, REG, IMM, category=ALU, reads="b", writes="a")
SAR_R = _op("SAR_R", "sar", REG, REG, REG, category=ALU, reads="bc", writes="a")
SAR_I = _op("SAR_I", "sar", REG, REG, IMM, category=ALU, reads="b", writes="a")
NOT = _op("NOT", "not", REG, REG, category=ALU, reads="b", writes="a")
NEG = _op("NEG", "neg", REG, REG, category=ALU, reads="b", writes="a")

LD = _op("LD", "ld", REG, BASE, OFFSET, category=LOAD, reads="b", writes="a")
LDB = _op("LDB", "ldb", REG, BASE, OFFSET, category=LOAD, reads="b", writes="a")
ST = _op("ST", "st", REG, BASE, OFFSET, category=STORE, reads="ab")
STB = _op("STB", "stb", REG, BASE, OFFSET, category=STORE, reads="ab")

BRANCH_MNEMONICS = ("beq", "bne", "blt", "ble", "bgt", "bge")
BEQ_R = _op("BEQ_R", "beq", REG, REG, TARGET, category=BRANCH, reads="ab")
BEQ_I = _op("BEQ_I", "beq", REG, IMM, TARGET, category=BRANCH, reads="a")
BNE_R = _op("BNE_R", "bne", REG, REG, TARGET, category=BRANCH, reads="ab")
BNE_I = _op("BNE_I", "bne", REG, IMM, TARGET, category=BRANCH, reads="a")
BLT_R = _op("BLT_R", "blt", REG, REG, TARGET, category=BRANCH, reads="ab")
BLT_I = _op("BLT_I", "blt", REG, IMM, TARGET, category=BRANCH, reads="a")
BLE_R = _op("BLE_R", "ble", REG, REG, TARGET, category=BRANCH, reads="ab")
BLE_I = _op("BLE_I", "ble", REG, IMM, TARGET, category=BRANCH, reads="a")
BGT_R = _op("BGT_R", "bgt", REG, REG, TARGET, category=BRANCH, reads="ab")
BGT_I = _op("BGT_I", "bgt", REG, IMM, TARGET, category=BRANCH, reads="a")
BGE_R = _op("BGE_R", "bge", REG, REG, TARGET, category=BRANCH, reads="ab")
BGE_I = _op("BGE_I", "bge", REG, IMM, TARGET, category=BRANCH, reads="a")

JMP_I = _op("JMP_I", "jmp", TARGET, category=JUMP)
JMP_R = _op("JMP_R", "jmp", REG, category=JUMP, reads="a")
CALL_I = _op("CALL_I", "call", TARGET, category=JUMP, uses_sp=True)
CALL_R = _op("CALL_R", "call", REG, category=JUMP, reads="a", uses_sp=True)
RET = _op("RET", "ret", category=JUMP, uses_sp=True)
PUSH_R = _op("PUSH_R", "push", REG, category=STACK, reads="a", uses_sp=True)
PUSH_I = _op("PUSH_I", "push", IMM, category=STACK, uses_sp=True)
POP = _op("POP", "pop", REG, category=STACK, writes="a", uses_sp=True)

IN = _op("IN", "in", REG, PORT, category=IO, writes="a")
OUT_R = _op("OUT_R", "out", PORT, REG, category=IO, reads="b")
OUT_I = _op("OUT_I", "out", PORT, IMM, category=IO)
EI = _op("EI", "ei", category=SYSTEM)
DI = _op("DI", "di", category=SYSTEM)
IRET = _op("IRET", "iret", category=SYSTEM, uses_sp=True)
WAIT = _op("WAIT", "wait", category=SYSTEM)
CKPT = _op("CKPT", "ckpt", category=SYSTEM)

OPCODES: tuple[Opcode, ...] = tuple(_TABLE)
BY_NAME = {op.name: op for op in OPCODES}

# --- operand shapes, as the assembler sees them -----------------------------
# For each mnemonic: the list of accepted operand shapes. A shape is a tuple of
# source operand kinds ("reg", "src", "mem", "expr") and the opcode(s) it
# encodes to. "src" means register or expression and selects the _R or _I
# opcode; "regexpr" (jmp/call) means a register or an expression target.
SHAPES: dict[str, tuple] = {}


def _shape(mnemonic: str, kinds: tuple, reg_op: int, imm_op: int | None = None):
    SHAPES.setdefault(mnemonic, []).append((kinds, reg_op, imm_op))


#: How each mnemonic is written, for error messages and help text.
USAGE = {
    "nop": "nop", "halt": "halt", "mov": "mov rd, src",
    **{m: f"{m} rd, rs, src" for m in ALU_MNEMONICS},
    "not": "not rd, rs", "neg": "neg rd, rs",
    "ld": "ld rd, [mem]", "ldb": "ldb rd, [mem]", "st": "st rs, [mem]", "stb": "stb rs, [mem]",
    **{m: f"{m} rs, src, label" for m in BRANCH_MNEMONICS},
    "jmp": "jmp label|rs", "call": "call label|rs", "ret": "ret",
    "push": "push src", "pop": "pop rd", "in": "in rd, port", "out": "out port, src",
    "ei": "ei", "di": "di", "iret": "iret", "wait": "wait", "ckpt": "ckpt",
}


_shape("nop", (), NOP)
_shape("halt", (), HALT)
_shape("mov", ("reg", "src"), MOV_R, MOV_I)
for _m in ALU_MNEMONICS:
    _shape(_m, ("reg", "reg", "src"), BY_NAME[_m.upper() + "_R"].code,
           BY_NAME[_m.upper() + "_I"].code)
_shape("not", ("reg", "reg"), NOT)
_shape("neg", ("reg", "reg"), NEG)
for _m in ("ld", "ldb"):
    _shape(_m, ("reg", "mem"), BY_NAME[_m.upper()].code)
for _m in ("st", "stb"):
    _shape(_m, ("reg", "mem"), BY_NAME[_m.upper()].code)
for _m in BRANCH_MNEMONICS:
    _shape(_m, ("reg", "src", "expr"), BY_NAME[_m.upper() + "_R"].code,
           BY_NAME[_m.upper() + "_I"].code)
_shape("jmp", ("src",), JMP_R, JMP_I)
_shape("call", ("src",), CALL_R, CALL_I)
_shape("ret", (), RET)
_shape("push", ("src",), PUSH_R, PUSH_I)
_shape("pop", ("reg",), POP)
_shape("in", ("reg", "expr"), IN)
_shape("out", ("expr", "src"), OUT_R, OUT_I)
for _m in ("ei", "di", "iret", "wait", "ckpt"):
    _shape(_m, (), BY_NAME[_m.upper()].code)
SHAPES = {m: tuple(v) for m, v in SHAPES.items()}
MNEMONICS = frozenset(SHAPES)

def to_signed(value: int) -> int:
    """Read a 32-bit word as two's complement."""
    return value - 0x1_0000_0000 if value & SIGN_BIT else value


# --- arithmetic primitives shared by the engines, the assembler and the REPL --------
def trunc_div(x: int, y: int) -> int:
    """Integer division rounding toward zero (as in C), on Python integers of
    any sign: ``trunc_div(-7, 2) == -3``. Raises ZeroDivisionError for y == 0."""
    q = abs(x) // abs(y)
    return -q if (x < 0) != (y < 0) else q


def trunc_mod(x: int, y: int) -> int:
    """The remainder that goes with :func:`trunc_div`: it has the sign of x,
    and ``trunc_div(x, y) * y + trunc_mod(x, y) == x``."""
    return x - trunc_div(x, y) * y


def word_div(x: int, y: int) -> int:
    """``div`` on two 32-bit words: signed, truncating, the result as a word."""
    return trunc_div(to_signed(x), to_signed(y)) & WORD_MASK


def word_mod(x: int, y: int) -> int:
    """``mod`` on two 32-bit words: signed, with the sign of x, as a word."""
    return trunc_mod(to_signed(x), to_signed(y)) & WORD_MASK


def by_category(*categories: str) -> frozenset:
    """The opcodes in any of the given categories."""
    return frozenset(op.code for op in OPCODES if op.category in categories)


def reg_name(index: int) -> str:
    return "sp" if index == SP else f"r{index}"
