"""REPL behaviour a class ran into (issue 16): a guest's own checkpoint
announced when it happens, the timeline of the whole session, console input
fed after a halt, 'commit' and 'diff', and text typed while the guest runs."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from minivm.disks import create_raw_disk
from minivm.repl import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_commands import DISK  # noqa: E402  (the disk-writing guest of the command tests)

ROOT = Path(__file__).resolve().parents[1]


class Repl:
    """A Session on ``source`` writing to a buffer; ``run`` returns what a line printed."""

    def __init__(self, tmp_path, source: str, engine: str, **options):
        self.buffer = io.StringIO()
        prog = tmp_path / "prog.asm"
        prog.write_text(source)
        self.s = Session(str(prog), out=self.buffer, checkpoint_dir=str(tmp_path / "ckpts"),
                         engine=engine, **options)

    def run(self, line: str, ok: bool = True) -> str:
        start = len(self.buffer.getvalue())
        done = self.s.execute(line)
        text = self.buffer.getvalue()[start:]
        assert done == ok, f"{line!r}:\n{text}"
        return text


# --- 'commit' and 'diff' -----------------------------------------------------------------

def assert_fits(text: str) -> None:
    """80 columns, but for a line that is one word (a long temporary path) alone."""
    for line in text.splitlines():
        assert len(line) <= 80 or len(line.split()) <= 2, line


def test_commit_says_it_once_and_warns_about_the_checkpoints_on_its_target(tmp_path, engine):
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), 16 * 512)
    r = Repl(tmp_path, DISK, engine, disk=str(disk))
    r.run("break second")
    r.run("run")
    r.run("checkpoint a")
    r.run("delete")
    r.run("continue")
    text = r.run("commit")
    assert_fits(text)
    text = " ".join(text.split())              # the warning is wrapped to 80 columns
    assert text.count("committed 1 block group(s) from a.cow") == 1, text
    assert f"warning: {disk} was the disk of checkpoint(s) a; so they no longer match it" \
        in text and "'restore' refuses them (as after 'minivm disk commit')" in text
    assert "has changed since the checkpoint was taken" in r.run("restore a", ok=False)
    assert "too many arguments; usage: commit" in r.run("commit now", ok=False)


def test_a_deferred_commit_warns_when_it_starts(tmp_path, engine):
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), 16 * 512)
    r = Repl(tmp_path, DISK, engine, disk=str(disk))
    r.run("break second")
    r.run("run")
    r.run("checkpoint a")
    r.run("delete")
    r.run("break drain")
    r.run("continue")                    # the write to block 1 (to a.cow) is in flight
    r.run("sync")
    text = r.run("commit")
    assert_fits(text)
    text = " ".join(text.split())
    assert "a.cow is merged into its parent once its pending writes complete" in text
    assert "once the merge is done they no longer match it" in text, text
    assert "committed" not in text


# --- a guest's own 'ckpt' is announced when it is taken ---------------------------------------

CKPT_BETWEEN = """\
        out 0x00, 65         ; "A\\n", then ckpt, then "x=" and ckpt on that line, then "1\\n"
        out 0x00, 10
        ckpt
        out 0x00, 120
        out 0x00, 61
        ckpt
        out 0x00, 49
        out 0x00, 10
