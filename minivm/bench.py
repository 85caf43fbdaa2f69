"""``minivm bench``: guest speed against a bare CPython loop, in one run.

Everything is measured in the same process, back to back, in CPU time of
the process (``time.process_time``: on a busy shared machine wall time
swings by 2x with other jobs, CPU time by a few percent), so the ratios are
meaningful even when the absolute rates are not:

* the bare loop rate: ``i = 0; while i < n: i += 1`` (iterations/s);
* guest instructions per second (ticks / time of ``Machine.run`` on a fresh
  machine; for ``blocks`` the compiled-code cache is emptied first, so every
  run pays for compiling its regions), per engine, on: a register-only
  countdown loop (``sub``/``bne``), a register loop whose values use all 32
  bits (``add``/``xor``/``sub``/``bne``), a memory-heavy loop (a sieve over
  8 KiB, repeated) and the countdown with the timer interrupting every 1,000
  ticks, and every 100 (interrupt-heavy);
* issue 2's figure: the interp engine's ratio on the countdown loop;
* when ``py65`` (a pure-Python 6502 emulator) is importable, a countdown
  loop and a 4 KiB copy loop on it and on minivm, as instructions/s ratios.

Each figure is the best of a few runs (5; 2 with ``--quick``). The bare
loop is timed just before and just after every guest run, and that run's
ratio is taken against the mean of those two samples, so a change of
machine speed between measurements cancels out. ``--quick`` runs small
sizes (about a second) for the tests.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field

from .assembler import assemble
from .devices import BufferSink, ConsoleInput
from .engine import ENGINES
from .machine import Machine


#: Every duration is CPU time of this (single-threaded) process: on a shared,
#: busy machine wall time also counts the time other jobs held the CPU.
_clock = time.process_time

COUNTDOWN_LOOP = """
; register-only countdown: 2 instructions per iteration
        mov r1, {n}
loop:   sub r1, r1, 1
        bne r1, 0, loop
        halt
"""

ALU_LOOP = """
; register-only, with 32-bit values: 4 instructions per iteration; r2 and r3
; soon hold values above 2^30, which CPython keeps in allocated 2-digit ints
        mov r1, {n}
loop:   add r2, r2, r1
        xor r3, r3, r2
        sub r1, r1, 1
        bne r1, 0, loop
        halt
"""

SIEVE_LOOP = """
; memory-heavy: sieve of Eratosthenes over an 8 KiB byte table, {n} rounds;
; each round clears the table with word stores, then counts the primes
.equ LIMIT, 8192
        mov r7, {n}
round:  mov r1, 0
clear:  st r0, [r1 + table]
        add r1, r1, 4
        blt r1, LIMIT, clear
        mov r5, 0
        mov r1, 2
outer:  bge r1, LIMIT, counted
        ldb r2, [r1 + table]
        bne r2, 0, next
        add r5, r5, 1
        mul r3, r1, r1
        mov r4, 1
inner:  bge r3, LIMIT, next
        stb r4, [r3 + table]
        add r3, r3, r1
        jmp inner
next:   add r1, r1, 1
        jmp outer
counted:
        sub r7, r7, 1
        bgt r7, 0, round
        out 0x01, r5
        halt
.data
table:  .space LIMIT
"""

TIMER_LOOP = """
; the countdown loop with a timer interrupt every {period} ticks
        out 0x11, tick
        out 0x10, {period}
        ei
        mov r1, {n}
loop:   sub r1, r1, 1
        bne r1, 0, loop
        out 0x10, 0
        ld r0, [count]
        out 0x01, r0
        mov r0, 0
        halt
tick:   push r5
        ld r5, [count]
        add r5, r5, 1
        st r5, [count]
        pop r5
        iret
.data
count:  .word 0
"""

COPY_LOOP = """
; copy 4 KiB byte by byte, {n} rounds (compare: the 6502 copy loop)
        mov r7, {n}
again:  mov r1, 0
copy:   ldb r2, [r1 + src]
        stb r2, [r1 + dst]
        add r1, r1, 1
        blt r1, 4096, copy
        sub r7, r7, 1
        bgt r7, 0, again
        halt
