"""Driving a demo (minivm/demos.py): the keys at a pause, fed by a fake input
function (Enter, b, r, N, p, q, ?, Ctrl-C, Ctrl-D, nonsense), the REPL on the
demo's machine, what a re-run does to --checkpoint-dir, and what the screen
gets: every line within the width without a word or number cut, each demo's
first step within 24 lines, colour only when asked for and never with NO_COLOR.
"""

from __future__ import annotations

import io
import os
import re
import sys

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from minivm.demos import (Demo, DemoStream, available, colour_line, colour_wanted, run_demo,
                          wrap_line)
from minivm.repl import interact, make_prompt_session

from support import ROOT, run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")
QUESTION = re.compile(r"-- (step \d+/\d+: Enter next, b back, r replay, N jump, p prompt, "
                      r"q quit|the end \(step \d+/\d+\): [^\n]*?) -- ")


def drive(name, keys, engine="interp", **options):
    """Run demo ``name`` answering each pause with the next of ``keys`` (a
    string, or an exception to raise); returns (status, output, questions asked)."""
    answers = list(keys)
    asked = []

    def answer():
        asked.append(len(asked))
        key = answers.pop(0)
        if isinstance(key, BaseException):
            raise key
        return key
    out = io.StringIO()
    options.setdefault("open_repl", None)
    status = run_demo(name, pause=True, out=out, engine=engine, input_fn=answer, **options)
    assert not answers, f"the demo ended with keys left: {answers}"
    return status, out.getvalue(), len(asked)


def steps_shown(text: str) -> list[str]:
    """The output between one question and the next."""
    return [part for part in QUESTION.split(text)[::2]]


def straight(name, engine="interp", **options) -> str:
    out = io.StringIO()
    assert run_demo(name, pause=False, out=out, engine=engine, **options) == 0
    return out.getvalue()


# --- the keys ----------------------------------------------------------------------------------

def test_enter_walks_through_every_step_and_the_end_quits(engine):
    demo = Demo.load("cow")
    status, text, asked = drive("cow", [""] * len(demo.steps), engine)
    assert status == 0 and asked == len(demo.steps)
    n = len(demo.steps)
    assert "-- step 1/%d: Enter next, b back, r replay, N jump, p prompt, q quit -- " % n in text
    assert f"-- the end (step {n}/{n}): Enter quits, b back, r replay, N jump, p prompt -- " \
        in text
    # the same commands and narration as a run straight through, with questions for pauses
    plain = straight("cow", engine).replace("-- press Enter to go on --\n", "")
    assert QUESTION.sub("", text).replace("\n\n", "\n") == plain.replace("\n\n", "\n")


def test_q_quits_at_once_with_status_0():
    status, text, asked = drive("cow", ["q"])
    assert (status, asked) == (0, 1)
    assert "break checkpoint_here" not in text          # step 2 never ran
    assert "Traceback" not in text


@pytest.mark.parametrize("key, status", [(EOFError(), 0), (KeyboardInterrupt(), 130)])
def test_ctrl_d_and_ctrl_c_quit_cleanly(key, status):
    got, text, _ = drive("cow", ["", key])
    assert got == status
    assert "Traceback" not in text and "step 3/" not in text


def test_b_goes_back_a_step_and_shows_it_as_it_was(engine):
    _, text, _ = drive("cow", ["", "", "", "b", "q"], engine)
    shown = steps_shown(text)
    # steps 1, 2, 3, 4, then step 3 again: the same text, machine state and all
    assert shown[4] == shown[2]
    assert "ssCSS" in shown[3] and "ssCSS" not in shown[4] and "SSSSS" in shown[4]


def test_r_replays_the_step_and_a_number_jumps_to_it(engine):
    _, text, _ = drive("cow", ["", "", "r", "5", "2", "q"], engine)
    shown = steps_shown(text)
    assert shown[3] == shown[2]                   # r: step 3 again
    assert "save-batch" in shown[4] and "before: saved page(s) 2" in shown[4]   # 5: step 5
    assert shown[5] == shown[1]                   # 2: back to step 2
    assert re.findall(r"-- step (\d+)/", text) == ["1", "2", "3", "3", "5", "2"]


def test_b_at_the_first_step_shows_it_again():
    _, text, _ = drive("cow", ["b", "q"])
    shown = steps_shown(text)
    assert shown[1] == shown[0]


