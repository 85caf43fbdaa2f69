"""The REPL's interactive layer (minivm/repl/frontend.py): prompt_toolkit on a pipe
input with DummyOutput, scripted mode, and the classroom demo transcript."""

from __future__ import annotations

import io
import shutil
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from minivm import repl
from minivm.engine import DEFAULT_ENGINE
from minivm.repl import Session
from minivm.repl import ReplCompleter, interact, make_prompt_session, open_history, run_batch

from support import run_cli

DATA = Path(__file__).resolve().parent / "data"

PROG = """\
        mov r1, 0
main_loop:
        add r1, r1, 1
        call show
        blt r1, 3, main_loop
        halt
show:   out 0x01, r1
        out 0x00, 10
        ret
.data
msg:    .asciz "hi"
count:  .word 0
"""


def make_session(tmp_path, engine: str) -> Session:
    (tmp_path / "prog.asm").write_text(PROG)
    out = io.StringIO()
    s = Session(str(tmp_path / "prog.asm"), out=out, checkpoint_dir=str(tmp_path / "ckpts"),
                engine=engine)
    s.buffer = out
    return s


@pytest.fixture
def session(tmp_path, engine):
    """A session on PROG, on each engine in turn (tests that run the guest)."""
    return make_session(tmp_path, engine)


@pytest.fixture
def quiet_session(tmp_path):
    """A session on PROG on the default engine only, for completion, history and
    the prompt's keys, which do not depend on the engine."""
    return make_session(tmp_path, DEFAULT_ENGINE)


def completions(session, text: str) -> dict[str, str]:
    completer = ReplCompleter(session)
    found = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    return {c.text: c.display_meta_text for c in found}


# --- completion ---------------------------------------------------------------------------

def test_first_word_completes_commands_with_their_help(quiet_session):
    found = completions(quiet_session, "ste")
    assert list(found) == ["step"]
    assert "execute N instructions" in found["step"]
    assert {"checkpoint", "checkpoints"} <= set(completions(quiet_session, "checkp"))
    assert completions(quiet_session, "zz") == {}
    # a '-' inside a command name does not end the word being completed
    assert set(completions(quiet_session, "reverse-")) == {
        "reverse-step", "reverse-next", "reverse-finish", "reverse-continue"}
    assert set(completions(quiet_session, "reverse-s")) == {"reverse-step"}
    assert set(completions(quiet_session, "history o")) == {"on", "off"}
    assert set(completions(quiet_session, "set history-")) == {"history-budget",
                                                              "history-interval"}


def test_arguments_complete_labels_registers_and_source_lines(quiet_session):
    assert set(completions(quiet_session, "break ma")) == {"main_loop"}
    assert set(completions(quiet_session, "b s")) == {"show"}          # aliases work too
    assert "prog.asm:" in completions(quiet_session, "b p")
    assert set(completions(quiet_session, "watch c")) == {"count"}     # data labels for data
    assert "main_loop" not in completions(quiet_session, "x m")
    assert set(completions(quiet_session, "regs s")) == {"sp"}
    assert {"registers"} == set(completions(quiet_session, "info reg"))
    assert {"r1", "r10", "r11", "r12", "r13", "r14", "r15"} == \
        set(completions(quiet_session, "i r r1"))
    assert set(completions(quiet_session, "help brea")) == {"break", "breakpoints"}


def test_completion_follows_loads_checkpoints_and_breakpoints(session, tmp_path):
    assert completions(session, "restore ck") == {}
    session.execute("checkpoint ck-one")
    session.execute("step")
    session.execute("checkpoint ck-two")
    assert set(completions(session, "restore ck")) == {"ck-one", "ck-two"}
    assert set(completions(session, "diff ck-one ")) >= {"ck-one", "ck-two", "now"}
    assert set(completions(session, "diff n")) == {"now"}
    session.execute("break show")
    session.execute("break main_loop")
    assert set(completions(session, "delete ")) == {"1", "2"}
    (tmp_path / "other.asm").write_text("start: halt\n")
    session.execute(f"load {tmp_path / 'other.asm'}")
    assert set(completions(session, "b st")) == {"start"}


