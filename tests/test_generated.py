"""The generated engine modules are what the semantics table says.

minivm/engine/reference.py and exact.py are written by
``python -m minivm.engine.generate`` from minivm/engine/semantics.py and
checked in; this fails when someone edits the table (or a generated file)
without regenerating.
"""

from __future__ import annotations

import pytest

from minivm import isa
from minivm.engine import generate, semantics


def test_generated_files_are_fresh():
    assert generate.stale() == [], (
        "run `python -m minivm.engine.generate` and commit the result")


def test_check_flag_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    for name, make in generate.SOURCES.items():
        (tmp_path / name).write_text(make())
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main(["--check"]) == 0
    (tmp_path / "exact.py").write_text("# edited by hand\n")
    assert generate.main(["--check"]) == 1
    assert "exact.py is stale" in capsys.readouterr().err


def test_every_opcode_has_a_meaning():
    """Each ISA opcode is in the table once: run by the reference loop
    (INSTRUCTIONS, BRANCHES) or needing the machine (SYSTEM)."""
    named = set(semantics.INSTRUCTIONS) | set(semantics.SYSTEM) | set(semantics.branch_bodies())
    assert {op.name for op in isa.OPCODES} <= named
    assert not set(semantics.INSTRUCTIONS) & set(semantics.SYSTEM)
    system = {op.name for op in isa.OPCODES if op.category == isa.SYSTEM}
    assert system <= set(semantics.SYSTEM)


def test_macros_are_expanded_per_dialect():
    body = "x = (regs[b] + c) & M\nregs[a] = LOAD_WORD(x)"
    assert generate.expand(body, generate._fast)[-1] == \
        "regs[a] = unpack(pages[x >> 12], x & 4095)[0]"
    assert generate.expand(body, lambda n, a: generate._exact(n, a, "ld"))[-1] == \
        "regs[a] = mem.load_word(x)"


def test_a_misused_macro_is_refused():
    with pytest.raises(generate.TableError):
        generate.expand("if regs[a]: GOTO(c)", generate._fast)
    with pytest.raises(generate.TableError):
        generate.expand("regs[a] = GOTO(c)", generate._fast)
