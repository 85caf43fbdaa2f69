"""Checkpoint benchmark: pause time, guest speed during a save, file size.

    python benchmarks/checkpoint.py [--sizes 1,16,64,256] [--engine interp]

For each amount of touched guest memory (MiB), in one run:

* the COW pause (P2: stop -> resume) and the stop-and-copy pause, and their ratio;
* guest instructions per second while a background save is in progress,
  against the same loop with no save running (the same process, back to back);
* the checkpoint file size against the touched pages.

Host times are noisy on shared machines: compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minivm.assembler import assemble  # noqa: E402
from minivm.checkpoint import Checkpointer  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.machine import Machine  # noqa: E402
from minivm.store import FileStore  # noqa: E402

MIB = 1 << 20

# Touch `pages` pages (one word each, value = page number + 1), then spin in a
# loop that, with cow=1, also stores into a new page every 64 iterations (so
# memory COW faults happen all through the save: a worst case), and with
# cow=0 only uses registers (the cost of the background save alone).
GUEST = """
        mov r1, 0
touch:  shl r2, r1, 12
        add r3, r1, 1
        st r3, [r2]
        add r1, r1, 1
        blt r1, {pages}, touch
        ckpt
        mov r1, 0
spin:   add r1, r1, 1
        and r4, r1, 0x3f
        bne r4, 0, spin
        beq r9, 0, spin
        shl r2, r1, 6
        and r2, r2, {mask}
        st r1, [r2]
        jmp spin
"""


def _machine(pages: int, engine: str, cow: bool = True) -> Machine:
    mem = max(pages * 4096 * 2, 4 * MIB)
    source = GUEST.format(pages=pages, mask=(pages * 4096 - 1) & ~0xFFF)
    source = source.replace("        mov r1, 0\nspin:", f"        mov r9, {int(cow)}\n        mov r1, 0\nspin:")
    return Machine(assemble(source, "bench.asm"), memory_size=mem,
                   console_sink=BufferSink(), console_input=ConsoleInput(), engine=engine)


def _touch(machine: Machine, pages: int) -> None:
    """Run the touch loop (5 instructions per page) and stop on the ckpt."""
    machine.run(1 + 5 * pages)
    assert machine.image.source_text(machine.pc).split()[0] == "ckpt", machine.pc


def measure(size_mib: int, engine: str, folder: str) -> dict:
    pages = size_mib * MIB // 4096
    out = {"mib": size_mib, "pages": pages}
    for mode, cow in (("cow", False), ("cow", True), ("stop-copy", True)):
        m = _machine(pages, engine, cow)
        _touch(m, pages)
        cp = Checkpointer(m, FileStore(os.path.join(folder, f"{size_mib}-{mode}-{cow}")), mode=mode)
        m.run(1)                              # the ckpt instruction
        job = cp.jobs[0]
        out[f"{mode}_pause"] = job.pause_seconds
        if mode == "cow":
            # Guest speed while the background save runs, then with none.
            ticks = 2_000_000 if engine == "interp" else 8_000_000
            t0 = time.process_time()
            m.run(ticks)
            during = ticks / (time.process_time() - t0)
            still_saving = job.status == "saving"
            cp.finish_all()
            t0 = time.process_time()
            m.run(ticks)
            after = ticks / (time.process_time() - t0)
            key = "cow_loop" if cow else "reg_loop"
            out[key] = during / after
            out[key + "_saving"] = still_saving
        cp.finish_all()
        out[f"{mode}_bytes"] = job.bytes_written
        out[f"{mode}_saved"] = job.pages_saved
        del m, cp
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64,256",
                        help="touched memory sizes in MiB (default 1,16,64,256)")
    parser.add_argument("--engine", default="interp", choices=("interp", "blocks"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"checkpoint benchmark, engine {args.engine}; times are host wall time")
    print("speed during save = guest instructions/s while the background save runs, over the")
    print("same loop with no save running; 'reg' = register-only loop, 'cow' = a loop that")
    print("also writes a new page every 64 iterations (a memory COW fault each time)")
    print(f"{'touched':>8} {'COW pause':>11} {'stop-copy':>11} {'ratio':>8} "
          f"{'speed reg':>10} {'speed cow':>10} {'file MiB':>9} {'bytes/page':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            r = measure(size, args.engine, folder)
            ratio = r["stop-copy_pause"] / r["cow_pause"]
            early = not (r["reg_loop_saving"] and r["cow_loop_saving"])
            print(f"{size:>5} MiB {r['cow_pause'] * 1e3:>8.3f} ms {r['stop-copy_pause'] * 1e3:>8.1f} ms "
                  f"{ratio:>7.0f}x {r['reg_loop'] * 100:>8.0f} % {r['cow_loop'] * 100:>8.0f} % "
                  f"{r['cow_bytes'] / MIB:>9.1f} {r['cow_bytes'] / max(r['cow_saved'], 1):>10.0f}"
                  + ("  (the save ended inside the window)" if early else ""))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
