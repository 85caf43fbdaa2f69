"""The checkpoint lab's built-in guest (``minivm compare --sweep``, the tests).

A program with a *writable working set* of a chosen size and rate:

* it first touches every page of its memory between FIRST_PAGE and the
  last STACK_PAGES (one store each), so a checkpoint has all of them to save;
* then, for ``steps`` iterations, it stores one word into the next page of
  its working set (``working_set`` pages, cycling), and waits so that it
  writes about ``rate`` pages per 1,000 ticks; every 64 iterations it puts
  a disk write and a disk read in flight (a disk is needed), so DMA is in
  flight during pre-copy rounds and at checkpoints;
* it waits until no request is in flight, prints the number of iterations
  and halts.

Reads land in a buffer page (page 8) the CPU never touches; writes take
their data from page 9 (captured when issued), so the guest follows the
rule of docs/contract.md for in-flight DMA.
"""

from __future__ import annotations

from .memory import PAGE_SIZE

FIRST_PAGE = 16             # pages 0-15: the DMA buffer (8) and source (9)
STACK_PAGES = 16            # the last pages are left alone
DMA_EVERY = 64              # iterations between two pairs of disk requests
DMA_BLOCKS = 32             # the disk blocks it writes and reads (16 KiB of disk)
LOOP_TICKS = 11             # ticks of one iteration besides its wait (and 14 more
                            # every DMA_EVERY iterations, for the requests)
#: The fastest the guest writes: one page per iteration without a wait.
MAX_RATE = 1000 // LOOP_TICKS
WAIT_TICKS = 3              # ticks of one turn of the wait loop


def touched_pages(memory_size: int) -> int:
    """The pages the guest touches first (all it can: a checkpoint saves them)."""
    return max(memory_size // PAGE_SIZE - FIRST_PAGE - STACK_PAGES, 1)


def _base(dma: bool) -> int:
    return LOOP_TICKS if dma else LOOP_TICKS - 2     # without DMA: no 'and', 'bne' test


def _delay(rate: int, dma: bool = True) -> tuple[int, int]:
    """(turns of the wait loop, nops) per iteration: an iteration of the
    whole number of ticks nearest to 1,000 / ``rate``."""
    period = max(round(1000 / max(rate, 1)), _base(dma))
    return divmod(period - _base(dma), WAIT_TICKS)


def actual_rate(rate: int, dma: bool = True) -> float:
    """The pages per 1,000 ticks the guest asked for ``rate`` really writes
    (an iteration is a whole number of ticks, and the DMA requests add some)."""
    turns, nops = _delay(rate, dma)
    ticks = _base(dma) + WAIT_TICKS * turns + nops + (14 / DMA_EVERY if dma else 0)
    return 1000 / ticks


def lab_source(memory_size: int, rate: int, steps: int, working_set: int = 256,
               dma: bool = True) -> str:
    """The guest's assembly source: ``rate`` pages written per 1,000 ticks
    (1 or more; really ``actual_rate(rate)``), over ``working_set`` pages,
    for ``steps`` iterations."""
    pages = touched_pages(memory_size)
    working_set = max(1, min(working_set, pages))
    delay, nops = _delay(rate, dma)
    padding = "".join("\n        nop" for _ in range(nops))
    first = FIRST_PAGE * PAGE_SIZE
    last = first + pages * PAGE_SIZE
    dma_lines = f"""
        and r4, r2, {DMA_EVERY - 1}
        bne r4, 0, pause
        shr r5, r2, 6
        and r5, r5, {DMA_BLOCKS - 1}
        st r2, [src]
        out 0x20, r5
        out 0x21, src
        out 0x22, 1
        out 0x23, 2
        and r6, r5, 7
        mul r6, r6, 512
        add r6, r6, buf
        out 0x20, r5
        out 0x21, r6
        out 0x22, 1
        out 0x23, 1""" if dma else ""
    return f"""; the checkpoint lab's guest: {rate} page(s) written per 1,000 ticks
; over a working set of {working_set} page(s), after touching {pages} page(s)
.equ buf, {8 * PAGE_SIZE}
.equ src, {9 * PAGE_SIZE}
        mov r1, {first}
touch:
        bge r1, {last}, main
        st r1, [r1]
        add r1, r1, {PAGE_SIZE}
        jmp touch
main:
        mov r2, 0
loop:
        bge r2, {steps}, finish
        mod r3, r2, {working_set}
        mul r3, r3, {PAGE_SIZE}
        add r3, r3, {first}
        st r2, [r3 + 4]{dma_lines}
pause:{padding}
        mov r4, {delay}
spin:
        beq r4, 0, next
        sub r4, r4, 1
        jmp spin
next:
        add r2, r2, 1
        jmp loop
finish:
        in r7, 0x24
        beq r7, 0, done
        wait
        jmp finish
done:
        out 0x01, r2
        out 0x00, 10
        mov r0, 0
        halt
"""
