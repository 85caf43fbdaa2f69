"""The REPL's command layer (minivm/repl/: core, registry, commands/), driven without a terminal."""

from __future__ import annotations

import io
import os
import re
import signal
import threading

import pytest

from minivm.assembler import assemble
from minivm.checkpoint import FIRST_SLICE_TICKS, Checkpointer
from minivm.disks import create_raw_disk
from minivm.engine import DEFAULT_ENGINE
from minivm.machine import Machine
from minivm.repl import COMMANDS, Session
from minivm.resume import read_checkpoint, resume
from minivm.store import FileStore

CALLS = """\
.equ N, 3
        mov r1, 0
main_loop:
        add r1, r1, 1
        call show            ; prints r1
after_call:
        blt r1, N, main_loop
        st r1, [counter]
        halt
show:
        out 0x01, r1
        out 0x00, 10
        ret
.data
msg:     .asciz "Hi!"
counter: .word 0
"""

FACT = """\
        mov r1, 3
        call fact
        out 0x01, r2
        halt
fact:   bgt r1, 1, rec
        mov r2, 1
        ret
rec:    push r1
        sub r1, r1, 1
        call fact
back:   pop r1
        mul r2, r2, r1
        ret
"""

SPIN = """\
top:    add r1, r1, 1
        jmp top
"""

ECHO = """\
loop:   in r1, 0x02
        blt r1, 0, done
        out 0x00, r1
        jmp loop
done:   halt
"""

FAULT = """\
        mov r1, 7
        mov r2, 0
        div r3, r1, r2
        halt
"""

TIMER = """\
        out 0x11, on_tick
        out 0x10, 5
        ei
spin:   jmp spin
on_tick:
        add r5, r5, 1
        iret
"""

# Four data pages, then a long loop so that background saving gets slices.
PAGES = """\
        mov r1, 1
        st r1, [0x0000]
        st r1, [0x1000]
        st r1, [0x2000]
        st r1, [0x3000]
        mov r2, 0
wait:   add r2, r2, 1
        blt r2, 3000, wait
        st r1, [0x1004]
        halt
"""

DISK = """\
        out 0x20, 0          ; block 0
        out 0x21, buf
        out 0x22, 1
        out 0x23, 2          ; write buf -> block 0
issued:
        in r2, 0x24
        bne r2, 0, issued
second:
        out 0x20, 1          ; block 1
        out 0x23, 2          ; write buf -> block 1
drain:  in r2, 0x24
        bne r2, 0, drain
        halt
.data
buf:    .ascii "hello, disk"
"""


class Harness:
    """A Session writing to a buffer, on ``engine`` (required: every test that
    runs commands runs on both engines, through the ``harness`` fixture)."""

    def __init__(self, tmp_path, source: str | None = None, name: str = "prog.asm", *,
                 engine: str, **options):
        self.tmp = tmp_path
        self.engine = engine
        self.buffer = io.StringIO()
        self.session = Session(out=self.buffer, checkpoint_dir=str(tmp_path / "ckpts"),
                               engine=engine, **options)
        if source is not None:
            self.write(name, source)
            self.ok(f"load {tmp_path / name}")

    def write(self, name: str, source: str) -> str:
        path = self.tmp / name
        path.write_text(source)
        return str(path)

    def run(self, line: str) -> tuple[bool, str]:
        start = len(self.buffer.getvalue())
        ok = self.session.execute(line)
        return ok, self.buffer.getvalue()[start:]

    def ok(self, line: str) -> str:
        ok, text = self.run(line)
        assert ok, f"{line!r} failed:\n{text}"
        assert "error: " not in text, text
        return text

    def fails(self, line: str) -> str:
        ok, text = self.run(line)
        assert not ok, f"{line!r} should have failed:\n{text}"
        assert text.startswith("error: ") and "Traceback" not in text
        return text

    @property
    def m(self):
        return self.session.machine


@pytest.fixture
def harness(tmp_path, engine):
    """Harness(SOURCE, NAME, **options) in tmp_path, on each engine in turn."""
    def make(source: str | None = None, name: str = "prog.asm", **options) -> Harness:
        return Harness(tmp_path, source, name, engine=engine, **options)
    return make


@pytest.fixture
def calls(harness):
    return harness(CALLS, "calls.asm")


@pytest.fixture
def calls_once(tmp_path):
    """CALLS on the default engine only: for tests of parsing, help and error
    messages, which do not depend on the engine."""
    return Harness(tmp_path, CALLS, "calls.asm", engine=DEFAULT_ENGINE)


