"""Time-travel benchmark (issue 15's targets), in one run:

    python benchmarks/timetravel.py [--ticks 12000000] [--engine blocks] [--jumps 20]

A guest runs --ticks ticks: a loop that updates a table spread over 64 pages,
with a timer interrupt every 1,000 ticks whose handler counts in memory, so
memory, the timer phase and pending interrupts all change as it goes.

* Forward speed with the history recording (the REPL's default: adaptive
  spacing, default budget) against the same run without it: --repeat rounds
  of (without, with, without) in this process, each round's ratio against
  its two neighbours, and the median: target >= 0.85. Also the host time the
  snapshots themselves took.
* The history's memory against its budget (default: the guest's touched
  memory + 64 MiB).
* --jumps random ticks of the run, in random order: the time of ``goto``
  there (target <= 0.5 s), then of ``reverse-step`` from there (target
  <= 100 ms), each checked against the tick it must reach.

Host times are noisy on shared machines: compare ratios and maxima within
one run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minivm.assembler import assemble            # noqa: E402
from minivm.checkpoint import Checkpointer        # noqa: E402
from minivm.history import History                # noqa: E402
from minivm.machine import Machine                # noqa: E402
from minivm.memory import format_size            # noqa: E402
from minivm.store import MemoryStore              # noqa: E402

GUEST = """
.data
ticks:  .word 0
table:  .space 262144          ; 64 pages
.text
        out 0x11, on_timer
        out 0x10, 1000
        ei
        mov r1, 0              ; index
        mov r2, 0              ; running value
loop:
        add r2, r2, 7
        and r3, r1, 65535      ; a word in the 64 pages
        shl r3, r3, 2
        st  r2, [r3 + table]
        add r1, r1, 4099       ; stride across pages
        jmp loop
on_timer:
        push r5
        ld r5, [ticks]
        add r5, r5, 1
        st r5, [ticks]
        pop r5
        iret
"""


def machine(image, engine: str, history: bool):
    m = Machine(image, memory_size=1 << 20, engine=engine)
    cp = Checkpointer(m, MemoryStore())
    h = History(m, cp) if history else None
    return m, h


def forward(image, engine, ticks, history) -> tuple[float, object, object]:
    m, h = machine(image, engine, history)
    start = time.perf_counter()
    m.run(max_ticks=ticks)
    return time.perf_counter() - start, m, h


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ticks", type=int, default=12_000_000)
    p.add_argument("--engine", default="blocks")
    p.add_argument("--jumps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args()
    image = assemble(GUEST, "timetravel-guest.asm")
    forward(image, args.engine, 200_000, False)            # warm up the CPU
    plain, recorded, ratios = [], [], []
    for _ in range(args.repeat):          # plain, recorded, plain: each ratio from neighbours
        a = forward(image, args.engine, args.ticks, False)[0]
        t, m, h = forward(image, args.engine, args.ticks, True)
        c = forward(image, args.engine, args.ticks, False)[0]
        plain += [a, c]
        recorded.append(t)
        ratios.append((a + c) / 2 / t)
    print(f"engine {args.engine}, {args.ticks:,} ticks; {args.repeat} rounds of plain, "
          "recorded, plain")
    print(f"forward without history: best {min(plain):.3f} s "
          f"({args.ticks / min(plain) / 1e6:.1f} M ticks/s)")
    print(f"forward with history:    best {min(recorded):.3f} s "
          f"({args.ticks / min(recorded) / 1e6:.1f} M ticks/s)")
    ratio = statistics.median(ratios)
    print(f"speed with history / without: median of the rounds {ratio:.2f} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.85: "
          f"{'met' if ratio >= 0.85 else 'NOT met'})")
    print(f"host time spent taking snapshots in the last recorded run: "
          f"{h.host_time * 1e3:.1f} ms of {recorded[-1] * 1e3:.0f} ms")
    used, budget = h.memory_used(), h.budget_bytes()
    print(f"history: {len(h.snapshots)} snapshots, interval now {h.interval} ticks, "
          f"{h.thinned} thinned; memory {format_size(used)} of a {format_size(budget)} budget "
          f"({'within' if used <= budget else 'OVER'}); touched memory "
          f"{format_size(m.memory.allocated * 4096)}")

    rng = random.Random(args.seed)
    end = m.tick
    worst_goto = worst_rs = 0.0
    for _ in range(args.jumps):
        k = rng.randrange(1, end)
        t0 = time.perf_counter()
        h.goto(k)
        t1 = time.perf_counter()
        assert m.tick == k, (m.tick, k)
        back = h.instruction_back(k, 1)
        h.goto(back)
        t2 = time.perf_counter()
        assert m.tick == back
        worst_goto, worst_rs = max(worst_goto, t1 - t0), max(worst_rs, t2 - t1)
    print(f"{args.jumps} jumps to random ticks: goto at most {worst_goto * 1e3:.0f} ms "
          f"(target <= 500: {'met' if worst_goto <= 0.5 else 'NOT met'}), reverse-step after "
          f"it at most {worst_rs * 1e3:.0f} ms (target <= 100: "
          f"{'met' if worst_rs <= 0.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
