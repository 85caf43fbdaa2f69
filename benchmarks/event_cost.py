"""What the event queue and the boundary cost the no-device loop.

    python benchmarks/event_cost.py

Runs the same register-only guest loop twice, best of 5 each, in one run:
through Machine.run() (deadline = next device event / host task / slice,
boundary between batches) and through the bare hot loop with one unbounded
deadline. The ratio is the share of speed the event machinery leaves.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minivm.assembler import assemble  # noqa: E402
from minivm.engine.reference import run_fast  # noqa: E402
from minivm.machine import Machine  # noqa: E402

N = 3_000_000
IMAGE = assemble(f"mov r1, {N}\nloop: sub r1, r1, 1\n add r2, r2, 3\n bne r1, 0, loop\n halt\n",
                 "loop.asm")


def timed(run) -> tuple[float, int]:
    machine = Machine(IMAGE)
    start = time.process_time()
    run(machine)
    return time.process_time() - start, machine.tick


def main() -> None:
    bare = full = float("inf")
    for _ in range(5):
        seconds, ticks = timed(lambda m: run_fast(m, 10 ** 12))
        bare = min(bare, seconds)
        seconds, _ = timed(lambda m: m.run())
        full = min(full, seconds)
    print(f"{ticks} guest instructions, best of 5 (CPU time)")
    print(f"bare hot loop, one deadline:        {ticks / bare / 1e6:6.2f} M instructions/s")
    print(f"Machine.run (events, boundaries):   {ticks / full / 1e6:6.2f} M instructions/s")
    print(f"ratio: {bare / full:.3f}")


if __name__ == "__main__":
    main()
