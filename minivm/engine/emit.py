"""The ``blocks`` engine's emitter: a region (minivm.engine.regions) -> Python source.

Registers live in locals for the whole call and are written back on every
way out; every instruction does the same Python-level memory operations as
the reference loop, with cheaper arithmetic where it gives the same result
(each such spelling is checked against the semantics table by
tests/test_semantics.py). See docs/performance.md, "How the blocks engine
works".
"""

from __future__ import annotations

from .. import isa
from ..isa import (ADD_I, ADD_R, AND_I, AND_R, BEQ_I, BEQ_R, BGE_I, BGE_R, BGT_I,
                  BGT_R, BLE_I, BLE_R, BLT_I, BLT_R, BNE_I, BNE_R, CALL_I, CALL_R,
                  DIV_I, DIV_R, IN, IRET, JMP_I, JMP_R, LD, LDB, MOD_I, MOD_R, MOV_I,
                  MOV_R, MUL_I, MUL_R, NEG, NOP, NOT, OR_I, OR_R, POP, PUSH_I,
                  PUSH_R, SAR_I, SAR_R, SHL_I, SHL_R, SHR_I, SHR_R, ST, STB,
                  SUB_I, SUB_R, XOR_I, XOR_R, to_signed)
from .decode import OUTQ_I, OUTQ_R
from .regions import (MAX_PATH, WRAP_TOLERANT, Seg, build, loop_pcs, reads_of, registers,
                      ticks_needed, unwrapped_registers, walk)
from .semantics import inline

#: A loop with one path back to its root, of at most UNROLL_MAX_LEN
#: instructions per iteration and UNROLL_MAX_SIZE instructions in all, has
#: its body repeated up to UNROLL_CAP times (UNROLL_TICKS // length) per ``for`` step.
UNROLL_MAX_LEN = 8
UNROLL_MAX_SIZE = 24
UNROLL_TICKS = 16
UNROLL_CAP = 4

#: Instructions that only read and write registers (they cannot fault): a
#: loop made of them and its counter may run in groups (group_plan).
_REGISTER_ONLY = frozenset({ADD_R, ADD_I, SUB_R, SUB_I, AND_R, AND_I, OR_R, OR_I, XOR_R, XOR_I,
                            MOV_R, MOV_I, SHL_R, SHL_I, SHR_R, SHR_I, SAR_R, SAR_I, MUL_R,
                            MUL_I, NOT, NEG, NOP})
#: Set False to compile without groups (for A/B measurements and tests).
GROUPS = True
#: Set False to compile without runs (emit_runs; for A/B measurements and tests).
RUNS = True
#: Set False to compile without scans (emit_scan; for A/B measurements and tests).
SCANS = True

M = isa.WORD_MASK
S = isa.SIGN_BIT
W = 1 << 32
ZERO = isa.ZERO_REG

#: Instructions the emitter writes exactly as the semantics table does
#: (registers as locals): it has no faster spelling for them. Every other
#: one it spells its own way, proven equal by tests/test_semantics.py.
_AS_IN_TABLE = frozenset({MOV_R, MOV_I, MUL_R, MUL_I, AND_R, AND_I, OR_R, OR_I, XOR_R, XOR_I,
                          SHL_R, SHR_R, SHR_I, SAR_R, NOT, NEG})


def _signed_compare(r: str, v: int, less: bool) -> str:
    """``signed(r) < v`` (less) or ``signed(r) >= v`` (not less) for a
    constant v, on the unsigned word r, without xor: two range tests."""
    if v <= -S or v > S - 1:                        # always one way
        return str((v > S - 1) == less)
    if v >= 0:
        return f"({r} < {v} or {r} > {S - 1})" if less else f"({v} <= {r} < {S})"
    return f"({S - 1} < {r} < {v + W})" if less else f"({r} < {S} or {r} >= {v + W})"


def _load(address: str, page: str, length: int) -> str:
    """The page to load ``length`` bytes at ``address`` from: the page table's
    entry, or (a page a lazy resume has not read) Memory.load_miss."""
    return f"(pg[{page}] or lm({address}, {length}))"


def _store(address: str, page: str, length: int) -> str:
    """The page to store into: the write table's entry, or (not writable in
    place: untouched, or shared with a checkpoint) Memory.store_miss, which
    makes it writable or hands the instruction back."""
    return f"(wr[{page}] or sm({address}, {length}))"


def _bound(em: "Emitter", d: int, pc: int, j: int) -> None:
    """In the stepped form, before the instruction at position ``j`` of a
    path: stop there if the clock reads the deadline (``left`` is the room
    this pass through the root started with; j = 0 is the root, which the
    loop's head checks)."""
    if em.stepped and j:
        em.put(d, f"if left <= {j}:")
        em.advance(d + 1, j)
        em.put(d + 1, f"pc = {pc}")
        em.put(d + 1, "break")


def _with_jumps(items: list, seg: Seg, stepped: bool) -> list:
    """The items, and in the stepped form each followed ``jmp label`` as a
    ("J", pc, j) item in its place: it takes a tick, so the deadline may
    fall on it."""
    if not stepped or not seg.jumps:
        return items
    jumps = [("J", pc, j) for pc, j in seg.jumps]
    return sorted(list(items) + jumps, key=lambda item: item[2])


def _bare(seg: Seg) -> bool:
    """A leaf with nothing to run: it only loops, exits or hands back."""
    return not seg.items and seg.term[0] in ("loop", "exit", "slow")


def branch_constant(op: int, b: int) -> int:
    """An immediate branch's constant as its compare sees it: as encoded for
    ``beq``/``bne``, signed for the ordered compares (decode() pre-flipped
    their sign bit)."""
    return b if op in (BEQ_I, BNE_I) else to_signed(b ^ S)