spin:   jmp spin             ; and loops: the run ends only at a tick limit (or Ctrl-C)
"""


def test_a_guests_checkpoint_is_announced_between_its_output(tmp_path, engine):
    r = Repl(tmp_path, CKPT_BETWEEN, engine)
    text = r.run("continue 500")
    lines = text.splitlines()
    assert lines[0] == "A"
    assert lines[1] == "(the guest took checkpoint ckpt-0001 at tick 3 with 'ckpt')"
    assert lines[2].startswith("  memory marked copy-on-write")
    assert lines[3].startswith("    to ") and lines[3].endswith("ckpt-0001.mvc")
    assert lines[4] == "x="                              # its own line: the note starts fresh
    assert lines[5] == "(the guest took checkpoint ckpt-0002 at tick 6 with 'ckpt')"
    assert lines[8] == "1"                               # the guest's newline is not doubled
    assert lines[9] == "ran 500 ticks"
    assert text.count("the guest took checkpoint") == 2
    assert [job.name for job in r.s.jobs] == ["ckpt-0001", "ckpt-0002"]


def test_the_checkpoint_demo_announces_its_ckpt_before_the_rest_of_its_output(tmp_path, engine):
    disk = tmp_path / "d.img"
    create_raw_disk(str(disk), 64 * 1024)
    r = Repl(tmp_path, (ROOT / "programs" / "checkpoint_demo.asm").read_text(), engine,
             disk=str(disk))
    text = r.run("run")
    took = text.index("(the guest took checkpoint ckpt-0001")
    assert text.index("issuing 2 disk requests, then ckpt\n") < took
    assert took < text.index("in flight before ckpt: 2, after ckpt: 2") \
        < text.index("disk completions: 2") < text.index("halted at tick")


# --- 'timeline' draws the whole session -----------------------------------------------------------

def _svg_texts(path) -> list[str]:
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()                   # well-formed, one document
    return ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]


def test_timeline_after_restore_draws_every_machine_of_the_session(tmp_path, engine):
    r = Repl(tmp_path, CKPT_BETWEEN, engine)
    r.run("continue 100")                             # the guest took ckpt-0001 and ckpt-0002
    r.run("checkpoint mine")
    r.run("restore ckpt-0001")
    text = r.run(f"timeline {tmp_path / 't1.svg'}")   # the restored machine took none yet
    assert "timeline of 3 checkpoint(s) written to" in text, text
    r.run("continue 10")                              # the guest's second ckpt, again
    r.run("checkpoint after")
    text = r.run(f"timeline {tmp_path / 't2.svg'}")
    assert "timeline of 5 checkpoint(s) of 2 machines written to" in text, text
    texts = _svg_texts(tmp_path / "t2.svg")
    headings = [t for t in texts if t.startswith("machine ")]
    assert len(headings) == 2, headings
    assert headings[0].startswith("machine 1 of 2: from ") and "3 checkpoint(s)" in headings[0]
    assert headings[1].startswith("machine 2 of 2 (the current one): from ") \
        and "ckpt-0001.mvc, 2 checkpoint(s)" in headings[1]
    for name in ("ckpt-0001", "ckpt-0002", "mine", "ckpt-0003", "after"):
        assert any(t.startswith(f"{name}: stop") for t in texts), name


def test_timeline_with_no_checkpoint_in_the_session_says_so(tmp_path, engine):
    r = Repl(tmp_path, "        halt\n", engine)
    assert "no checkpoint has been taken in this session yet" in r.run("timeline t.svg", ok=False)


# --- console input fed after a halt is for the next run ------------------------------------------

ECHO = """\
loop:   in r1, 0x02
        blt r1, 0, done
        out 0x00, r1
        jmp loop