# --- help, aliases and errors --------------------------------------------------------------

def test_help_lists_every_command_and_each_has_examples(calls_once):
    text = calls_once.ok("help")
    for name, cmd in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)}\b", text, re.M), name
        detail = calls_once.ok(f"help {name}")
        assert detail.startswith(cmd.usage)
        assert "Example" in detail, name
        for alias in cmd.aliases:
            assert alias in detail
            assert calls_once.ok(f"help {alias}") == detail
    # the list is for an 80-column terminal: no line wraps there
    assert max(map(len, text.splitlines())) <= 80, [l for l in text.splitlines() if len(l) > 80]


def test_unknown_command_suggests_and_session_goes_on(calls_once):
    text = calls_once.fails("stpe")
    assert text == "error: unknown command 'stpe'; did you mean 'step'? (type 'help')\n"
    assert "did you mean 'break'" in calls_once.fails("braek loop")
    assert calls_once.fails("frobnicate 3").startswith("error: unknown command 'frobnicate'")
    calls_once.ok("step")
    assert calls_once.m.tick == 1
    assert calls_once.session.errors == 3


def test_bad_arguments_get_one_line_with_usage(calls_once):
    assert "usage: step [N]" in calls_once.fails("step x")
    assert "at least 1" in calls_once.fails("step 0")
    assert "no label or register named 'nosuch'" in calls_once.fails("break nosuch")
    assert "did you mean 'main_loop'" in calls_once.fails("break main_lop")
    assert "no instruction at 99" in calls_once.fails("b 99")
    assert "data label" in calls_once.fails("break counter")
    assert "code label" in calls_once.fails("x main_loop")
    assert "outside memory" in calls_once.fails("x 0x200000")
    assert "no breakpoint, watchpoint or catchpoint number 7" in calls_once.fails("delete 7")
    assert "no checkpoint named 'nope'" in calls_once.fails("restore nope")
    assert "usage: diff A [B]" in calls_once.fails("diff a b c")
    assert "B defaults to 'now'" in calls_once.fails("diff")
    assert "unknown info topic" in calls_once.fails("info frob")
    assert "missing ')'" in calls_once.fails("print (1 + 2")
    assert "division by zero" in calls_once.fails("print 1/0")
    for text in calls_once.buffer.getvalue().splitlines():
        assert text.startswith("error: ") or text.startswith(("loaded", "  memory", "=>"))


def test_commands_without_a_program(harness):
    h = harness()
    for line in ("run", "step", "regs", "x 0", "break 0", "checkpoint", "pages", "devices"):
        assert "no program loaded; 'load PROG' first" in h.fails(line)
    assert h.session.prompt_text() == "minivm> "
    assert "load PROG" in h.session.toolbar_text()


def test_load_errors_are_reported_and_the_session_continues(calls_once, tmp_path):
    assert "does not exist" in calls_once.fails(f"load {tmp_path / 'missing.asm'}")
    bad = calls_once.write("bad.asm", "    mov r1,\n")
    text = calls_once.fails(f"load {bad}")
    assert "bad.asm:1" in text and "^" in text and "Traceback" not in text
    assert calls_once.session.image.source_file.endswith("calls.asm")   # old program kept
    calls_once.ok("step")


def test_internal_errors_never_give_a_traceback(calls_once, monkeypatch):
    def boom(self, args):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(COMMANDS["regs"], "handler", boom)
    text = calls_once.fails("regs")
    assert "internal error: RuntimeError: kaboom" in text
    calls_once.ok("step")


# --- running, breakpoints, stepping -----------------------------------------------------------

