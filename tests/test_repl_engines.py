"""The REPL behaves identically on both engines (issue 14: stepping, breakpoints,
watches and time travel): the same batch script on the same program gives the
same transcript, byte for byte, and leaves the same machine on ``interp`` and
``blocks``.

The scripts set and clear breakpoints and watches inside loops that the
``blocks`` engine has already compiled (checked through
``blocks.state_of``), step and ``next`` through compiled code, take
checkpoints, ``restore`` them and continue, with timer interrupts pending. A
Hypothesis property does the same with random small programs (a hot loop
with a random body, calls, an interrupt handler) and random scripts.

(The REPL has no ``finish``, ``until`` or ``advance`` command: ``help``
lists what it has; every running command is covered here, and ``catch``,
which stops at protocol steps, in test_catch.py.)
"""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from minivm.engine import ENGINES, blocks
from minivm.repl import Session

from support import time_limit

INTERP, BLOCKS = ENGINES


def observe(m) -> dict:
    """Everything of a machine the engines could disagree on."""
    if m is None:
        return {}
    memory = m.memory
    return {"regs": list(m.regs), "pc": m.pc, "tick": m.tick, "halted": m.halted,
            "fault": str(m.fault),
            "memory": {i: memory.page_bytes(i) for i in memory.nonzero_page_indexes()},
            "state": m.save_state()}


def transcript(folder: Path, engine: str, source: str, script: list[str], check=None,
               **options) -> tuple[str, dict]:
    """Run ``script`` as ``minivm repl --batch`` does (each line echoed after
    the prompt) on ``engine``; returns (transcript, the machine's state at the
    end). ``check(line, session)`` runs after each line."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder.parent / "prog.asm"
    program.write_text(source)
    ckpts = folder / "ck"
    out = io.StringIO()
    session = Session(out=out, checkpoint_dir=str(ckpts), handle_sigint=False, engine=engine,
                      **options)
    try:
        session.execute(f"load {program}")
        for line in script:
            session.say(session.prompt_text() + line)
            session.execute(line)
            if check is not None:
                check(line, session)
        state = observe(session.machine)
    finally:
        session.close()
    return out.getvalue().replace(str(ckpts), "CK"), state


def same_on_both(tmp_path: Path, source: str, script: list[str], check=None, **options) -> str:
    """The transcript of ``script``, asserted equal on both engines."""
    runs = {}
    for e in ENGINES:
        with time_limit(60, f"the script on {e}"):
            runs[e] = transcript(tmp_path / e, e, source, script, check, **options)
    (text_i, state_i), (text_b, state_b) = runs[INTERP], runs[BLOCKS]
    if text_i != text_b:
        a, b = text_i.splitlines(), text_b.splitlines()
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise AssertionError("transcripts differ at line %d:\n interp: %s\n blocks: %s"
                             % (first, a[first] if first < len(a) else "<end>",
                                b[first] if first < len(b) else "<end>"))
    for key in state_i:
        assert state_i[key] == state_b[key], f"{key} differs at the end"
    assert state_i.keys() == state_b.keys()
    return text_i


def compiled_at(*pcs):
    """A check: after the first line, the blocks engine has compiled code
    covering ``pcs`` (so the breakpoints that follow land in compiled code)."""
    def check(line, session):
        if session.engine == BLOCKS and not check.done:
            covered = blocks.state_of(session.machine).cover
            assert set(pcs) <= set(covered), f"{pcs} not compiled after {line!r}: {covered}"
            check.done = True
    check.done = False
    return check


# --- breakpoints and watches in compiled code -------------------------------------------------

HOT = """\
        mov r1, 0
        mov r2, 0
loop:   add r1, r1, 1          ; pc 2
        add r2, r2, r1         ; pc 3
        st r2, [total]         ; pc 4
        and r3, r2, 7          ; pc 5
        bne r3, 0, skip        ; pc 6
        add r4, r4, 1          ; pc 7: the rare side of the branch
skip:   blt r1, 400, loop      ; pc 8
        out 0x01, r2
        halt
