"""The CPU: pre-decode once, then a flat dispatch loop.

:func:`decode` turns the image into a list of ``(op, a, b, c)`` tuples that
the hot loop can execute with no further lookups: port numbers become the
device's bound handler, signed-compare immediates are pre-flipped, shift
counts pre-masked, and a jump to a constant outside the code becomes a jump
to a FAULT entry appended after the code (so no jump needs a range check).

:func:`run_fast` is the hot loop. It keeps everything in locals, counts time
with ``for t in range(tick, deadline)`` (the deadline is the next device
event, host task or stop), and has no bounds or COW checks at all: a load
from a missing page raises IndexError, a store into a page that is shared or
untouched stores into ``None`` and raises TypeError, a word that straddles a
page raises struct.error. Any of those (and anything that needs the devices
or the machine: ``halt``, ``wait``, ``ckpt``, ``ei``...) leaves the loop with
the instruction not yet executed, and the machine runs it through its slow,
fully checked path (:meth:`Machine.step_slow`). Python 3.11's zero-cost
``try`` makes the common case pay nothing for this.
"""

from __future__ import annotations

import struct

from . import isa
from .errors import GuestFault
from .isa import (ADD_I, ADD_R, AND_I, AND_R, BEQ_I, BEQ_R, BGE_I, BGE_R, BGT_I,
                  BGT_R, BLE_I, BLE_R, BLT_I, BLT_R, BNE_I, BNE_R, CALL_I, CALL_R,
                  DIV_I, DIV_R, IN, JMP_I, JMP_R, LD, LDB, MOD_I, MOD_R, MOV_I,
                  MOV_R, MUL_I, MUL_R, NEG, NOP, NOT, OR_I, OR_R, OUT_I, OUT_R, POP,
                  PUSH_I, PUSH_R, RET, SAR_I, SAR_R, SHL_I, SHL_R, SHR_I, SHR_R, ST,
                  STB, SUB_I, SUB_R, XOR_I, XOR_R)

# Decoded-only opcodes (never in an image).
OUTQ_R = len(isa.OPCODES)         # out to a port that needs no rescheduling
OUTQ_I = OUTQ_R + 1
FAULT = OUTQ_R + 2                # (FAULT, reason, report_pc, rollback)
BREAK = OUTQ_R + 3                # a breakpoint the debugger planted
BAD_BRANCH = OUTQ_R + 4           # (BAD_BRANCH, branch op, (a, b), bad target): faults if taken

M = isa.WORD_MASK
S = isa.SIGN_BIT
_WORD = struct.Struct("<I")
FAST_PATH_ERRORS = (IndexError, TypeError, struct.error, ZeroDivisionError, GuestFault)

_SIGNED_BRANCH_I = {BLT_I, BLE_I, BGT_I, BGE_I}
_BRANCH = {BEQ_R, BEQ_I, BNE_R, BNE_I, BLT_R, BLT_I, BLE_R, BLE_I, BGT_R, BGT_I,
           BGE_R, BGE_I}
_SHIFT_I = {SHL_I, SHR_I, SAR_I}