def test_unknown_keys_get_a_hint_and_question_marks_the_list():
    _, text, asked = drive("cow", ["regs", "99", "?", "h", "q"])
    assert asked == 5
    assert "(unknown key 'regs': Enter goes on, q quits, ? lists the keys)" in text
    assert "(no step 99: this demo has steps 1 to" in text
    assert text.count("keys at a pause (then Enter):") == 2
    for key in ("Enter", "b", "r", "N", "p", "q"):
        assert re.search(rf"^  {key}\s+\S", text, re.M), key
    assert text.count("-- step 1/") == 5               # asked again after each


def test_p_opens_the_repl_on_the_demos_machine_and_comes_back(engine):
    def repl(session):
        with create_pipe_input() as pipe:
            pipe.send_text("regs r3\nset r9 7\nquit\n")
            interact(session, make_prompt_session(session, input=pipe, output=DummyOutput()),
                     close=False)
    _, text, _ = drive("cow", ["", "p", "", "q"], engine, open_repl=repl)
    opened = "(the REPL on the demo's machine, at step 2; 'quit' or Ctrl-D: back to the demo)"
    assert len(opened) <= 80 and opened + "\n" in text       # one line on an 80-column screen
    after_p = text.split(opened)[1]
    assert "r3  0x00005000" in after_p                 # the machine of step 2, at tick 917
    assert "r9 = 7" in after_p
    back, rest = after_p.split("(back in the demo, at the end of step 2)")
    assert "-- step 2/" in rest and "checkpoint before at tick 917" in rest   # it goes on
    assert "finishing" not in back                       # 'quit' did not close the session


def test_going_back_with_a_checkpoint_dir_starts_it_afresh(tmp_path, engine):
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "mine.txt").write_text("the presenter's own file")
    status, text, _ = drive("p5", ["", "", "", "1"] + [""] * len(Demo.load("p5").steps), engine,
                            checkpoint_dir=str(folder))
    assert status == 0
    assert "error:" not in text and "already exists" not in text
    names = sorted(p.name for p in folder.iterdir())
    assert "mine.txt" in names and "p5-disk.img" in names
    assert {"idle.mvc", "ckpt-0001.mvc"} <= set(names)


# --- the screen ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(available()))
def test_every_line_fits_80_columns_and_no_word_is_cut(name):
    lines = straight(name, width=80).splitlines()
    assert max(len(line) for line in lines) <= 80, [l for l in lines if len(l) > 80]
    # the same wrapping of a run's whole output only moves words to the next line
    # (a demo may print host times, so the two runs are not compared): the same
    # words in the same order, so no number (nor word) was cut in two
    wide = straight(name)
    out = io.StringIO()
    DemoStream(out, 80).write(wide)
    narrow = out.getvalue()
    assert max(len(line) for line in narrow.splitlines()) <= 80
    def words(text):               # narration goes on with '# ': not a word of its own
        return [w for line in text.splitlines()
                for w in (line[2:] if line.startswith("# ") else line).split()]
    assert words(narrow) == words(wide)


@pytest.mark.parametrize("name", sorted(available()))
def test_every_step_fits_a_24_line_screen(name):
    """What a step prints, and the question after it, fit 80x24: nothing
    scrolls off before the presenter has talked about it."""
    pauses = len(Demo.load(name).steps)
    _, text, asked = drive(name, [""] * pauses, width=80)
    shown = QUESTION.split(text)[::2]             # the text between the questions
    assert asked == pauses and len(shown) == pauses + 1
    for number, step in enumerate(shown, 1):
        lines = step.strip("\n").splitlines()
        assert len(lines) + 1 <= 24, f"step {number} of {name}:\n" + "\n".join(lines)


@pytest.mark.parametrize("name", sorted(available()))
def test_the_first_step_fits_a_24_line_screen(name):
    _, text, _ = drive(name, ["q"], width=80)
    first = text.split("-- step 1/")[0].splitlines()
    assert len(first) + 1 <= 24, "\n".join(first)