def test_load_completes_file_paths(quiet_session, tmp_path):
    (tmp_path / "sieve.asm").write_text("halt\n")
    found = completions(quiet_session, f"load {tmp_path}/sie")
    assert list(found) == ["ve.asm"]


def _type(inp, session_prompt, *steps):
    """Send keys from a thread; a step ('wait', text) waits until the line shows text
    (up to 30 s, for a loaded host: the test's assertions are on the text, never the time)."""
    def go():
        for step in steps:
            if isinstance(step, tuple):
                deadline = time.monotonic() + 30
                while session_prompt.default_buffer.text != step[1] and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                inp.send_text(step)
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_tab_completes_in_the_prompt(quiet_session):
    with create_pipe_input() as inp:
        prompt = make_prompt_session(quiet_session, input=inp, output=DummyOutput())
        _type(inp, prompt, "b main_l", ("wait", "b main_l"), "\t", ("wait", "b main_loop"), "\r")
        assert prompt.prompt(quiet_session.prompt_text()) == "b main_loop"
        _type(inp, prompt, "brea", ("wait", "brea"), "\t", ("wait", "break"), " sh",
              ("wait", "break sh"), "\t", ("wait", "break show"), "\r")
        assert prompt.prompt(quiet_session.prompt_text()) == "break show"


# --- the loop: prompt, toolbar, Ctrl-C, Ctrl-D, Enter repeats -----------------------------

def test_interact_runs_commands_until_ctrl_d(session):
    with create_pipe_input() as inp:
        prompt = make_prompt_session(session, input=inp, output=DummyOutput())
        inp.send_text("break show\r")
        inp.send_text("run\r")
        inp.send_text("checkpoin\x03")       # Ctrl-C at the prompt drops the line
        inp.send_text("next\r")
        inp.send_text("\r")                 # Enter repeats 'next'
        inp.send_text("regs r1\r")
        inp.send_text("\x04")               # Ctrl-D quits
        assert interact(session, prompt) == 0
    text = session.buffer.getvalue()
    assert "Breakpoint 1 at tick 3\n=> pc 5 <show>" in text
    assert "  tick 3  pc 5 <show>" in text and "  tick 4  pc 6 <show+1>" in text
    assert text.endswith("\n  r1  0x00000001 1\n")   # next did not change r1
    assert session.jobs == []


def test_quit_ends_the_loop_and_finishes_checkpoints(session):
    with create_pipe_input() as inp:
        prompt = make_prompt_session(session, input=inp, output=DummyOutput())
        inp.send_text("step\rcheckpoint\rquit\rstep\r")
        assert interact(session, prompt) == 0
    assert session.machine is None                 # closed
    assert session.jobs[0].status == "complete"
    assert "finishing ckpt-0001 before quitting" in session.buffer.getvalue()


def test_prompt_and_toolbar_show_the_machine_state(session):
    prompt = make_prompt_session(session, input=None, output=DummyOutput())
    assert prompt.bottom_toolbar() == " tick 0 | pc 0  prog.asm:1  mov r1, 0"
    session.execute("step 3")
    session.execute("checkpoint")
    assert session.prompt_text() == "minivm[tick 3 pc 5]> "
    assert prompt.bottom_toolbar() == (" tick 3 | pc 5 <show>  prog.asm:7  out 0x01, r1 | "
                                       "saving ckpt-0001: 0 of 2 pages")
    session.execute("run")
    assert session.prompt_text() == "minivm[halted tick 20]> "
    assert prompt.bottom_toolbar() == " tick 20 | halted, exit status 0 | halted at tick 20"


def test_history_is_a_file_or_falls_back_to_memory(tmp_path, monkeypatch):
    history, note = open_history(str(tmp_path / "hist"))
    assert isinstance(history, FileHistory) and note is None
    history, note = open_history(str(tmp_path / "no" / "such" / "dir" / "hist"))
    assert isinstance(history, InMemoryHistory)
    assert "kept for this session only" in note
    monkeypatch.setenv("MINIVM_HISTORY", str(tmp_path / "env-hist"))
    history, _ = open_history()
    assert history.filename == str(tmp_path / "env-hist")


