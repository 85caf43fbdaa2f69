"""benchmarks/ceiling.py finds the regions it times, and its exact count mode
works (the timing mode is a benchmark, not a test: it depends on the host)."""

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import ceiling  # noqa: E402
from minivm import bench  # noqa: E402


def test_the_count_mode_measures_each_hot_loop_and_the_least_python_needs_no_more():
    rows = ceiling.measure(1, count=True)
    names = [row[0] for row in rows]
    assert names[0] == "bare loop (per iteration)"
    assert len(rows) == 5
    for name, whole, alone, least, goal in rows[1:]:
        assert math.isnan(whole)
        assert alone > 1 and least > 1, name
        # the hand-written loop is the fewest bytecodes that do the guest's
        # work: the compiled region (clock, exits, wraps) cannot need fewer
        assert least <= alone, name


def test_the_hand_written_loops_run_the_instructions_they_claim():
    # groups of four while the counter stays above 4: 1000 down to 4
    assert ceiling.least_countdown(1000) == 2 * 996
    assert ceiling.least_alu(1000) == 4 * 996
    pages = [bytearray(4096), bytearray(4096)]
    assert ceiling.least_sieve_inner(pages, 1) == 8192 * 4
    assert pages[0].count(1) == 4096 and pages[1].count(1) == 4096
    # the outer loop's claim against the engine's own region on the table a
    # sieve leaves (its last path, to the clearing loop, is 9 ticks, not 3)
    m, labels = ceiling._compiled(bench.SIEVE_LOOP.format(n=2))
    table = [m.memory.writable[0], m.memory.writable[1]]
    ran = ceiling._call(m, ceiling._region(m, labels["next"]), {1: 91, 7: 2}, 1 << 20)
    assert ceiling.least_sieve_outer(table, 1) == ran - 6


def test_main_prints_the_count_table(capsys):
    assert ceiling.main(["--count"]) == 0
    out = capsys.readouterr().out
    assert "bytecodes" in out and "countdown (sub/bne)" in out and "inner loop" in out
