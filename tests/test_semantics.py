"""The blocks engine's faster spellings equal the semantics table.

minivm/engine/emit.py writes its own Python for each instruction (no ``& M``
where a compare and a subtraction give the same word, signed compares without
xor, division through locals). Each spelling is run here against the
reference loop, which is generated from the table, on one decoded
instruction with edge values (0, 1, 2^31-1, 2^31, 2^32-1, shift counts
around 31, ...) and random words, in both register and immediate form, with
aliased registers too. Equal means: the same registers after it, the same
next pc, and both hand the instruction back (ZeroDivisionError) or neither.
"""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from minivm import isa
from minivm.assembler import assemble
from minivm.engine.decode import FAST_PATH_ERRORS, WORD, decode
from minivm.engine.emit import emit_region
from minivm.engine.reference import run_fast

EDGES = [0, 1, 2, 31, 32, 33, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1]
WORDS = st.sampled_from(EDGES) | st.integers(0, 2**32 - 1)
SIGNED_IMMEDIATES = st.sampled_from([-2**31, -2**31 + 1, -1, 0, 1, 2**31 - 1]) | \
    st.integers(-2**31, 2**31 - 1)
ALU = [op.mnemonic for op in isa.OPCODES if op.category == isa.ALU and op.name.endswith("_R")]
BRANCHES = list(isa.BRANCH_MNEMONICS)
REGISTERS = st.sampled_from(["r1", "r2", "r3"])


def _decoded(source: str) -> list:
    return decode(assemble(source, "semantics.asm"), {}, {})


def reference(code: list, regs: list) -> tuple:
    """(registers, pc) on the reference loop when it reaches the ``halt`` (after
    one instruction, in the single-instruction cases), or "hand back" when it
    leaves the first instruction to the exact path."""
    m = SimpleNamespace(code=code, regs=list(regs), memory=SimpleNamespace(pages=[], writable=[]),
                        ncode=len(code) - 1, pc=0, tick=0)
    run_fast(m, 100)
    if m.pc == 0:
        return "hand back"
    return m.regs, m.pc


def compiled(code: list, regs: list) -> tuple:
    """The same, on the blocks engine's region for that instruction."""
    source, lines = emit_region(code, len(code) - 1, 0)[:2]
    namespace = {"unpack": WORD.unpack_from, "pack": WORD.pack_into,
                 "FAST_PATH_ERRORS": FAST_PATH_ERRORS, "LINES": lines}
    exec(compile(source, "<region>", "exec"), namespace)
    out = list(regs)
    pc, _ = namespace["region"](out, [], [], 0, 100, None, None)
    if pc == ~0:
        return "hand back"
    return out, ~pc if pc < 0 else pc


def same(source: str, r1: int, r2: int, r3: int) -> None:
    code = _decoded(source)
    regs = [0, r1, r2, r3] + [0] * (isa.ZERO_REG + 1 - 4)
    assert compiled(code, regs) == reference(code, regs), source


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALU), REGISTERS, REGISTERS, REGISTERS, WORDS, WORDS, WORDS)
@example("sar", "r1", "r2", "r3", 0, 2**31, 31)
@example("div", "r1", "r2", "r3", 0, 2**31, 2**32 - 1)     # -2^31 / -1 wraps
def test_alu_register_form(mnemonic, rd, rs, rt, x, y, z):
    same(f"{mnemonic} {rd}, {rs}, {rt}\nhalt", x, y, z)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALU), REGISTERS, REGISTERS, WORDS, WORDS | SIGNED_IMMEDIATES)
@example("mod", "r1", "r2", 2**31, -1)
@example("sub", "r1", "r1", 0, -2**31)
def test_alu_immediate_form(mnemonic, rd, rs, x, imm):
    same(f"{mnemonic} {rd}, {rs}, {imm}\nhalt", x, x, 0)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["mov", "not", "neg"]), REGISTERS, REGISTERS, WORDS, WORDS)
def test_unary_and_move(mnemonic, rd, rs, x, y):
    same(f"{mnemonic} {rd}, {rs}\nhalt", x, y, 0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BRANCHES), WORDS, WORDS)
@example("blt", 2**31, 2**31 - 1)
@example("bge", 2**31 - 1, 2**31)
def test_branch_register_form(mnemonic, x, y):
    same(f"{mnemonic} r1, r2, taken\nhalt\ntaken: halt", x, y, 0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BRANCHES), WORDS, WORDS | SIGNED_IMMEDIATES)
@example("ble", 2**31 - 1, 2**31 - 1)
@example("bgt", 2**31, -2**31)
@example("blt", 0, -2**31)
def test_branch_immediate_form(mnemonic, x, imm):
    same(f"{mnemonic} r1, {imm}, taken\nhalt\ntaken: halt", x, 0, 0)


IMMEDIATE_EDGES = EDGES + [-2**31, -2**31 + 1, -2, -1]


