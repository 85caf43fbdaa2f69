"""Checkpoint benchmark: pause, guest speed during a save, file size; and a
checkpoint's whole life at scale (run, inspect, resume), in one run.

    python benchmarks/checkpoint.py [--sizes 1,16,64,256] [--engine interp]
                                    [--scale 1,256,1024] [--scale-engine blocks]

For each amount of touched guest memory (MiB) in --sizes:

* the COW pause (P2: stop -> resume) and the stop-and-copy pause, and their ratio;
* guest instructions per second while a background save is in progress,
  against the same loop with no save running (the same process, back to back);
* the checkpoint file size against the touched pages.

For each size in --scale (touched MiB; 4096 needs about 10 GiB of RAM and disk),
with a guest that touches that much memory, checkpoints, then reads every
page once and halts:

* ``minivm run`` (with the checkpoint), ``minivm inspect --json`` and
  ``minivm resume`` (lazy, then --eager), each a child process: peak RSS
  (the kernel's ru_maxrss) and wall time; the pause the checkpoint recorded;
* resume to the first instruction, in this process (read_checkpoint +
  resume), lazy and eager, against reading the file whole and unpacking it
  as one msgpack object (the least a read-it-all design must do);
* the checkpoint's write throughput (MiB/s, the whole background save to a
  complete, fsynced file) against a plain sequential ``write()`` of as many
  bytes, fsynced, on the same file system.

Host times are noisy on shared machines: compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minivm.assembler import assemble  # noqa: E402
from minivm.checkpoint import Checkpointer  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.machine import Machine  # noqa: E402
from minivm.resume import read_checkpoint, resume  # noqa: E402
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


# --- a checkpoint's whole life at scale ---------------------------------------------------------

# Touch `pages` pages (one word each), checkpoint, then read one word of every
# page (a resumed run reads them all: a lazy resume loads every page), halt.
SCALE_GUEST = """
        mov r1, 0
touch:  shl r2, r1, 12
        add r3, r1, 1
        st r3, [r2]
        add r1, r1, 1
        blt r1, {pages}, touch
        ckpt
        mov r1, 0
        mov r5, 0
sum:    shl r2, r1, 12
        ld r3, [r2]
        add r5, r5, r3
        add r1, r1, 1
        blt r1, {pages}, sum
        halt
"""
MINIVM = [sys.executable, "-m", "minivm"]


def _peak_of(args: list[str], cwd: str, status: int = 0) -> tuple[float, float, str]:
    """Peak RSS of one child, measured alone: a fresh interpreter reports it
    (RUSAGE_CHILDREN would report the largest child so far)."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "p = subprocess.run(sys.argv[1:], capture_output=True); "
             "w = time.perf_counter() - t; "
             "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
             "sys.stderr.write(p.stderr.decode(errors='replace')); "
             "sys.stdout.write(f'{r} {w} {p.returncode}\\n' + p.stdout.decode())")
    proc = subprocess.run([sys.executable, "-c", probe] + MINIVM + args, cwd=cwd,
                          capture_output=True, text=True)
    first, _, rest = proc.stdout.partition("\n")
    rss, wall, code = first.split()
    if int(code) != status:
        raise SystemExit(f"minivm {' '.join(args)} failed: {proc.stderr}")
    return int(rss) / 1024, float(wall), rest


def _plain_write(path: str, total: int) -> float:
    """Seconds to write ``total`` bytes sequentially (1 MiB writes) and fsync."""
    chunk = os.urandom(1 << 20)
    start = time.perf_counter()
    with open(path, "wb") as f:
        left = total
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - start
    os.unlink(path)
    return seconds


def _write_throughput(pages: int, engine: str, folder: str) -> tuple[float, float]:
    """(checkpoint MiB/s, plain write MiB/s): the whole save of ``pages``
    touched pages, from the ckpt to a complete file, against a plain write."""
    m = _machine(pages, engine, cow=False)
    _touch(m, pages)
    cp = Checkpointer(m, FileStore(os.path.join(folder, "throughput")), pages_per_slice=1 << 30)
    start = time.perf_counter()
    m.run(1)                                   # the ckpt: P2, then
    cp.sync()                                  # every page, the index, fsync, rename
    seconds = time.perf_counter() - start
    job = cp.jobs[0]
    assert job.status == "complete", job.progress()
    size = job.bytes_written
    os.unlink(job.location)
    del m, cp
    plain = _plain_write(os.path.join(folder, "plain.bin"), size)
    return size / MIB / seconds, size / MIB / plain


def _first_instruction(path: str, eager: bool, folder: str) -> float:
    """Seconds from nothing to a machine ready to run its first instruction."""
    start = time.perf_counter()
    machine, _ = resume(read_checkpoint(path), FileStore(folder), eager=eager)
    seconds = time.perf_counter() - start
    del machine
    return seconds


def _unpack_whole(path: str) -> float:
    """Seconds to read the file whole and msgpack-unpack it as bin objects of
    at most 1 GiB (what a reader that takes the file in one piece must do at
    least; msgpack's bin objects end at 4 GiB). Packing is not timed."""
    import msgpack
    start = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    seconds = time.perf_counter() - start
    for at in range(0, len(data), 1 << 30):
        packed = msgpack.packb(data[at:at + (1 << 30)])
        start = time.perf_counter()
        msgpack.unpackb(packed, raw=False)
        seconds += time.perf_counter() - start
        del packed
    return seconds


