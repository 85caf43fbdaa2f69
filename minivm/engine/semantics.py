"""What every instruction does: the one table the engines are generated from.

Each entry is the body of one opcode, written once in a small neutral
dialect of Python. :mod:`minivm.engine.generate` expands it twice:

* into the **reference loop** (``reference.py``, the ``interp`` engine's
  ``run_fast``): no checks at all; a load from a missing page, a store into a
  shared page, a division by zero or a bad jump target leaves the loop with
  the instruction not yet executed (its effects come after the point where
  it can fail);
* into the **exact path** (``exact.py``, ``step_exact``, what
  ``Machine.step_slow`` runs): every check, and the fault a user sees.

The dialect is plain Python over the decoded operands ``a``, ``b``, ``c``
(see :mod:`minivm.engine.decode`: signed-compare immediates arrive with the
sign bit flipped, shift counts masked, ports as bound handlers), the
register file ``regs``, the instruction's own ``pc`` and the tick ``t``,
plus these macros, spelled differently by each expansion:

=========================  ==============================  ===============================
macro                      reference loop                  exact path
=========================  ==============================  ===============================
``LOAD_WORD(x)``           unpack from ``pages``           ``mem.load_word`` (checked)
``LOAD_BYTE(x)``           index ``pages``                 ``mem.load_byte``
``STORE_WORD(x, v)``       pack into ``writable``          ``mem.store_word`` (COW copy)
``STORE_BYTE(x, v)``       store into ``writable``         ``mem.store_byte``
``PUSH(v)``                store below sp, move sp         the same, "stack overflow" fault
``PEEK(what)``             the word at sp                  the same, "empty stack" fault
``CHECK_TARGET(x, what)``  leave the loop if not code      "bad jump target" fault
``GOTO(x)``                next pc is x                    next pc is x
``DIV(x, y)``/``MOD``      ``isa.word_div``/``word_mod``   the same, "division by zero" fault
``OUT(port, v)``           ``port(v)``                     ``port(v, t)``
=========================  ==============================  ===============================

An instruction without ``GOTO`` continues at ``pc + 1``. Conditional
branches are given as a condition on ``x`` (the register) and ``y`` (the
other operand, a register or the immediate). ``SYSTEM`` entries need the
machine (halt, wait, ckpt, interrupts, breakpoints, faults) and exist only
on the exact path: the reference loop hands them back.

The ``blocks`` engine (:mod:`minivm.engine.emit`) has its own, faster
spellings of these instructions; ``tests/test_semantics.py`` proves each one
equal to this table on edge values.
"""

from __future__ import annotations

import re

from .. import isa
from .decode import BAD_BRANCH, BREAK, FAULT, OUTQ_I, OUTQ_R

#: Conditional branches: the condition, on words ``x`` (register a) and ``y``.
BRANCHES = {
    "BEQ": "x == y",
    "BNE": "x != y",
    "BLT": "x ^ S < y ^ S",
    "BLE": "x ^ S <= y ^ S",
    "BGT": "x ^ S > y ^ S",
    "BGE": "x ^ S >= y ^ S",
}