def decode(image, out_ports: dict, in_ports: dict) -> list:
    """Image -> the hot loop's instruction list (see module docstring)."""
    ncode = len(image.code)
    code: list = []

    def bad_target(target: int) -> str:
        return (f"bad jump target {isa.to_signed(target)}: the code has {ncode} instructions "
                f"(0..{ncode - 1})")

    for pc, (op, a, b, c) in enumerate(image.code):
        if op in _BRANCH and c >= ncode:
            code.append((BAD_BRANCH, op, (a, b), c))      # faults when (and if) taken
            continue
        if op in (JMP_I, CALL_I) and a >= ncode:
            code.append((FAULT, bad_target(a), pc, True))
            continue
        if op in _SIGNED_BRANCH_I:
            b ^= S
        elif op in _SHIFT_I:
            c &= 31
        elif op in (OUT_R, OUT_I):
            entry = out_ports.get(a)
            if entry is None:
                direction = " (it is an input port; use 'in')" if a in in_ports else ""
                code.append((FAULT, f"unknown port 0x{a:02x} for 'out'{direction}", pc, True))
                continue
            fn, reschedules = entry
            if reschedules:
                code.append((op, fn, b, 0))
            else:
                code.append((OUTQ_R if op == OUT_R else OUTQ_I, fn, b, 0))
            continue
        elif op == IN:
            fn = in_ports.get(b)
            if fn is None:
                direction = " (it is an output port; use 'out')" if b in out_ports else ""
                code.append((FAULT, f"unknown port 0x{b:02x} for 'in'{direction}", pc, True))
                continue
            code.append((IN, a, fn, 0))
            continue
        code.append((op, a, b, c))
    off_end = (FAULT, "ran off the end of the code (no halt or jump after the last "
                      "instruction)", ncode, False)
    return code + [off_end]