def test_break_by_label_address_and_file_line(calls):
    assert "Breakpoint 1: pc 1 <main_loop>  calls.asm:4  add r1, r1, 1" in calls.ok("break main_loop")
    assert "Breakpoint 2: pc 3 <after_call>  calls.asm:7" in calls.ok("b 3")
    text = calls.ok("b calls.asm:11")
    assert "Breakpoint 3: pc 6 <show>  calls.asm:11  out 0x01, r1" in text
    text = calls.ok("b :10")           # line 10 is the label line: the next one with code
    assert "line 10 has no instruction; using line 11" in text
    assert "already at pc 6" in text
    assert "Breakpoint 4: pc 2 <main_loop+1>" in calls.ok("br main_loop+1")
    assert "not 'other.asm'" in calls.fails("b other.asm:3")
    assert "after the last instruction" in calls.fails("b :99")
    listing = calls.ok("breakpoints")
    assert [int(n) for n in re.findall(r"^\s+(\d+)\s+breakpoint", listing, re.M)] == [1, 2, 3, 4]
    assert calls.ok("info breakpoints") == listing == calls.ok("i b")
    assert calls.m.breakpoints == {1, 3, 6, 2}

    text = calls.ok("run")
    assert "Breakpoint 1 at tick 1\n=> pc 1 <main_loop>  calls.asm:4  add r1, r1, 1\n" in text
    assert "Breakpoint 4 at tick 2" in calls.ok("c")
    assert "Breakpoint 3 at tick 3" in calls.ok("continue")
    text = calls.ok("c")
    assert text.startswith("1\nBreakpoint 2 at tick 6")
    assert "(hit 1 time)" in calls.ok("breakpoints")

    assert calls.ok("delete 2 3") == "deleted 2, 3\n"
    assert calls.m.breakpoints == {1, 2}
    assert "deleted all breakpoints and watchpoints (2)" in calls.ok("delete")
    assert calls.m.breakpoints == set()
    assert calls.ok("c") == "2\n3\nhalted at tick 21: exit status 0 (r0 = 0)\n"
    assert calls.m.halted


def test_break_without_argument_uses_pc_and_delete_alone_removes_watches_too(calls):
    calls.ok("step 2")
    assert "Breakpoint 1: pc 2" in calls.ok("break")
    calls.ok("watch counter")
    assert "deleted all breakpoints and watchpoints (2)" in calls.ok("d")
    assert calls.m.breakpoints == set() and calls.m.watches == {}
    assert calls.ok("delete") == ("nothing to delete: no breakpoints, watchpoints or "
                                  "catchpoints are set\n")


def test_step_shows_each_source_line_and_the_next(calls):
    text = calls.ok("step 3")
    assert text == ("  tick 0  pc 0  calls.asm:2  mov r1, 0\n"
                    "  tick 1  pc 1 <main_loop>  calls.asm:4  add r1, r1, 1\n"
                    "  tick 2  pc 2 <main_loop+1>  calls.asm:5  call show\n"
                    "=> pc 6 <show>  calls.asm:11  out 0x01, r1\n")
    text = calls.ok("s 2")           # guest output interleaves, lines are not doubled
    assert text == ("  tick 3  pc 6 <show>  calls.asm:11  out 0x01, r1\n"
                    "1\n"
                    "  tick 4  pc 7 <show+1>  calls.asm:12  out 0x00, 10\n"
                    "=> pc 8 <show+2>  calls.asm:13  ret\n")
    assert calls.session.prompt_text() == "minivm[tick 5 pc 8]> "


def test_step_stops_at_a_breakpoint_on_the_way(calls):
    calls.ok("break show")
    text = calls.ok("step 10")
    assert text.count("  tick ") == 3
    assert "Breakpoint 1 at tick 3\n=> pc 6 <show>" in text


def test_next_steps_over_a_call(calls):
    calls.ok("step 2")
    text = calls.ok("next")
    assert text == ("  tick 2  pc 2 <main_loop+1>  calls.asm:5  call show\n"
                    "1\n"
                    "=> pc 3 <after_call>  calls.asm:7  blt r1, N, main_loop\n")
    assert calls.m.tick == 6 and calls.m.breakpoints == set()
    assert calls.ok("n") .startswith("  tick 6  pc 3 <after_call>")
    assert calls.m.pc == 1


def test_next_stops_at_a_breakpoint_inside_the_callee(calls):
    calls.ok("step 2")
    calls.ok("b show+1")
    text = calls.ok("next")
    assert "Breakpoint 1 at tick 4\n=> pc 7 <show+1>" in text
    assert calls.m.breakpoints == {7}             # the temporary breakpoint is gone


def test_next_over_a_recursive_call_returns_at_the_same_depth(harness):
    h = harness(FACT, "fact.asm")
    h.ok("break rec")
    h.ok("run")
    h.ok("step 2")                               # push r1; sub r1, r1, 1
    h.ok("delete")                               # (it would stop the recursion at rec)
    assert h.session.source_of(h.m.pc) == "call fact"
    h.ok("next")                                 # the whole recursion below depth 1
    assert h.session.label_of(h.m.pc) == "<back>"
    assert h.m.regs[2] == 2                      # fact(2), not fact(1) from the deeper return
    assert h.ok("c").startswith("6\nhalted at tick ")


