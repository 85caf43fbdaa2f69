"""How fast can the blocks engine's translation go? Its hot loops alone.

`minivm bench` times whole runs: the driver, compiling, the trips between
regions and the last ticks before each deadline are all in its figures.
This script asks what is left when all of that is taken away, for the
register and memory workloads of `minivm bench` (docs/performance.md,
"What limits each workload"). In one run, interleaved with samples of the
bare CPython loop (minivm.bench.BareLoop), best of N:

* **whole run**: the workload as `minivm bench` runs it (blocks);
* **region alone**: the very function the blocks engine compiled for the
  hot loop, called directly with a deadline far away, so that one call runs
  tens of thousands of guest instructions: no driver, no compiling, no
  deadline inside the loop. Nothing outside the region can make the
  workload faster than this;
* **least Python**: the same loop written by hand in the fewest bytecodes
  we know that still do what the guest's instructions do (a register add,
  a byte load through the page table, a byte store through the write table
  with its copy-on-write test), with no clock, no exits and no wrap to 32
  bits. The register loops test their counter once per four iterations,
  as the engine's groups do; the sieve's loops test it every iteration
  (groups measured no gain there: the store and the load dominate).
  Every guest instruction is still done, one by one (no step computes
  several iterations at once), but for the sieve's search for the next
  prime, whose bytes ``bytearray.find`` reads in C, as the engine's scans
  do (docs/performance.md, "Scans").

The sieve has two hot loops (the inner loop that marks multiples, 53 % of
its instructions, and the outer loop over the table, 41 %); each is
measured on its own.

    python benchmarks/ceiling.py              # best of 7
    python benchmarks/ceiling.py --repeat 3
    python benchmarks/ceiling.py --count      # bytecodes, exact
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minivm import bench  # noqa: E402
from minivm.assembler import assemble  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.engine import blocks  # noqa: E402
from minivm.machine import Machine  # noqa: E402

_clock = time.process_time


# --- the regions the blocks engine compiled ----------------------------------------------

def _compiled(source: str):
    """A machine that ran ``source`` to its halt on blocks, so that its hot
    regions are compiled, and the table of its code labels."""
    m = Machine(assemble(source, "ceiling.asm"), console_sink=BufferSink(),
                console_input=ConsoleInput(), engine="blocks")
    stop = m.run()
    if stop.reason != "halt":
        raise RuntimeError(f"the warm-up run stopped with {stop}")
    labels = {name: value for name, (section, value) in m.image.symbols.items()
              if section == "text"}
    return m, labels


def _region(m, pc: int):
    regions = blocks.state_of(m).regions
    if pc not in regions:
        raise RuntimeError(f"the blocks engine compiled no region at pc {pc} "
                           f"(it has {sorted(regions)})")
    return regions[pc][0]


def _call(m, fn, regs: dict[int, int], ticks: int) -> int:
    """Call a region once with the given registers and a deadline ``ticks``
    away; the guest ticks it ran (exact: the region's own clock)."""
    r = list(m.regs)
    for index, value in regs.items():
        r[index] = value
    memory = m.memory
    _, t = fn(r, memory.pages, memory.writable, 0, ticks, memory.load_miss, memory.store_miss)
    return t


# --- the least Python for each loop ------------------------------------------------------

def least_countdown(n: int) -> int:
    """sub r1, r1, 1 / bne r1, 0, loop: four iterations per test, as the
    engine's groups run it (the last few iterations are left out)."""
    r1 = n
    while r1 > 4:
        r1 = r1 - 1
        r1 = r1 - 1
        r1 = r1 - 1
        r1 = r1 - 1
    return 2 * (n - r1)


def least_alu(n: int) -> int:
    """add r2, r2, r1 / xor r3, r3, r2 / sub r1, r1, 1 / bne r1, 0, loop, four
    iterations per test; r2 and r3 soon hold more than 30 bits (CPython's
    two-digit ints) and are not wrapped to 32 bits (the region does not wrap
    them either)."""
    r1, r2, r3 = n, 0, 0
    while r1 > 4:
        r2 = r2 + r1
        r3 = r3 ^ r2
        r1 = r1 - 1
        r2 = r2 + r1
        r3 = r3 ^ r2
        r1 = r1 - 1
        r2 = r2 + r1
        r3 = r3 ^ r2
        r1 = r1 - 1
        r2 = r2 + r1
        r3 = r3 ^ r2
        r1 = r1 - 1
    return 4 * (n - r1)


def least_sieve_inner(wr: list, rounds: int) -> int:
    """stb r4, [r3 + table] / add r3, r3, r1 / bge r3, LIMIT, next / jmp inner
    (step r1 = 1: 8192 iterations a round), as the region's runs do it: the
    page looked up through the write table (its copy-on-write test) once a
    page, then each iteration's store, one by one, at an offset ``range``
    steps."""
    r4 = 1
    for _ in range(rounds):
        r1, r3 = 1, 0
        while r3 < 8192:
            page = wr[r3 >> 12] or None
            o = r3 & 4095
            n = min((4096 - o + r1 - 1) // r1, (8192 - r3 + r1 - 1) // r1)
            v = r4 & 255
            for o in range(o, o + n * r1, r1):
                page[o] = v
            r3 = r3 + n * r1
    return rounds * 8192 * 4


def least_sieve_outer(pg: list, rounds: int) -> int:
    """next: add r1, r1, 1 / jmp outer / outer: bge r1, LIMIT, counted /
    ldb r2, [r1 + table] / bne r2, 0, next, from r1 = 91 over the table a
    sieve leaves (0 at each prime), as the region's scan does it: the next
    zero byte found by ``find`` on its page (the page looked up through the
    page table with its miss test), then each prime's own path (add r5 /
    mul r3 / mov r4 / bge r3, LIMIT, next: its square is past the table)."""
    primes = sum(page.count(0, max(0, 92 - 4096 * i)) for i, page in enumerate(pg[:2]))
    for _ in range(rounds):
        r1, r5 = 92, 0
        while r1 < 8192:
            page = pg[r1 >> 12] or None
            o = r1 & 4095
            f = page.find(0, o)
            if f < 0:
                r1 = r1 + 4096 - o
                continue
            r1 = r1 + f - o                 # a prime: its path, then the next number
            r5 = r5 + 1
            r3 = r1 * r1
            r4 = 1
            if r3 < 8192:
                break
            r1 = r1 + 1
    return rounds * (5 * (8100 - primes) + 9 * primes + 3)


# --- the measurements ----------------------------------------------------------------------

def best_ratio(bare: bench.BareLoop, run, repeat: int) -> float:
    """The best, over ``repeat`` runs, of (instructions/s of ``run``) / (the
    mean of the bare-loop samples just before and just after it)."""
    best = 0.0
    run()                                               # warm up (specialization)
    for _ in range(repeat):
        before = bare.sample()
        start = _clock()
        instructions = run()
        elapsed = _clock() - start
        after = bare.sample()
        best = max(best, instructions / elapsed / ((before + after) / 2))
    return best


def whole_run(source: str, expect: bytes | None = None):
    image = assemble(source, "bench.asm")
    return lambda: bench.guest_run(image, "blocks", expect)[0]


def bytecodes(run) -> float:
    """Bytecodes executed per guest instruction by one call of ``run``
    (which returns the instructions it ran), counted exactly with
    ``sys.settrace`` opcode events: the same on any machine."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "opcode":
            count += 1
        return local

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        return local

    sys.settrace(tracer)
    try:
        instructions = run()
    finally:
        sys.settrace(None)
    return count / instructions


def counted_bare(n: int) -> int:
    bench.bare_loop(n)
    return n


class Timer:
    """best_ratio, or with ``count`` the bytecodes per guest instruction of one
    run (smaller workloads then: tracing is about 50 x slower)."""

    def __init__(self, repeat: int, count: bool):
        self.repeat, self.count = repeat, count
        if not count:
            self.bare = bench.BareLoop(1_000_000)
            for _ in range(10):                         # warm the CPU up
                self.bare.sample()

    def __call__(self, run) -> float:
        return bytecodes(run) if self.count else best_ratio(self.bare, run, self.repeat)


def measure(repeat: int, count: bool = False) -> list[tuple[str, float, float, float, float]]:
    timed = Timer(repeat, count)
    scale = 20 if count else 1
    rows = []

    if count:
        rows.append(("bare loop (per iteration)", float("nan"),
                     timed(lambda: counted_bare(50_000)), float("nan"), float("nan")))

    # countdown: the loop region, 1.5 M iterations in one call
    n = 1_500_000 // scale
    source = bench.COUNTDOWN_LOOP.format(n=n)
    m, labels = _compiled(bench.COUNTDOWN_LOOP.format(n=1000))
    fn = _region(m, labels["loop"])
    rows.append((bench.COUNTDOWN, float("nan") if count else timed(whole_run(source)),
                 timed(lambda: _call(m, fn, {1: n}, 2 * n + 8)),
                 timed(lambda: least_countdown(n)), 2.0))

    # ALU loop: the same
    n = 750_000 // scale
    source = bench.ALU_LOOP.format(n=n)
    m, labels = _compiled(bench.ALU_LOOP.format(n=1000))
    fn = _region(m, labels["loop"])
    rows.append((bench.ALU, float("nan") if count else timed(whole_run(source)),
                 timed(lambda: _call(m, fn, {1: n, 2: 0, 3: 0}, 4 * n + 8)),
                 timed(lambda: least_alu(n)), 1.3))

    # sieve: each hot loop's region, on the table a whole sieve leaves (1 at
    # every composite, 0 at every prime)
    expect = next(w[4] for w in bench.WORKLOADS if w[0] == bench.MEMORY)
    source = bench.SIEVE_LOOP.format(n=16)
    m, labels = _compiled(bench.SIEVE_LOOP.format(n=2))
    inner = _region(m, labels["inner"] + 1)             # rooted after the test (rotation)
    outer = _region(m, labels["next"])
    whole = float("nan") if count else timed(whole_run(source, expect))
    calls = 16 // scale + 1
    # inner: step 1 from 0, so one call marks all 8192 bytes (every byte is
    # then 1), goes on to the outer loop's test of 2 and leaves at `next`
    table_pages = [m.memory.writable[0], m.memory.writable[1]]
    if None in table_pages:
        raise RuntimeError("the sieve's table is not writable in place after its run")

    def inner_run():
        return sum(_call(m, inner, {1: 1, 3: 0, 4: 1, 7: 2}, 1 << 20) for _ in range(calls))

    def outer_run():
        # from r1 = 91 (past the last prime whose square is inside the table)
        # to the end of the table: the outer loop's own mix of composites and
        # primes, then its way out; the table is the one a sieve leaves
        return sum(_call(m, outer, {1: 91, 7: 2}, 1 << 20) for _ in range(calls))

    # the outer loop first, while the table holds the sieve's result
    outer_alone = timed(outer_run)
    rows.append((bench.MEMORY + ", outer loop", whole, outer_alone,
                 timed(lambda: least_sieve_outer(table_pages, calls)), 1.2))
    inner_alone = timed(inner_run)
    rows.append((bench.MEMORY + ", inner loop", whole, inner_alone,
                 timed(lambda: least_sieve_inner(table_pages, calls)), 1.2))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each, best kept (7)")
    parser.add_argument("--count", action="store_true",
                        help="count bytecodes per guest instruction instead of timing "
                             "(exact, the same on every run and machine)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    rows = measure(args.repeat, args.count)
    if args.count:
        bare = rows[0][2]
        print(f"bytecodes executed per guest instruction (sys.settrace opcode events, before "
              f"CPython's specialization; the bare loop: {bare:.2f} per iteration). They are "
              "exact, for comparing two versions of a region; they are not times: CPython "
              "bytecodes differ in cost, and the bare loop's are among the cheapest")
        head = f"{'workload':<36} {'region alone':>12} {'least Python':>12}"
        print(head)
        print("-" * len(head))
        for name, _, alone, least, goal in rows[1:]:
            print(f"{name:<36} {alone:>12.2f} {least:>12.2f}")
        return 0
    print(f"ceiling of the blocks translation: Python {platform.python_version()} "
          f"({sys.implementation.name}), best of {args.repeat}, CPU time, x the bare loop "
          "sampled around each run")
    head = f"{'workload':<36} {'whole run':>9} {'region alone':>12} {'least Python':>12} {'goal':>5}"
    print(head)
    print("-" * len(head))
    for name, whole, alone, least, goal in rows:
        print(f"{name:<36} {whole:>9.2f} {alone:>12.2f} {least:>12.2f} {goal:>5.1f}")
    print("whole run: as `minivm bench` runs it; region alone: the compiled hot loop, "
          "called directly; least Python: the loop by hand, fewest bytecodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