def run_fast(m, deadline: int):
    """Run from ``m.pc`` until the clock reads ``deadline``.

    Returns None when the deadline is reached, or the opcode that needs the
    slow path; then ``m.pc``/``m.tick`` name that instruction, not yet run.
    """
    code = m.code
    regs = m.regs
    pages = m.memory.pages
    writable = m.memory.writable
    ncode = m.ncode
    unpack = _WORD.unpack_from
    pack = _WORD.pack_into
    pc = m.pc
    t = m.tick
    op = None
    try:
        for t in range(t, deadline):
            op, a, b, c = code[pc]
            if op == ADD_I:
                regs[a] = (regs[b] + c) & M
                pc += 1
            elif op == BNE_I:
                pc = c if regs[a] != b else pc + 1
            elif op == BLT_R:
                pc = c if regs[a] ^ S < regs[b] ^ S else pc + 1
            elif op == MOV_I:
                regs[a] = b
                pc += 1
            elif op == LD:
                x = (regs[b] + c) & M
                regs[a] = unpack(pages[x >> 12], x & 4095)[0]
                pc += 1
            elif op == ST:
                x = (regs[b] + c) & M
                pack(writable[x >> 12], x & 4095, regs[a])
                pc += 1
            elif op == LDB:
                x = (regs[b] + c) & M
                regs[a] = pages[x >> 12][x & 4095]
                pc += 1
            elif op == STB:
                x = (regs[b] + c) & M
                writable[x >> 12][x & 4095] = regs[a] & 255
                pc += 1
            elif op == MOV_R:
                regs[a] = regs[b]
                pc += 1
            elif op == ADD_R:
                regs[a] = (regs[b] + regs[c]) & M
                pc += 1
            elif op == SUB_I:
                regs[a] = (regs[b] - c) & M
                pc += 1
            elif op == SUB_R:
                regs[a] = (regs[b] - regs[c]) & M
                pc += 1
            elif op == BEQ_I:
                pc = c if regs[a] == b else pc + 1
            elif op == BEQ_R:
                pc = c if regs[a] == regs[b] else pc + 1
            elif op == BNE_R:
                pc = c if regs[a] != regs[b] else pc + 1
            elif op == BLT_I:
                pc = c if regs[a] ^ S < b else pc + 1
            elif op == BGE_R:
                pc = c if regs[a] ^ S >= regs[b] ^ S else pc + 1
            elif op == BGE_I:
                pc = c if regs[a] ^ S >= b else pc + 1
            elif op == BLE_R:
                pc = c if regs[a] ^ S <= regs[b] ^ S else pc + 1
            elif op == BLE_I:
                pc = c if regs[a] ^ S <= b else pc + 1
            elif op == BGT_R:
                pc = c if regs[a] ^ S > regs[b] ^ S else pc + 1
            elif op == BGT_I:
                pc = c if regs[a] ^ S > b else pc + 1
            elif op == JMP_I:
                pc = a
            elif op == OUTQ_R:
                a(regs[b])
                pc += 1
            elif op == OUTQ_I:
                a(b)
                pc += 1
            elif op == IN:
                regs[a] = b(t) & M
                pc += 1
            elif op == CALL_I:
                x = (regs[15] - 4) & M
                pack(writable[x >> 12], x & 4095, pc + 1)
                regs[15] = x
                pc = a
            elif op == RET:
                x = regs[15]
                y = unpack(pages[x >> 12], x & 4095)[0]
                if y >= ncode:
                    break
                regs[15] = (x + 4) & M
                pc = y
            elif op == PUSH_R:
                x = (regs[15] - 4) & M
                pack(writable[x >> 12], x & 4095, regs[a])
                regs[15] = x
                pc += 1
            elif op == POP:
                x = regs[15]
                y = unpack(pages[x >> 12], x & 4095)[0]
                regs[15] = (x + 4) & M
                regs[a] = y
                pc += 1
            elif op == PUSH_I:
                x = (regs[15] - 4) & M
                pack(writable[x >> 12], x & 4095, a)
                regs[15] = x
                pc += 1
            elif op == MUL_R:
                regs[a] = (regs[b] * regs[c]) & M
                pc += 1
            elif op == MUL_I:
                regs[a] = (regs[b] * c) & M
                pc += 1
            elif op == AND_R:
                regs[a] = regs[b] & regs[c]
                pc += 1
            elif op == AND_I:
                regs[a] = regs[b] & c
                pc += 1
            elif op == OR_R:
                regs[a] = regs[b] | regs[c]
                pc += 1
            elif op == OR_I:
                regs[a] = regs[b] | c
                pc += 1
            elif op == XOR_R:
                regs[a] = regs[b] ^ regs[c]
                pc += 1
            elif op == XOR_I:
                regs[a] = regs[b] ^ c
                pc += 1
            elif op == SHL_R:
                regs[a] = (regs[b] << (regs[c] & 31)) & M
                pc += 1
            elif op == SHL_I:
                regs[a] = (regs[b] << c) & M
                pc += 1
            elif op == SHR_R:
                regs[a] = regs[b] >> (regs[c] & 31)
                pc += 1
            elif op == SHR_I:
                regs[a] = regs[b] >> c
                pc += 1
            elif op == SAR_R:
                regs[a] = (((regs[b] ^ S) - S) >> (regs[c] & 31)) & M
                pc += 1
            elif op == SAR_I:
                regs[a] = (((regs[b] ^ S) - S) >> c) & M
                pc += 1
            elif op == DIV_R or op == DIV_I or op == MOD_R or op == MOD_I:
                x = (regs[b] ^ S) - S
                y = regs[c] if op == DIV_R or op == MOD_R else c
                y = (y ^ S) - S
                q = abs(x) // abs(y)
                if (x ^ y) < 0:
                    q = -q
                regs[a] = (q if op == DIV_R or op == DIV_I else x - q * y) & M
                pc += 1
            elif op == NOT:
                regs[a] = regs[b] ^ M
                pc += 1
            elif op == NEG:
                regs[a] = -regs[b] & M
                pc += 1
            elif op == NOP:
                pc += 1
            elif op == JMP_R:
                x = regs[a]
                if x >= ncode:
                    break
                pc = x
            elif op == CALL_R:
                y = regs[a]
                if y >= ncode:
                    break
                x = (regs[15] - 4) & M
                pack(writable[x >> 12], x & 4095, pc + 1)
                regs[15] = x
                pc = y
            else:                      # halt, wait, ckpt, ei, di, iret, out, fault, break
                break
        else:
            m.pc = pc
            m.tick = deadline
            return None
    except FAST_PATH_ERRORS:
        pass
    m.pc = pc
    m.tick = t
    return op