def test_watch_stops_when_the_word_changes(calls):
    text = calls.ok("watch counter")
    assert text == "Watchpoint 1: memory, the word at 0x4 <counter> (now 0)\n"
    text = calls.ok("continue")
    assert "Watchpoint 1: word at 0x4 <counter> changed 0 -> 3 (0x0 -> 0x3)" in text
    assert text.startswith("1\n2\n3\n")
    assert text.endswith("=> pc 5 <after_call+2>  calls.asm:9  halt\n")
    assert "= 3  (hit 1 time)" in calls.ok("breakpoints")
    assert "outside memory" in calls.fails("watch 0x200000")
    assert "already watches the word at 0x4" in calls.ok("watch 4")


def test_run_after_halt_starts_again_continue_does_not(calls):
    calls.ok("run")
    assert calls.m.halted
    assert calls.session.prompt_text() == "minivm[halted tick 21]> "
    assert "'run' or 'reset' starts it again" in calls.fails("continue")
    assert "nothing to step" in calls.fails("step")
    text = calls.ok("run")
    assert "(starting again from the beginning)" in text and "halted at tick 21" in text


def test_guest_fault_is_shown_and_the_session_continues(harness):
    h = harness(FAULT, "fault.asm")
    text = h.ok("run")
    assert "fault.asm:3: fault: division by zero" in text and "(pc 2, tick 2)" in text
    assert "then 'restore' or 'reset'" in text
    assert h.session.prompt_text() == "minivm[fault tick 2 pc 2]> "
    assert "has faulted" in h.fails("step")
    assert "* r1  0x00000007 7 " in h.ok("regs")
    h.ok("set r2 1")
    h.ok("reset")
    assert h.m.tick == 0 and h.m.fault is None
    h.ok("set r2 7")                          # too late: mov r2, 0 runs again
    assert "fault" in h.ok("c")


def test_ctrl_c_simulated_with_stop_requested_keeps_state_consistent(harness):
    h = harness(SPIN, "spin.asm")

    class StopAt:                       # what the SIGINT handler does, at a known tick
        def __init__(self, tick, inner):  # (the session's checkpointer stays below)
            self.tick, self.inner = tick, inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def next_tick(self):
            return self.tick

        def run_due(self, machine):
            machine.stop_requested = True
            machine.hooks = self.inner

    h.m.hooks = StopAt(1000, h.m.hooks)
    text = h.ok("continue")
    assert text == "interrupted (Ctrl-C) at tick 1000\n=> pc 0 <top>  spin.asm:1  add r1, r1, 1\n"
    assert h.m.regs[1] == 500 and h.m.pc == 0
    assert h.session.toolbar_text().endswith("| interrupted")
    h.ok("step 2")
    assert h.m.regs[1] == 501 and h.m.tick == 1002
    h.m.hooks = StopAt(5000, h.m.hooks)
    assert "interrupted (Ctrl-C) at tick 5000" in h.ok("c")
    assert h.m.stop_requested is False


def test_continue_with_a_tick_limit(harness):
    h = harness(SPIN, "spin.asm")
    assert h.ok("c 100") == "ran 100 ticks\n=> pc 0 <top>  spin.asm:1  add r1, r1, 1\n"
    assert h.m.regs[1] == 50 and h.m.tick == 100
    h.ok("break top+1")
    assert h.ok("continue 1000").startswith("Breakpoint 1 at tick 101")
    assert "usage: continue [TICKS]" in h.fails("c soon")


def test_real_sigint_stops_the_guest_and_restores_the_handler(harness):
    h = harness(SPIN, "spin.asm")
    before = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        text = h.ok("continue")
    finally:
        timer.cancel()
    assert text.startswith("interrupted (Ctrl-C) at tick ")
    assert h.m.regs[1] * 2 == h.m.tick and h.m.tick > 0
    assert signal.getsignal(signal.SIGINT) is before
    h.ok("step")


# --- inspecting -------------------------------------------------------------------------------