#: Everything else the reference loop runs itself.
INSTRUCTIONS = {
    "NOP": "",
    "MOV_R": "regs[a] = regs[b]",
    "MOV_I": "regs[a] = b",
    "ADD_R": "regs[a] = (regs[b] + regs[c]) & M",
    "ADD_I": "regs[a] = (regs[b] + c) & M",
    "SUB_R": "regs[a] = (regs[b] - regs[c]) & M",
    "SUB_I": "regs[a] = (regs[b] - c) & M",
    "MUL_R": "regs[a] = (regs[b] * regs[c]) & M",
    "MUL_I": "regs[a] = (regs[b] * c) & M",
    "DIV_R": "regs[a] = DIV(regs[b], regs[c])",
    "DIV_I": "regs[a] = DIV(regs[b], c)",
    "MOD_R": "regs[a] = MOD(regs[b], regs[c])",
    "MOD_I": "regs[a] = MOD(regs[b], c)",
    "AND_R": "regs[a] = regs[b] & regs[c]",
    "AND_I": "regs[a] = regs[b] & c",
    "OR_R": "regs[a] = regs[b] | regs[c]",
    "OR_I": "regs[a] = regs[b] | c",
    "XOR_R": "regs[a] = regs[b] ^ regs[c]",
    "XOR_I": "regs[a] = regs[b] ^ c",
    "SHL_R": "regs[a] = (regs[b] << (regs[c] & 31)) & M",
    "SHL_I": "regs[a] = (regs[b] << c) & M",
    "SHR_R": "regs[a] = regs[b] >> (regs[c] & 31)",
    "SHR_I": "regs[a] = regs[b] >> c",
    "SAR_R": "regs[a] = (((regs[b] ^ S) - S) >> (regs[c] & 31)) & M",
    "SAR_I": "regs[a] = (((regs[b] ^ S) - S) >> c) & M",
    "NOT": "regs[a] = regs[b] ^ M",
    "NEG": "regs[a] = -regs[b] & M",
    "LD": """
        x = (regs[b] + c) & M
        regs[a] = LOAD_WORD(x)
    """,
    "LDB": """
        x = (regs[b] + c) & M
        regs[a] = LOAD_BYTE(x)
    """,
    "ST": """
        x = (regs[b] + c) & M
        STORE_WORD(x, regs[a])
    """,
    "STB": """
        x = (regs[b] + c) & M
        STORE_BYTE(x, regs[a] & 255)
    """,
    "JMP_I": "GOTO(a)",
    "JMP_R": """
        y = regs[a]
        CHECK_TARGET(y, "jump through a register")
        GOTO(y)
    """,
    "CALL_I": """
        PUSH(pc + 1)
        GOTO(a)
    """,
    "CALL_R": """
        y = regs[a]
        CHECK_TARGET(y, "call through a register")
        PUSH(pc + 1)
        GOTO(y)
    """,
    "RET": """
        y = PEEK("ret")
        CHECK_TARGET(y, "return address popped by 'ret'")
        regs[SP] = (regs[SP] + 4) & M
        GOTO(y)
    """,
    "PUSH_R": "PUSH(regs[a])",
    "PUSH_I": "PUSH(a)",
    "POP": """
        y = PEEK("pop")
        regs[SP] = (regs[SP] + 4) & M
        regs[a] = y
    """,
    "IN": "regs[a] = b(t) & M",
    "OUTQ_R": "OUT(a, regs[b])",
    "OUTQ_I": "OUT(a, b)",
}

#: Instructions that need the machine: exact path only, written in its own
#: terms (``m`` the machine, ``nxt`` the next pc). The body either returns
#: (a Stop or None, having set pc and tick) or falls through to the common
#: ending (pc = nxt, one tick).
SYSTEM = {
    "OUT_R": "OUT(a, regs[b])",        # an out that reschedules a device
    "OUT_I": "OUT(a, b)",
    "EI": "m.interrupts.enabled = True",
    "DI": "m.interrupts.enabled = False",
    "IRET": """
        y = PEEK("iret")
        CHECK_TARGET(y, "return address popped by 'iret'")
        regs[SP] = (regs[SP] + 4) & M
        GOTO(y)
        m.interrupts.enabled = True
    """,
    "HALT": """
        m.halted = True                 # the machine stops *at* its halt
        m.tick = t + 1
        return m.stop("halt")
    """,
    "WAIT": """
        due = m.events.next_tick()
        if due is None:
            raise GuestFault("'wait' with nothing scheduled: the timer is stopped and the "
                             "disk is idle, so no event can ever come")
        m.pc, m.tick = nxt, max(t + 1, due)
        return None
    """,
    "CKPT": """
        m.pc, m.tick = nxt, t + 1
        m.hooks.on_ckpt(m)
        return None
    """,
    "BREAK": "return m.breakpoint_stop()",
    "FAULT": """
        if not c:                       # ran off the end: name the last instruction
            m.pc = b - 1
        raise GuestFault(a)
    """,
    "BAD_BRANCH": """
        branch, (ra, rb) = a, b
        if branch_taken(branch, regs[ra], rb if branch in IMMEDIATE_BRANCHES else regs[rb]):
            raise GuestFault(bad_target(c, m.ncode))
    """,
}

