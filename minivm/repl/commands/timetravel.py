"""Commands that move through the recorded run (docs/repl.md, time travel):
goto, reverse-step, reverse-next, reverse-finish, reverse-continue, undo,
history. The recording itself is minivm/history.py."""

from __future__ import annotations

from ... import isa
from ...history import Stops
from ...machine import Stop
from ..parsing import CommandError, parse_count
from ..registry import command
from ..travel import (arrived, require_history, start_history, stop_history, travel,
                      undo_last, undo_point_valid)
from .running import report_stop

CALLS = (isa.CALL_I, isa.CALL_R)


@command("goto", aliases=("go",), usage="goto TICK", group="time travel", needs="machine",
         complete="tick",
         min_args=1, max_args=1, missing="give a tick; usage: goto TICK (e.g. goto 0, goto 1500)",
         summary="become what the run was at TICK, back or forward")
def goto(s, args: str) -> None:
    """
    The machine becomes exactly what this run was at tick TICK: registers,
    memory, timer phase, pending interrupts, disk requests in flight, console
    counters and the disk. Backward or forward; nothing is printed on the way
    (the guest's output between is not shown again). Past the furthest point
    recorded, the guest simply runs there, printing as 'continue' does and
    stopping at breakpoints. TICK is an expression ('goto tick - 100').
    Inside a 'wait', where no instruction starts, it lands on the next tick
    where one does. 'undo' goes back to where you were.
    Examples:  goto 0      goto 1500      goto tick - 100
    """
    h = require_history(s)
    m = s.machine
    target = s.evaluate(args, "value")
    if target < 0:
        raise CommandError(f"tick {target} is negative; the history starts at tick {h.start}")
    before = m.tick
    end = h.end()

    def move(h):
        h.goto(min(target, end))

    travel(s, move, f"goto {target}")
    if target > end and m.fault is None and not m.halted:
        s.say(f"(tick {end} is the furthest point recorded: running on to {target})")
        with s.running():
            stop = m.run(target - m.tick)
        if stop.reason != "limit":
            report_stop(s, stop)
            return
    arrived(s, before)


def _stepping_back(s, args: str, usage: str):
    """(history, count, tick now) for a step back; an error at the start."""
    h = require_history(s)
    count = parse_count(args, "the count", usage) if args else 1
    before = s.machine.tick
    if before <= h.start:
        raise CommandError(f"at the start of the history (tick {h.start}): nothing to step "
                           "back over")
    return h, count, before


@command("reverse-step", aliases=("rs", "rsi", "reverse-stepi"), usage="reverse-step [N]",
         group="time travel", repeat=True, needs="machine", max_args=1,
         summary="go back N instructions (default 1)")
def reverse_step(s, args: str) -> None:
    """
    Goes back N instructions (default 1), exactly: the machine is what it was
    before those instructions ran, devices and disk included. Stepping back over
    a 'wait' lands on the 'wait'; an interrupt that was taken is taken back too.
    'step' goes forward again. Pressing Enter repeats it.
    Examples:  reverse-step      rs      rs 10
    """
    h, count, before = _stepping_back(s, args, "reverse-step [N]")
    target = h.instruction_back(before, count)
    travel(s, lambda h: h.goto(target), f"reverse-step {count}")
    if target == h.start and count > 1:
        s.say(f"(reached the start of the history, tick {h.start})")
    arrived(s, before)


@command("reverse-next", aliases=("rn", "rni", "reverse-nexti"), usage="reverse-next [N]",
         group="time travel", repeat=True, needs="machine", max_args=1,
         summary="like reverse-step, but back over a call as one step")
def reverse_next(s, args: str) -> None:
    """
    Like 'reverse-step', but when the instruction before is the 'ret' of a call,
    goes back over the whole call to the 'call' instruction (the same call: same
    stack depth, recursion is handled). An interrupt handler is entered backwards
    at its 'iret', as 'reverse-step' does.
    Examples:  reverse-next      rn      rn 3
    """
    h, count, before = _stepping_back(s, args, "reverse-next [N]")
    m, code = s.machine, s.image.code

    def move(h):
        for _ in range(count):
            if m.tick <= h.start:
                break
            pc, sp = m.pc, m.regs[isa.SP]
            h.goto(h.instruction_back(m.tick, 1))
            site = pc - 1
            if (m.pc < m.ncode and code[m.pc][0] == isa.RET and 0 <= site < m.ncode
                    and code[site][0] in CALLS):
                same_call = Stops({site}, watches=False,
                                  accept=lambda mm, stop: mm.regs[isa.SP] == sp)
                h.search_back(same_call)

    travel(s, move, f"reverse-next {count}")
    arrived(s, before)


@command("reverse-finish", aliases=("rfinish",), usage="reverse-finish", group="time travel",
         needs="machine", max_args=0, summary="back to the call of the current function")
