"""Commands for breakpoints and watchpoints: break, watch, delete, breakpoints
(catchpoints, which share their numbering, are in catch.py)."""

from __future__ import annotations

from ... import isa
from ...isa import to_signed
from ...machine import watched_register_name
from .. import render
from .. import catching
from ..core import register_index
from ..parsing import CommandError, split_args
from ..registry import command


@command("break", aliases=("b", "br"), usage="break [LABEL|ADDR|FILE:LINE]", group="breakpoints",
         complete="code", needs="machine", summary="stop at a label, address or file:line")
def break_(s, args: str) -> None:
    """
    Sets a breakpoint: the guest stops before executing that instruction. The
    location is a code label, an instruction address (a number or expression such
    as loop+2), or a source line as FILE:LINE or :LINE (a line with no instruction
    uses the next line that has one). With no argument: at the current pc.
    Examples:  break loop      b 17      b fib.asm:15      b :15      b loop+2
    """
    m = s.machine
    spec = args or str(m.pc)
    pc = s.code_address(spec)
    bp = s.breakpoints.break_at(pc)
    if bp is not None:
        s.say(f"breakpoint {bp.number} is already at {s.describe(pc)}")
        return
    m.set_breakpoint(pc)
    bp = s.breakpoints.add_break(pc, spec)
    s.say(f"Breakpoint {bp.number}: {s.describe(pc)}")


@command("watch", aliases=("w",), usage="watch REG | watch *ADDR | watch [ADDR]",
         group="breakpoints", complete="data", needs="machine", min_args=1,
         missing="give a register or an address; usage: watch REG | watch *ADDR "
                 "(e.g. watch r1, watch *counter)",
         summary="stop when a register or the word at ADDR changes")
def watch(s, args: str) -> None:
    """
    Sets a watchpoint. 'watch r1' (r0..r15, sp, pc) watches a register: the guest
    stops right after the instruction that changed it, showing the old and new
    value. 'watch *ADDR' or 'watch [ADDR]' watches the 32-bit word at a memory
    address (a data label, number, register or expression: 'watch *r1' is the
    word at the address r1 holds now); a data label or number alone also means
    its word. The reply says which kind was set. While any watch is set the
    machine checks after every instruction, so it runs slower.
    Examples:  watch r1      watch sp      watch *counter      watch [buf+8]      watch *r2
    """
    m = s.machine
    text = args.strip()
    reg = _register(text)
    if reg is not None:
        _watch_register(s, reg, text)
        return
    if text.startswith("*"):
        text = text[1:].strip()
    elif text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    addr = s.evaluate(text, "data")
    s.check_addr(addr, 4)
    wp = s.breakpoints.watch_at(addr)
    if wp is not None:
        s.say(f"watchpoint {wp.number} already watches the word at {addr:#x}")
        return
    value = m.memory.load_word(addr)
    m.watches[addr] = value
    wp = s.breakpoints.add_watch(addr, args)
    s.say(f"Watchpoint {wp.number}: memory, the word at {addr:#x}{s.data_label_at(addr)} "
          f"(now {to_signed(value)})")


def _register(text: str) -> int | None:
    """r0..r15, sp or pc -> the index a register watch uses (16: pc); else None."""
    if text.lower() == "pc":
        return isa.ZERO_REG
    return register_index(text)


def _watch_register(s, reg: int, text: str) -> None:
    m = s.machine
    wp = s.breakpoints.watch_of_register(reg)
    name = watched_register_name(reg)
    if wp is not None:
        s.say(f"watchpoint {wp.number} already watches register {name}")
        return
    value = m.register_value(reg)
    m.reg_watches[reg] = value
    wp = s.breakpoints.add_watch(-1, text, reg=reg)
    hint = "" if name == "pc" else f"; for the word at the address it holds: watch *{name}"
    s.say(f"Watchpoint {wp.number}: register {name} (now {to_signed(value)}){hint}")


@command("delete", aliases=("d", "del"), usage="delete [N...]", group="breakpoints",
         complete="numbers",
         summary="delete N (numbers of 'breakpoints'); alone: all")
def delete(s, args: str) -> None:
    """
    Deletes the breakpoints, watchpoints and catchpoints with the given numbers
    (they share one numbering: see 'breakpoints'). With no number it deletes all
    of them (docs/repl.md).
    Examples:  delete 2      d 1 3      delete
    """
    book = s.breakpoints
    parts = split_args(args)
    if not parts and not book.numbers():
        s.say("nothing to delete: no breakpoints, watchpoints or catchpoints are set")
        return
    if not parts:
        n, kinds = len(book), ("breakpoints, watchpoints and catchpoints" if book.catches
                               else "breakpoints and watchpoints")
        for number in book.numbers():
            book.remove(number, s.machine)
        catching.sync(s)
        s.say(f"deleted all {kinds} ({n})")
        return
    numbers = []
    for part in parts:
        try:
            number = int(part)
        except ValueError:
            raise CommandError(f"'{part}' is not a breakpoint number; usage: delete [N...] "
                               "('breakpoints' lists them)") from None
        if number not in book:
            raise CommandError(f"no breakpoint, watchpoint or catchpoint number {number} "
                               "('breakpoints' lists them)")
        numbers.append(number)
    for number in numbers:
        book.remove(number, s.machine)
    catching.sync(s)
    s.say(f"deleted {', '.join(map(str, numbers))}")


@command("breakpoints", aliases=("bl", "watches"), usage="breakpoints", group="breakpoints",
         summary="list breakpoints, watchpoints and catchpoints")
def breakpoints(s, args: str) -> None:
    """
    Lists every breakpoint and watchpoint with its number (for 'delete'), where it
    is and how many times it has stopped the guest. Also: 'info breakpoints', 'i b'.
    Example:  breakpoints
    """
    s.say_lines(render.breakpoint_list(s.breakpoints, s.places, s.machine))