#: The order of the reference loop's dispatch chain (an ``if``/``elif`` on
#: the opcode): the most frequent instructions of typical guests first, as
#: counted over the real-sized guests of benchmarks/guests and programs/
#: (2026-12-07: jmp 13 %, add-immediate 12 %, ld 9 %, ldb 6 %, bge 5 %...),
#: with sub-immediate and bne, a loop counter's pair, just after them.
#: Opcodes not named here come after these, in table order.
HOT_ORDER = (
    "ADD_I", "JMP_I", "LD", "SUB_I", "BNE_I", "LDB", "BGE_R", "BEQ_I", "MOV_R", "ADD_R",
    "SHL_I", "BGE_I", "ST", "STB", "BGT_I", "BLT_R", "MOV_I", "BLE_R", "BGT_R", "BLT_I",
    "BEQ_R", "BNE_R", "BLE_I", "SUB_R", "OUTQ_R", "OUTQ_I", "IN", "CALL_I", "RET",
    "PUSH_R", "POP", "PUSH_I", "MUL_R", "MUL_I", "AND_R", "AND_I", "OR_R", "OR_I",
    "XOR_R", "XOR_I", "SHL_R", "SHR_R", "SHR_I", "SAR_R", "SAR_I",
    "DIV_R", "DIV_I", "MOD_R", "MOD_I", "NOT", "NEG", "NOP", "JMP_R", "CALL_R",
)

#: Opcode numbers of every name the table uses (the ISA's and decode's own).
CODES = {**{op.name: op.code for op in isa.OPCODES},
         "OUTQ_R": OUTQ_R, "OUTQ_I": OUTQ_I, "FAULT": FAULT, "BREAK": BREAK,
         "BAD_BRANCH": BAD_BRANCH}


def branch_bodies() -> dict:
    """Each branch opcode's condition in decoded operands (``_I`` immediates
    arrive sign-flipped from decode, so ``y ^ S`` is just ``b``)."""
    out = {}
    for name, cond in BRANCHES.items():
        out[name + "_R"] = cond.replace("x", "regs[a]").replace("y", "regs[b]")
        out[name + "_I"] = cond.replace("x", "regs[a]").replace("y ^ S", "b").replace("y", "b")
    return out


def inline(name: str, a: int, b: int, c: int) -> str:
    """One plain (macro-free, one-line) table entry for a decoded instruction,
    with registers as the locals ``r0``..``r15`` and operands and constants as
    literals: how the blocks emitter spells an instruction it has no faster
    spelling for. ``inline("ADD_I", 1, 2, 5) == "r1 = (r2 + 5) & 4294967295"``."""
    body = INSTRUCTIONS[name].strip()
    operands = {"a": a, "b": b, "c": c}
    body = re.sub(r"regs\[([abc])\]", lambda mo: f"r{operands[mo.group(1)]}", body)
    body = re.sub(r"\b([abc])\b", lambda mo: str(operands[mo.group(1)]), body)
    body = re.sub(r"\b(M|S)\b",
                  lambda mo: str(isa.WORD_MASK if mo.group(1) == "M" else isa.SIGN_BIT), body)
    if "\n" in body or "(" in body.split("=", 1)[0] or re.search(r"[A-Z]{2,}\(", body):
        raise ValueError(f"{name} is not a plain one-line entry: {body!r}")
    return body