def test_regs_marks_changes_and_info_registers_alias(calls):
    calls.ok("step 2")
    text = calls.ok("regs")
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[1].startswith("* r1  0x00000001 1   ")
    assert lines[0].startswith("  r0  0x00000000 0   ") and lines[7].endswith("sp  0x00100000 1048576")
    assert "  pc 2 <main_loop+1>  calls.asm:5  call show" in text
    assert "tick 2   interrupts disabled   (* changed by the last run/step)" in text
    assert calls.ok("i r") == text == calls.ok("info registers")
    assert calls.ok("regs r1 sp").splitlines() == ["* r1  0x00000001 1",
                                                   "  sp  0x00100000 1048576"]
    assert "not a register" in calls.fails("regs r99")


def test_print_and_set_accept_labels_registers_and_expressions(calls):
    calls.ok("step 2")
    assert calls.ok("print counter + 4 * 2") == "counter + 4 * 2 = 12  (0x0000000c)\n"
    assert calls.ok("p (N << 2) | 1") == "(N << 2) | 1 = 13  (0x0000000d)\n"
    assert calls.ok("p r1 - 3") == "r1 - 3 = -2  (0xfffffffe)\n"
    assert calls.ok("p 'A'") == "'A' = 65  (0x00000041)\n"
    assert calls.ok("p [msg]") == f"[msg] = {int.from_bytes(b'Hi!', 'little')}  (0x00216948)\n"
    assert calls.ok("set r4 = r1 * 10") == "r4 = 10 (0x0000000a)\n"
    assert calls.ok("set [counter] 0x1234") == "word at 0x4 <counter> = 4660\n"
    assert calls.m.memory.load_word(4) == 0x1234
    assert "pc set: pc 1 <main_loop>" in calls.ok("set pc main_loop")
    assert calls.m.pc == 1
    assert "does not fit" in calls.fails("set r1 0x100000000")


def test_mem_dump_hex_and_ascii_and_continuation(calls):
    text = calls.ok("x msg 8")
    assert text == ("0x00000000  48 69 21 00 00 00 00 00                           "
                    "|Hi!.....        |  <msg, counter@0x4>\n")
    assert calls.ok("mem 0 8") == text
    calls.ok("x 30 4")
    text = calls.ok("x")                       # continues after the last dump: 0x22..0x25
    assert text == ("0x00000020        00 00 00 00                                 "
                    "|  ....          |\n")
    assert "give an address" in Harness(calls.tmp, CALLS, "c2.asm", engine=calls.engine).fails("x")


def test_disasm_marks_pc_and_breakpoints(calls):
    calls.ok("b show")
    calls.ok("step 2")
    text = calls.ok("disasm")
    assert "         main_loop:\n" in text
    assert re.search(r"^=>\s+2    call show\s+; calls.asm:5$", text, re.M)
    assert re.search(r"^  b\s+6    out 0x01, r1\s+; calls.asm:11$", text, re.M)
    text = calls.ok("disasm show 2")
    assert text.splitlines() == ["         show:",
                                 "  b    6    out 0x01, r1   ; calls.asm:11",
                                 "       7    out 0x00, 10   ; calls.asm:12"]
    assert calls.ok("dis calls.asm:13 1").strip().startswith("8    ret")


def test_devices_show_timer_interrupts_and_console(harness):
    h = harness(TIMER, "timer.asm")
    h.ok("step 3")
    text = h.ok("devices")
    assert "timer       period 5 ticks, next at tick 6, handler 4 <on_tick>, fired 0 time(s)" in text
    assert "interrupts  enabled; none pending" in text
    assert "console     0 input byte(s) fed and not yet read" in text
    assert "disk        none attached" in text
    text = h.ok("step 4")
    assert "(interrupt taken: jumped to pc 4 <on_tick>" in text
    h.ok("input abc")
    assert "console     4 input byte(s) fed and not yet read" in h.ok("info devices")


def test_input_feeds_the_guest_and_end_of_input_reads_minus_one(harness):
    h = harness(ECHO, "echo.asm")
    assert h.ok("input hi") == "fed 3 byte(s); 3 buffered, not yet read\n"
    assert h.ok('input -n "\\tA\\x42 "') == "fed 4 byte(s); 7 buffered, not yet read\n"
    text = h.ok("continue")
    assert text == "hi\n\tAB \nhalted at tick 31: exit status 0 (r0 = 0)\n"
    assert h.m.console.input_consumed == 7
    assert "unknown escape" in h.fails("input \\q")