def condition(code: list, pc: int) -> str:
    """The branch at ``pc``'s condition, as a Python expression on the registers' locals."""
    op, a, b, c = code[pc]
    ra = f"r{a}"
    if op in (BEQ_R, BNE_R, BLT_R, BLE_R, BGT_R, BGE_R):
        rb = f"r{b}"
        same = f"({ra} < {S}) is ({rb} < {S})"
        return {BEQ_R: f"{ra} == {rb}", BNE_R: f"{ra} != {rb}",
                BLT_R: f"({ra} < {rb}) if {same} else ({ra} > {rb})",
                BLE_R: f"({ra} <= {rb}) if {same} else ({ra} > {rb})",
                BGT_R: f"({ra} > {rb}) if {same} else ({ra} < {rb})",
                BGE_R: f"({ra} >= {rb}) if {same} else ({ra} < {rb})"}[op]
    if op == BEQ_I:
        return f"not {ra}" if b == 0 else f"{ra} == {b}"
    if op == BNE_I:
        return ra if b == 0 else f"{ra} != {b}"
    v = branch_constant(op, b)
    if op == BLT_I:
        return _signed_compare(ra, v, True)
    if op == BLE_I:
        return _signed_compare(ra, v + 1, True)
    if op == BGT_I:
        return _signed_compare(ra, v + 1, False)
    return _signed_compare(ra, v, False)    # BGE_I


