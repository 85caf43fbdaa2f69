"""How the assembler's time and memory grow with the size of its source.

    python benchmarks/assembler_scale.py              # 1, 5, 10, 50 MB, every shape
    python benchmarks/assembler_scale.py --sizes 1 5  # fewer sizes (MB)
    python benchmarks/assembler_scale.py --shapes labels

Three shapes of generated source, each at every size:

* ``mixed``: what a code generator writes: labelled code (one instruction in
  five lines has a label, every line a comment), .equ constants, and data
  tables (.word, .byte, .asciz lines of 8-16 items);
* ``line``: one ``.byte`` line holding all the items (a 10 MB line is 2.5M items);
* ``labels``: a label per line (``l123:``), a jump on every fourth, so the
  symbol table holds one name per 14 bytes or so (1M labels in 14 MB).

Each run is a fresh subprocess that reads the generated source from a file
(so peak RSS is its own): the CPU time of ``assemble()`` alone, and its peak
memory above the RSS before the call (source text already in memory, parser
tables built; on Linux the peak is reset just before the call). The last columns are
the ratios to the first size: linear time and memory keep them close to the
size ratio, and ``mem/src`` (peak bytes per source byte) close to constant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
MB = 1_000_000
SHAPES = ("mixed", "line", "labels")


def mixed(size: int) -> str:
    """Labelled code with comments, .equ constants and data tables."""
    parts, total, i = [], 0, 0
    parts.append("        .entry main\n")
    while total < size:
        block = (
            f"        .equ K{i}, {i} * 4 + 1       ; constant {i}\n"
            f"f{i}:     mov r1, K{i}                 ; load the constant\n"
            f"        add r2, r2, r1              ; accumulate\n"
            f"        ld r3, [r4 + t{i} + 8]       ; read the table\n"
            f"        bne r3, 0, f{i}              ; loop while non-zero\n"
            "        .data\n"
            f"t{i}:     .word {', '.join(str((i * 7 + k) & 0xFFFF) for k in range(8))}\n"
            f"        .byte {', '.join(str((i + k) & 0xFF) for k in range(16))}\n"
            f"s{i}:     .asciz \"row {i}\\tof the table\\n\"\n"
            "        .text\n")
        parts.append(block)
        total += len(block)
        i += 1
    parts.append("main:   halt\n")
    return "".join(parts)


def line(size: int) -> str:
    """One .byte line of ``size`` bytes, e.g. a 10 MB line of 2.5M items."""
    items = max(size // 4, 1)
    return "        .data\nblob:   .byte " + ", ".join(
        str(k % 250) for k in range(items)) + "\n        .text\n        halt\n"


def labels(size: int) -> str:
    """Labels, most of them alone on their line, and jumps to them: one
    instruction per four labels, so that 50 MB (3.5M labels) stays under the
    limit of 1,048,576 instructions."""
    count = max(size // 14, 4)
    out = [f"l{k}: jmp l{(k * 7919) % count}\n" if k % 4 == 0 else f"l{k}:\n"
           for k in range(count)]
    out.append("        halt\n")
    return "".join(out)


GENERATORS = {"mixed": mixed, "line": line, "labels": labels}


def measure(shape: str, path: str) -> dict:
    """In this process: read the source, assemble once, report CPU time and peak RSS."""
    import resource
    import time
    sys.path.insert(0, ROOT)
    from minivm.assembler import _parser, assemble
    _parser()
    with open(path, encoding="utf-8") as f:
        source = f.read()
    _reset_peak()
    base = _peak_rss_bytes(resource)
    start = time.process_time()
    image = assemble(source, f"{shape}.asm")
    seconds = time.process_time() - start
    peak = _peak_rss_bytes(resource)
    return {"shape": shape, "size": len(source), "seconds": seconds,
            "peak": max(peak - base, 0), "code": len(image.code), "data": len(image.data)}


def _peak_rss_bytes(resource) -> int:
    """The peak RSS so far. On Linux the peak is first reset to the current
    RSS (``5`` into /proc/self/clear_refs), so that what the imports and the
    file read held for a moment does not hide the assembler's own peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        # ru_maxrss is in KiB on Linux; the peak of the whole process
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 5, 10, 50],
                        help="source sizes in MB (default: 1 5 10 50)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1])))
        return
    print(f"{'shape':7} {'source':>9} {'code':>8} {'data':>9} {'cpu s':>7} {'peak MB':>8}"
          f" {'mem/src':>7}   ratios to the first size: size  time  memory")
    for shape in args.shapes:
        first = None
        for mb in args.sizes:
            with tempfile.NamedTemporaryFile("w", suffix=".asm", encoding="utf-8") as f:
                f.write(GENERATORS[shape](int(mb * MB)))
                f.flush()
                out = subprocess.run([sys.executable, __file__, "--one", shape, f.name],
                                     capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{shape:7} {mb:>7g}MB failed:\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout)
            first = first or r
            print(f"{shape:7} {r['size'] / MB:>7.1f}MB {r['code']:>8} {r['data']:>9} "
                  f"{r['seconds']:>7.2f} {r['peak'] / MB:>8.1f} {r['peak'] / r['size']:>7.1f}"
                  f"   {r['size'] / first['size']:>26.1f} {r['seconds'] / first['seconds']:>5.1f}"
                  f" {r['peak'] / max(first['peak'], 1):>7.1f}", flush=True)


if __name__ == "__main__":
    main()
