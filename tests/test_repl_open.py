"""``minivm repl CKPT`` (minivm/repl/frontend.py, open_start): a checkpoint
file is restored at start, told by its magic bytes and not by its name; a
file named .mvc that is not a checkpoint, or a damaged one, is a one-line
error with exit status 2, and the REPL does not start."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import minivm
from minivm import cli

ROOT = Path(__file__).resolve().parent.parent


def _repl(capsys, monkeypatch, *argv: str, commands: str = "regs\n") -> tuple[int, str, str]:
    """``minivm repl ARGV`` with ``commands`` on a pipe."""
    monkeypatch.setattr("sys.stdin", io.StringIO(commands))
    capsys.readouterr()
    status = cli.main(["repl", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def at_tick_10(tmp_path, engine) -> Path:
    with minivm.boot(ROOT / "programs" / "fib.asm", engine=engine) as vm:
        vm.step(10)
        return Path(vm.checkpoint(tmp_path / "at10.mvc"))


@pytest.mark.parametrize("name", ["at10.mvc", "renamed.bin"])
def test_a_checkpoint_opens_whatever_its_name(capsys, monkeypatch, tmp_path, engine,
                                              at_tick_10, name):
    monkeypatch.chdir(tmp_path)
    if name != at_tick_10.name:
        at_tick_10.rename(tmp_path / name)
    status, out, err = _repl(capsys, monkeypatch, "--engine", engine, name,
                             commands="regs\ncontinue\n")
    assert status == 0 and err == ""
    first, where = out.splitlines()[:2]
    assert first == f"restored {name.removesuffix('.mvc')} (tick 10) from {name}"
    assert where == "=> pc 3 <loop>  fib.asm:15  out 0x01, r1"
    assert "r1  0x00000001 1" in out and "4181" in out     # the run goes on from tick 10


def test_a_program_still_loads(capsys, monkeypatch):
    status, out, _ = _repl(capsys, monkeypatch, str(ROOT / "programs" / "fib.asm"))
    assert status == 0 and out.startswith("loaded ") and "fib.asm:11" in out


def test_an_mvc_file_that_is_not_a_checkpoint_is_an_error(capsys, monkeypatch, tmp_path):
    (tmp_path / "notes.mvc").write_bytes(b"\x1b[2Jjunk\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = _repl(capsys, monkeypatch, "notes.mvc")
    assert status == cli.EXIT_USAGE and out == ""
    assert err == ("minivm: error: 'notes.mvc' is not a minivm checkpoint: it does not begin "
                   "with a checkpoint's magic bytes (minivm repl opens a program, .asm or "
                   ".mvb, or a checkpoint file written by minivm)\n")


def test_a_missing_checkpoint_is_named_as_one(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    status, out, err = _repl(capsys, monkeypatch, "lab3.mvc")
    assert status == cli.EXIT_USAGE and out == ""
    assert err == "minivm: error: checkpoint file 'lab3.mvc' does not exist\n"


def test_a_damaged_checkpoint_is_an_error(capsys, monkeypatch, tmp_path, at_tick_10):
    data = at_tick_10.read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) // 2])
    monkeypatch.chdir(tmp_path)
    status, out, err = _repl(capsys, monkeypatch, "cut")
    assert status == cli.EXIT_USAGE and out == ""
    assert err.startswith("minivm: error: checkpoint 'cut' is ") and err.count("\n") == 1
    assert "Traceback" not in err
