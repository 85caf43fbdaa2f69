"""Real-sized guest programs on both engines, against the bare CPython loop.

Issue 14 asks for a benchmark on real guest programs, not only loops. The
guests are in benchmarks/guests/ (sort.asm: xorshift fill and a recursive
quicksort; bf.asm: a Brainf*** interpreter; checksum.asm: CRC-32 of disk
blocks read by DMA with 4 requests in flight). In one run, for each guest:

* it runs on ``interp`` and on ``blocks``, each time on a fresh Machine (the
  blocks compiled-code cache emptied first, as ``minivm bench`` does, so a
  run pays for compiling its code), best of N runs;
* both engines must give the output computed in Python
  (benchmarks/guests/guests.py), and identical ticks, pc, registers, every
  byte of memory and the disk contents;
* the bare loop (minivm.bench.BareLoop) is timed just before and just after
  every run; the run's ratio is against the mean of the two samples.

Durations are CPU time of the process. The CPU is warmed up for about a
second first. ``--profile`` also profiles one blocks run of each guest with
cProfile and prints the functions with the most time.

    python benchmarks/programs.py            # full sizes, best of 5
    python benchmarks/programs.py --quick    # small sizes, best of 2
    python benchmarks/programs.py --profile  # and a cProfile of each blocks run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "guests"))

from guests import GUESTS, Guest  # noqa: E402

from minivm.assembler import assemble  # noqa: E402
from minivm.bench import BareLoop, _clock  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.disks import open_disk  # noqa: E402
from minivm.engine import ENGINES, blocks  # noqa: E402
from minivm.machine import Machine  # noqa: E402


def new_machine(guest: Guest, image, size: int, engine: str, folder: str) -> Machine:
    """A fresh machine for one run, with a fresh copy of the guest's disk."""
    disk = None
    if guest.disk is not None:
        path = os.path.join(folder, f"{guest.name}-{engine}.img")
        with open(path, "wb") as f:
            f.write(guest.disk(size))
        disk = open_disk(path)
    if engine == "blocks":
        blocks.clear_code_cache()
    return Machine(image, disk=disk, console_sink=BufferSink(), console_input=ConsoleInput(),
                   engine=engine)


def state(m: Machine) -> dict:
    """Everything the engines must agree on after a run."""
    memory = m.memory
    backing = m.disk.backing
    return {
        "output": bytes(m.console.sink.data),
        "tick": m.tick,
        "pc": m.pc,
        "regs": list(m.regs),
        "memory": {i: memory.page_bytes(i) for i in memory.nonzero_page_indexes()},
        "disk": None if backing is None else backing.read_blocks(0, backing.block_count),
    }


def close(m: Machine) -> None:
    if m.disk.backing is not None:
        for layer in m.disk.backing.chain():
            layer.close()


def run_once(guest: Guest, image, size: int, engine: str, folder: str,
             profile: cProfile.Profile | None = None) -> tuple[dict, float]:
    m = new_machine(guest, image, size, engine, folder)
    try:
        if profile is not None:
            profile.enable()
        start = _clock()
        stop = m.run()
        elapsed = _clock() - start
        if profile is not None:
            profile.disable()
        if stop.reason != "halt":
            raise SystemExit(f"error: {guest.file} on {engine} stopped with {stop}, not halt")
        return state(m), elapsed
    finally:
        close(m)


def measure(guest: Guest, size: int, repeat: int, bare: BareLoop, folder: str) -> dict:
    image = assemble(guest.source(size), str(guest.path))
    expected = guest.expected(size)
    row = {"guest": guest, "size": size}
    final = {}
    for engine in ENGINES:
        best = (0.0, 0.0)
        for _ in range(repeat):
            before = bare.sample()
            st, elapsed = run_once(guest, image, size, engine, folder)
            after = bare.sample()
            rate = st["tick"] / elapsed
            best = max(best, (rate / ((before + after) / 2), rate))
        if st["output"] != expected:
            raise SystemExit(f"error: {guest.file} on {engine} printed {st['output'][-200:]!r}, "
                             f"expected {expected[-200:]!r}")
        final[engine] = st
        row[engine] = best
    a, b = final["interp"], final["blocks"]
    differ = [key for key in a if a[key] != b[key]]
    if differ:
        raise SystemExit(f"error: {guest.file}: the engines differ in {', '.join(differ)}")
    row["instructions"] = a["tick"]
    return row


def profile_blocks(guest: Guest, size: int, folder: str, top: int) -> str:
    image = assemble(guest.source(size), str(guest.path))
    profile = cProfile.Profile()
    run_once(guest, image, size, "blocks", folder, profile)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [x for x in out.getvalue().splitlines() if x.strip()]
    start = next(i for i, x in enumerate(lines) if "ncalls" in x)
    total = next((x.strip() for x in lines if "function calls" in x), "")
    return "\n".join([f"--- cProfile of {guest.file} (size {size}) on blocks: {total}"]
                     + lines[start:])


def warm_up(bare: BareLoop, seconds: float = 1.0) -> None:
    start = _clock()
    while _clock() - start < seconds:
        bare.sample()


def table(rows: list[dict], bare: BareLoop, repeat: int, quick: bool) -> str:
    out = [f"benchmarks/programs.py{' --quick' if quick else ''}: Python "
           f"{platform.python_version()}, best of {repeat} runs each, CPU time; bare CPython "
           f"loop best sample {bare.best / 1e6:.1f} M iterations/s",
           "x bare = guest instructions/s / mean of the bare-loop rates timed just before "
           "and just after that run", ""]
    head = (f"{'program':<13} {'size':>6} {'lines':>5} {'instructions':>12} {'interp M/s':>10} "
            f"{'blocks M/s':>10} {'interp x bare':>13} {'blocks x bare':>13} "
            f"{'blocks/interp':>13}")
    out += [head, "-" * len(head)]
    for r in rows:
        g = r["guest"]
        (ir, ii), (br, bi) = r["interp"], r["blocks"]
        out.append(f"{g.file:<13} {r['size']:>6} {g.lines():>5} {r['instructions']:>12,} "
                   f"{ii / 1e6:>10.2f} {bi / 1e6:>10.2f} {ir:>13.2f} {br:>13.2f} "
                   f"{bi / ii:>13.2f}")
    out.append("")
    out.append("both engines: output as computed in Python; identical ticks, pc, registers, "
               "memory and disk")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the real-sized guests of benchmarks/guests/ on both engines and "
                    "compare their speed with the bare CPython loop, in one run.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and best of 2 (a few seconds)")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="best of N runs per guest and engine (default 5; 2 with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one blocks run of each guest with cProfile")
    parser.add_argument("--top", type=int, default=15, metavar="N",
                        help="functions shown per profile (default 15)")
    parser.add_argument("--only", choices=[g.name for g in GUESTS], action="append",
                        help="run only this guest (may be repeated)")
    args = parser.parse_args(argv)
    if (args.repeat is not None and args.repeat < 1) or args.top < 1:
        parser.error("--repeat and --top must be at least 1")
    repeat = args.repeat or (2 if args.quick else 5)
    guests = [g for g in GUESTS if not args.only or g.name in args.only]
    bare = BareLoop(300_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="minivm-programs-") as folder:
        warm_up(bare, 0.5 if args.quick else 1.0)
        rows = [measure(g, g.quick if args.quick else g.full, repeat, bare, folder)
                for g in guests]
        print(table(rows, bare, repeat, args.quick), flush=True)
        if args.profile:
            for g in guests:
                print()
                print(profile_blocks(g, g.quick if args.quick else g.full, folder, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
