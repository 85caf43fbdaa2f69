"""Catchpoints (``catch EVENT``, docs/repl.md): the guest stops at a step of the
checkpoint protocol, at the same tick on both engines, and a run whose
catchpoints are continued ends exactly as one without them. Also register
watches (``watch r1``) beside memory watches (``watch *ADDR``).

The protocol program is the demo's (programs/demos/catch.asm): two checkpoints
taken by the guest, with disk requests in flight at each, so every event but
the commit happens in one run at a known tick.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from minivm.disks import create_raw_disk
from minivm.engine import blocks
from minivm.memory import Memory
from minivm.probes import EVENTS
from minivm.repl import ReplCompleter, Session

CATCH_ASM = Path(__file__).resolve().parent.parent / "programs" / "demos" / "catch.asm"

#: event (with its argument) -> (tick, pc) of the first hit in catch.asm, and
#: the tick the machine stops at (the boundary after the instruction).
FIRST_HIT = {
    "stop-window": (161, 19, 161),
    "cow": (161, 19, 162),            # the store right after the first ckpt
    "cow 15": (170, 28, 171),         # the stack page, by 'call drain'
    "cow 3": (265, 47, 265),          # the in-flight read landing copies page 3
    "p6": (169, 27, 170),
    "dma-land": (265, 47, 265),
    "save": (385, 47, 385),           # the first background batch after the read
    "save 4": (385, 47, 385),
    "disk-cow": (495, 47, 495),
    "disk-cow 19": (495, 47, 495),
    "disk-cow 9": (6619, 41, 6619),   # write #7, completed inside the stop window (P8)
    "p9": (495, 47, 495),
    "p8": (6619, 41, 6619),
}


def make_session(tmp_path: Path, engine: str, source: Path = CATCH_ASM, disk: bool = True,
                 mem: str = "64K", **options) -> Session:
    image = None
    tmp_path.mkdir(parents=True, exist_ok=True)
    if disk:
        image = tmp_path / "d.img"
        if not image.exists():
            create_raw_disk(str(image), 64 * 1024)
    out = io.StringIO()
    s = Session(str(source), mem=mem, disk=str(image) if image else None, out=out,
                checkpoint_dir=str(tmp_path / "ck"), handle_sigint=False, engine=engine,
                **options)
    s.buffer = out
    return s


def run(s: Session, *lines: str) -> str:
    """Execute ``lines``; their output (only theirs)."""
    start = len(s.buffer.getvalue())
    for line in lines:
        assert s.execute(line), s.buffer.getvalue()[start:]
    return s.buffer.getvalue()[start:]


def run_to_end(s: Session, limit: int = 200) -> str:
    """'continue' until the guest halts; the output."""
    out = ""
    for _ in range(limit):
        if s.machine.halted:
            return out
        out += run(s, "continue")
    raise AssertionError(f"not halted after {limit} stops")


def caught(text: str) -> list[tuple[str, str, int, int]]:
    """(numbers, event, tick, pc) of every catch report in ``text``."""
    return [(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) for m in re.finditer(
        r"^Catchpoint ([\d, ]+) \(([\w-]+)\): P[\d/P]+, claims [\d, -]+, at tick (\d+), "
        r"pc (\d+)$", text, re.M)]


def observe(m) -> dict:
    memory = m.memory
    return {"regs": list(m.regs), "pc": m.pc, "tick": m.tick, "halted": m.halted,
            "memory": {i: memory.page_bytes(i) for i in memory.nonzero_page_indexes()},
            "state": m.save_state()}


# --- each event, at its tick, on both engines ------------------------------------------------

@pytest.mark.parametrize("spec", sorted(FIRST_HIT))
def test_each_event_is_caught_at_its_tick(tmp_path, engine, spec):
    s = make_session(tmp_path, engine)
    out = run(s, f"catch {spec}")
    assert re.match(r"Catchpoint 1: [\w-]+", out), out
    out = run(s, "run")
    tick, pc, stop_tick = FIRST_HIT[spec]
    event = spec.split()[0]
    hits = caught(out)
    assert hits and hits[0][1:] == (event, tick, pc), out
    assert s.machine.tick == stop_tick and not s.machine.halted
    step = EVENTS[event]
    assert f"{step.step}, claims {step.claims}," in out       # the step and its claims
    assert "=> pc " in out                                      # then the usual stop report
    assert s.breakpoints.catches[1].hits >= 1
    assert s.last_stop == "stopped at catchpoint 1"


def test_the_commit_is_caught_at_the_prompt(tmp_path, engine):
    s = make_session(tmp_path, engine)
    run(s, "catch commit", "run")
    assert s.machine.halted
    out = run(s, "commit")
    assert [h[1] for h in caught(out)] == ["commit"]
    assert "(caught while the guest was not running)" in out
    assert "P10, claims 3-6" in out


def test_every_catch_of_one_run_in_order_and_identical_on_both_engines(tmp_path):
    """All events caught, continued to the end: the same stops on both engines."""
    reports = []
    for engine in ("interp", "blocks"):
        s = make_session(tmp_path / engine, engine)
        run(s, *(f"catch {name}" for name in EVENTS))
        out = run(s, "run") + run_to_end(s)
        reports.append((caught(out), out.replace(str(tmp_path / engine), "TMP")))
        assert s.machine.halted
        if engine == "blocks":
            assert blocks.state_of(s.machine).regions     # the spin loop was compiled
    assert reports[0] == reports[1]                      # the whole transcript
    assert [h[1] for h in reports[0][0]] == [
        "stop-window", "cow", "cow", "p6", "cow", "cow", "dma-land", "save", "disk-cow",
        "p9", "disk-cow", "stop-window", "p8", "cow", "save"]


def test_a_run_with_catchpoints_continued_ends_as_one_without(tmp_path, engine):
    plain = make_session(tmp_path / "plain", engine)
    run(plain, "run")
    with_catch = make_session(tmp_path / "catch", engine)
    run(with_catch, *(f"catch {name}" for name in EVENTS), "catch cow 1", "catch save 2")
    stops = 0
    while not with_catch.machine.halted:
        out = run(with_catch, "continue")
        stops += bool(caught(out))
    assert stops >= 10
    assert observe(with_catch.machine) == observe(plain.machine)


def test_without_catchpoints_the_machine_has_no_probes(tmp_path, engine):
    s = make_session(tmp_path, engine)
    m = s.machine
    assert m.probes is None and m.memory.probes is None and m.disk.probes is None
    assert "store_miss" not in vars(m.memory)        # the compiled stores' own path
    run(s, "catch cow 2")
    assert m.probes is s.probes and m.memory.probes is s.probes
    assert vars(m.memory)["store_miss"] is not Memory.store_miss   # hands back to exact
    run(s, "catch save")
    run(s, "delete 1")
    assert "store_miss" not in vars(m.memory) and m.probes is s.probes
    run(s, "delete")
    assert m.probes is None and m.memory.probes is None and m.disk.probes is None


COW_LOOP = """\
; a hot loop that stores into pages 1..64, 16 words each, after a checkpoint
; (so that the save of 64 pages is still going on), with a timer whose
; interrupts push the pc onto the stack page, shared with the checkpoint too
        out 0x11, tick_handler
        out 0x10, 50
        ei
        mov r3, 1
        mov r2, 0x1000
