"""Time travel at the prompt (docs/repl.md): goto, reverse-step, reverse-next,
reverse-finish, reverse-continue, undo, history, on both engines."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minivm import isa
from minivm.repl import Session

RECURSIVE = """
.data
counter: .word 0
.text
        mov r1, 4
        call fact
        out 0x01, r0
        out 0x00, 10
        halt
fact:                          ; r0 = r1!, recursively
        ble r1, 1, base
        push r1
        sub r1, r1, 1
        call fact
        pop r1
        mul r0, r0, r1
        ld r5, [counter]
        add r5, r5, 1
        st r5, [counter]
        ret
base:
        mov r0, 1
        ret
"""

READER = """
        mov r2, 0
loop:
        in r1, 0x02
        beq r1, -1, loop_wait
        out 0x00, r1
        add r2, r2, 1
        blt r2, 3, loop
        halt
loop_wait:
        jmp loop
"""


def session(tmp_path: Path, engine: str, source: str, **options) -> tuple[Session, io.StringIO]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    program = tmp_path / "prog.asm"
    program.write_text(source)
    out = io.StringIO()
    s = Session(out=out, checkpoint_dir=str(tmp_path / "ck"), handle_sigint=False,
                engine=engine, history_interval=options.pop("interval", 13), **options)
    assert s.execute(f"load {program}")
    return s, out


def run(s: Session, out: io.StringIO, line: str) -> str:
    start = out.tell()
    ok = s.execute(line)
    out.seek(start)
    text = out.read()
    assert ok, text
    return text


def snapshot(m) -> tuple:
    memory = m.memory
    return (list(m.regs), m.pc, m.tick, m.halted, str(m.fault), m.save_state(),
            {i: memory.page_bytes(i) for i in memory.nonzero_page_indexes()})


def test_goto_back_and_forward_replays_output_and_undo_comes_back(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    text = run(s, out, "run")
    assert "24\n" in text
    end = snapshot(s.machine)
    run(s, out, "goto 3")
    assert s.machine.tick == 3
    text = run(s, out, "continue")
    assert "24\n" in text                      # the guest's output, printed again
    assert snapshot(s.machine) == end
    run(s, out, "goto 5")
    at5 = snapshot(s.machine)
    run(s, out, "goto 0")
    text = run(s, out, "undo")
    assert "undid 'goto 0'" in text and snapshot(s.machine) == at5


def test_reverse_step_then_step_is_the_same_machine(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    run(s, out, "step 20")
    here = snapshot(s.machine)
    run(s, out, "rs 7")
    assert s.machine.tick == 13
    run(s, out, "step 7")
    assert snapshot(s.machine) == here
    run(s, out, "goto 0")
    assert not s.execute("rs")                 # at the start: a clear error
    assert "start of the history" in out.getvalue()


def test_reverse_next_goes_back_over_a_call(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    m = s.machine
    run(s, out, "step")                        # mov r1, 4
    call_tick, call_pc = m.tick, m.pc
    assert s.image.code[m.pc][0] == isa.CALL_I
    run(s, out, "next")                        # over the whole recursion
    assert m.pc == call_pc + 1
    run(s, out, "rn")
    assert (m.tick, m.pc) == (call_tick, call_pc)


def test_reverse_finish_goes_back_to_the_call_of_the_current_function(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    m = s.machine
    run(s, out, "break base")
    run(s, out, "continue")                    # at the deepest level, r1 = 1
    calls = []                                 # the call ticks of every level, from a fresh run
    probe, probe_out = session(tmp_path / "p", engine, RECURSIVE)
    while not probe.machine.halted:
        if probe.image.code[probe.machine.pc][0] == isa.CALL_I:
            calls.append(probe.machine.tick)
        run(probe, probe_out, "step")
    assert s.execute("delete")
    text = run(s, out, "reverse-finish")
    assert m.tick == calls[-1] and s.image.code[m.pc][0] == isa.CALL_I, text
    run(s, out, "reverse-finish")
    assert m.tick == calls[-2]
    text = run(s, out, "goto 1")
    text = run(s, out, "reverse-finish")
    assert "no call of the current function" in text and m.tick == 0


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_reverse_continue_lands_on_the_forward_hits_in_reverse(tmp_path_factory, engine, data):
    tmp_path = tmp_path_factory.mktemp("rc")
    s, out = session(tmp_path, engine, RECURSIVE, interval=data.draw(st.integers(3, 40)))
    n = len(s.image.code)
    pcs = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=3), label="breaks")
    for pc in pcs:
        run(s, out, f"break {pc}")
    if data.draw(st.booleans(), label="watch"):
        run(s, out, "watch counter")
    # a breakpoint on the first instruction: the forward run starts on it
    hits = [snapshot(s.machine)] if s.machine.pc in pcs else []
    while not s.machine.halted:
        s.execute("continue")
        if not s.machine.halted:
            hits.append(snapshot(s.machine))
    back = []
    while True:
        before = s.machine.tick
        run(s, out, "rc")
        if s.machine.tick == 0 and "start of the history" in out.getvalue()[-400:]:
            break
        assert s.machine.tick < before
        back.append(snapshot(s.machine))
    assert back == list(reversed(hits))


def test_input_fed_at_the_prompt_is_fed_again_after_going_back(tmp_path, engine):
    s, out = session(tmp_path, engine, READER)
    run(s, out, "continue 40")
    run(s, out, "input -n ab")
    run(s, out, "continue 40")
    run(s, out, "input -n c")
    text = run(s, out, "continue")
    assert text.startswith("c") and s.machine.halted
    end = snapshot(s.machine)
    run(s, out, "goto 10")
    text = run(s, out, "continue")
    assert text.startswith("abc") and snapshot(s.machine) == end
    # input fed in the past changes the run
    run(s, out, "goto 45")
    text = run(s, out, "input -n z")
    assert "dropped" in text
    text = run(s, out, "continue 100")
    assert "z" in text


def test_a_change_in_the_past_drops_the_future_and_undo_says_so(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    run(s, out, "run")
    run(s, out, "goto 1")                      # at the call, r1 = 4
    text = run(s, out, "set r1 3")
    assert "dropped" in text
    assert s.history.end() == 1
    text = run(s, out, "continue")
    assert "6\n" in text                       # 3! now
    run(s, out, "goto 0")
    run(s, out, "goto 1")
    assert s.machine.regs[1] == 3              # the change is part of the run now
    text = run(s, out, "history")
    assert "pinned" in text


def test_disk_contents_follow_the_position(tmp_path, engine):
    writer = """
        mov r1, 0x41
        st r1, [0]
        out 0x20, 2          ; block 2
        out 0x21, 0          ; from address 0
        out 0x22, 1          ; one block
        out 0x23, 2          ; write