.data
total:  .word 0
"""


def test_breakpoints_set_and_cleared_inside_a_compiled_loop(tmp_path):
    text = same_on_both(tmp_path, HOT, [
        "continue 300",          # the loop is compiled by now
        "break 7", "continue", "continue", "regs r1 r2 r4",
        "delete 1", "continue 250",
        "break skip", "break 3", "c", "c", "c", "breakpoints",
        "delete 2", "c", "c", "delete",
        "continue 97", "break 4", "c", "delete", "step 5", "c",
    ], compiled_at(2, 3, 4, 5, 6, 7, 8))
    assert "Breakpoint 1 at tick" in text and "Breakpoint 3 at tick" in text
    assert text.count("halted") >= 1 and "80200" in text


def test_watch_a_word_the_compiled_loop_stores(tmp_path):
    text = same_on_both(tmp_path, HOT, [
        "continue 500", "watch total", "c", "c", "x total 4", "delete",
        "continue 1000", "watch total", "step 20", "c", "next", "delete", "c",
    ], compiled_at(4))
    assert "Watchpoint 1: word at" in text and "Watchpoint 2: word at" in text


# --- stepping ----------------------------------------------------------------------------------

CALLS = """\
        mov r1, 0
main:   add r1, r1, 1
        call work
after:  blt r1, 60, main
        st r1, [count]
        out 0x01, r1
        halt
work:   mov r3, r1
inner:  add r2, r2, r3
        sub r3, r3, 1
        bgt r3, 0, inner
        ret
.data
count:  .word 0
"""


def test_step_and_next_through_compiled_code(tmp_path):
    same_on_both(tmp_path, CALLS, [
        "continue 700", "step", "step 7", "next", "next 3", "step 40", "next 12",
        "break inner", "next", "step 3", "next", "delete", "break after", "c", "next",
        "step 100", "c", "c", "delete", "next 5", "continue",
        "step",                                        # after the halt: an error, on both
    ], compiled_at(8, 9, 10))


FACT = """\
        mov r1, 7
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


def test_next_over_recursion_and_breakpoints_in_the_callee(tmp_path):
    same_on_both(tmp_path, FACT, [
        "step 2", "next", "break back", "next", "regs", "c", "c", "delete",
        "next 4", "step 6", "next", "c", "reset", "next", "next", "run",
    ])


# --- checkpoints, restore, time travel -----------------------------------------------------

TIMER = """\
        out 0x11, on_tick
        out 0x10, 7
        ei
spin:   add r1, r1, 1
        st r1, [count]
        blt r1, 900, spin
        di
        halt
on_tick:
        add r5, r5, 1
        st r5, [ticks]
        iret
.data
count:  .word 0
ticks:  .word 0
"""


def test_restore_then_continue_with_interrupts_in_compiled_code(tmp_path):
    text = same_on_both(tmp_path, TIMER, [
        "continue 400", "checkpoint a", "break on_tick", "c", "c", "regs r1 r5",
        "delete", "continue 333", "checkpoint b", "devices", "status",
        "restore a", "c", "checkpoints",
        "restore b", "step 9", "next 4", "watch ticks", "c", "c", "delete",
        "diff a b", "diff b now", "restore a", "break 6", "c", "delete",
        "restore b", "sync", "run",
    ], compiled_at(3, 4, 5, 8, 9, 10), mem="64K")
    assert text.count("restored a (tick") == 2 and "restored b (tick" in text


def test_a_guest_checkpoint_then_restore_replays_the_run(tmp_path):
    source = TIMER.replace("        di\n", "        ckpt\n        di\n")
    same_on_both(tmp_path, source, [
        "continue", "checkpoints", "restore ckpt-0001", "step 3", "c",
        "restore ckpt-0001", "watch count", "c", "delete", "c",
    ], mem="64K")


# --- random programs and scripts -----------------------------------------------------------------

ALU = ["add", "sub", "xor", "and", "or", "mul", "shl", "shr"]