fill:   st r3, [r2]             ; pages 1..64 in use before the checkpoint
        add r2, r2, 0x1000
        blt r2, 0x41000, fill
        ckpt
        mov r2, 0x1000
loop:   st r3, [r2]
        add r3, r3, 1
        and r4, r3, 15
        bne r4, 0, loop
        add r2, r2, 0x1000
        blt r2, 0x41000, loop
        halt
tick_handler:
        add r5, r5, 1
        iret
"""


def test_cow_in_compiled_code_and_in_a_timer_push_stops_at_the_same_tick(tmp_path):
    """The blocks engine copies pages inside its regions and pushes the pc of a
    timer interrupt inside a batch; with 'catch cow' both hand the copy back,
    so the stops are those of interp."""
    source = tmp_path / "cowloop.asm"
    source.write_text(COW_LOOP)
    stops = {}
    for engine in ("interp", "blocks"):
        s = make_session(tmp_path / engine, engine, source=source, disk=False, mem="1M")
        run(s, "catch cow")
        run(s, "set save-rate 1 4096")   # the saver behind the guest: its stores copy
        out = run(s, "run") + run_to_end(s)
        stops[engine] = (caught(out), re.findall(r"^=> .*$", out, re.M),
                         out.replace(str(tmp_path / engine), "TMP"))
        if engine == "blocks":
            assert blocks.state_of(s.machine).regions
    assert stops["interp"] == stops["blocks"]      # the hits, where each stopped: all of it
    pages = [int(m) for m in re.findall(r"page (\d+) copied", out)]
    assert 255 in pages                     # the stack page, by a timer interrupt's push
    assert len(pages) >= 20 and len(set(pages)) == len(pages)


# --- info catch, delete, help, errors, completion ---------------------------------------------

def test_info_catch_lists_number_event_argument_hits(tmp_path, engine):
    s = make_session(tmp_path, engine)
    run(s, "break first_ckpt", "catch cow", "catch save 4")
    out = run(s, "info catch")
    assert re.search(r"^\s+2\s+cow\s+any\s+P3\s+0$", out, re.M), out
    assert re.search(r"^\s+3\s+save\s+page 4\s+P4\s+0$", out, re.M), out
    run(s, "run", "continue", "continue")
    out = run(s, "catchpoints")
    assert re.search(r"^\s+2\s+cow\s+any\s+P3\s+2$", out, re.M), out
    run(s, "watch r1")
    listing = run(s, "breakpoints")
    assert "catch       cow (P3)" in listing and "catch       save page 4 (P4)" in listing
    assert "watch       register r1" in listing and "breakpoint" in listing


def test_delete_removes_one_catchpoint_and_the_run_goes_on(tmp_path, engine):
    s = make_session(tmp_path, engine)
    run(s, "catch stop-window", "catch p8")
    out = run(s, "delete 1")
    assert "deleted 1" in out
    out = run(s, "run")
    assert [h[1] for h in caught(out)] == ["p8"]
    assert s.machine.tick == 6619
    assert "no catchpoint" not in run(s, "info catch")
    run(s, "delete")
    assert "no catchpoints" in run(s, "info catch")
    run(s, "continue")
    assert s.machine.halted


def test_catch_errors_are_one_line_with_a_hint(tmp_path):
    s = make_session(tmp_path, "interp")
    for line, expected in [
            ("catch cwo", "no protocol event 'cwo'; did you mean 'cow'?"),
            ("catch stop", "no protocol event 'stop'; did you mean 'stop-window'?"),
            ("catch p8 3", "'catch p8' takes no argument"),
            ("catch cow 16", "page 16 is outside memory (pages 0..15"),
            ("catch disk-cow 128", "block 128 is outside the disk (blocks 0..127)"),
            ("catch cow 1 2 3", "too many arguments")]:
        start = len(s.buffer.getvalue())
        assert not s.execute(line)
        out = s.buffer.getvalue()[start:]
        assert out.startswith("error: ") and expected in out and out.count("\n") == 1, out
    nodisk = make_session(tmp_path / "nodisk", "interp", disk=False)
    assert not nodisk.execute("catch disk-cow 3")
    assert "no disk is attached" in nodisk.buffer.getvalue()
    again = run(s, "catch cow", "catch cow")
    assert "catchpoint 1 already catches cow (P3)" in again


def test_help_catch_lists_every_event_on_a_line(tmp_path):
    s = make_session(tmp_path, "interp")
    out = run(s, "help catch")
    for name, event in EVENTS.items():
        assert re.search(rf"^    {name}( {event.arg})?\s+{re.escape(event.step)}\s+"
                         rf"{re.escape(event.what)}$", out, re.M), (name, out)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert re.search(r"^  catch\s+stop at a protocol step", run(s, "help"), re.M)
    bare = run(s, "catch")
    assert all(name in bare for name in EVENTS)


def completions(session, text: str) -> set[str]:
    found = ReplCompleter(session).get_completions(Document(text),
                                                   CompleteEvent(completion_requested=True))
    return {c.text for c in found}


def test_catch_completes_the_event_names(tmp_path):
    s = make_session(tmp_path, "interp")
    assert completions(s, "catch ") == set(EVENTS)
    assert completions(s, "catch d") == {"disk-cow", "dma-land"}
    assert "catch" in completions(s, "info ")
    run(s, "catch p9")
    assert "1" in completions(s, "delete ")


def test_reverse_continue_says_catchpoints_are_forward_only(tmp_path, engine):
    s = make_session(tmp_path, engine)
    run(s, "catch p8", "run")
    assert s.machine.tick == 6619
    run(s, "break spin")
    out = run(s, "reverse-continue")
    assert "catchpoints are forward-only" in out
    assert all(len(line) <= 80 for line in out.splitlines() if str(tmp_path) not in line), out
    assert "Breakpoint 2 at tick 6608" in out and s.machine.pc == 30      # the last 'spin'
    # forward again: the catchpoint still stops there
    run(s, "delete 2")
    out = run(s, "continue")
    assert [h[1] for h in caught(out)] == ["p8"] and s.machine.tick == 6619


# --- register watches ----------------------------------------------------------------------------

LOOP = """\
        mov r1, 0