def test_history_file_records_commands(quiet_session, tmp_path):
    history, _ = open_history(str(tmp_path / "hist"))
    with create_pipe_input() as inp:
        prompt = make_prompt_session(quiet_session, input=inp, output=DummyOutput(),
                                     history=history)
        inp.send_text("step\rregs\r\x04")
        interact(quiet_session, prompt)
    assert list(FileHistory(str(tmp_path / "hist")).load_history_strings()) == ["regs", "step"]


# --- scripted mode --------------------------------------------------------------------------

def test_batch_echoes_commands_and_reports_errors_in_the_status(session):
    status = run_batch(session, ["# a comment", "", "step", "stpe", "regs r1"])
    text = session.buffer.getvalue()
    assert "\n# a comment\nminivm[tick 0 pc 0]> step\n  tick 0  pc 0" in text
    assert "minivm[tick 1 pc 1]> stpe\nerror: unknown command 'stpe'; did you mean 'step'?" in text
    assert status == 1
    assert session.machine is None              # closed at the end


def test_batch_without_errors_exits_0_and_quit_stops_reading(session):
    assert run_batch(session, ["step", "quit", "bogus"]) == 0
    assert "bogus" not in session.buffer.getvalue()


def test_commands_on_a_pipe(tmp_path, engine):
    (tmp_path / "prog.asm").write_text(PROG)
    result = run_cli("repl", "--engine", engine, "prog.asm",
                     input=b"break show\nrun\ninput hello\nc\n", cwd=tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "minivm[tick 0 pc 0]> break show\nBreakpoint 1: pc 5 <show>" in out
    assert "minivm[tick 3 pc 5]> input hello\nfed 6 byte(s)" in out   # the guest's input only
    assert result.stderr == b""
    result = run_cli("repl", "--engine", engine, "prog.asm", input=b"step\nfrobnicate\n",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "error: unknown command 'frobnicate' (type 'help')" in result.stdout.decode()


def test_batch_file_errors_and_bad_options_are_one_line(tmp_path):
    result = run_cli("repl", "--batch", "missing.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode() == "minivm: error: the batch file 'missing.txt' does not exist\n"
    result = run_cli("repl", "--mem", "lots", input=b"", cwd=tmp_path)
    assert result.returncode == 2 and b"bad memory size 'lots'" in result.stderr


def test_main_with_a_batch_file_in_process(tmp_path, capsys, monkeypatch, engine):
    (tmp_path / "prog.asm").write_text(PROG)
    (tmp_path / "script.txt").write_text("step 2\nregs r1\n")
    monkeypatch.chdir(tmp_path)
    args = Namespace(program="prog.asm", mem="64K", disk=None, disk_latency=100,
                     disk_per_block=10, batch="script.txt", engine=engine)
    assert repl.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("loaded prog.asm: 8 instructions, 7 data bytes; memory 64 KiB\n")
    assert out.endswith("minivm[tick 2 pc 2]> regs r1\n* r1  0x00000001 1\n")


def test_classroom_demo_transcript(tmp_path, engine):
    for name in ("repl_demo.asm", "repl_demo.txt"):
        shutil.copy(DATA / name, tmp_path / name)
    result = run_cli("repl", "--engine", engine, "--mem", "64K", "--batch", "repl_demo.txt",
                     "repl_demo.asm",
                     cwd=tmp_path)
    assert result.stderr == b""
    assert result.returncode == 0
    expected = (DATA / "repl_demo.expected").read_text()
    assert result.stdout.decode() == expected
    assert (tmp_path / "checkpoints" / "before.mvc").is_file()


def test_a_batch_file_line_is_one_command(tmp_path):
    """Lines are split at newlines only (str.splitlines() would also split at
    \\f, \\x1c or \\u2028 inside a line, making two commands of one)."""
    from minivm.repl.frontend import _read_batch
    path = tmp_path / "script.txt"
    path.write_text("print 1 ; a\x1cb\r\nregs\u2028x\n", encoding="utf-8")
    assert _read_batch(str(path)) == ["print 1 ; a\x1cb", "regs\u2028x"]
    path.write_text("", encoding="utf-8")
    assert _read_batch(str(path)) == []