class Emitter:
    """Writes one region's function, line by line, remembering which pc
    (and position on its path) each line belongs to, so that a fault inside
    the compiled code is handed back at the exact instruction and tick."""

    def __init__(self, code: list, ncode: int, root: int):
        self.code = code
        self.ncode = ncode
        self.root = root
        self.lines: list[str] = []
        self.where: dict[int, tuple] = {}   # index in self.lines -> (pc, j)
        self.ports: dict = {}               # port function -> name
        self.loop_len = None                # ticks per iteration of the range loop
        self.offset = 0                     # ticks before this copy of an unrolled body
        self.form = "once"
        self._loops: dict = {}
        self.lazy: set = set()              # registers kept unwrapped (regions.unwrapped_registers)
        self.stepped = False                # the tail form: may stop before any instruction
        self.unroll = 1                     # copies of the body per step of the range loop
        self.scan = None                    # a scan plan: emit_scan before its load

    def port(self, fn) -> str:
        name = self.ports.get(fn)
        if name is None:
            name = self.ports[fn] = f"P{len(self.ports)}"
        return name

    def put(self, depth: int, text: str, at=None) -> None:
        if at is not None:
            self.where[len(self.lines)] = (at[0], at[1] + self.offset)
        self.lines.append("    " * depth + text)

    def ticks(self, n: int) -> str:
        """Expression: ticks since ``t`` after ``n`` instructions of this path."""
        n += self.offset
        if self.form == "range":
            return f"i * {self.loop_len} + {n}" if n else f"i * {self.loop_len}"
        return str(n)

    def advance(self, d: int, n: int) -> None:
        if self.form == "range" or n:
            self.put(d, f"t += {self.ticks(n)}")

    # -- the tree ------------------------------------------------------------------------
    def segment(self, seg: Seg, d: int) -> None:
        items = seg.items
        term = seg.term
        guard = (self.fast_guard(items[-1], term, bare_only=False)
                 if items and term[0] == "br" and not self.stepped else None)
        for item in _with_jumps(items[:-1] if guard else items, seg, self.stepped):
            _bound(self, d, item[1], item[2])
            if self.scan is not None and item is self.scan[0] and not self.stepped:
                emit_scan(self, self.scan, d)
            if item[0] == "I":
                self.instruction(item[1], item[2], d)
            elif item[0] == "R":
                self.ret_guard(item[1], item[2], item[3], d)
        if guard and not _bare(guard[3]):
            # the same, when the side the fast test leads to is a whole
            # subtree (emitted once): only a failed test runs the wrap and the
            # full test, which may lead to the other side (every path ends in
            # break or continue, so nothing falls through from it)
            first, wrap, test, leaf = guard
            at = items[-1][1:3]
            _, pc, j, taken, fall = term
            other = fall if leaf is taken else taken
            cond = condition(self.code, pc)
            self.put(d, first, at)
            self.put(d, f"if not ({test}):", at)
            self.put(d + 1, wrap, at)
            self.put(d + 1, f"if {cond}:" if other is taken else f"if not ({cond}):", (pc, j))
            self.segment(other, d + 2)
            self.segment(leaf, d)
            return
        if guard:
            # ``rd = rs +- k`` then a branch on rd: first a test that implies
            # both "no wrap" and the branch's outcome, leading to a leaf; the
            # wrap and the full test only run when it fails.
            first, wrap, test, leaf = guard
            at = items[-1][1:3]
            self.put(d, first, at)
            self.put(d, f"if {test}:", at)
            self.segment(leaf, d + 1)
            self.put(d, wrap, at)
        kind = term[0]
        if kind in ("br", "slow", "dyn"):         # an instruction at this position
            _bound(self, d, term[1], term[2])
        if kind == "br":
            _, pc, j, taken, fall = term
            self.put(d, f"if {condition(self.code, pc)}:", (pc, j))
            self.segment(taken, d + 1)
            self.segment(fall, d)
        elif kind == "loop":
            if self.form != "range":
                self.advance(d, term[1])
            self.put(d, "continue")
        elif kind == "exit":
            _, pc, n = term
            self.advance(d, n)
            self.put(d, f"pc = {pc}")
            self.put(d, "break")
        elif kind == "slow":
            _, pc, n = term
            self.handback(d, pc, n)
        else:
            self.dynamic(term[1], term[2], d)

    def has_loop(self, seg: Seg) -> bool:
        key = id(seg)
        if key not in self._loops:
            term = seg.term
            self._loops[key] = term[0] == "loop" or (
                term[0] == "br" and (self.has_loop(term[3]) or self.has_loop(term[4])))
        return self._loops[key]

    def main_path(self, seg: Seg, d: int) -> None:
        """One copy of the body of an unrolled loop: the path back to the root
        runs straight on (into the next copy); every other way out is an
        ``if`` holding its subtree, which ends in ``break``."""
        items, term = seg.items, seg.term
        guard = None
        if term[0] == "br" and items:
            guard = self.fast_guard(items[-1], term)
        for item in (items[:-1] if guard else items):
            if item[0] == "I":
                self.instruction(item[1], item[2], d)
            else:
                self.ret_guard(item[1], item[2], item[3], d)
        if term[0] == "loop":
            return
        _, pc, j, taken, fall = term
        main_taken = self.has_loop(taken)
        main, other = (taken, fall) if main_taken else (fall, taken)
        cond = condition(self.code, pc)
        leave = f"not ({cond})" if main_taken else cond
        if guard:
            first, wrap, test, leaf = guard
            at = items[-1][1:3]
            self.put(d, first, at)
            if leaf is main:                # the fast test keeps us in the loop
                self.put(d, f"if not ({test}):", at)
                self.put(d + 1, wrap, at)
                self.put(d + 1, f"if {leave}:", (pc, j))
                self.segment(other, d + 2)
                return
            self.put(d, f"if {test}:", at)
            self.segment(leaf, d + 1)
            self.put(d, wrap, at)
        self.put(d, f"if {leave}:", (pc, j))
        self.segment(other, d + 1)
        self.main_path(main, d)

    def fast_guard(self, item, term, bare_only: bool = True):
        """(first line, wrap line, fast test, leaf) for an add/sub of a
        constant followed by a branch on its result with a constant, when
        one side of the branch is a bare leaf (any side, with ``bare_only``
        false); else None. The fast test implies the sum needs no wrap and
        fixes the branch's outcome."""
        if item[0] != "I":
            return None
        op, a, b, c = self.code[item[1]]
        if {b, c if op in (ADD_R, SUB_R) else b} & self.lazy:
            return None                          # its tests assume wrapped operands
        if op == ADD_R:
            delta, operand = 1, f"r{c}"          # adds a value in 0..M
        elif op == SUB_R:
            delta, operand = W - 1, f"r{c}"      # subtracts a value in 0..M
        elif op in (ADD_I, SUB_I):
            delta = c if op == ADD_I else (-c) & M
            operand = str(delta if delta < S else W - delta)
        else:
            return None
        _, bpc, _, taken, fall = term
        bop, ba, bb, _ = self.code[bpc]
        if delta == 0 or ba != a or bop in (BEQ_R, BNE_R, BLT_R, BLE_R, BGT_R, BGE_R):
            return None
        v = branch_constant(bop, bb)
        if not 0 <= v < S:
            return None
        r = f"r{a}"
        if delta < S:                       # r = rs + delta: wraps only above M
            first, wrap = f"{r} = r{b} + {operand}", f"if {r} > {M}: {r} -= {W}"
            if v == 0 and bop in (BLT_I, BGE_I, BNE_I, BEQ_I):
                return None
            test = f"{r} <= {v}" if bop in (BLE_I, BGT_I) else f"{r} < {v}"
            implies = bop in (BLT_I, BLE_I, BNE_I)
        else:                               # r = rs - d: wraps only below 0
            first, wrap = f"{r} = r{b} - {operand}", f"if {r} < 0: {r} += {W}"
            if bop in (BNE_I, BEQ_I):
                test = f"{r} > {v}"
            elif bop in (BGT_I, BLE_I):
                test = f"{v} < {r} < {S}"
            else:
                test = f"{v} <= {r} < {S}"
            implies = bop in (BNE_I, BGT_I, BGE_I)
        leaf = taken if implies else fall
        if bare_only and (leaf.items or leaf.term[0] not in ("loop", "exit", "slow")):
            return None
        return first, wrap, test, leaf

    def handback(self, d: int, pc: int, n: int) -> None:
        self.advance(d, n)
        self.put(d, f"pc = {~pc}")
        self.put(d, "break")

    def address(self, d: int, base: int, off: int, at) -> tuple[str, str, str]:
        """(address, page index, offset) expressions of ``[base + off]``; may
        emit ``x = ...``.

        A positive offset is added without the mask: a sum past 2**32 - 1 gives
        a page index past any page table (memory is at most 4 GiB), so the
        access raises and the instruction is handed back; the slow path then
        does the wrapped access exactly. A negative offset (stored as
        2**32 - d) subtracts d and wraps a negative result, which would
        otherwise index the page table from its end."""
        if base == ZERO:
            return str(off), str(off >> 12), str(off & 4095)
        if off == 0:
            x = f"r{base}"
        elif off & S:
            self.put(d, f"x = r{base} - {W - off}", at)
            self.put(d, f"if x < 0: x += {W}", at)
            x = "x"
        else:
            self.put(d, f"x = r{base} + {off}", at)
            x = "x"
        return x, f"{x} >> 12", f"{x} & 4095"

    def instruction(self, pc: int, j: int, d: int) -> None:
        op, a, b, c = self.code[pc]
        at = (pc, j)
        put = self.put
        ra, rb, rc = f"r{a}", f"r{b}", f"r{c}"
        if op == NOP or op == JMP_I:
            return
        if op in WRAP_TOLERANT and (a in self.lazy or {b, c} & self.lazy):
            self.unwrapped(op, a, b, c, at, d)
        elif op in _AS_IN_TABLE:
            put(d, inline(isa.OPCODES[op].name, a, b, c), at)
        elif op == ADD_R:
            put(d, f"{ra} = {rb} + {rc}", at)
            put(d, f"if {ra} > {M}: {ra} -= {W}", at)
        elif op == SUB_R:
            put(d, f"{ra} = {rb} - {rc}", at)
            put(d, f"if {ra} < 0: {ra} += {W}", at)
        elif op in (ADD_I, SUB_I):
            delta = c if op == ADD_I else (-c) & M
            if delta == 0:
                put(d, f"{ra} = {rb}", at)
            elif delta < S:
                put(d, f"{ra} = {rb} + {delta}", at)
                put(d, f"if {ra} > {M}: {ra} -= {W}", at)
            else:
                put(d, f"{ra} = {rb} - {W - delta}", at)
                put(d, f"if {ra} < 0: {ra} += {W}", at)
        elif op == SHL_I:
            put(d, f"{ra} = ({rb} << {c}) & {M}" if c else f"{ra} = {rb}", at)
        elif op == SAR_I:
            if c:
                high = (M << (32 - c)) & M
                put(d, f"{ra} = {rb} >> {c} if {rb} < {S} else ({rb} >> {c}) | {high}", at)
            else:
                put(d, f"{ra} = {rb}", at)
        elif op in (DIV_R, DIV_I, MOD_R, MOD_I):
            put(d, f"x = {rb} - {W} if {rb} > {S - 1} else {rb}", at)
            if op in (DIV_R, MOD_R):
                put(d, f"y = {rc} - {W} if {rc} > {S - 1} else {rc}", at)
                put(d, "q = abs(x) // abs(y)", at)
                put(d, "if (x < 0) is not (y < 0): q = -q", at)
                y = "y"
            else:
                y = to_signed(c)
                put(d, f"q = abs(x) // {abs(y)}", at)
                put(d, f"if x {'<' if y >= 0 else '>='} 0: q = -q", at)
            if op in (DIV_R, DIV_I):
                put(d, f"{ra} = q & {M}", at)
            else:
                put(d, f"{ra} = (x - q * {y}) & {M}", at)
        elif op in (LD, LDB, ST, STB):
            x, page, offset = self.address(d, b, c, at)
            if op == LD:
                put(d, f"{ra} = unpack({_load(x, page, 4)}, {offset})[0]", at)
            elif op == LDB:
                put(d, f"{ra} = {_load(x, page, 1)}[{offset}]", at)
            elif op == ST:
                put(d, f"pack({_store(x, page, 4)}, {offset}, {ra})", at)
            else:
                put(d, f"{_store(x, page, 1)}[{offset}] = {ra} & 255", at)
        elif op in (PUSH_R, PUSH_I, CALL_I):
            value = ra if op == PUSH_R else str(a) if op == PUSH_I else str(pc + 1)
            self.push(d, value, at)
        elif op == POP:
            self.pop_address(d, at)
            put(d, f"r15 = x + 4 if x < {W - 4} else x - {W - 4}", at)
            put(d, f"{ra} = y", at)
        elif op == IN:
            put(d, f"{ra} = {self.port(b)}(t + {self.ticks(j)}) & {M}", at)
        elif op == OUTQ_R:
            put(d, f"{self.port(a)}({rb})", at)
        elif op == OUTQ_I:
            put(d, f"{self.port(a)}({b})", at)
        else:                                   # pragma: no cover - build filters
            raise AssertionError(f"opcode {op} is not compiled")

    def unwrapped(self, op: int, a: int, b: int, c: int, at, d: int) -> None:
        """A wrap-tolerant instruction that writes or reads an unwrapped
        register: no wrap test; the result is wrapped only if ``a`` must
        hold a wrapped value (see regions.unwrapped_registers)."""
        rb = f"r{b}"
        if op in (ADD_R, SUB_R):
            value = f"{rb} {'+' if op == ADD_R else '-'} r{c}"
        elif op in (ADD_I, SUB_I):
            delta = c if op == ADD_I else (-c) & M
            value = rb if delta == 0 else (f"{rb} + {delta}" if delta < S
                                          else f"{rb} - {W - delta}")
        else:
            value = inline(isa.OPCODES[op].name, a, b, c).split(" = ", 1)[1]
        if a in self.lazy:
            self.put(d, f"r{a} = {value}", at)
        else:
            self.put(d, f"r{a} = ({value}) & {M}", at)

    def push(self, d: int, value: str, at) -> None:
        self.put(d, "x = r15 - 4", at)
        self.put(d, f"if x < 0: x += {W}", at)
        self.put(d, f"pack({_store('x', 'x >> 12', 4)}, x & 4095, {value})", at)
        self.put(d, "r15 = x", at)

    def pop_address(self, d: int, at) -> None:
        self.put(d, "x = r15", at)
        self.put(d, f"y = unpack({_load('x', 'x >> 12', 4)}, x & 4095)[0]", at)

    def ret_guard(self, pc: int, j: int, expected: int, d: int) -> None:
        """``ret`` on a path that made the matching ``call``: follow it if the
        popped address is the one pushed, else a dynamic exit."""
        at = (pc, j)
        self.pop_address(d, at)
        self.put(d, f"if y != {expected}:", at)
        self.dynamic_tail(d + 1, pc, j, "y", f"r15 = x + 4 if x < {W - 4} else x - {W - 4}")
        self.put(d, f"r15 = x + 4 if x < {W - 4} else x - {W - 4}", at)

    def dynamic_tail(self, d: int, pc: int, n: int, target: str, effect: str | None) -> None:
        self.put(d, f"if {target} >= {self.ncode}:")
        self.handback(d + 1, pc, n)
        if effect:
            self.put(d, effect, (pc, n))
        self.advance(d, n + 1)
        self.put(d, f"pc = {target}")
        self.put(d, "break")

    def dynamic(self, pc: int, n: int, d: int) -> None:
        op, a, b, c = self.code[pc]
        at = (pc, n)
        if op == JMP_R:
            self.put(d, f"y = r{a}", at)
            self.dynamic_tail(d, pc, n, "y", None)
        elif op == CALL_R:
            self.put(d, f"y = r{a}", at)
            self.put(d, f"if y >= {self.ncode}:")
            self.handback(d + 1, pc, n)
            self.push(d, str(pc + 1), at)
            self.advance(d, n + 1)
            self.put(d, "pc = y")
            self.put(d, "break")
        elif op == IRET:
            # As the exact path does it, but only when no interrupt is pending
            # (else the machine's boundary must deliver it at once: handed
            # back) and the stack is not empty (the exact path's fault). Every
            # check comes before any effect, so a handback finds nothing done.
            self.put(d, "x = r15", at)
            self.put(d, "if INTC._pending or x == STACK_TOP:", at)
            self.handback(d + 1, pc, n)
            self.put(d, f"y = unpack({_load('x', 'x >> 12', 4)}, x & 4095)[0]", at)
            self.dynamic_tail(d, pc, n, "y", f"r15 = x + 4 if x < {W - 4} else x - {W - 4}; "
                                             "INTC.enabled = True")
        else:                                   # RET with no known call
            self.pop_address(d, at)
            self.dynamic_tail(d, pc, n, "y", f"r15 = x + 4 if x < {W - 4} else x - {W - 4}")