loop:   add r1, r1, 1
        add r2, r2, 3
        st r2, [counter]
        blt r1, 40, loop
        mov r0, 0
        halt
.data
counter: .word 0
"""


@pytest.fixture
def loop_session(tmp_path, engine):
    source = tmp_path / "loop.asm"
    source.write_text(LOOP)
    return make_session(tmp_path, engine, source=source, disk=False)


def test_watch_register_stops_when_it_changes(loop_session):
    s = loop_session
    out = run(s, "watch r1")
    assert "Watchpoint 1: register r1 (now 0)" in out
    out = run(s, "continue")
    assert "Watchpoint 1: register r1 changed 0 -> 1 (0x0 -> 0x1) at tick 2" in out
    out = run(s, "continue")
    assert "register r1 changed 1 -> 2" in out and s.machine.tick == 6


def test_watch_star_and_brackets_watch_memory_and_say_so(loop_session):
    s = loop_session
    assert "Watchpoint 1: memory, the word at 0x0 <counter>" in run(s, "watch *counter")
    assert "watchpoint 1 already watches the word at 0x0" in run(s, "watch [counter]")
    assert "Watchpoint 2: register sp" in run(s, "watch sp")
    out = run(s, "continue")
    assert "Watchpoint 1: word at 0x0 <counter> changed 0 -> 3" in out
    run(s, "set r5 0x10")
    assert "memory, the word at 0x10" in run(s, "watch *r5")      # the word r5 points at


def test_register_watch_after_set_starts_from_the_new_value(loop_session):
    s = loop_session
    run(s, "watch r1", "continue")
    run(s, "set r1 30")
    out = run(s, "continue")
    assert "register r1 changed 30 -> 31" in out


def test_register_watch_with_reverse_continue(loop_session):
    s = loop_session
    run(s, "watch r1", "continue", "continue", "continue")
    assert s.machine.regs[1] == 3
    out = run(s, "reverse-continue")
    assert "register r1 changed 1 -> 2" in out and s.machine.regs[1] == 2
    out = run(s, "continue")
    assert "register r1 changed 2 -> 3" in out


def test_watch_pc_and_delete_a_register_watch(loop_session):
    s = loop_session
    run(s, "watch pc")
    out = run(s, "continue")
    assert "Watchpoint 1: register pc changed 0 -> 1" in out
    run(s, "delete 1")
    assert not s.machine.reg_watches
    run(s, "continue")
    assert s.machine.halted and s.machine.regs[1] == 40


def test_register_watches_identical_on_both_engines(tmp_path):
    source = tmp_path / "loop.asm"
    source.write_text(LOOP.replace("40", "400"))
    results = []
    for engine in ("interp", "blocks"):
        s = make_session(tmp_path / engine, engine, source=source, disk=False)
        run(s, "break 4", "continue", "continue", "continue")   # make the loop hot first
        run(s, "delete", "watch r2")
        text = run(s, *["continue"] * 5)
        results.append((re.sub(r"\s+", " ", text), observe(s.machine)))
    assert results[0] == results[1]
    assert results[0][1]["regs"][2] == 3 * (3 + 5)



def test_after_going_back_a_forward_run_is_caught_again(tmp_path, engine):
    s = make_session(tmp_path, engine)
    run(s, "catch stop-window", "catch cow 1")
    first = caught(run(s, "run", "continue"))
    run(s, "goto 0")
    again = caught(run(s, "continue", "continue"))
    assert [h[1:] for h in again] == [h[1:] for h in first] == [
        ("stop-window", 161, 19), ("cow", 161, 19)]
    assert s.breakpoints.catches[2].hits == 2


def test_a_copy_made_at_the_prompt_is_reported_there(tmp_path, engine):
    """'set [ADDR]' into a page a saving checkpoint shares copies it (P3)."""
    s = make_session(tmp_path, engine)
    run(s, "catch stop-window", "run", "catch cow 4")
    out = run(s, "set [0x4000] 7")
    assert [h[1:] for h in caught(out)] == [("cow", 161, 19)]
    assert "(caught while the guest was not running)" in out
    assert not s.machine.stop_requested
    out = run(s, "continue")                 # the guest goes on to the next step caught
    assert [h[1:] for h in caught(out)] == [("stop-window", 6619, 41)]


def test_dma_land_says_p5_or_p7(tmp_path, engine):
    """A read in flight lands in both copies: P7 when the guest had copied its
    page meanwhile (programs/demos/p7.asm), P5 when not (catch.asm)."""
    p7 = make_session(tmp_path / "p7", engine, source=CATCH_ASM.parent / "p7.asm")
    out = run(p7, "catch dma-land", "run")
    assert "read #2 landed in the checkpoint's page 1 and the guest's copy (P7)" in out
    p5 = make_session(tmp_path / "p5", engine)
    out = run(p5, "catch dma-land", "run")
    assert "read #2 landed in the checkpoint's memory and the guest's (P5)" in out
