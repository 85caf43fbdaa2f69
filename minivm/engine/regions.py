"""The ``blocks`` engine's region builder: which paths through hot code to compile.

A region is a tree of paths through the decoded code, grown breadth first
from a root pc (see docs/performance.md, "How the blocks engine works"):
straight-line instructions in order, a conditional branch as a fork, static
jumps and calls followed, a ``ret`` whose ``call`` is on the same path
followed with a guard. :func:`build` makes the tree; the emitter
(:mod:`minivm.engine.emit`) turns it into Python source.
"""

from __future__ import annotations

from collections import deque

from .. import isa
from ..isa import CALL_I, CALL_R, IN, IRET, JMP_I, JMP_R, OUT_I, OUT_R, RET
from .decode import OUTQ_I, OUTQ_R

#: Longest path through a region, in instructions.
MAX_PATH = 48
#: Instructions per region (over all its paths).
BUDGET = 160

ZERO = isa.ZERO_REG
SP = isa.SP

BRANCHES = isa.by_category(isa.BRANCH)
CONTROL = isa.by_category(isa.BRANCH, isa.JUMP)
#: Everything the compiled code runs itself; any other opcode (halt, wait,
#: ckpt, ei, di, iret, out to a rescheduling port, FAULT, BREAK) is handed back.
COMPILED = (isa.by_category(isa.NONE, isa.MOVE, isa.ALU, isa.LOAD, isa.STORE, isa.BRANCH,
                            isa.JUMP, isa.STACK) | {IN, OUTQ_R, OUTQ_I})
#: Decoded-only opcodes, as the ISA opcode whose metadata they share.
_AS_ISA = {OUTQ_R: OUT_R, OUTQ_I: OUT_I}


def block_lengths(code: list) -> list:
    """For each pc, instructions up to and including the next control transfer."""
    n = len(code)
    out = [1] * n
    for pc in range(n - 2, -1, -1):
        op = code[pc][0]
        if op in COMPILED and op not in CONTROL and out[pc + 1] < 64:
            out[pc] = out[pc + 1] + 1
    return out


class Seg:
    """One stretch of a path: straight-line items, then how it ends."""

    __slots__ = ("items", "term", "pcs", "jumps")

    def __init__(self):
        self.items: list = []            # ("I", pc, j) | ("R", pc, j, expected return pc)
        self.term = None                 # see build
        self.pcs: list = []              # every pc the stretch goes through
        self.jumps: list = []            # (pc, j) of each ``jmp label`` followed (no item)


def build(code: list, ncode: int, root: int, stop=None, max_path: int = MAX_PATH):
    """The tree of paths from ``root`` (breadth first, within the budget).

    ``max_path``: 1 makes a prologue, the root instruction alone (see
    :func:`rotation`).

    ``stop``: the root of an already compiled region whose loop is the very
    loop this one would make (``root`` is in the middle of it: the clock
    stopped there, or an interrupt returned there); paths end there, an exit
    to that region, rather than compile the same loop again, rotated.

    Terminators: ("loop", L) back to the root after L instructions;
    ("exit", pc, L); ("slow", pc, L) hand back the instruction at pc;
    ("dyn", pc, L) jmp/call through a register, ret or iret, executed at L;
    ("br", pc, j, taken, fallthrough).
    """
    top = Seg()
    queue = deque([(top, root, 0, (), ())])
    budget = BUDGET
    covered = set()
    while queue:
        seg, pc, j, path, stack = queue.popleft()
        onpath = set(path)
        while True:
            if j and pc == root:
                seg.term = ("loop", j)
                break
            if pc in onpath or j >= max_path or budget <= 0 or pc == stop:
                seg.term = ("exit", pc, j)
                break
            covered.add(pc)
            op, a, b, c = code[pc]
            if op == IRET:                  # the end of every interrupt handler
                seg.term = ("dyn", pc, j)
                break
            if op not in COMPILED:
                seg.term = ("slow", pc, j)
                break
            onpath.add(pc)
            seg.pcs.append(pc)
            budget -= 1
            if op in BRANCHES:
                taken, fall = Seg(), Seg()
                seg.term = ("br", pc, j, taken, fall)
                here = tuple(onpath)
                queue.append((taken, c, j + 1, here, stack))
                queue.append((fall, pc + 1, j + 1, here, stack))
                break
            if op == JMP_I:
                seg.jumps.append((pc, j))
                pc, j = a, j + 1
                continue
            if op == CALL_I:
                seg.items.append(("I", pc, j))
                stack = stack + (pc + 1,)
                pc, j = a, j + 1
                continue
            if op == RET and stack and stack[-1] < ncode:
                seg.items.append(("R", pc, j, stack[-1]))
                pc, stack, j = stack[-1], stack[:-1], j + 1
                continue
            if op in (RET, JMP_R, CALL_R):
                seg.term = ("dyn", pc, j)
                break
            seg.items.append(("I", pc, j))
            pc, j = pc + 1, j + 1
    return top, covered