# --- groups: a counted loop with one test per group of iterations ----------------------

def group_plan(em: "Emitter", top: Seg):
    """For a loop whose one path back is register-only instructions ending
    with ``r = r +- d`` and a branch on ``r`` against a constant that
    loops while ``r`` stays on one side of a bound (the fast guard's
    pattern, its test leading back to the root): (register, its step +d
    or -d, the branch's opcode, its constant), for group_bounds; else
    None. In a group of iterations that the bound allows, no test is
    needed at all."""
    items, term = top.items, top.term
    if not items or term[0] != "br" or em.offset:
        return None
    if any(item[0] != "I" or em.code[item[1]][0] not in _REGISTER_ONLY for item in items):
        return None
    last = items[-1]
    op, a, b, c = em.code[last[1]]
    if op not in (ADD_I, SUB_I) or b != a or a in em.lazy or a in (ZERO, 15):
        return None
    if any(em.code[item[1]][1] == a for item in items[:-1]):
        return None                     # r is written once per iteration, by the last
    branch = counter_branch(em, last, term)
    if branch is None:
        return None
    bop, v, _ = branch
    return a, signed_step(op, c), bop, v


def counter_branch(em: "Emitter", update, term):
    """For the counter's update ``update`` (``r = r +- d``, or ``+ s``) and
    the branch on ``r`` that ends the path: (the branch's opcode, its
    constant as the compare sees it, the ticks of the path back) when the
    fast guard's test leads back to the root (so that every test a bound
    proves true keeps the loop going), else None. For group_plan and
    run_plan."""
    guard = em.fast_guard(update, term, bare_only=False)
    if guard is None:
        return None
    leaf = guard[3]
    if leaf.items or leaf.term[0] != "loop":
        return None
    bop, _, bb, _ = em.code[term[1]]
    return bop, branch_constant(bop, bb), leaf.term[1]