@st.composite
def hot_programs(draw) -> str:
    """A loop run 20..400 times (hot enough to compile) whose body mixes ALU
    operations, loads and stores into ``buf``, a forward branch and a call;
    sometimes a timer interrupt whose handler stores too. It always halts."""
    def reg():
        return f"r{draw(st.integers(1, 6))}"

    def body() -> list[str]:
        lines = []
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(["alu", "alu", "st", "ld", "branch", "call"]))
            if kind == "alu":
                src = reg() if draw(st.booleans()) else str(draw(st.integers(0, 300)))
                lines.append(f"{draw(st.sampled_from(ALU))} {reg()}, {reg()}, {src}")
            elif kind in ("st", "ld"):
                lines.append(f"{kind} {reg()}, [buf + {4 * draw(st.integers(0, 7))}]")
            elif kind == "branch":
                label = f"f{len(lines)}"
                lines += [f"beq {reg()}, {draw(st.integers(0, 3))}, {label}",
                          f"add {reg()}, {reg()}, 1", f"{label}:"]
            else:
                lines.append("call leaf")
        return lines

    count = draw(st.integers(20, 400))
    timer = draw(st.none() | st.integers(12, 60))     # longer than the handler: it halts
    lines = []
    if timer is not None:
        lines += ["out 0x11, handler", f"out 0x10, {timer}", "ei"]
    lines += ["mov r10, 0", "top:"] + body() + [
        "add r10, r10, 1", f"blt r10, {count}, top", "di", "out 0x01, r1", "halt",
        "leaf: add r8, r8, r10", "st r8, [buf + 28]", "ret",
        "handler: add r9, r9, 1", "st r9, [buf + 32]", "iret",
        ".data", "buf: .space 40"]
    return "\n".join(line if line.endswith(":") else "    " + line for line in lines) + "\n"


@st.composite
def scripts(draw, ncode: int) -> list[str]:
    """Random commands: step/next k, continue (mostly bounded), break at a pc,
    delete, watch, checkpoint, restore (of a taken one, or an unknown name),
    reset and run (which start again), time travel (goto, rs, rn, rc, undo),
    then a dump and a last continue."""
    taken = []
    warm = draw(st.none() | st.integers(100, 1500))     # often: the loop is compiled first
    out = [] if warm is None else [f"continue {warm}"]
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["step", "step", "next", "cont", "cont", "cont", "contn",
                                     "break", "break", "break", "delete", "watch", "ckpt",
                                     "ckpt", "restore", "restore", "regs", "reset",
                                     "goto", "rs", "rn", "rc", "undo"]))
        if kind == "step":
            out.append(f"step {draw(st.integers(1, 40))}")
        elif kind == "next":
            out.append(f"next {draw(st.integers(1, 5))}")
        elif kind == "cont":
            out.append(f"continue {draw(st.integers(1, 800))}")
        elif kind == "contn":
            out.append("continue")
        elif kind == "break":
            out.append(f"break {draw(st.integers(0, ncode - 1))}")
        elif kind == "delete":
            out.append(draw(st.sampled_from(["delete", "delete 1", "delete 2"])))
        elif kind == "watch":
            out.append(f"watch buf + {4 * draw(st.integers(0, 8))}")
        elif kind == "ckpt":
            taken.append(f"c{len(taken)}")
            out.append(f"checkpoint {taken[-1]}")
        elif kind == "restore":
            out.append(f"restore {draw(st.sampled_from(taken))}" if taken else "restore none")
        elif kind == "goto":
            out.append(f"goto {draw(st.integers(0, 3000))}")
        elif kind in ("rs", "rn"):
            out.append(f"{kind} {draw(st.integers(1, 30))}")
        elif kind in ("rc", "undo"):
            out.append(kind)
        elif kind == "reset":
            out.append(draw(st.sampled_from(["reset", "run"])))
        else:
            out.append("regs")
    return out + ["x buf 40", "continue"]


@given(data=st.data())
def test_random_scripts_give_the_same_transcript_on_both_engines(data, tmp_path_factory):
    source = data.draw(hot_programs(), "program")
    ncode = len([line for line in source.splitlines()
                 if line.strip() and not line.strip().endswith(":")
                 and not line.strip().startswith((".data", "buf:"))])
    script = data.draw(scripts(ncode), "script")
    same_on_both(tmp_path_factory.mktemp("prop"), source, script, mem="64K")