def scale(size_mib: int, engine: str, folder: str) -> dict:
    pages = size_mib * MIB // 4096
    here = os.path.join(folder, f"scale-{size_mib}")
    os.makedirs(here)
    with open(os.path.join(here, "guest.asm"), "w") as f:
        f.write(SCALE_GUEST.format(pages=pages))
    mem = f"{max(size_mib, 1) + 1}M" if size_mib < 4096 else "4G"
    if size_mib >= 4096:         # all 4 GiB: the stack's page is touched too
        pages = 4096 * MIB // 4096 - 1
        with open(os.path.join(here, "guest.asm"), "w") as f:
            f.write(SCALE_GUEST.format(pages=pages))
    out = {"mib": size_mib}
    out["run_rss"], out["run_wall"], _ = _peak_of(
        ["run", "guest.asm", "--mem", mem, "--engine", engine, "--checkpoint-dir", "ck"], here)
    ckpt = os.path.join(here, "ck", "ckpt-0001.mvc")
    out["file"] = os.path.getsize(ckpt)
    out["inspect_rss"], out["inspect_wall"], text = _peak_of(["inspect", "--json", ckpt], here)
    info = json.loads(text)
    out["pause_us"], out["saved"] = info["pause_us"], info["pages"]
    for how, extra in (("lazy", []), ("eager", ["--eager"])):
        out[f"resume_{how}_rss"], out[f"resume_{how}_wall"], _ = _peak_of(
            ["resume", ckpt, "--engine", engine, "--checkpoint-dir", "ck2"] + extra, here)
        # the same, stopped by --max-steps 100 (exit status 4): the cost of getting going
        out[f"short_{how}_rss"], out[f"short_{how}_wall"], _ = _peak_of(
            ["resume", ckpt, "--engine", engine, "--checkpoint-dir", "ck2", "--max-steps",
             "100"] + extra, here, status=4)
        out[f"first_{how}"] = _first_instruction(ckpt, how == "eager", os.path.join(here, "ck3"))
    out["unpack"] = _unpack_whole(ckpt)
    out["write"], out["plain"] = _write_throughput(min(pages, 262144), engine, here)
    for name in os.listdir(os.path.join(here, "ck")):
        os.unlink(os.path.join(here, "ck", name))
    return out


def scale_table(sizes: list[int], engine: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("MINIVM_BENCH_DIR")) as folder:
        for size in sizes:
            rows.append(scale(size, engine, folder))
            print(f"  ({size} MiB measured)", file=sys.stderr)
    print()
    print(f"a checkpoint's life at scale, engine {engine}: each command a child process; "
          "the guest touches the memory, checkpoints,")
    print("then reads every page once and halts ('resume': to the end, every page read; "
          "'resume 100': stopped by --max-steps 100)")
    print()
    print("peak RSS (MiB), against the bound 1.25 x touched + 64 MiB")
    print(f"{'touched':>8} {'bound':>6} {'run+ckpt':>9} {'inspect':>8} {'resume':>7} "
          f"{'--eager':>8} {'resume 100':>11} {'--eager':>8}")
    for r in rows:
        print(f"{r['mib']:>5} MiB {1.25 * r['mib'] + 64:>6.0f} {r['run_rss']:>9.0f} "
              f"{r['inspect_rss']:>8.0f} {r['resume_lazy_rss']:>7.0f} "
              f"{r['resume_eager_rss']:>8.0f} {r['short_lazy_rss']:>11.0f} "
              f"{r['short_eager_rss']:>8.0f}")
    print()
    print("times: wall seconds of each command; pause = the stop window the checkpoint "
          "recorded; first instruction = read_checkpoint +")
    print("resume in this process, and its ratio to reading the file whole and unpacking "
          "it as one msgpack object; write = the whole save,")
    print("fsynced, against a plain fsynced write() of as many bytes (both at most 1 GiB)")
    print(f"{'touched':>8} {'run':>6} {'inspect':>8} {'resume 100':>11} {'--eager':>8} "
          f"{'pause':>9} {'first instr':>12} {'--eager':>9} {'/unpack':>8} "
          f"{'write MiB/s':>12} {'plain':>6}")
    for r in rows:
        print(f"{r['mib']:>5} MiB {r['run_wall']:>6.2f} {r['inspect_wall']:>8.2f} "
              f"{r['short_lazy_wall']:>11.2f} {r['short_eager_wall']:>8.2f} "
              f"{r['pause_us'] / 1e3:>6.3f} ms {r['first_lazy'] * 1e3:>9.1f} ms "
              f"{r['first_eager'] * 1e3:>6.0f} ms {r['first_lazy'] / r['unpack']:>8.3f} "
              f"{r['write']:>12.0f} {r['plain']:>6.0f}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64,256",
                        help="touched memory sizes in MiB (default 1,16,64,256)")
    parser.add_argument("--engine", default="interp", choices=("interp", "blocks"))
    parser.add_argument("--scale", default="1,256",
                        help="touched sizes in MiB for the whole-life table (default 1,256; "
                             "'' skips it)")
    parser.add_argument("--scale-engine", default="blocks", choices=("interp", "blocks"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not sizes:
        scale_table([int(s) for s in args.scale.split(",")], args.scale_engine)
        return 0
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
    if args.scale:
        scale_table([int(s) for s in args.scale.split(",")], args.scale_engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