wait_done:
        in r2, 0x24
        bne r2, 0, wait_done
        halt
"""
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(8 * 512))
    s, out = session(tmp_path, engine, writer, disk=str(disk))
    m = s.machine

    def block2() -> bytes:
        return m.disk.backing.read_blocks(2, 1)

    run(s, out, "run")
    assert block2()[0] == 0x41
    run(s, out, "goto 3")
    assert block2() == bytes(512)
    run(s, out, "goto 100000")
    assert block2()[0] == 0x41


def test_restore_can_be_undone(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    run(s, out, "step 5")
    run(s, out, "checkpoint early")
    run(s, out, "sync")
    run(s, out, "step 20")
    here = snapshot(s.machine)
    run(s, out, "restore early")
    assert s.machine.tick == 5
    text = run(s, out, "restore -")
    assert "undid 'restore early'" in text
    assert snapshot(s.machine)[:6] == here[:6] and snapshot(s.machine)[6] == here[6]
    assert "undo-" not in run(s, out, "checkpoints")
    assert not s.execute("undo")


def test_history_off_and_a_tiny_budget(tmp_path, engine):
    s, out = session(tmp_path, engine, RECURSIVE)
    run(s, out, "history off")
    run(s, out, "step 3")
    assert not s.execute("goto 0")
    assert "not being recorded" in out.getvalue()
    run(s, out, "history on")
    run(s, out, "set history-budget 1")
    run(s, out, "run")
    assert len(s.history.snapshots) <= 3       # the start, the pinned budget point...
    end = snapshot(s.machine)
    run(s, out, "goto 10")
    run(s, out, "continue")
    assert snapshot(s.machine) == end
    text = run(s, out, "history")
    assert "recording: ticks 3.." in text


ROOT = Path(__file__).resolve().parent.parent


def fresh(tmp_path: Path, engine: str, source: str, script: list[str], **options):
    """The machine a fresh session reaches with ``script`` (no time travel)."""
    s, out = session(tmp_path, engine, source, **options)
    for line in script:
        run(s, out, line)
    return snapshot(s.machine)


def test_goto_zero_and_goto_the_present(tmp_path, engine):
    source = (ROOT / "programs" / "timer_clock.asm").read_text()
    s, out = session(tmp_path, engine, source)
    start = snapshot(s.machine)
    run(s, out, "continue 2500")
    here = snapshot(s.machine)
    text = run(s, out, f"goto {s.machine.tick}")
    assert "no move" in text and snapshot(s.machine) == here
    run(s, out, "goto 0")
    assert snapshot(s.machine) == start


def test_reverse_over_an_interrupt_delivery_and_a_wait(tmp_path, engine):
    source = (ROOT / "programs" / "timer_clock.asm").read_text()
    s, out = session(tmp_path, engine, source)
    m = s.machine
    seen_wait = seen_irq = False
    for _ in range(40):
        before = snapshot(m)
        taken, tick = m.interrupts_taken, m.tick
        text = run(s, out, "step")
        after = snapshot(m)
        jumped = m.tick > tick + 1
        run(s, out, "rs")
        assert snapshot(m) == before, text
        run(s, out, "step")
        assert snapshot(m) == after
        seen_wait |= jumped
        seen_irq |= m.interrupts_taken != taken
    assert seen_wait and seen_irq


def test_reverse_over_a_checkpoint_being_saved(tmp_path, engine):
    source = (ROOT / "programs" / "bubble_sort.asm").read_text()
    s, out = session(tmp_path, engine, source)
    run(s, out, "continue 30")
    run(s, out, "checkpoint mid")
    run(s, out, "continue 40")                 # the save is under way
    assert s.checkpoints.find("mid").status == "saving"
    run(s, out, "goto 10")                     # the save is finished first, then the jump
    assert s.checkpoints.find("mid").status == "complete"
    assert snapshot(s.machine) == fresh(tmp_path / "f1", engine, source, ["continue 10"])
    run(s, out, "goto 50")
    assert snapshot(s.machine) == fresh(tmp_path / "f2", engine, source, ["continue 50"])
    run(s, out, "restore mid")                 # the checkpoint holds tick 30, as taken
    assert snapshot(s.machine)[:6] == fresh(tmp_path / "f3", engine, source,
                                            ["continue 30"])[:6]


def test_reverse_over_a_disk_commit(tmp_path, engine):
    source = (ROOT / "programs" / "disk_copy.asm").read_text()
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(64 * 512))
    s, out = session(tmp_path, engine, source, disk=str(disk))
    m = s.machine
    run(s, out, "continue 3000")
    run(s, out, "checkpoint one")
    run(s, out, "sync")
    run(s, out, "commit")
    text = run(s, out, "continue")
    assert m.halted, text
    final = m.disk.backing.read_blocks(0, 64)
    assert final != bytes(64 * 512)
    run(s, out, "goto 0")
    assert m.disk.backing.read_blocks(0, 64) == bytes(64 * 512)
    run(s, out, "goto 3000")
    disk2 = tmp_path / "d2.img"
    disk2.write_bytes(bytes(64 * 512))
    fresh_state = fresh(tmp_path / "f", engine, source, ["continue 3000"], disk=str(disk2))
    assert snapshot(m) == fresh_state
    run(s, out, "continue")
    assert m.halted and m.disk.backing.read_blocks(0, 64) == final


def test_an_incremental_checkpoint_taken_after_going_back_resumes_exactly(tmp_path, engine):
    """Its parent was taken later in the run: the pages time travel put back
    are among those it stores (Memory.install_pages tells the write trackers)."""
    from minivm.resume import read_checkpoint, resume
    from minivm.store import FileStore
    source = (ROOT / "programs" / "bubble_sort.asm").read_text()
    s, out = session(tmp_path, engine, source)
    for line in ("continue 400", "checkpoint a", "continue 300", "checkpoint -i b", "sync",
                 "goto 100", "checkpoint -i c", "sync"):
        run(s, out, line)
    here = snapshot(s.machine)
    ckpt = read_checkpoint(str(tmp_path / "ck" / "c.mvc"))
    assert ckpt.parent is not None
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "resumed")), engine=engine)
    assert snapshot(machine)[1:] == here[1:] and machine.regs[:16] == here[0][:16]
