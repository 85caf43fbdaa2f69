"""Decoding: an image's code -> the list of tuples the engines execute.

:func:`decode` turns the image into a list of ``(op, a, b, c)`` tuples that
a hot loop can execute with no further lookups: port numbers become the
device's bound handler, signed-compare immediates are pre-flipped, shift
counts pre-masked, and a jump to a constant outside the code becomes a jump
to a FAULT entry appended after the code (so no jump needs a range check).
A few opcodes exist only in decoded code (never in an image): they are
numbered after the ISA's.
"""

from __future__ import annotations

import struct

from .. import isa
from ..errors import GuestFault
from ..isa import BEQ_I, BNE_I, CALL_I, IN, JMP_I, OUT_I, OUT_R, SAR_I, SHL_I, SHR_I

# Decoded-only opcodes (never in an image).
OUTQ_R = len(isa.OPCODES)         # out to a port that needs no rescheduling
OUTQ_I = OUTQ_R + 1
FAULT = OUTQ_R + 2                # (FAULT, reason, report_pc, rollback)
BREAK = OUTQ_R + 3                # a breakpoint the debugger planted
BAD_BRANCH = OUTQ_R + 4           # (BAD_BRANCH, branch op, (a, b), bad target): faults if taken

WORD = struct.Struct("<I")          # a little-endian memory word
#: The ways an unchecked fast path fails: it leaves its loop and the
#: instruction runs on the exact path.
FAST_PATH_ERRORS = (IndexError, TypeError, struct.error, ZeroDivisionError, GuestFault)

#: Branches whose second operand is an immediate (decode flips the sign bit
#: of the signed ones' so that a signed compare is ``regs[a] ^ S < b``).
_BRANCH = isa.by_category(isa.BRANCH)
IMMEDIATE_BRANCHES = frozenset(op for op in _BRANCH if isa.OPCODES[op].fields[1] == isa.IMM)
_SIGNED_BRANCH_I = IMMEDIATE_BRANCHES - {BEQ_I, BNE_I}
_SHIFT_I = frozenset({SHL_I, SHR_I, SAR_I})


def bad_target(target: int, ncode: int, what: str = "") -> str:
    """The fault of a jump to a target outside the code (``what``: how the
    target was found, for one through a register or the stack)."""
    how = f" ({what})" if what else ""
    return (f"bad jump target {isa.to_signed(target)}{how}: the code has {ncode} instructions "
            f"(0..{ncode - 1})")


def decode(image, out_ports: dict, in_ports: dict) -> list:
    """Image -> the hot loop's instruction list (see module docstring)."""
    ncode = len(image.code)
    code: list = []

    for pc, (op, a, b, c) in enumerate(image.code):
        if op in _BRANCH and c >= ncode:
            code.append((BAD_BRANCH, op, (a, b), c))      # faults when (and if) taken
            continue
        if op in (JMP_I, CALL_I) and a >= ncode:
            code.append((FAULT, bad_target(a, ncode), pc, True))
            continue
        if op in _SIGNED_BRANCH_I:
            b ^= isa.SIGN_BIT
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