def test_devices_show_disk_requests_in_flight_and_diff_shows_disk_blocks(tmp_path, harness):
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), 16 * 512)
    h = harness(None, disk=str(disk))
    h.ok(f"load {h.write('disk.asm', DISK)}")
    h.ok("break issued")
    h.ok("run")
    text = h.ok("devices")
    assert "1 request(s) in flight" in text
    assert "#1 write blocks 0..0 <- mem 0x0 (issued tick 3, done tick 113)" in text
    text = h.ok("checkpoint a")
    assert "disk writes now go to the overlay" in text and "1 disk request(s) in flight" in text
    h.ok("delete")
    h.ok("b second")
    h.ok("c")                                   # the write in flight completes (P5)
    h.ok("delete")
    h.ok("c")                                   # block 1 is written after the checkpoint
    assert h.m.halted
    text = h.ok("diff a now")
    assert "  disk: 1 block(s) differ: 1\n" in text
    assert "disk requests in flight 1 -> 0" in text
    h.ok("restore a")
    assert len(h.m.disk.queue) == 1             # the in-flight write belongs to the checkpoint
    h.ok("c")
    assert h.m.halted
    with open(disk, "rb") as f:                  # the checkpointed disk: write #1 only (P5)
        data = f.read(1024)
    assert data[:11] == b"hello, disk" and data[512:523] == bytes(11)


# --- checkpoints ------------------------------------------------------------------------------

def test_checkpoint_and_restore_reproduce_the_state_and_the_rest_of_the_run(calls):
    calls.ok("break after_call")
    calls.ok("run")
    at_ckpt = (list(calls.m.regs), calls.m.pc, calls.m.tick)
    text = calls.ok("checkpoint first")
    assert text.startswith("checkpoint first at tick 6, pc 3 <after_call>")
    assert calls.session.toolbar_text().endswith("| saving first: 0 of 2 pages")
    calls.ok("delete")
    rest = calls.ok("continue")
    final = (list(calls.m.regs), calls.m.tick, calls.m.memory.read_bytes(0, 8))
    assert "checkpoint first is complete: 2 page(s)" in rest

    text = calls.ok("restore first")
    assert text.startswith("restored first (tick 6) from ")
    assert (list(calls.m.regs), calls.m.pc, calls.m.tick) == at_ckpt
    again = calls.ok("continue")
    assert again == rest.replace(rest[rest.index("checkpoint first is"):], "")
    assert (list(calls.m.regs), calls.m.tick, calls.m.memory.read_bytes(0, 8)) == final

    path = calls.session.jobs[0].location    # by file path works too
    assert "restored first (tick 6)" in calls.ok(f"restore {path}")


def test_checkpoints_list_states_and_sizes(calls):
    assert "no checkpoints yet" in calls.ok("checkpoints")
    calls.ok("step 2")
    calls.ok("checkpoint")
    text = calls.ok("checkpoints")
    assert re.search(r"ckpt-0001\s+2\s+saving, 0 of 1 pages\s+-\s+\S*ckpt-0001.mvc", text)
    calls.ok("sync")
    text = calls.ok("i c")
    size = os.path.getsize(calls.session.jobs[0].location)
    assert re.search(rf"ckpt-0001\s+2\s+complete, 1 page\(s\)\s+{size} B", text)
    assert "there is already a checkpoint named 'ckpt-0001'" in calls.fails("checkpoint ckpt-0001")
    assert "cannot name a checkpoint" in calls.fails("checkpoint ../evil")
    assert "cannot name a checkpoint" in calls.fails("checkpoint now")
    # A new session sees the file from the earlier one.
    h2 = Harness(calls.tmp, CALLS, "calls2.asm", engine=calls.engine)
    assert re.search(r"ckpt-0001\s+2\s+complete \(earlier session\)", h2.ok("checkpoints"))
    assert "restored ckpt-0001 (tick 2)" in h2.ok("restore ckpt-0001")
    assert "ckpt-0002" in h2.ok("ckpt")


def test_restore_feeds_again_the_input_fed_after_the_checkpoint(harness):
    h = harness(ECHO, "echo.asm")
    h.ok("checkpoint start")
    h.ok("input abc")
    first = h.ok("continue")
    assert first.startswith("abc\nhalted")
    text = h.ok("restore start")
    assert "console input: 4 byte(s) fed after that point are fed again" in text
    assert h.ok("continue").startswith("abc\nhalted")


