"""Commands for breakpoints and watchpoints: break, watch, delete, breakpoints."""

from __future__ import annotations

from ...isa import to_signed
from .. import render
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


@command("watch", aliases=("w",), usage="watch ADDR", group="breakpoints", complete="data",
         needs="machine", min_args=1,
         missing="give an address; usage: watch ADDR (e.g. watch counter)",
         summary="stop when the word at ADDR changes")
def watch(s, args: str) -> None:
    """
    Sets a watchpoint on the 32-bit word at a memory address (a data label,
    number, register or expression). The guest stops right after the instruction
    that changed it, showing the old and new value. While any watch is set the
    machine checks after every instruction, so it runs slower.
    Examples:  watch counter      watch 0x100      watch buf+8      watch sp
    """
    m = s.machine
    addr = s.evaluate(args, "data")
    s.check_addr(addr, 4)
    wp = s.breakpoints.watch_at(addr)
    if wp is not None:
        s.say(f"watchpoint {wp.number} already watches {addr:#x}")
        return
    value = m.memory.load_word(addr)
    m.watches[addr] = value
    wp = s.breakpoints.add_watch(addr, args)
    s.say(f"Watchpoint {wp.number}: word at {addr:#x}{s.data_label_at(addr)} "
          f"(now {to_signed(value)})")


@command("delete", aliases=("d", "del"), usage="delete [N...]", group="breakpoints",
         complete="numbers", summary="delete breakpoints/watchpoints N; alone: delete all")
def delete(s, args: str) -> None:
    """
    Deletes the breakpoints and watchpoints with the given numbers (see
    'breakpoints'). With no number it deletes all of them (docs/repl.md).
    Examples:  delete 2      d 1 3      delete
    """
    book = s.breakpoints
    parts = split_args(args)
    if not parts:
        n = len(book)
        for number in list(book.breaks) + list(book.watches):
            book.remove(number, s.machine)
        s.say(f"deleted all breakpoints and watchpoints ({n})")
        return
    numbers = []
    for part in parts:
        try:
            number = int(part)
        except ValueError:
            raise CommandError(f"'{part}' is not a breakpoint number; usage: delete [N...] "
                               "('breakpoints' lists them)") from None
        if number not in book:
            raise CommandError(f"no breakpoint or watchpoint number {number} "
                               "('breakpoints' lists them)")
        numbers.append(number)
    for number in numbers:
        book.remove(number, s.machine)
    s.say(f"deleted {', '.join(map(str, numbers))}")


@command("breakpoints", aliases=("bl", "watches"), usage="breakpoints", group="breakpoints",
         summary="list breakpoints and watchpoints")
def breakpoints(s, args: str) -> None:
    """
    Lists every breakpoint and watchpoint with its number (for 'delete'), where it
    is and how many times it has stopped the guest. Also: 'info breakpoints', 'i b'.
    Example:  breakpoints
    """
    s.say_lines(render.breakpoint_list(s.breakpoints, s.places, s.machine))