def test_wrapping_keeps_numbers_whole_and_narration_marked():
    line = "# " + " ".join(f"{n:#010x}" for n in range(20))
    pieces = wrap_line(line, 40)
    assert all(len(p) <= 40 and p.startswith("# ") for p in pieces)
    assert [w for p in pieces for w in p[2:].split()] == line[2:].split()
    row = "  0x00000000       0  " + "p" * 64
    assert [p.strip() for p in wrap_line(row, 80)] == ["0x00000000       0", "p" * 64]
    assert wrap_line("short", 80) == ["short"] and wrap_line("x" * 100, None) == ["x" * 100]


def test_colour_marks_narration_and_page_letters_only_when_asked():
    assert colour_line("# narration").startswith("\x1b[36m")
    row = colour_line("  0x00000000       0  ssCSS...........")
    assert ANSI.sub("", row) == "  0x00000000       0  ssCSS..........."
    assert "\x1b[1;31mC\x1b[0m" in row and "\x1b[32mss\x1b[0m" in row
    assert ANSI.sub("", colour_line("legend: . untouched  p private")) == \
        "legend: . untouched  p private"
    assert colour_line("minivm> pages") == "minivm> pages"
    coloured = io.StringIO()
    stream = DemoStream(coloured, None, colour=True)
    stream.write("# hello\n  0x00000000       0  pS\n")
    assert "\x1b[" in coloured.getvalue()
    assert "\x1b[" not in straight("cow")                 # run_demo's default: no colour


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert colour_wanted(Tty()) is True
    assert colour_wanted(io.StringIO()) is False          # piped
    assert colour_wanted(Tty(), refused=True) is False    # --no-color
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_wanted(Tty()) is False
    monkeypatch.setenv("NO_COLOR", "")                    # empty: as if unset (no-color.org)
    assert colour_wanted(Tty()) is True
    monkeypatch.setenv("TERM", "dumb")
    assert colour_wanted(Tty()) is False


def test_the_cli_never_colours_a_pipe():
    result = run_cli("demo", "cow", "--no-color", input=b"", timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"\x1b[" not in result.stdout
    assert b"-- press Enter to go on --" in result.stdout


def _demo_on_a_terminal(key: bytes, env: dict) -> tuple[int, str]:
    """``minivm demo cow`` on a pseudo-terminal that is its controlling
    terminal (so Ctrl-C is a SIGINT): wait for the first question, type ``key``."""
    import pty
    import select
    pid, master = pty.fork()
    if pid == 0:                                          # the child: become minivm
        import signal                                     # as a shell starts it: Ctrl-C on
        signal.signal(signal.SIGINT, signal.SIG_DFL)      # (a test runner may ignore it)
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "minivm", "demo", "cow"], env)
    seen = b""
    try:
        while b"q quit --" not in seen:
            if not select.select([master], [], [], 120)[0]:    # a hang, not slowness
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.write(master, key)
        quiet = 0
        while quiet < 120:                                # a hang, not slowness
            if not select.select([master], [], [], 1)[0]:
                quiet += 1
                if key == b"\x03":
                    # a SIGINT that lands after Python's last signal check but
                    # before input()'s read() begins is taken only at the next
                    # key (CPython's input() race): press Ctrl-C again, as a user would
                    os.write(master, key)
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:                               # the child has gone
                break
            if not chunk:
                break
            seen += chunk
        for _ in range(1200):                             # a hang, not slowness
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            select.select([], [], [], 0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -9, seen.decode(errors="replace")
    finally:
        os.close(master)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("key, status, no_color", [(b"q\n", 0, False), (b"q\n", 0, True),
                                                   (b"\x03", 130, False), (b"\x04", 0, False)])
def test_the_cli_at_a_terminal_asks_and_quits(key, status, no_color):
    """At a terminal: the question, colour unless NO_COLOR, lines cut to the
    terminal's 80 columns; q and Ctrl-D quit with 0, Ctrl-C with 130, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS="80", LINES="24")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    got, text = _demo_on_a_terminal(key, env)
    assert got == status, text
    assert "step 1/" in text and "Traceback" not in text
    assert ("\x1b[36m# Copy-on-write" in text) is not no_color
    plain = ANSI.sub("", text).replace("\r", "")
    assert max(len(line) for line in plain.splitlines()) <= 80


def test_the_list_of_demos_fits_80_columns():
    listing = run_cli("demo").stdout.decode().splitlines()
    assert len(listing) == len(available()) + 1
    assert max(len(line) for line in listing) <= 80, listing