def signed_step(op: int, c: int) -> int:
    """The step of ``add``/``sub r, r, c`` as a signed number (+d or -d)."""
    delta = c if op == ADD_I else (-c) & M
    return delta if delta < S else delta - W


def group_bounds(step: int, bop: int, v: int, n: int) -> tuple:
    """The bound on the counter before a group of ``n`` iterations that
    keeps every test of the group true: ``(high, None)`` for an increasing
    counter (the group runs if ``r < high``), ``(low, top)`` for a
    decreasing one (if ``r > low``, and ``r < top`` unless top is None)."""
    if step > 0:                        # increasing: every r + k*d < v (or <= v)
        return v - n * step + (1 if bop in (BLE_I, BGT_I) else 0), None
    d = -step                           # decreasing: every r - k*d > v (or >= v) ...
    if bop in (BNE_I, BEQ_I):
        return v + n * d, None
    low = v + n * d - (1 if bop in (BGE_I, BLT_I) else 0)
    return low, S + d                   # ... and r - d < 2^31 (a signed compare)


# --- runs: a counted loop over memory, one page at a time ------------------------------

_ACCESS_LENGTH = {LD: 4, LDB: 1, ST: 4, STB: 1}


def run_plan(em: "Emitter", top: Seg):
    """For a loop whose first path back starts with a load or store at
    ``[r + c]``, goes on with register-only instructions and ends with
    ``r = r +- d`` (or ``r = r + s``, ``s`` a register the loop does not
    write) and the fast guard's branch on ``r`` back to the root: (r, d
    or None, s or None, the branch's opcode, its constant, the access's
    item, the path's ticks), for emit_runs; else None. Other paths back
    (a region with several loops) run in the code after the runs."""
    items, term = top.items, top.term
    if len(items) < 2 or term[0] != "br" or em.offset:
        return None
    if any(item[0] != "I" for item in items):
        return None
    first, last = items[0], items[-1]
    mop, ma, mb, _ = em.code[first[1]]
    op, a, b, c = em.code[last[1]]
    if mop not in _ACCESS_LENGTH or mb != a or op not in (ADD_I, SUB_I, ADD_R) or b != a:
        return None
    if a in em.lazy or a in (ZERO, 15):
        return None
    step_reg = c if op == ADD_R else None
    if step_reg is not None and (step_reg in em.lazy or step_reg in (a, ZERO)):
        return None
    if mop == ST and ma in em.lazy:
        return None                     # pack needs a wrapped value
    written = {em.code[item[1]][1] for item in items[1:-1]}
    if mop in (LD, LDB):
        written.add(ma)
    if any(em.code[item[1]][0] not in _REGISTER_ONLY for item in items[1:-1]):
        return None
    if a in written or step_reg in written:
        return None
    branch = counter_branch(em, last, term)
    if branch is None:
        return None
    bop, v, length = branch
    delta = signed_step(op, c) if step_reg is None else None
    return a, delta, step_reg, bop, v, first, length