def reverse_finish(s, args: str) -> None:
    """
    Goes back to the 'call' instruction that called the function the machine is
    in now (calls made and returned meanwhile are skipped, recursion included).
    At the program's top level (no call recorded) it stops at the start of the
    history and says so. 'finish' has no forward twin here: use 'next'.
    Example:  reverse-finish
    """
    h = require_history(s)
    m = s.machine
    before = m.tick
    code = s.image.code
    points = {pc for pc, ins in enumerate(code) if ins[0] in CALLS or ins[0] == isa.RET}

    def want(hits, depth):
        depth = depth or 0
        for hit in hits:
            if code[hit.detail][0] == isa.RET:
                depth += 1
            elif depth == 0:
                return hit, depth
            else:
                depth -= 1
        return None, depth

    found = travel(s, lambda h: h.search_back(Stops(points, watches=False), want),
                     "reverse-finish")
    if found is None:
        h.goto(h.start)
        s.say(f"no call of the current function is recorded: at the start of the history")
    arrived(s, before)


@command("reverse-continue", aliases=("rc",), usage="reverse-continue", group="time travel",
         needs="machine", max_args=0,
         summary="back to the last stop a breakpoint or watch makes")
def reverse_continue(s, args: str) -> None:
    """
    Runs backwards to the most recent earlier point where a breakpoint or a
    watchpoint would have stopped a forward run: the last hit before now; again,
    the one before it; and so on. With none before, it stops at the start of the
    history and says so. It replays the recorded run to find them, so with a
    watchpoint it takes as long as running forward with one does. Catchpoints
    are forward-only: the replay does not run the checkpoint protocol again.
    Examples:  reverse-continue      rc
    """
    h = require_history(s)
    m = s.machine
    before = m.tick
    if s.breakpoints.catches:
        s.say("(catchpoints are forward-only: a replay does not run the checkpoint protocol\n"
              " again, so reverse-continue looks only for breakpoints and watchpoints)")
    if not m.breakpoints and not m.watches and not m.reg_watches:
        travel(s, lambda h: h.goto(h.start), "reverse-continue")
        s.say("(no breakpoints or watchpoints are set)")
        arrived(s, before, "start of the history: ")
        return
    found = travel(s, lambda h: h.search_back(Stops()), "reverse-continue")
    if found is None:
        h.goto(h.start)
        s.say("no breakpoint or watchpoint was hit before this point")
        arrived(s, before, "start of the history: ")
        return
    report_stop(s, Stop(found.reason, found.detail))


@command("undo", usage="undo", group="time travel", needs="machine",
         max_args=0, summary="take back the last goto, reverse-* or restore")
def undo(s, args: str) -> None:
    """
    Puts the machine back where it was before the last 'goto', 'reverse-step',
    'reverse-next', 'reverse-finish', 'reverse-continue' or 'restore' ('restore -'
    does the same). Again, the jump before that; up to 64 jumps. A 'restore'
    is taken back through the checkpoint taken automatically just before it.
    Examples:  undo      restore -
    """
    undo_last(s)


@command("history", usage="history [on|off]", group="time travel", needs="machine",
         complete="onoff",
         max_args=1, summary="what is recorded; turn recording on or off")
def history(s, args: str) -> None:
    """
    Shows what is recorded for time travel: the ticks covered, the snapshots kept
    (more near the present, fewer far back), the memory they use against the
    budget, and how many jumps 'undo' can take back. 'history off' stops
    recording (and forgets it: the guest runs a little faster); 'history on'
    records from now on. The budget: 'set history-budget SIZE' (e.g. 256M, or
    'auto' for the guest's touched memory + 64 MiB) or 'minivm repl
    --history-budget SIZE'; the snapshot spacing: 'set history-interval TICKS'
    (or 'auto', which widens it when snapshots would slow the guest).
    Examples:  history      history off      history on
    """
    word = args.strip().lower()
    if word == "off":
        if s.history is None:
            s.say("recording is already off")
            return
        stop_history(s)
        s.history_on = False
        s.say("recording is off: the history is forgotten ('history on' starts again)")
        return
    if word == "on":
        s.history_on = True
        if s.history is None:
            start_history(s)
        s.say(f"recording from tick {s.machine.tick}")
        return
    if word:
        raise CommandError("usage: history [on|off]")
    h = s.history
    if h is None:
        s.say("recording is off ('history on' records from now on)")
        return
    for line in describe_history(s, h):
        s.say(line)


def describe_history(s, h) -> list[str]:
    m = s.machine
    snaps = h.snapshots
    pinned = sum(1 for x in snaps[1:] if x.pinned)
    gaps = [b.tick - a.tick for a, b in zip(snaps, snaps[1:])]
    spacing = (f"spaced {min(gaps)}..{max(gaps)} ticks" if gaps else "only the start")
    journal = h.journal.bytes if h.journal is not None else 0
    budget = h.budget_bytes()
    how = ("the guest's touched memory + 64 MiB" if h.budget is None else "set")
    interval = f"{h.interval} ticks" + (" (adaptive)" if h.adaptive else "")
    valid = sum(1 for p in s.undo_points if undo_point_valid(s, p))
    lines = [f"recording: ticks {h.start}..{h.end()} (the machine is at tick {m.tick})",
             f"  snapshots: {len(snaps)} kept, {spacing}; {h.thinned} thinned so far"
             + (f"; {pinned} pinned (changes made at the prompt)" if pinned else ""),
             f"  memory: {format_size_round(h.memory_used())} of a "
             f"{format_size_round(budget)} budget ({how})",
             f"  disk journal: {format_size_round(journal)}; console input recorded: "
             f"{len(h.input)} byte(s); next snapshot interval: {interval}",
             f"  undo: {valid} jump(s) can be taken back"]
    return lines


def format_size_round(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"