def test_pages_before_and_after_a_checkpoint_and_after_a_store(harness):
    h = harness(PAGES, "pages.asm", mem="64K", pages_per_slice=1)
    h.ok("break wait")
    h.ok("run")
    text = h.ok("pages")
    assert "16 pages of 4 KiB (64 KiB), 4 touched:\n  4 private, 0 shared (0 saved), 0 copied" in text
    assert "  0x0000  0  pppp............\n" in text
    h.ok("checkpoint")
    text = h.ok("pages")
    assert "0 private, 4 shared (0 saved), 0 copied (0 saved)" in text and "  0x0000  0  SSSS............\n" in text
    assert "ckpt-0001 is saving: 0 of 4 page(s)" in text
    h.ok("set [0x1000] 7")                       # a store into a shared page copies it (P3)
    text = h.ok("info pages")
    assert "  0x0000  0  SCSS............\n" in text
    assert "0 private, 3 shared (0 saved), 1 copied (0 saved)" in text
    assert h.m.memory.page_kind(1) == "copied"
    h.ok("delete")
    h.ok("b wait + 1")
    for _ in range(FIRST_SLICE_TICKS + 2):       # past the first background-save batch only
        h.m.run(max_ticks=1)
    text = h.ok("pages")                         # one page per slice: page 0 is saved
    assert "  0x0000  0  sCSS............\n" in text
    assert "0 private, 3 shared (1 saved), 1 copied (0 saved)" in text
    assert "ckpt-0001 is saving: 1 of 4 page(s)" in text
    assert "saving ckpt-0001: 1 of 4 pages" in h.session.toolbar_text()
    h.ok("sync")
    text = h.ok("pages")
    assert "  0x0000  0  pcpp............\n" in text
    assert "3 private, 0 shared (0 saved), 1 copied (1 saved)" in text
    assert "complete" in h.ok("checkpoints")


def test_pages_of_a_big_memory_fold_untouched_rows(harness):
    h = harness(CALLS, "calls.asm", mem="4G")
    h.ok("run")
    text = h.ok("pages")
    lines = text.splitlines()
    assert lines[0] == "1048576 pages of 4 KiB (4 GiB), 2 touched:"
    assert lines[1].startswith("  2 private, 0 shared")
    assert "  0x00000000       0  p......" in text          # 4 GiB: the widest
    assert "  ... pages 64-1048511 untouched (0x00040000..0xfffbffff)" in text
    assert lines[-4].endswith(".p")
    assert len(lines) < 10


def test_diff_between_checkpoints_and_now(calls):
    calls.ok("step 3")
    calls.ok("checkpoint a")
    calls.ok("c 12")
    calls.ok("checkpoint b")
    calls.ok("sync")
    text = calls.ok("diff a b")
    lines = text.splitlines()
    assert lines[0] == "diff a (tick 3) -> b (tick 15)"
    assert lines[1] == "  registers: r1 1 -> 3"
    assert lines[2] == "  memory: same"
    assert lines[3] == "  disk: none attached"
    assert lines[4] == "  devices: console bytes_written 0 -> 4"
    assert calls.ok("diff b now").splitlines()[1:3] == ["  registers: same", "  memory: same"]
    calls.ok("run")
    text = calls.ok("diff a")
    lines = text.splitlines()
    assert lines[0] == "diff a (tick 3) -> now (tick 21)"
    assert lines[1] == "  registers: r1 1 -> 3, sp 1048572 -> 1048576, pc 6 -> 5, halted False -> True"
    assert lines[2] == "  memory: 1 page(s) differ: 0 (1 byte)"
    assert "console bytes_written 0 -> 6" in lines[4]
    assert "nothing left to checkpoint" in calls.fails("checkpoint c")


def test_reset_reloads_the_program_and_keeps_breakpoints(calls):
    calls.ok("b show")
    calls.ok("run")
    calls.ok("input xyz")
    calls.write("calls.asm", CALLS.replace(".equ N, 3", ".equ N, 1"))
    text = calls.ok("reset")
    assert "reset: a fresh machine at tick 0" in text
    assert calls.m.tick == 0 and calls.m.console.source.buffered() == 0
    assert "(a different program" in text       # the edited file is re-read
    assert calls.m.breakpoints == set()


def test_quit_and_close_finish_saving_checkpoints(calls):
    calls.ok("step")
    calls.ok("checkpoint")
    job = calls.session.jobs[0]
    assert job.status == "saving"
    calls.ok("quit")
    assert calls.session.quit_requested
    start = len(calls.buffer.getvalue())
    calls.session.close()
    text = calls.buffer.getvalue()[start:]
    assert "finishing ckpt-0001 before quitting" in text
    assert job.status == "complete" and os.path.exists(job.location)