def emit_runs(em: "Emitter", plan, top: Seg, d: int) -> None:
    """The runs of a run plan: as many iterations as the clock, the
    branch's bound (every test known true, as for groups) and the access's
    page allow, with the page looked up once per run and the counter
    stepped by ``range``; then the next page's run. The load or store of
    each iteration is still done, one by one, on the page the first of
    the run got (a copy-on-write fault or first touch happens there, in
    place of that iteration's access, the same call the per-instruction
    code would make). What is left runs in the code after it."""
    r, delta, step_reg, bop, v, access, length = plan
    mop, ma, _, off = em.code[access[1]]
    size = _ACCESS_LENGTH[mop]
    at = access[1:3]
    counter = f"r{r}"
    if step_reg is not None:            # r = r + s: counting up by a register's value
        em.put(d, f"step = r{step_reg}")
        em.put(d, f"if 0 < step < {S}:")
        d += 1
        bound = v + (1 if bop in (BLE_I, BGT_I) else 0)
        em.put(d, f"high = {bound} - step")
        em.put(d, f"while {counter} < high:")
        em.put(d + 1, f"n = (high - {counter} + step - 1) // step")
        step, down = "step", False
    elif delta > 0:
        high, _ = group_bounds(delta, bop, v, 1)
        em.put(d, f"while {counter} < {high}:")
        em.put(d + 1, f"n = ({high - 1 + delta} - {counter}) // {delta}")
        step, down = str(delta), False
    else:
        low, top_bound = group_bounds(delta, bop, v, 1)
        test = f"{low} < {counter}" + (f" < {top_bound}" if top_bound is not None else "")
        em.put(d, f"while {test}:")
        em.put(d + 1, f"n = ({counter} - {low + 1 + delta}) // {-delta}")
        step, down = str(-delta), True
    d += 1
    em.put(d, f"room = (deadline - t) // {length}")
    em.put(d, "if room < n: n = room")
    em.put(d, "if n <= 0:")
    em.put(d + 1, "break")
    x, page, offset = em.address(d, r, off, at)
    table = _load(x, page, size) if mop in (LD, LDB) else _store(x, page, size)
    em.put(d, f"page = {table}", at)
    em.put(d, f"o = {offset}")
    if down:
        em.put(d, f"room = o // {step} + 1 if o <= len(page) - {size} else 0")
    else:
        em.put(d, f"room = (len(page) - {size} - o) // {step} + 1")
    em.put(d, "if room < n: n = room")
    em.put(d, "if n <= 0:")
    em.put(d + 1, "break")
    sign = "-" if down else "+"
    stride = f"{'-' if down else ''}{step}"
    body = top.items[1:-1]
    value = f"r{ma}"
    if mop in (ST, STB) and ma != r and all(em.code[item[1]][1] != ma for item in body):
        # the same value every iteration: wrapped (or masked) once
        em.put(d, f"v = {value} & 255" if mop == STB else f"v = {value}")
        value, masked = "v", True
    else:
        masked = False
    if r in set().union(*(reads_of(em.code, item[1]) for item in body)) or value == f"r{r}":
        # the counter is read: it is the loop's variable, the offset follows it
        em.put(d, f"e = o - {counter}")
        em.put(d, f"for {counter} in range({counter}, {counter} {sign} n * {step}, {stride}):")
        where, after = f"{counter} + e", f"{counter} = {counter} {sign} {step}"
    else:
        # only the access uses it: the loop's variable is the offset itself
        em.put(d, f"for o in range(o, o {sign} n * {step}, {stride}):")
        where, after = "o", f"{counter} = {counter} {sign} n * {step}"
    em.put(d + 1, {LDB: f"{value} = page[{where}]",
                   LD: f"{value} = unpack(page, {where})[0]",
                   STB: f"page[{where}] = {value}" if masked else f"page[{where}] = {value} & 255",
                   ST: f"pack(page, {where}, {value})"}[mop], at)
    for item in body:
        em.instruction(item[1], item[2], d + 1)
    em.put(d, after, top.items[-1][1:3])
    em.put(d, f"t += n * {length}")


# --- scans: a loop that reads bytes until one equals a constant, by bytearray.find ------

def scan_plan(em: "Emitter", top: Seg):
    """For a loop with one path back that is, in some rotation, ``ldb x,
    [r + c]``, a branch on ``x`` against a constant ``v`` (0..255) that
    keeps going while ``x != v``, and ``r = r +- 1``, followed at once by
    the fast guard's branch on ``r`` when there is one (the sieve's search
    for the next prime; without one, ``strlen``, bounded only by the page
    and the clock): (the load's item, r, step, x, v, the bound, the path's
    ticks), for emit_scan; else None. The bound is (high, None) up (an
    iteration may start at ``r < high``) or (low, top) down (at ``low <
    r``, and ``r < top`` unless top is None): as for groups, every counter
    test in the iterations it allows keeps the loop going."""
    cycle, seg, load = [], top, None           # the path back, in order from the root
    while len(cycle) <= 6:                      # (longer: not this shape)
        for item in seg.items:
            if item[0] != "I":
                return None
            if load is None and em.code[item[1]][0] == LDB:
                load = item
            cycle.append((item, None))
        term = seg.term
        if term[0] == "loop":
            length = term[1]
            break
        if term[0] != "br":
            return None
        bop, ba, _, _ = em.code[term[1]]
        if load is not None and ba == em.code[load[1]][1] and bop in (BNE_I, BEQ_I):
            seg = term[3] if bop == BNE_I else term[4]      # the side where x != v
        else:
            loops = [side for side in term[3:5] if em.has_loop(side)]
            if len(loops) != 1:
                return None
            seg = loops[0]
        cycle.append((term, seg))
    else:
        return None
    if load is None:
        return None
    _, xr, r, _ = em.code[load[1]]
    if r in em.lazy or r in (ZERO, 15) or xr in (ZERO, 15, r):
        return None
    start = cycle.index((load, None))
    rest = cycle[start + 1:] + cycle[:start]    # the path back from the load on
    kinds = []
    for entry, side in rest:
        op, a, b, c = em.code[entry[1]]
        if side is not None and a == xr and op in (BNE_I, BEQ_I):
            if not 0 <= b <= 255 or side is not entry[3 if op == BNE_I else 4]:
                return None                     # the path back must be the side x != v
            kinds.append("v")
        elif side is not None:
            kinds.append("c")
        elif op in (ADD_I, SUB_I) and a == r and b == r and signed_step(op, c) in (1, -1):
            kinds.append("u")
        else:
            return None
    if sorted(kinds) not in (["u", "v"], ["c", "u", "v"]):
        return None
    update = rest[kinds.index("u")][0]
    step = signed_step(em.code[update[1]][0], em.code[update[1]][3])
    v = em.code[rest[kinds.index("v")][0][1]][2]
    if "c" in kinds:
        at = kinds.index("c")
        if at == 0 or kinds[at - 1] != "u":
            return None                         # the counter's branch right after its step
        term, side = rest[at]
        guard = em.fast_guard(update, term, bare_only=False)
        if guard is None or guard[3] is not side:
            return None                         # the fast test implies the path back
        bop, _, bb, _ = em.code[term[1]]
        limits = group_bounds(step, bop, branch_constant(bop, bb), 1)
    else:                                       # r stays in 0..M: up to M, down to 0
        limits = (M, None) if step > 0 else (0, None)
    return load, r, step, xr, v, limits, length


