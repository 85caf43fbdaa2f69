"""The background save (P4) in the REPL: 'set save-rate PAGES [TICKS]',
'save-batch [PAGES]' (sb), 'show' and 'info settings', and their completion."""

from __future__ import annotations

import io
import re

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from minivm.repl import ReplCompleter, Session

# Fills pages 1..6 (one word each; page 0 stays untouched), stops at 'here', then spins: the save goes on
# while the guest runs.
PROG = """\
        mov r1, 0x1000
fill:   st r1, [r1]
        add r1, r1, 0x1000
        blt r1, 0x7000, fill
here:   mov r2, 0
spin:   add r2, r2, 1
        blt r2, 200, spin
        halt
"""


def session(tmp_path, engine) -> Session:
    (tmp_path / "prog.asm").write_text(PROG)
    out = io.StringIO()
    s = Session(str(tmp_path / "prog.asm"), mem="64K", out=out,
                checkpoint_dir=str(tmp_path / "ck"), engine=engine)
    s.buffer = out
    return s


def run(s, *lines) -> str:
    start = s.buffer.tell()
    for line in lines:
        assert s.execute(line), s.buffer.getvalue()[start:]
    return s.buffer.getvalue()[start:]


def page_row(text: str) -> str:
    return re.findall(r"^\s+0x0+\s+0\s+(\S+)$", text, re.M)[-1]


def test_a_slow_rate_shows_s_turning_into_s_while_the_guest_runs(tmp_path, engine):
    s = session(tmp_path, engine)
    out = run(s, "set save-rate 1 4")
    assert out == "save rate: 1 page(s) per batch, a batch every 4 guest tick(s)\n"
    run(s, "break here", "run", "checkpoint")
    rows = [page_row(run(s, "pages"))]
    for _ in range(3):
        run(s, "step 4")
        rows.append(page_row(run(s, "pages")))
    assert rows == [".SSSSSS.........", ".sSSSSS.........", ".ssSSSS.........",
                    ".sssSSS........."]
    out = run(s, "save-batch")
    assert out == "ckpt-0001: saved page(s) 4; 4 of 6 done, 2 to go\n"
    out = run(s, "sb 5")
    assert "ckpt-0001: saved page(s) 5, 6; complete" in out
    assert "checkpoint ckpt-0001 is complete: 6 page(s)" in out
    assert page_row(run(s, "pages")) == ".pppppp........."
    assert run(s, "save-batch") == \
        "no checkpoint is saving: nothing to save ('checkpoint' takes one)\n"


def test_the_default_rate_saves_nothing_in_a_short_run_and_the_rate_stays(tmp_path, engine):
    s = session(tmp_path, engine)
    run(s, "break here", "run", "checkpoint", "step 40")
    assert page_row(run(s, "pages")) == ".SSSSSS........."       # 16 pages per 2048 ticks
    run(s, "set save-rate 2 1", "reset")
    assert "2 page(s) per batch, a batch every 1 guest tick(s)" in run(s, "show save-rate")
    run(s, "run", "checkpoint", "step 2")
    assert page_row(run(s, "pages")) == ".ssssSS........."      # 2 pages a tick, 2 ticks
    run(s, "set save-rate default")
    assert "16 page(s) per batch, a batch every 2048 guest ticks" in run(s, "show")


def test_show_and_info_settings_list_every_setting(tmp_path):
    s = session(tmp_path, "interp")
    listing = run(s, "show")
    assert re.findall(r"^(\S+)\s", listing, re.M) == ["save-rate", "history-budget",
                                                      "history-interval"]
    assert run(s, "info settings") == listing
    assert run(s, "set history-interval 500", "show history-interval").endswith(
        "history-interval  500\n")


@pytest.mark.parametrize("line, message", [
    ("set save-rate 0", "the save rate (pages per batch) must be at least 1"),
    ("set save-rate fast", "'fast' is not a number; usage: set save-rate PAGES [TICKS]"),
    ("set save-rate 1 0", "the ticks between batches must be at least 1"),
    ("set save-rate 1 2 3", "usage: set save-rate PAGES [TICKS]"),
    ("set save-rate 99999999", "99999999 pages per batch is more than 1048576"),
    ("save-batch 0", "the batch must be at least 1"),
    ("save-batch 1 2", "too many arguments; usage: save-batch [PAGES]"),
    ("show speed", "no setting named 'speed' (save-rate, history-budget, history-interval)"),
])
def test_bad_settings_are_one_line_errors(tmp_path, line, message):
    s = session(tmp_path, "interp")
    start = s.buffer.tell()
    assert not s.execute(line)
    out = s.buffer.getvalue()[start:]
    assert out.startswith("error: ") and message in out and out.count("\n") == 1, out


def test_a_batch_waiting_for_an_inflight_read_says_so(tmp_path, engine):
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(64 * 1024))
    (tmp_path / "rd.asm").write_text("""\
        out 0x20, 1
        out 0x21, 0x1000
        out 0x22, 1
        out 0x23, 1
here:   nop
        halt
""")
    s = Session(str(tmp_path / "rd.asm"), mem="64K", disk=str(disk), out=io.StringIO(),
                checkpoint_dir=str(tmp_path / "ck"), engine=engine)
    s.buffer = s.out.stream
    run(s, "break here", "run", "checkpoint")
    out = run(s, "save-batch")
    assert "ckpt-0001: saved nothing: it waits for 1 disk read(s) in flight at the " \
           "checkpoint (P5)" in out


def completions(s, text):
    found = ReplCompleter(s).get_completions(Document(text), CompleteEvent(True))
    return {c.text for c in found}


def test_the_new_words_complete(tmp_path):
    s = session(tmp_path, "interp")
    assert "save-rate" in completions(s, "set sa")
    assert {"save-rate", "history-budget", "history-interval"} <= completions(s, "show ")
    assert "settings" in completions(s, "info se")
    assert {"save-batch", "show"} <= completions(s, "s")
    help_text = run(s, "help save-batch")
    assert help_text.startswith("save-batch [PAGES]   (aliases: sb)")
    assert "set save-rate" in run(s, "help set")


def test_the_settings_are_the_sessions_and_need_no_program(tmp_path, engine):
    """'show' lists them at 'minivm>', so 'set' of one must work there too, and
    stay for the program loaded next; 'set REG' still wants a program."""
    (tmp_path / "prog.asm").write_text(PROG)
    out = io.StringIO()
    s = Session(None, out=out, checkpoint_dir=str(tmp_path / "ck"), engine=engine)
    assert s.execute("set save-rate 1 4") and s.execute("set history-budget 1M")
    assert not s.execute("set r1 3")
    assert "no program loaded" in out.getvalue()
    assert s.execute(f"load {tmp_path / 'prog.asm'}") and s.execute("show save-rate")
    assert out.getvalue().endswith(
        "save-rate         1 page(s) per batch, a batch every 4 guest tick(s)\n")


def test_the_default_rate_is_told_in_lines_of_80_columns(tmp_path, engine):
    s = session(tmp_path, engine)
    for line in ("set save-rate default", "show"):
        out = run(s, line)
        assert "then twice as far apart" in " ".join(out.split()), out
        assert max(map(len, out.splitlines())) <= 80, out
