"""The real-sized guest programs of benchmarks/guests/ and their expected output.

Each guest is a minivm assembly file with a size parameter, the line
``.equ SIZE, N``; ``source(guest, size)`` rewrites it. ``expected(size)``
computes, in plain Python and independently of minivm, what the guest must
print (and ``disk(size)`` builds the disk image a guest reads, if any).
Used by benchmarks/programs.py and tests/test_big_guests.py.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
BLOCK = 512
MASK = 0xFFFFFFFF


def signed(x: int) -> int:
    x &= MASK
    return x - (1 << 32) if x & 0x80000000 else x


def xorshift32(seed: int, n: int) -> list[int]:
    x, out = seed, []
    for _ in range(n):
        x ^= (x << 13) & MASK
        x ^= x >> 17
        x ^= (x << 5) & MASK
        out.append(x)
    return out


# --- sort.asm --------------------------------------------------------------------

SORT_SEED = 2463534242


def sort_expected(size: int) -> bytes:
    a = sorted(signed(x) for x in xorshift32(SORT_SEED, size))
    h = 0
    for v in a:
        h = (h * 31 + v) & MASK
    return f"sorted {size} sum={signed(h)} min={a[0]} max={a[-1]}\n".encode()


# --- bf.asm ----------------------------------------------------------------------

#: the Brainf*** program bf.asm embeds (keep in step with its `.asciz`)
BF_PROGRAM = ("++++++++[>++++[>++>+++>+++>+<<<<-]>+>+>->>+[<]<-]>>.>---.+++++++..+++.>>."
              "<-.<.+++.------.--------.>>+.>++.")
BF_TAPE = 256


def bf_run(code: str) -> tuple[bytes, int]:
    """(output, number of BF commands executed) of one run on a fresh tape."""
    jump, stack = {}, []
    for i, c in enumerate(code):
        if c == "[":
            stack.append(i)
        elif c == "]":
            j = stack.pop()
            jump[i], jump[j] = j, i
    tape, ptr, pc, out, steps = bytearray(BF_TAPE), 0, 0, bytearray(), 0
    while pc < len(code):
        c = code[pc]
        if c in "+-<>.[]":
            steps += 1
        if c == "+":
            tape[ptr] = (tape[ptr] + 1) & 0xFF
        elif c == "-":
            tape[ptr] = (tape[ptr] - 1) & 0xFF
        elif c == ">":
            ptr = (ptr + 1) % BF_TAPE
        elif c == "<":
            ptr = (ptr - 1) % BF_TAPE
        elif c == ".":
            out.append(tape[ptr])
        elif c == "[" and tape[ptr] == 0:
            pc = jump[pc]
        elif c == "]" and tape[ptr] != 0:
            pc = jump[pc]
        pc += 1
    return bytes(out), steps


def bf_expected(size: int) -> bytes:
    out, steps = bf_run(BF_PROGRAM)
    return out * size + f"rounds={size} steps={steps * size}\n".encode()


# --- checksum.asm ----------------------------------------------------------------

def disk_bytes(size: int) -> bytes:
    """The disk checksum.asm reads: ``size`` blocks of xorshift32 words."""
    words = xorshift32(0x9E3779B9, size * BLOCK // 4)
    return b"".join(w.to_bytes(4, "little") for w in words)


def checksum_expected(size: int) -> bytes:
    return f"blocks={size} crc32={zlib.crc32(disk_bytes(size)):08x}\n".encode()


@dataclass(frozen=True)
class Guest:
    name: str
    file: str
    full: int                   # size for a full benchmark run
    quick: int                  # size for --quick
    small: int                  # size for the tests
    expected: Callable[[int], bytes]
    disk: Callable[[int], bytes] | None = None

    @property
    def path(self) -> Path:
        return HERE / self.file

    def source(self, size: int) -> str:
        text = self.path.read_text()
        new, count = re.subn(r"(?m)^\.equ SIZE, \d+", f".equ SIZE, {int(size)}", text)
        if count != 1:
            raise ValueError(f"{self.file} has no single '.equ SIZE, N' line")
        return new

    def lines(self) -> int:
        """Lines of code: not blank, not only a comment."""
        return sum(1 for line in self.path.read_text().splitlines()
                   if line.split(";")[0].strip())


GUESTS = (
    Guest("sort", "sort.asm", 20000, 2000, 300, sort_expected),
    Guest("bf", "bf.asm", 200, 20, 3, bf_expected),
    Guest("checksum", "checksum.asm", 256, 32, 6, checksum_expected, disk_bytes),
)
