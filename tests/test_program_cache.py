"""The cache of assembled sources (minivm/program.py, docs/performance.md,
"Start-up"): a second run of the same source loads its image and never
imports the assembler or Lark; any change, damage or unwritable folder only
means assembling again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivm import program
from minivm.assembler import assemble

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "programs" / "hello.asm"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(program.CACHE_ENV, str(folder))
    return folder


def _same(a, b) -> None:
    assert a.to_dict() == b.to_dict()


def test_second_load_comes_from_the_cache_and_equals_assembling(cache, tmp_path):
    src = tmp_path / "p.asm"
    src.write_text(HELLO.read_text())
    first = program.load_program(str(src))
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".mvb"
    again = program.load_program(str(src))
    _same(first, again)
    _same(again, assemble(HELLO.read_text(), str(src)))


def test_a_changed_source_is_assembled_again_and_replaces_its_entry(cache, tmp_path):
    src = tmp_path / "p.asm"
    src.write_text("mov r0, 1\nhalt\n")
    assert program.load_program(str(src)).code[0][2] == 1
    src.write_text("mov r0, 2\nhalt\n")
    assert program.load_program(str(src)).code[0][2] == 2
    assert len(list(cache.iterdir())) == 1          # the old contents' entry is gone


def test_the_same_contents_at_another_path_keep_their_own_name(cache, tmp_path):
    for name in ("a.asm", "b.asm"):
        (tmp_path / name).write_text("halt\n")
    assert program.load_program(str(tmp_path / "a.asm")).source_file.endswith("a.asm")
    assert program.load_program(str(tmp_path / "b.asm")).source_file.endswith("b.asm")
    assert program.load_program(str(tmp_path / "a.asm")).source_file.endswith("a.asm")


def test_a_damaged_entry_is_assembled_again(cache, tmp_path):
    src = tmp_path / "p.asm"
    src.write_text(HELLO.read_text())
    program.load_program(str(src))
    (entry,) = cache.iterdir()
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x40
    entry.write_bytes(bytes(data))
    _same(program.load_program(str(src)), assemble(HELLO.read_text(), str(src)))


def test_an_unwritable_or_absent_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(program.CACHE_ENV, str(blocker / "cache"))
    src = tmp_path / "p.asm"
    src.write_text("halt\n")
    program.load_program(str(src))
    program.load_program(str(src))
    monkeypatch.setenv(program.CACHE_ENV, "off")
    assert program.cache_folder() is None
    program.load_program(str(src))


def test_a_bad_program_is_never_cached(cache, tmp_path):
    src = tmp_path / "p.asm"
    src.write_text("mov r0,\n")
    for _ in range(2):
        with pytest.raises(Exception) as info:
            program.load_program(str(src))
        assert "p.asm" in str(info.value)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_cached_run_imports_neither_the_assembler_nor_lark(cache, tmp_path):
    """`minivm run` of a cached source, in a fresh interpreter (this venv's):
    the same output, and no assembler, Lark, checkpoint or REPL module loaded."""
    src = tmp_path / "hello.asm"
    src.write_text(HELLO.read_text())
    probe = ("import sys, runpy\n"
             f"sys.argv = ['minivm', 'run', {str(src)!r}]\n"
             "try:\n    runpy.run_module('minivm', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('minivm.assembler', 'lark',"
             " 'minivm.checkpoint', 'minivm.ckptfile', 'minivm.repl', 'prompt_toolkit'))))\n")
    env = dict(os.environ, **{program.CACHE_ENV: str(cache)})
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env=env, timeout=120) for _ in range(2)]
    assert all(r.stdout.startswith("Hello, world!\n") for r in runs), runs[0].stderr
    assert "minivm.assembler" in runs[0].stdout.splitlines()[-1]       # assembled, then cached
    assert runs[1].stdout.splitlines()[-1] == "[]"