def test_guest_ckpt_instruction_is_announced(harness):
    h = harness("    mov r1, 1\n    ckpt\n    mov r1, 2\n    halt\n", "ck.asm")
    text = h.ok("run")
    assert "(the guest took checkpoint ckpt-0001 at tick 2 with 'ckpt'" in text
    assert "checkpoint ckpt-0001 is complete" in text
    h.ok("restore ckpt-0001")
    assert h.m.regs[1] == 1 and h.m.pc == 2


def test_core_checkpoint_of_a_machine_halted_on_its_last_instruction_resumes(tmp_path, engine):
    machine = Machine(assemble("    mov r1, 1\n    halt\n", "h.asm"), engine=engine)
    assert machine.run().reason == "halt" and machine.pc == 1   # stopped at its halt
    store = FileStore(str(tmp_path))
    checkpointer = Checkpointer(machine, store)
    job = checkpointer.take("repl")
    checkpointer.finish_all()
    resumed, _ = resume(read_checkpoint(job.location), store, engine=engine)
    assert resumed.halted and resumed.regs[1] == 1 and resumed.tick == 2


DMA_READ = """\
        out 0x20, 0
        out 0x21, buf
        out 0x22, 1
        out 0x23, 1          ; read block 0 -> buf
spin:   in r2, 0x24
        bne r2, 0, spin
        halt
.data
buf:    .space 512
"""


def test_core_watch_sees_a_dma_read_landing(tmp_path, harness):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"DATA" + bytes(508))
    h = harness(None, disk=str(disk))
    h.ok(f"load {h.write('dma.asm', DMA_READ)}")
    h.ok("watch buf")
    text = h.ok("continue")
    assert "Watchpoint 1: word at 0x0 <buf> changed 0 -> 1096040772" in text


# --- the dispatcher and the shared expression grammar --------------------------------------

def test_the_dispatcher_checks_machine_and_arity_once(harness):
    h = harness()
    for line in ("regs", "i r", "step", "x msg", "checkpoint", "run"):
        assert "no program loaded" in h.fails(line), line
    assert "give an expression" in h.fails("print")
    assert h.ok("print 6 * 7") == "6 * 7 = 42  (0x0000002a)\n"      # no machine needed
    calls = harness(CALLS, "calls.asm")
    assert "'run' takes no arguments" in calls.fails("run 5")
    assert "too many arguments; usage: next [N]" in calls.fails("next 1 2")
    assert "usage: mem ADDR [N] (put an expression" in calls.fails("x msg 4 4")
    calls.ok("run")
    assert "nothing to step" in calls.fails("next")
    assert "nothing to continue" in calls.fails("c")


def test_expressions_use_the_assembler_rules_with_registers_and_memory(calls):
    calls.ok("step 2")
    assert calls.ok("p -7 / 2") == "-7 / 2 = -3  (0xfffffffd)\n"          # C: toward zero
    assert calls.ok("p -7 % 2") == "-7 % 2 = -1  (0xffffffff)\n"
    assert calls.ok("p [[counter] + msg]").endswith(calls.ok("p [msg]").split(" = ")[1])
    assert calls.ok("p ~r1 & 0xff") == "~r1 & 0xff = 254  (0x000000fe)\n"
    assert calls.ok("p tick * 2 + pc") == "tick * 2 + pc = 6\n"
    assert calls.fails("p 1 << 65") == "error: shift count 65 is out of range in '1 << 65'\n"
    assert calls.fails("p 1 2") == "error: unexpected '2' in '1 2'\n"
    assert calls.fails("p [msg") == "error: missing ']' in '[msg'\n"
    assert calls.fails("p 1 +") == "error: '1 +' ends too early\n"
    assert calls.fails("p 1 ; 2").startswith("error: cannot read '; 2' in '1 ; 2'")
    assert calls.fails("p $x").startswith("error: cannot read '$x' in '$x'")
    assert "no label or register named 'r16'" in calls.fails("p r16")


def test_a_deeply_nested_expression_is_one_line(calls_once):
    assert calls_once.ok("p " + "(" * 300 + "1" + ")" * 300).endswith(" = 1\n")  # no tree depth
    assert calls_once.fails("p " + "-" * 300 + "1") == "error: that expression is nested too deeply\n"