def test_every_edge_pair_exhaustively():
    """Every instruction form on every pair of edge values (the random
    tests above add random words and register aliasing)."""
    for x in EDGES:
        for y in EDGES:
            for mnemonic in ALU:
                same(f"{mnemonic} r1, r2, r3\nhalt", 0, x, y)
            for mnemonic in BRANCHES:
                same(f"{mnemonic} r1, r2, taken\nhalt\ntaken: halt", x, y, 0)
        for imm in IMMEDIATE_EDGES:
            for mnemonic in ALU:
                same(f"{mnemonic} r1, r2, {imm}\nhalt", 0, x, 0)
            for mnemonic in BRANCHES:
                same(f"{mnemonic} r1, {imm}, taken\nhalt\ntaken: halt", x, 0, 0)
        for mnemonic in ("mov", "not", "neg"):
            same(f"{mnemonic} r1, r2\nhalt", 0, x, 0)


def test_the_comparison_can_fail():
    """The harness sees a difference when there is one (a spelling that
    forgot to wrap would be caught)."""
    # the branch reads r1, so r1 is kept wrapped (regions.unwrapped_registers)
    code = _decoded("add r1, r2, r3\nbeq r1, 5, next\nnext: halt")
    regs = [0, 0, 2**32 - 1, 1] + [0] * 13
    ref_regs, _ = reference(code, regs)
    assert ref_regs[1] == 0                     # wrapped
    source, lines = emit_region(code, len(code) - 1, 0)[:2]
    broken = source.replace("r1 -= 4294967296", "pass")
    assert broken != source
    namespace = {"unpack": WORD.unpack_from, "pack": WORD.pack_into,
                 "FAST_PATH_ERRORS": FAST_PATH_ERRORS, "LINES": lines}
    exec(compile(broken, "<region>", "exec"), namespace)
    out = list(regs)
    namespace["region"](out, [], [], 0, 100, None, None)
    assert out[1] != ref_regs[1]


# --- registers kept unwrapped (regions.unwrapped_registers) ---------------------------------------

TOLERANT = ["add", "sub", "and", "or", "xor"]
FOUR = st.sampled_from(["r1", "r2", "r3", "r4"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOLERANT), FOUR, FOUR, FOUR | WORDS | SIGNED_IMMEDIATES),
                min_size=1, max_size=6),
       st.sampled_from(["halt", "beq {r}, 0, next\nnext: halt", "mul r5, {r}, 3\nhalt",
                        "blt {r}, 7, next\nnext: halt", "shr r5, {r}, 1\nhalt"]),
       FOUR, WORDS, WORDS, WORDS, WORDS)
@example([("add", "r1", "r1", "r2"), ("xor", "r3", "r3", "r1")], "halt", "r1",
         2**32 - 1, 2**32 - 1, 5, 0)
@example([("sub", "r1", "r1", "r2"), ("add", "r2", "r1", "r3")], "beq {r}, 0, next\nnext: halt",
         "r2", 0, 1, 2**32 - 1, 0)
def test_unwrapped_chains(chain, tail, reader, x1, x2, x3, x4):
    """Chains of add/sub/and/or/xor, where the region keeps some registers
    unwrapped (no wrap test; wrapped on write-back, or where an instruction
    that needs the word reads them), then nothing, or a branch, multiply or
    shift reading one of them: the registers equal the reference loop's."""
    lines = [f"{op} {a}, {b}, {c}" for op, a, b, c in chain]
    source = "\n".join(lines + [tail.format(r=reader)])
    code = _decoded(source)
    regs = [0, x1, x2, x3, x4] + [0] * (isa.ZERO_REG + 1 - 5)
    assert compiled(code, regs) == reference(code, regs), source


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["add", "sub"]), st.sampled_from(["r1", "r2"]),
       WORDS | SIGNED_IMMEDIATES | st.sampled_from(["r3"]),
       st.sampled_from(BRANCHES), WORDS | SIGNED_IMMEDIATES, st.booleans(), WORDS, WORDS, WORDS)
@example("add", "r1", 1, "blt", 300, True, 299, 0, 0)
@example("sub", "r2", 1, "bne", 0, False, 0, 1, 0)
@example("add", "r1", 1, "bge", 8192, True, 2**32 - 1, 0, 0)
def test_add_then_branch_on_the_result(op, rs, operand, branch, bound, long_side, x1, x2, x3):
    """``rd = rs +- k`` then a branch on rd (the fast guard), with either side
    a bare leaf or a whole subtree (instructions before its halt): the same
    registers and stopping point as the reference loop."""
    work = "xor r4, r4, r1\n        add r5, r5, 7\n        mov r6, r1\n"
    source = (f"{op} r1, {rs}, {operand}\n        {branch} r1, {bound}, side\n"
              + (work if long_side else "") + "        halt\n"
              + "side:   " + (work if not long_side else "") + "        halt")
    code = _decoded(source)
    regs = [0, x1, x2, x3] + [0] * (isa.ZERO_REG + 1 - 4)
    assert compiled(code, regs) == reference(code, regs), source
