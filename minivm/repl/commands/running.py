"""Commands that run the guest: run, continue, step, next."""

from __future__ import annotations

from ... import isa
from ...isa import to_signed
from ...machine import Stop
from .. import catching
from ..parsing import parse_count, split_args
from ..registry import command


@command("run", aliases=("r",), usage="run", group="running", needs="machine", max_args=0,
         too_many="'run' takes no arguments (to load a program: 'load PROG')",
         summary="run until halt, fault, breakpoint, watch or Ctrl-C")
def run(s, args: str) -> None:
    """
    Runs the program from where it is. If it has halted or faulted, 'run' starts
    it again from the beginning first (like 'reset' then 'run'); 'continue' never
    does. Guest console output appears as it is printed. Ctrl-C stops the guest
    between two instructions and returns to the prompt with every state intact.
    Examples:  run      r
    """
    m = s.machine
    if m.halted or m.fault is not None:
        s.say("(starting again from the beginning)")
        s.reset()
    s.check_runnable("continue")
    _continue(s, None)


@command("continue", aliases=("c", "cont"), usage="continue [TICKS]", group="running",
         repeat=True, needs="runnable", max_args=1,
         summary="continue running from the current pc")
def continue_(s, args: str) -> None:
    """
    Continues until the guest halts, faults, reaches a breakpoint, changes a
    watched word, or you press Ctrl-C. Prints why it stopped, with the source line.
    With TICKS, it also stops after that many ticks (instructions), without
    printing them (unlike 'step'): handy in scripts and to let a background save
    make progress. Checkpoints still saving make progress while the guest runs.
    Examples:  continue      c      c 5000
    """
    ticks = parse_count(args, "TICKS", "continue [TICKS]") if args else None
    _continue(s, ticks)


def _continue(s, ticks: int | None) -> None:
    with s.running() as m:
        start = m.tick
        stop = m.run(ticks)
    if stop.reason == "limit":
        s.say(f"ran {m.tick - start} ticks")
    report_stop(s, stop)


@command("step", aliases=("s", "si", "stepi"), usage="step [N]", group="running", repeat=True,
         needs="runnable", max_args=1,
         summary="execute N instructions, showing each source line")
def step(s, args: str) -> None:
    """
    Executes N instructions, printing each one before it runs (tick, pc, label,
    file:line and source), then '=>' and the next instruction. Steps into calls
    (see 'next'). Stops early at a breakpoint, a watch, halt, fault or Ctrl-C.
    Pressing Enter on an empty line repeats the last step.
    Examples:  step      s      step 10
    """
    _stepping(s, args, over=False, usage="step [N]")


@command("next", aliases=("n", "ni", "nexti"), usage="next [N]", group="running", repeat=True,
         needs="runnable", verb="step", max_args=1,
         summary="like step, but a call runs to its return as one step")
def next_(s, args: str) -> None:
    """
    Like 'step', but a 'call' instruction is stepped over: the callee runs until it
    returns to the instruction after the call at the same stack depth (recursion
    is handled). A breakpoint or watch inside the callee still stops there.
    Examples:  next      n      next 3
    """
    _stepping(s, args, over=True, usage="next [N]")


def _stepping(s, args: str, *, over: bool, usage: str) -> None:
    parts = split_args(args)
    count = parse_count(parts[0], "the count", usage) if parts else 1
    with s.running():
        stop = _step(s, count, over=over)
    report_stop(s, stop)


def _step(s, count: int, *, over: bool = False) -> Stop:
    """Execute ``count`` instructions (``next``: a call counts as one),
    printing each as it runs; stops early at a breakpoint, watch, halt..."""
    m = s.machine
    for i in range(count):
        pc, tick, taken = m.pc, m.tick, m.interrupts_taken
        s.say(f"  tick {tick}  {s.describe(pc)}")
        opcode = s.image.code[pc][0]
        if over and opcode in (isa.CALL_I, isa.CALL_R):
            stop = _run_over_call(m, pc)
            if stop is not None:
                return stop
        else:
            stop = m.run(max_ticks=1)
            if stop.reason != "limit":
                return stop
        if m.interrupts_taken != taken:
            s.say(f"  (interrupt taken: jumped to {s.describe(m.pc)})")
        if i < count - 1 and m.pc in m.breakpoints:
            return Stop("breakpoint", m.pc)
    return Stop("limit")


def _run_over_call(m, pc: int) -> Stop | None:
    """Run the call at ``pc`` until it returns to ``pc + 1`` at the same
    stack depth (recursion-safe); None when it returned."""
    ret, sp0 = pc + 1, m.regs[isa.SP]
    if ret >= m.ncode:                     # the call is the last instruction
        return m.run()
    temporary = ret not in m.breakpoints
    if temporary:
        m.set_breakpoint(ret)
    try:
        while True:
            stop = m.run()
            if stop.reason == "breakpoint" and m.pc == ret and m.regs[isa.SP] >= sp0:
                return None
            if stop.reason == "breakpoint" and m.pc == ret and temporary:
                continue                   # a deeper (recursive) return: go on
            return stop
    finally:
        if temporary:
            m.clear_breakpoint(ret)


def report_stop(s, stop: Stop) -> None:
    """Why the guest stopped, then '=>' and where it is."""
    m = s.machine
    reason = stop.reason
    if reason == "halt":
        s.last_stop = f"halted at tick {m.tick}"
        s.say(f"halted at tick {m.tick}: exit status {m.regs[0] & 0xFF} "
              f"(r0 = {to_signed(m.regs[0])})")
        return
    if reason == "fault":
        s.last_stop = "fault"
        s.say(str(stop.detail))
        s.say("(stopped at the fault: inspect with regs, x, disasm; then 'restore' or 'reset')")
        return
    if reason == "breakpoint":
        which = ", ".join(str(bp.number) for bp in s.breakpoints.hit_breaks(m.pc)) or "?"
        s.last_stop = f"stopped at breakpoint {which}"
        s.say(f"Breakpoint {which} at tick {m.tick}")
    elif reason == "watch":
        addr, old, new = stop.detail
        which = ", ".join(str(wp.number) for wp in s.breakpoints.hit_watches(addr)) or "?"
        s.last_stop = f"stopped at watchpoint {which}"
        what = (f"register {addr}" if isinstance(addr, str)
                else f"word at {addr:#x}{s.data_label_at(addr)}")
        s.say(f"Watchpoint {which}: {what} changed {to_signed(old)} -> {to_signed(new)} "
              f"({old:#x} -> {new:#x}) at tick {m.tick}")
    elif reason == "interrupted" and catching.report(s, stopped=True):
        pass                               # a caught protocol step (catch, catching.py)
    elif reason == "interrupted":
        s.last_stop = "interrupted"
        if s.ctrl_c_echoed and s.out.isatty():
            s.say()                        # the terminal echoed ^C on the guest's line
        s.say(f"interrupted (Ctrl-C) at tick {m.tick}")
    else:
        s.last_stop = ""
    s.say(f"=> {s.describe(m.pc)}")