def rotation(code: list, top: Seg, root: int):
    """Where to root a loop that is tested at its top: the pc after the root
    branch, on the side that comes back to the root, when that path ends
    with an add or sub of the very register the branch tests
    (``L: bge r1, N, out`` ... ``add r1, r1, 1`` / ``jmp L``). Rooted there,
    the loop ends "add, then branch on the result", the idiom the emitter's
    fast guard tests in one compare. None if the region is not such a loop.
    """
    term = top.term
    if top.items or term[0] != "br":
        return None
    op, a, _, target = code[root]
    for side, start in ((term[3], target), (term[4], root + 1)):
        if start == root:
            continue
        for seg in walk(side):
            if (seg.term[0] == "loop" and seg.items and seg.items[-1][0] == "I"
                    and code[seg.items[-1][1]][0] in _ADDSUB
                    and code[seg.items[-1][1]][1] == a):
                return start
    return None


def walk(seg):
    """Every segment of the tree."""
    todo = [seg]
    while todo:
        s = todo.pop()
        yield s
        if s.term[0] == "br":
            todo.append(s.term[3])
            todo.append(s.term[4])


def ticks_needed(top: Seg) -> tuple[int, list]:
    """Ticks a run of the region may take (longest path, counting a handed-back
    or dynamic instruction as one), and the lengths of the paths that loop."""
    need = 1
    loops = []
    for seg in walk(top):
        term = seg.term
        kind = term[0]
        if kind == "loop":
            loops.append(term[1])
            need = max(need, term[1])
        elif kind == "exit":
            need = max(need, term[2])
        elif kind in ("slow", "dyn"):
            need = max(need, term[2] + 1)
        for item in seg.items:
            if item[0] == "R":
                need = max(need, item[2] + 1)
    return need, loops


def registers(code: list, top: Seg) -> tuple[list, list]:
    """Registers the region reads or writes, and those it writes."""
    used, written = set(), set()
    pcs = []
    for seg in walk(top):
        pcs.extend(item[1] for item in seg.items)
        term = seg.term
        if term[0] in ("br", "dyn"):
            pcs.append(term[1])
    for pc in pcs:
        op, a, b, c = code[pc]
        meta = isa.OPCODES[_AS_ISA.get(op, op)]
        for field in meta.reads:
            r = {"a": a, "b": b, "c": c}[field]
            if r != ZERO:
                used.add(r)
        if meta.writes:
            used.add(a)
            written.add(a)
        if meta.uses_sp:
            used.add(SP)
            written.add(SP)
    return sorted(used), sorted(written)


#: Instructions whose result, modulo 2**32, depends only on their operands
#: modulo 2**32: they may read a register the region keeps unwrapped.
WRAP_TOLERANT = frozenset({isa.ADD_R, isa.ADD_I, isa.SUB_R, isa.SUB_I, isa.XOR_R, isa.XOR_I,
                           isa.AND_R, isa.AND_I, isa.OR_R, isa.OR_I})
#: Of those, the ones that may grow a value past 32 bits (the others keep
#: the bit length of their operands).
_ADDSUB = frozenset({isa.ADD_R, isa.ADD_I, isa.SUB_R, isa.SUB_I})


def reads_of(code: list, pc: int) -> set:
    """The registers the instruction at ``pc`` reads."""
    op, a, b, c = code[pc]
    meta = isa.OPCODES[_AS_ISA.get(op, op)]
    out = {{"a": a, "b": b, "c": c}[f] for f in meta.reads}
    if meta.uses_sp:
        out.add(SP)
    out.discard(ZERO)
    return out


def unwrapped_registers(code: list, top: Seg) -> set:
    """Registers the region may keep unwrapped: any integer congruent to the
    register's value modulo 2**32, wrapped (``& M``) only when written back.

    A register qualifies when it is the destination of a wrap-tolerant
    instruction (add, sub, and, or, xor) and nothing in the region reads it
    but wrap-tolerant instructions: no compare, address, store, port, shift,
    multiply, division, move, stack or jump. So ``add r2, r2, r1`` in a loop
    whose r2 feeds only ``xor``/``add`` loses its wrap test. An add or sub
    with two unwrapped operands would let a value double at every step: its
    operands are wrapped instead. Within one call (at most one slice of
    ticks) an unwrapped value stays within a few bits of 32 plus log2 of
    the ticks run.
    """
    pcs = []
    for seg in walk(top):
        pcs.extend(item[1] for item in seg.items if item[0] == "I")
        pcs.extend(item[1] for item in seg.items if item[0] == "R")
        if seg.term[0] in ("br", "dyn"):     # a handed-back one reads regs, wrapped
            pcs.append(seg.term[1])
    tolerant = [pc for pc in pcs if code[pc][0] in WRAP_TOLERANT]
    lazy = {code[pc][1] for pc in tolerant} - {ZERO, SP}
    for pc in pcs:
        if code[pc][0] not in WRAP_TOLERANT:
            lazy -= reads_of(code, pc)
    while True:
        doubled = set()
        for pc in tolerant:
            if code[pc][0] in _ADDSUB:
                reads = reads_of(code, pc) & lazy
                if len(reads) > 1 or (reads and code[pc][0] == isa.ADD_R
                                      and code[pc][2] == code[pc][3]):
                    doubled |= reads
        if not doubled:
            return lazy
        lazy -= doubled


def loop_pcs(top: Seg) -> set:
    """The pcs on the region's paths back to its root."""
    looping: dict = {}

    def loops(seg) -> bool:
        if id(seg) not in looping:
            term = seg.term
            looping[id(seg)] = term[0] == "loop" or (
                term[0] == "br" and (loops(term[3]) | loops(term[4])))
        return looping[id(seg)]

    return {pc for seg in walk(top) if loops(seg) for pc in seg.pcs}