def emit_scan(em: "Emitter", plan, d: int) -> None:
    """A scan plan's iterations, at depth ``d``, just before its load (in
    the while form): as many as the bound, the clock (up to ``lim``, the
    latest tick from which the rest of the path has room) and the access's
    page allow, up to the first whose byte is ``v``, found by ``find``
    (``rfind`` down) on the page. The page is
    looked up once, through the page table as the load would (the first
    iteration's load: its fault or lazy read happens there, at its own
    tick); the iteration that finds ``v`` and everything after it run in
    the code after it. ``x`` ends with the last byte loaded, ``r`` and the
    clock move on by the iterations done."""
    access, r, step, xr, v, (bound, top_bound), length = plan
    counter = f"r{r}"
    at = access[1:3]
    if step > 0:
        em.put(d, f"n = {bound} - {counter}")
    elif top_bound is None:
        em.put(d, f"n = {counter} - {bound}")
    else:
        em.put(d, f"n = {counter} - {bound} if {counter} < {top_bound} else 0")
    em.put(d, f"room = (lim - t) // {length}")
    em.put(d, "if room < n: n = room")
    em.put(d, "if n > 0:")
    d += 1
    x, page, offset = em.address(d, r, em.code[access[1]][3], at)
    em.put(d, f"page = {_load(x, page, 1)}", at)
    em.put(d, f"o = {offset}")
    if step > 0:                        # offsets o .. o + n - 1 of the page
        room, search, none, moved, last = ("len(page) - o", f"page.find({v}, o, o + n)",
                                           "o + n", "f - o", "f - 1")
        test, advance = "f > o", f"{counter} + f - o"
    else:                               # offsets o down to o - n + 1
        room, search, none, moved, last = ("o + 1 if o < len(page) else 0",
                                           f"page.rfind({v}, o + 1 - n, o + 1)", "o - n",
                                           "o - f", "f + 1")
        test, advance = "f < o", f"{counter} - o + f"
    em.put(d, f"room = {room}")
    em.put(d, "if room < n: n = room")
    em.put(d, f"f = {search}")
    em.put(d, f"if f < 0: f = {none}")
    em.put(d, f"if {test}:")
    em.put(d + 1, f"r{xr} = page[{last}]")
    em.put(d + 1, f"{counter} = {advance}")
    em.put(d + 1, f"t += ({moved}) * {length}")


def emit_groups(em: "Emitter", plan, top: Seg, length: int, d: int) -> None:
    """The groups of a group plan: as many whole groups of ``em.unroll``
    iterations as the clock and the bound allow, one test per group (the
    ``while``), then as many single iterations, one test each; each time
    the clock moved on by the iterations run. What is left (the iteration
    that leaves the loop, and the ticks before the deadline) runs in the
    code after it, with every test."""
    r, step, bop, v = plan
    for n in sorted({em.unroll, 1}, reverse=True):
        bound, top_bound = group_bounds(step, bop, v, n)
        span = n * abs(step)            # how far r moves in one group
        ticks = n * length
        em.put(d, f"g = (deadline - t) // {ticks}")
        em.put(d, f"if g > 0{f' and r{r} < {top_bound}' if top_bound is not None else ''}:")
        em.put(d + 1, f"g0 = r{r}")
        moves = f"g * {span}" if span > 1 else "g"
        if step < 0:
            em.put(d + 1, f"gs = r{r} - {moves}")
            em.put(d + 1, f"if gs < {bound}: gs = {bound}")
            em.put(d + 1, f"while r{r} > gs:")
        else:
            em.put(d + 1, f"gs = r{r} + {moves}")
            em.put(d + 1, f"if gs > {bound}: gs = {bound}")
            em.put(d + 1, f"while r{r} < gs:")
        for copy in range(n):
            em.offset = copy * length
            for item in top.items[:-1]:
                em.instruction(item[1], item[2], d + 2)
            em.put(d + 2, f"r{r} = r{r} {'+' if step > 0 else '-'} {abs(step)}",
                   top.items[-1][1:3])
        em.offset = 0
        moved = f"g0 - r{r}" if step < 0 else f"r{r} - g0"
        groups = f"({moved}) // {span}" if span > 1 else f"({moved})"
        em.put(d + 1, f"t += {groups} * {ticks}")


def stepped_tail(em: "Emitter", top: Seg, root: int, d: int) -> None:
    """The tree in the stepped form, at depth ``d``: it runs to the
    deadline exactly, checking it before every instruction but the root's
    (where its loop checks it), so it needs only 1 tick of room."""
    em.put(d, f"pc = {root}")
    em.put(d, "while True:")
    em.put(d + 1, "left = deadline - t")
    em.put(d + 1, "if left <= 0:")
    em.put(d + 2, "break")
    form, stepped = em.form, em.stepped
    em.form, em.stepped = "while", True
    em.segment(top, d + 1)
    em.form, em.stepped = form, stepped


