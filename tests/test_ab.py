"""benchmarks/ab.py runs each workload with a switch off and on and puts the
switch back (its figures are a benchmark's, not a test's: host speed)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import ab  # noqa: E402
from minivm.engine import blocks, emit  # noqa: E402


def test_pairs_of_one_workload_and_the_switch_put_back():
    rows = ab.measure("RUNS", 1, ["memory (sieve 8 KiB)"], quick=True)
    assert [row[0] for row in rows] == ["memory (sieve 8 KiB)"]
    _, off, on, ratio = rows[0]
    assert off > 0 and on > 0 and ratio == pytest.approx(on / off)
    assert emit.RUNS is True


def test_a_driver_switch_and_main_prints_the_table(capsys):
    assert ab.main(["blocks.FAST_TIMER", "--pairs", "1", "--quick",
                    "--workload", "countdown + timer/100"]) == 0
    out = capsys.readouterr().out
    assert "countdown + timer/100" in out and "on/off" in out
    assert blocks.FAST_TIMER is True


@pytest.mark.parametrize("args, message", [
    (["NO_SUCH"], "has no switch 'NO_SUCH'"),
    (["UNROLL_CAP"], "has no switch 'UNROLL_CAP'"),          # a number, not a switch
    (["RUNS", "--workload", "sieve"], "no workload 'sieve'"),
])
def test_a_bad_switch_or_workload_is_named(args, message):
    with pytest.raises(SystemExit) as e:
        ab.main(args + ["--quick", "--pairs", "1"])
    assert message in str(e.value)