.data
src:    .space 4096
dst:    .space 4096
"""

COUNTDOWN = "countdown (sub/bne)"
ALU = "ALU loop, 32-bit values"
MEMORY = "memory (sieve 8 KiB)"
TIMER_1000 = "countdown + timer/1000"
TIMER_100 = "countdown + timer/100"

# (name, source, size parameter for a full run, for a quick run, expected output)
WORKLOADS = (
    (COUNTDOWN, COUNTDOWN_LOOP, 1_500_000, 50_000, None),
    (ALU, ALU_LOOP, 750_000, 25_000, None),
    (MEMORY, SIEVE_LOOP, 16, 1, b"1028"),
    (TIMER_1000, TIMER_LOOP.replace("{period}", "1000"), 1_500_000, 50_000, None),
    (TIMER_100, TIMER_LOOP.replace("{period}", "100"), 500_000, 50_000, None),
)

#: (workload, engine, minimum ratio to the bare loop) the engines aim at: the
#: performance issue's goals for blocks, and issue 2's for interp.
TARGETS = ((COUNTDOWN, "blocks", 2.0), (ALU, "blocks", 1.3), (MEMORY, "blocks", 1.2),
           (TIMER_1000, "blocks", 1.3), (TIMER_100, "blocks", 0.8),
           (COUNTDOWN, "interp", 0.25))


@dataclass
class Row:
    workload: str
    engine: str
    instructions: int
    rate: float                 # guest instructions per second
    ratio: float                # rate / bare loop rate


@dataclass
class Results:
    quick: bool
    repeat: int
    bare: float                 # bare loop iterations per second
    rows: list[Row] = field(default_factory=list)
    py65: list[tuple[str, str, float, float, float]] = field(default_factory=list)
    py65_note: str = ""


#: calls after which CPython 3.11 has specialized a function (its warm-up
#: delay is 8); more do no harm on any version
WARMUP_CALLS = 16


def bare_loop(n: int) -> None:
    i = 0
    while i < n:
        i += 1


class BareLoop:
    """The bare CPython loop rate, sampled around every guest measurement.

    A busy shared machine changes speed from one second to the next (even in
    CPU time: caches and the sibling hyperthread are shared), so each guest
    run is timed between two bare-loop samples and its ratio is taken against
    their mean. ``best`` is the best sample of the whole run (for reference).
    """

    def __init__(self, n: int):
        self.n = n
        self.best = 0.0
        self.samples = 0
        # CPython 3.11 specializes a function's bytecode only once it has been
        # called WARMUP_CALLS times (a ``while`` loop's way back does not
        # count), and the loop runs about 1.6 x faster after that: warm it up
        # first, or the first samples measure a slower loop than the rest
        for _ in range(WARMUP_CALLS):
            bare_loop(1)

    def sample(self) -> float:
        start = _clock()
        bare_loop(self.n)
        rate = self.n / (_clock() - start)
        self.best = max(self.best, rate)
        self.samples += 1
        return rate


def guest_run(image, engine: str, expect: bytes | None = None) -> tuple[int, float]:
    """(ticks, seconds) of one run of ``image`` to ``halt`` on a fresh machine.

    For the blocks engine the compiled-code cache is emptied first, so the
    time includes compiling every region, as on a first run."""
    if engine == "blocks":
        from .engine import blocks
        blocks.clear_code_cache()
    m = Machine(image, console_sink=BufferSink(), console_input=ConsoleInput(),
                engine=engine)
    start = _clock()
    stop = m.run()
    elapsed = _clock() - start
    if stop.reason != "halt":
        raise RuntimeError(f"benchmark guest stopped with {stop}")
    if expect is not None and bytes(m.console.sink.data) != expect:
        raise RuntimeError(f"benchmark guest printed {bytes(m.console.sink.data)!r}, "
                           f"expected {expect!r}")
    return m.tick, elapsed


def guest_rate(source: str, engine: str, repeat: int, expect: bytes | None = None,
               bare: BareLoop | None = None) -> tuple[int, float, float]:
    """(ticks, instructions/s, ratio to the bare loop) of the best of ``repeat``
    runs of ``source``: the run with the best ratio to the bare-loop samples
    taken just before and just after it (without ``bare``: the fastest run)."""
    image = assemble(source, "bench.asm")
    best = (0.0, 0.0)
    ticks = 0
    for _ in range(repeat):
        before = bare.sample() if bare is not None else 1.0
        ticks, elapsed = guest_run(image, engine, expect)
        after = bare.sample() if bare is not None else 1.0
        rate = ticks / elapsed
        best = max(best, (rate / ((before + after) / 2), rate))
    return ticks, best[1], best[0]


# --- py65, the optional peer ---------------------------------------------------------

#: 6502 countdown: LDX #0; LDY #n; loop: DEX; BNE loop; DEY; BNE loop; (end)
def _py65_countdown(outer: int) -> tuple[int, bytes]:
    return 0x20A, bytes([0xA2, 0x00, 0xA0, outer, 0xCA, 0xD0, 0xFD, 0x88, 0xD0, 0xFA])


#: 6502 copy of 16 pages (4 KiB) from $1000 to $4000 through ($10),Y / ($12),Y:
#: LDX #16; LDY #0; loop: LDA ($10),Y; STA ($12),Y; INY; BNE loop;
#: INC $11; INC $13; DEX; BNE loop; (end)
def _py65_copy() -> tuple[int, bytes]:
    return 0x212, bytes([0xA2, 0x10, 0xA0, 0x00, 0xB1, 0x10, 0x91, 0x12, 0xC8, 0xD0,
                         0xF9, 0xE6, 0x11, 0xE6, 0x13, 0xCA, 0xD0, 0xF2])


def _py65_rate(program: tuple[int, bytes], rounds: int, repeat: int) -> tuple[int, float]:
    """(instructions, best instructions/s) of ``rounds`` runs of a 6502 program."""
    from py65.devices.mpu6502 import MPU
    end, code = program

    def fresh():
        mpu = MPU(pc=0x200)
        mpu.memory[0x200:0x200 + len(code)] = list(code)
        mpu.memory[0x10:0x14] = [0x00, 0x10, 0x00, 0x40]
        for i in range(4096):
            mpu.memory[0x1000 + i] = i & 0xFF
        return mpu

    mpu = fresh()                      # count the instructions of one round
    per_round = 0
    while mpu.pc != end:
        mpu.step()
        per_round += 1
    total = per_round * rounds
    best = float("inf")
    for _ in range(repeat):
        mpus = [fresh() for _ in range(rounds)]
        start = _clock()
        for mpu in mpus:
            step = mpu.step
            for _ in range(per_round):
                step()
        elapsed = _clock() - start
        if any(mpu.pc != end for mpu in mpus):
            raise RuntimeError("py65 benchmark did not end where expected")
        best = min(best, elapsed)
    return total, total / best


# --- the run ------------------------------------------------------------------------------

def measure(quick: bool = False, repeat: int | None = None) -> Results:
    repeat = repeat or (2 if quick else 5)
    bare = BareLoop(300_000 if quick else 1_000_000)
    results = Results(quick, repeat, 0.0)
    for name, source, full, small, expect in WORKLOADS:
        n = small if quick else full
        for engine in ENGINES:
            ticks, rate, ratio = guest_rate(source.format(n=n), engine, repeat, expect, bare)
            results.rows.append(Row(name, engine, ticks, rate, ratio))
    results.bare = bare.best
    try:
        import py65  # noqa: F401
    except ImportError:
        results.py65_note = "py65 is not installed (pip install py65): no 6502 comparison"
        return results
    rounds = 1 if quick else 8
    peers = (("countdown", _py65_countdown(40 if quick else 255), COUNTDOWN_LOOP,
              20_000 if quick else 500_000),
             ("copy 4 KiB", _py65_copy(), COPY_LOOP, rounds))
    for name, program, source, n in peers:
        _, py65_rate = _py65_rate(program, rounds, repeat)
        for engine in ENGINES:
            _, rate, _ = guest_rate(source.format(n=n), engine, repeat)
            results.py65.append((name, engine, rate, py65_rate, rate / py65_rate))
    return results


def row(r: Results, workload: str, engine: str) -> Row:
    return next(x for x in r.rows if x.workload == workload and x.engine == engine)


def format_results(r: Results) -> str:
    out = [f"minivm bench{' --quick' if r.quick else ''}: Python {platform.python_version()} "
           f"({sys.implementation.name}), best of {r.repeat} runs each, CPU time",
           f"bare CPython loop (i = 0; while i < n: i += 1): {r.bare / 1e6:.1f} M iterations/s "
           "(best sample)",
           "x bare = guest instructions/s / mean of the bare-loop rates timed just before "
           "and just after that run", ""]
    head = f"{'workload':<26} {'engine':<7} {'instructions':>12} {'M instr/s':>10} {'x bare':>7}"
    out += [head, "-" * len(head)]
    for x in r.rows:
        out.append(f"{x.workload:<26} {x.engine:<7} {x.instructions:>12,} "
                   f"{x.rate / 1e6:>10.2f} {x.ratio:>7.2f}")
    out.append("")
    for name, *_ in WORKLOADS:
        out.append(f"blocks / interp on {name}: "
                   f"{row(r, name, 'blocks').rate / row(r, name, 'interp').rate:.2f}x")
    out.append("")
    i2 = row(r, COUNTDOWN, "interp")
    out.append(f"issue 2: interp on a tight guest loop (sub/bne, {i2.instructions:,} "
               f"instructions): {i2.ratio:.2f} x bare loop (target >= 0.25)")
    if r.quick:
        out.append("(--quick: runs of ~100,000 instructions, where compiling weighs much more "
                   "than in a full run; judge the targets on a full run)")
    for workload, engine, goal in TARGETS:
        x = row(r, workload, engine)
        out.append(f"target: {engine} on {workload} >= {goal} x bare: {x.ratio:.2f} "
                   f"({'met' if x.ratio >= goal else 'NOT met'})")
    out.append("")
    if r.py65:
        out.append(f"{'py65 peer (6502)':<26} {'engine':<7} {'minivm M/s':>10} {'py65 M/s':>9} "
                   f"{'minivm/py65':>11}")
        for name, engine, rate, peer, ratio in r.py65:
            out.append(f"{name:<26} {engine:<7} {rate / 1e6:>10.2f} {peer / 1e6:>9.2f} "
                       f"{ratio:>11.2f}")
        out.append("(instructions per second; target: blocks >= 5 x py65)")
    else:
        out.append(r.py65_note)
    return "\n".join(out)


def main(quick: bool = False) -> int:
    print(format_results(measure(quick)), flush=True)
    return 0


if __name__ == "__main__":          # pragma: no cover
    sys.exit(main("--quick" in sys.argv[1:]))