def choose_form(em: "Emitter", top: Seg, loops: list) -> int:
    """Set the form of a region that is not the stepped form (``em.form``:
    "range" for one loop, "while" for several or a scan, "once" for none;
    ``em.scan``: a scan plan) and return how many copies of its body a
    range loop's step runs (1: not unrolled)."""
    unroll = 1
    if len(loops) == 1:
        em.form, em.loop_len = "range", loops[0]
        size = sum(len(seg.items) + 1 for seg in walk(top))
        if loops[0] <= UNROLL_MAX_LEN and size <= UNROLL_MAX_SIZE:
            unroll = min(UNROLL_CAP, UNROLL_TICKS // loops[0])
    elif loops:
        em.form = "while"
    scan = scan_plan(em, top) if SCANS and loops else None
    if scan is not None:
        # the search runs where the path back loads its byte (emit_scan), in
        # the while form: every pass through the load, however the path got
        # there (in the sieve, a prime's path loops back too), may search on
        em.form, unroll, em.scan = "while", 1, scan
    return unroll


def emit_region(code: list, ncode: int, root: int, stop=None, top=None, covered=None,
                max_path: int = MAX_PATH, stepped: bool = False, chain=None):
    """Source of the region at ``root``: (source, line table, ticks needed,
    port functions in parameter order, pcs covered, pcs on its loops).
    ``top``/``covered``: the tree, if already built (regions.build).

    ``stepped``: the tail form, for the last ticks before a deadline that
    the region's own form has no room for: it runs to the deadline exactly
    (checking it before every instruction but the root's, where its loop
    checks it), needs 1 tick of room, and is never unrolled.

    ``chain``: the ticks of room the region at ``stop`` needs, when the
    function is to call it (as ``CHAIN``) where a path stops there, with
    that much room left, instead of returning to the driver."""
    if top is None:
        top, covered = build(code, ncode, root, stop, max_path)
    need, loops = ticks_needed(top)
    used, written = registers(code, top)
    em = Emitter(code, ncode, root)
    em.lazy = unwrapped_registers(code, top)
    em.stepped = stepped
    if stepped:
        need, unroll = 1, 1
        em.form = "while"
        stepped_tail(em, top, root, 2)
    else:
        unroll = choose_form(em, top, loops)
    scan = em.scan
    body_depth = 3
    plan = None
    if unroll > 1:
        length = loops[0]
        em.unroll = unroll
        plan = group_plan(em, top) if GROUPS else None
        if plan is not None:
            emit_groups(em, plan, top, length, 2)
    if plan is None and scan is None and RUNS and loops and not stepped:
        runs = run_plan(em, top)
        if runs is not None:
            emit_runs(em, runs, top, 2)
    if plan is not None:
        # what the groups and the single iterations leave is the iteration
        # that leaves the loop, or less room than one iteration: the stepped
        # form runs it (and every iteration, should the groups not run: a
        # counter past a signed bound's top)
        em.form = "while"
        stepped_tail(em, top, root, 2)
        need = 1
    elif unroll > 1:
        # k groups of `unroll` iterations; the driver only enters with room
        # for at least one group (see the `need` returned below)
        em.loop_len = unroll * length
        em.put(2, f"k = ((deadline - t - {need}) // {length} + 1) // {unroll}")
        em.put(2, "for i in range(k):")
        before = len(em.lines)
        for copy in range(unroll):
            em.offset = copy * length
            em.main_path(top, body_depth)
        em.offset = 0
        if len(em.lines) == before:            # e.g. ``L: jmp L``: nothing to run
            em.put(body_depth, "pass")
        need += (unroll - 1) * length
    elif em.form == "range":
        em.put(2, f"k = (deadline - t - {need}) // {em.loop_len} + 1")
        em.put(2, "for i in range(k):")
    elif em.form == "while" and not stepped:
        em.put(2, f"lim = deadline - {need}")
        em.put(2, "while True:")
        em.put(3, "if t > lim:")
        em.put(4, f"pc = {root}")
        em.put(4, "break")
    elif not stepped:
        em.put(2, "while True:")
    if unroll == 1 and not stepped:
        em.segment(top, body_depth)
    if em.form == "range":
        em.put(2, "else:")
        em.put(3, "if k > 0:")               # less room than one step: k may be negative
        em.put(4, f"t += k * {em.loop_len}")
        # no room for one more step of the range loop: the same tree in the
        # stepped form runs the last ticks to the deadline exactly (the
        # timer's next tick, in an interrupt-heavy guest), so the driver may
        # call this with any room (``i = 0``: the fault handler's tick is then
        # ``t + j``)
        em.put(3, "i = 0")
        stepped_tail(em, top, root, 3)
        need = 1
    ports = list(em.ports)
    params = "".join(f", {name}={name}" for name in em.ports.values())
    head = [f"def region(regs, pg, wr, t, deadline, lm, sm, unpack=unpack, pack=pack{params}):"]
    head += [f"    r{r} = regs[{r}]" for r in used]
    head += ["    i = 0", "    try:"] if em.form == "range" else ["    try:"]
    store = [f"regs[{r}] = r{r} & {M}" if r in em.lazy else f"regs[{r}] = r{r}"
             for r in written]
    tick = f"t + j + i * {em.loop_len}" if em.form == "range" else "t + j"
    tail = ["    except FAST_PATH_ERRORS as e:",
            "        pc, j = LINES[e.__traceback__.tb_lineno]",
            *[f"        {s}" for s in store],
            f"        return ~pc, {tick}",
            *[f"    {s}" for s in store]]
    if chain is not None and stop is not None:
        # the room test even when the region there needs only 1 tick: a path
        # may reach it with none left (this region entered with exactly its
        # own need), and the region called would run a tick past the deadline
        tail += [f"    if pc == {stop} and deadline - t >= {chain}:",
                 "        return CHAIN(regs, pg, wr, t, deadline, lm, sm)"]
    tail += ["    return pc, t"]
    first = len(head) + 1                      # line numbers start at 1
    lines = {first + index: at for index, at in em.where.items()}
    source = "\n".join(head + em.lines + tail) + "\n"
    return source, lines, need, ports, covered, loop_pcs(top)


