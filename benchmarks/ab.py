"""A/B of one blocks-engine switch, in one process: the way performance.md's
"in-process A/B" figures were measured.

    python benchmarks/ab.py FLAG [--pairs 9] [--workload NAME ...] [--quick]

FLAG is a module-level switch of the emitter (``minivm.engine.emit``), such as
``RUNS``, ``SCANS`` or ``GROUPS``, or ``blocks.FAST_TIMER`` for the driver's. For each
``minivm bench`` workload (all of them unless ``--workload`` names some),
``--pairs`` pairs of runs, the switch off then on, each run a fresh machine
with an empty compiled-code cache and timed between two bare-loop samples, as
``minivm bench`` times it. It prints the median ratio to the bare loop with
the switch off and on, and the median of the pairs' on/off ratios: runs in
separate processes on this kind of shared machine differ by up to 8 %, so only
pairs taken side by side decide a change of a few per cent.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minivm import bench  # noqa: E402


def switch(name: str):
    """(module, attribute) of ``FLAG`` (an emitter switch) or ``blocks.FLAG``."""
    module, _, attr = name.rpartition(".")
    module = importlib.import_module(f"minivm.engine.{module or 'emit'}")
    if not isinstance(getattr(module, attr, None), bool):
        raise SystemExit(f"ab.py: {module.__name__} has no switch {attr!r} (True or False)")
    return module, attr


def measure(flag: str, pairs: int, workloads: list[str] | None = None,
            quick: bool = False) -> list[tuple[str, float, float, float]]:
    """(workload, median ratio off, median ratio on, median of on / off)."""
    module, attr = switch(flag)
    table = {w[0]: w for w in bench.WORKLOADS}
    names = workloads or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"ab.py: no workload {unknown[0]!r} (they are: {', '.join(table)})")
    bare = bench.BareLoop(100_000 if quick else 1_000_000)
    saved = getattr(module, attr)
    rows = []
    try:
        for name in names:
            _, source, full, small, expect = table[name]
            text = source.format(n=small if quick else full)
            ratios = {False: [], True: []}
            for _ in range(pairs):
                for value in (False, True):
                    setattr(module, attr, value)
                    ratios[value].append(bench.guest_rate(text, "blocks", 1, expect, bare)[2])
            pair = [on / off for off, on in zip(ratios[False], ratios[True])]
            rows.append((name, statistics.median(ratios[False]),
                         statistics.median(ratios[True]), statistics.median(pair)))
    finally:
        setattr(module, attr, saved)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flag",
                        help="an emitter switch (RUNS, SCANS, GROUPS) or blocks.FAST_TIMER")
    parser.add_argument("--pairs", type=int, default=9, help="off/on pairs per workload (9)")
    parser.add_argument("--workload", action="append",
                        help="a minivm bench workload by name (again for more; default all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    rows = measure(args.flag, args.pairs, args.workload, args.quick)
    print(f"{args.flag} off and on, {args.pairs} pairs each, median x the bare loop")
    print(f"{'workload':28} {'off':>6} {'on':>6} {'on/off':>7}")
    for name, off, on, ratio in rows:
        print(f"{name:28} {off:6.3f} {on:6.3f} {ratio:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