done:   halt
"""


def test_input_fed_after_a_halt_is_fed_to_the_next_run(tmp_path, engine):
    r = Repl(tmp_path, ECHO, engine)
    r.run("input one")
    assert r.run("run").startswith("one\nhalted at tick")
    text = r.run("input two")
    assert "fed 4 byte(s) after the halt: kept for the next run" in text, text
    assert max(map(len, text.splitlines())) <= 80, text
    text = r.run("run")
    assert "(console input fed after the halt or fault: 4 byte(s), fed to this run)" in text
    assert "\ntwo\nhalted at tick" in text, text
    r.run("input three")
    r.run("reset")
    assert r.s.machine.console.source.pending() == b"three\n"
    assert r.run("continue").startswith("three\nhalted")


def test_input_fed_after_a_fault_is_kept_and_unread_input_is_dropped_aloud(tmp_path, engine):
    r = Repl(tmp_path, "        in r1, 0x02\n        div r2, r1, r0\n        halt\n", engine)
    r.run("input ab")
    r.run("run")                                       # reads 'a', then divides by zero
    assert r.s.machine.fault is not None
    assert "after the fault: kept for the next run" in r.run("input -n c")
    text = r.run("reset")
    assert "(2 byte(s) of console input the program had not read are dropped" in text, text
    assert r.s.machine.console.source.pending() == b"c"
    r.run("input later")
    text = r.run(f"load {tmp_path / 'prog.asm'}")
    assert "(7 byte(s) of console input the program had not read are dropped" in text, text


def test_input_fed_after_a_halt_is_dropped_aloud_by_load(tmp_path, engine):
    r = Repl(tmp_path, ECHO, engine)
    r.run("run")
    r.run("input x")
    text = r.run(f"load {tmp_path / 'prog.asm'}")
    assert "(2 byte(s) of console input fed after the halt or fault are dropped" in text, text
    assert r.s.machine.console.source.pending() == b""


def test_restore_replays_input_fed_after_the_halt_once(tmp_path, engine):
    r = Repl(tmp_path, ECHO, engine)
    r.run("checkpoint start")
    r.run("input one")
    r.run("continue")
    r.run("input two")                                  # after the halt
    text = r.run("restore start")
    assert "console input: 8 byte(s) fed after that point are fed again" in text, text
    assert r.run("continue").startswith("one\ntwo\nhalted")
    assert "fed to this run" not in r.run("reset")      # not kept a second time


# --- text typed while the guest runs reaches the next prompt -----------------------------------------

class TypedMeanwhile:
    """A stand-in for the terminal guard that 'types' ``text`` into the
    prompt's input while the guest runs (the test cannot type at a real
    keyboard during a run; the text arrives exactly while a command runs)."""

    def __init__(self, inp, texts: list[str]):
        self.inp, self.texts, self.echoes_ctrl_c = inp, texts, True

    def __enter__(self):
        if self.texts:
            self.inp.send_text(self.texts.pop(0))
        return self

    def __exit__(self, *exc):
        return False


def test_text_typed_while_the_guest_runs_reaches_the_next_prompt(tmp_path, engine):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from minivm.repl import interact, make_prompt_session
    r = Repl(tmp_path, "top:    add r1, r1, 1\n        blt r1, 1000, top\n        halt\n", engine)
    with create_pipe_input() as inp:
        prompt = make_prompt_session(r.s, input=inp, output=DummyOutput())
        # typed during the first run: two whole commands, then half of one;
        # during the second: the rest of it, and Ctrl-D
        typed = ["regs r1\rcontinue 5\rprint r", "1\r\x04"]
        r.s.while_running = lambda: TypedMeanwhile(inp, typed)
        inp.send_text("continue 10\r")
        assert interact(r.s, prompt) == 0
    text = r.buffer.getvalue()
    ran10 = text.index("ran 10 ticks")
    regs = text.index("* r1  0x00000005 5")
    ran5 = text.index("ran 5 ticks")
    assert ran10 < regs < ran5 < text.index("r1 = 8"), text


def test_the_terminal_keeps_typed_text_through_ctrl_c_and_does_not_echo_it():
    """TypeAhead on a pseudo-terminal: echo and line editing are off, Ctrl-C
    still signals, and NOFLSH keeps what was typed before it (a terminal in
    its usual mode throws the line away at Ctrl-C: that lost typed-ahead text)."""
    import os
    import select
    import signal
    termios = pytest.importorskip("termios")
    from minivm.repl.frontend import TypeAhead
    master, slave = os.openpty()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # (the pty is no one's terminal)
    try:
        before = termios.tcgetattr(slave)
        with TypeAhead(slave) as guard:
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & (termios.ECHO | termios.ICANON)
            assert lflag & termios.ISIG and lflag & termios.NOFLSH
            assert not guard.echoes_ctrl_c
            os.write(master, b"reg\x03s r1\r")
            got = b""
            while not got.endswith(b"\r"):
                ready, _, _ = select.select([slave], [], [], 30)
                assert ready, f"only {got!r} arrived"
                got += os.read(slave, 100)
            assert got == b"regs r1\r"                       # nothing flushed, CR kept
        assert termios.tcgetattr(slave) == before             # the mode is put back
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(master)
        os.close(slave)


def test_the_terminal_guard_does_nothing_on_a_pipe():
    import os
    from minivm.repl.frontend import TypeAhead
    read, write = os.pipe()
    try:
        with TypeAhead(read) as guard:
            assert guard.echoes_ctrl_c
    finally:
        os.close(read)
        os.close(write)


class TtyBuffer(io.StringIO):
    def isatty(self):
        return True


class Quiet:
    """A terminal guard that hid (or, as usual, echoed) the ^C."""

    def __init__(self, echoes: bool):
        self.echoes_ctrl_c = echoes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("echoes", [True, False])
def test_ctrl_c_gets_a_fresh_line_only_when_the_terminal_echoed_it(tmp_path, engine, echoes):
    import os
    import signal
    r = Repl(tmp_path, "top:    add r1, r1, 1\n        jmp top\n", engine)
    r.buffer = r.s.out._stream = TtyBuffer()
    r.s.while_running = lambda: Quiet(echoes)
    inner = r.s.machine.hooks

    class CtrlCAt:                             # a real SIGINT, at a known tick
        def __getattr__(self, name):
            return getattr(inner, name)

        def next_tick(self):
            return 100

        def run_due(self, machine):
            machine.hooks = inner
            os.kill(os.getpid(), signal.SIGINT)

    r.s.machine.hooks = CtrlCAt()
    text = r.run("continue")
    assert r.s.sigint_seen
    first = text.splitlines()[0]
    assert (first == "") == echoes, text
    assert "interrupted (Ctrl-C) at tick" in text


def test_after_a_halt_pc_stays_at_the_halt_as_repl_md_says(tmp_path, engine):
    r = Repl(tmp_path, "        mov r1, 1\n        halt\n        nop\n", engine)
    r.run("run")
    assert r.s.machine.pc == 1 and r.s.machine.halted
    assert "  pc 1  prog.asm:2  halt\n" in r.run("regs")
    assert "the program has halted" in r.run("continue", ok=False)
    notes = (ROOT / "docs" / "repl.md").read_text()
    assert "* After `halt`, pc stays at the `halt`" in notes


def test_the_loaded_line_of_the_readmes_session_fits_80_columns(tmp_path, monkeypatch):
    """'minivm repl programs/checkpoint_demo.asm --disk d.img' told it in 95 columns."""
    monkeypatch.chdir(ROOT)
    disk = tmp_path / "d.img"
    create_raw_disk(str(disk), 64 * 1024)
    out = io.StringIO()
    Session("programs/checkpoint_demo.asm", disk=str(disk), out=out,
            checkpoint_dir=str(tmp_path / "ck"))
    first, second = out.getvalue().splitlines()[:2]
    assert first == "loaded programs/checkpoint_demo.asm: 88 instructions, 1536 data bytes;"
    assert second == f"  memory 1 MiB; disk {disk}"
