"""Grades every submission in submissions/ against the assignment of
docs/grading.md (run: python3 -m pytest -n auto programs/grading)."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SUBMISSIONS = sorted((HERE / "submissions").glob("*.asm"))

CASES = {                        # input -> the output the assignment asks for
    "two": (b"3 4\n", b"7\n"),
    "three": (b"10 20 30\n", b"60\n"),
    "no-newline": (b"5 6", b"11\n"),
    "empty": (b"", b"0\n"),
}
TICKS = 100_000                  # far more than a right answer needs


@pytest.mark.parametrize("case", CASES)
def test_reference(minivm, case):
    """The reference solution passes: the cases themselves are right."""
    given, expected = CASES[case]
    assert minivm.run("sum.asm", input=given, max_ticks=TICKS).output == expected


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("submission", SUBMISSIONS, ids=lambda path: path.stem)
def test_submission(minivm, submission, case):
    given, expected = CASES[case]
    r = minivm.run(submission, input=given, max_ticks=TICKS)
    assert r.stop == "halt", f"the program did not halt ({r.stop})"
    assert r.output == expected
    assert r.exit_status == 0
