"""docs/grading.md shows the files of programs/grading/ as they are: the
reference solution, the test file and a submission are embedded in the page
(where tests/test_docs.py runs its console sessions: the grading of the
folder, the report and the REPL on its checkpoint), so the page and the
folder cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from test_docs import parse_blocks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "grading.md"
GRADING = ROOT / "programs" / "grading"
EMBEDDED = {"sum.asm": GRADING / "sum.asm", "test_sum.py": GRADING / "test_sum.py",
            "dave.asm": GRADING / "submissions" / "dave.asm"}


def test_the_page_embeds_the_files_as_they_are():
    blocks = {b.options["file"]: b for b in parse_blocks(PAGE) if "file" in b.options}
    assert set(EMBEDDED) <= set(blocks)
    for name, path in EMBEDDED.items():
        assert blocks[name].text == path.read_text(encoding="utf-8"), \
            f"{blocks[name].where}: differs from {path.relative_to(ROOT)}"


def test_the_page_describes_every_submission():
    text = PAGE.read_text(encoding="utf-8")
    names = sorted(p.name for p in (GRADING / "submissions").iterdir())
    assert names == ["alice.asm", "bob.asm", "carol.asm", "dave.asm"]
    assert all(f"`{name}`" in text for name in names)


def test_the_test_file_is_not_collected_by_the_suite():
    """programs/grading/test_sum.py is the teachers' example (its failures are
    meant): the suite's own runs collect tests/ only."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'testpaths = ["tests"]' in pyproject
