"""Commands that look at (and poke) the machine: regs, print, set, mem,
disasm, devices, pages, status, info."""

from __future__ import annotations

import difflib

from ... import isa
from ...container import write_text_atomically
from ...errors import show
from ...isa import WORD_MASK, to_signed
from .. import render, travel
from ..core import register_index
from ..parsing import CommandError, parse_count, split_args
from ..registry import COMMANDS, INFO_TOPICS, command, invoke
from .saving import set_save_setting


@command("regs", aliases=("registers",), usage="regs [REG...]", group="inspecting",
         complete="regs", needs="machine",
         summary="show the registers ('i r'); * marks changes")
def regs(s, args: str) -> None:
    """
    Shows r0..r15 (sp is r15) in hex and signed decimal, then pc, tick and the
    interrupt flag. A '*' marks the registers the last run/step changed. With
    register names, shows only those. Also: 'info registers', 'i r'.
    Examples:  regs      i r      regs r1 sp
    """
    m = s.machine
    names = split_args(args)
    if not names:
        s.say_lines(render.registers(m, s.places, s.prev_regs))
        return
    for name in names:
        if name.lower() == "pc":
            s.say(f"  {s.describe(m.pc)}")
            continue
        i = register_index(name)
        if i is None:
            raise CommandError(f"'{name}' is not a register (r0..r15, sp, pc)")
        s.say(render.reg_cell(i, m.regs[i], s.prev_regs).rstrip())


@command("print", aliases=("p",), usage="print EXPR", group="inspecting", complete="any",
         min_args=1, missing="give an expression; usage: print EXPR (e.g. print r1 + 4)",
         summary="evaluate an expression (registers, labels, [memory])")
def print_(s, args: str) -> None:
    """
    Evaluates an expression with C operators + - * / % & | ^ << >> ~ and
    parentheses. Names are registers (r0..r15, sp), pc, tick, labels and .equ
    names; [EXPR] reads the word at that memory address.
    Examples:  print r1 + r2      p buf+4      p [sp]      p COUNT * 4
    """
    value = s.evaluate(args, "value")
    word = value & WORD_MASK
    s.say(f"{args} = {value}" + (f"  ({word:#010x})" if value != word or value > 9 else ""))


@command("set", usage="set REG VALUE | set [ADDR] VALUE | set SETTING VALUE", group="inspecting",
         complete="set",
         summary="change a register, a word of memory, or a setting")
def set_(s, args: str) -> None:
    """
    Sets a register (r0..r15, sp, pc) or the 32-bit word at a memory address to a
    value (any expression). A store into a page a saving checkpoint still shares
    copies the page first, as a guest store would (P3) - try it with 'pages'.
    A change made in the past (after 'goto' or 'reverse-step') changes the run:
    the recorded history after that point is dropped. Settings:
    'set history-budget SIZE|auto' and 'set history-interval TICKS|auto'
    (see 'help history'); 'set save-rate PAGES [TICKS]', the background save of
    checkpoints: PAGES pages per batch, a batch every TICKS guest ticks (see
    'help save-batch'). 'show' lists the settings.
    Examples:  set r1 42      set r2 = r1 * 2      set [counter] 0      set pc loop
               set history-budget 256M      set save-rate 1 2
    """
    parts = split_args(args.replace("=", " ", 1) if "=" in args else args)
    if len(parts) < 2:
        raise CommandError("usage: set REG VALUE | set [ADDR] VALUE (e.g. set r1 42)")
    target, value_text = parts[0], " ".join(parts[1:])
    if travel.set_history_setting(s, target, value_text) \
            or set_save_setting(s, target, value_text):
        return                             # a setting of the session: no program needed
    s.require_machine()
    m = s.machine
    if target.lower() == "pc":
        pc = s.code_address(value_text)
        m.pc = pc
        m.refresh_watches()
        travel.changed(s, f"set pc {value_text}")
        s.say(f"pc set: {s.describe(pc)}")
        return
    value = s.evaluate(value_text, "value")
    if not -(1 << 31) <= value <= WORD_MASK:
        raise CommandError(f"{value} does not fit in 32 bits")
    i = register_index(target)
    if i is not None:
        m.regs[i] = value & WORD_MASK
        m.refresh_watches()                # a register watch starts from the new value
        travel.changed(s, f"set {target} {value_text}")
        s.say(f"{isa.reg_name(i)} = {to_signed(m.regs[i])} ({m.regs[i]:#010x})")
        return
    if target.startswith("[") and target.endswith("]"):
        addr = s.evaluate(target[1:-1], "data")
        s.check_addr(addr, 4)
        m.memory.store_word(addr, value & WORD_MASK)
        if addr in m.watches:
            m.watches[addr] = value & WORD_MASK
        travel.changed(s, f"set {target} {value_text}")
        s.say(f"word at {addr:#x}{s.data_label_at(addr)} = {to_signed(value & WORD_MASK)}")
        return
    raise CommandError(f"'{target}' is not a register or [ADDR]; usage: set REG VALUE | "
                       "set [ADDR] VALUE")


@command("mem", aliases=("x",), usage="mem ADDR [N]", group="inspecting", complete="data",
         repeat=True, needs="machine", max_args=2,
         too_many="too many arguments; usage: mem ADDR [N] (put an expression "
                  "with spaces in parentheses)",
         summary="hex + ASCII dump of N bytes of memory (default 64)")
def mem(s, args: str) -> None:
    """
    Dumps N bytes (default 64) from a memory address (a data label, number,
    register or expression; give an expression with spaces in parentheses).
    'x' with no address continues after the previous dump. Reading does not
    allocate pages.
    Examples:  x msg      mem 0x100 32      x sp 16      x (buf + 16)      x
    """
    m = s.machine
    parts = split_args(args)
    if not parts:
        if s.x_next is None:
            raise CommandError("give an address; usage: mem ADDR [N] (e.g. x msg 32)")
        addr, count = s.x_next
    else:
        addr = s.evaluate(parts[0], "data")
        count = parse_count(parts[1], "the byte count", "mem ADDR [N]") if len(parts) > 1 else 64
    s.check_addr(addr, 1)
    count = min(count, m.memory.size - addr, 1 << 16)
    data = m.memory.read_bytes(addr, count)
    s.say_lines(render.hex_dump(addr, data, s.places.data_marks() if s.places else {}))
    s.x_next = (addr + count, count) if addr + count < m.memory.size else None


@command("disasm", aliases=("dis", "l", "list"), usage="disasm [ADDR] [N]",
         group="inspecting", complete="code", needs="machine", max_args=2,
         summary="disassemble around pc (or at ADDR)")
def disasm(s, args: str) -> None:
    """
    Lists N instructions (default 10) with address, label, source line and text.
    '=>' marks pc and 'b' a breakpoint. Without an address: around pc; ADDR may
    be a label, number, expression or FILE:LINE.
    Examples:  disasm      disasm loop      dis 0 30      disasm fib.asm:20
    """
    m = s.machine
    parts = split_args(args)
    count = parse_count(parts[1], "the count", "disasm [ADDR] [N]") if len(parts) > 1 else 10
    start = s.code_address(parts[0]) if parts else max(0, m.pc - 3)
    stop = min(m.ncode, start + count)
    s.say_lines(render.disassembly(s.image, s.places, start, stop, m.pc, m.breakpoints))


@command("devices", aliases=("dev",), usage="devices", group="inspecting", needs="machine",
         summary="timer, disk queue, pending interrupts, console input")
def devices(s, args: str) -> None:
    """
    Shows each device's state: the timer (period, next event, handler), the disk
    (the file in use, requests in flight with their blocks and completion ticks),
    the interrupt flag and pending interrupts, and the console (input fed with
    'input' and not yet read, bytes read and written). Also: 'info devices'.
    Example:  devices
    """
    s.say_lines(render.devices(s.machine, s.places))


@command("pages", usage="pages [--svg FILE]", group="inspecting", needs="machine",
         summary="memory page map: untouched/private/shared/copied")
def pages(s, args: str) -> None:
    """
    One character per 4 KiB page, 64 per row: '.' untouched (costs nothing),
    'p' private (the machine's own), 'S' shared with a checkpoint that is still
    saving and not yet saved, 's' shared and already saved, 'C' copied by a
    copy-on-write fault (the checkpoint keeps the original, not yet saved),
    'c' copied with the original saved. Runs of untouched rows are folded, so a
    4 GiB memory still fits. Run it after 'checkpoint', a 'step' that stores and
    'continue' to watch the protocol (P2-P4) at work. Also: 'info pages'.
    'pages --svg FILE' also draws the map as an SVG picture for a projector
    (one square per page with its letter, untouched rows folded, for
    memories up to 64 MiB).
    Examples:  pages      pages --svg pages.svg
    """
    m = s.machine
    words = args.split()
    svg_path = None
    if words:
        if words[0] != "--svg" or len(words) != 2:
            raise CommandError("usage: pages [--svg FILE]")
        svg_path = words[1]
    saving = [job for job in s.checkpointer.jobs if job.status == "saving"]
    chars = render.page_states(m.memory, saving)
    if svg_path is not None:            # first: a path that cannot be written is the only output
        _write_page_svg(s, svg_path, chars, m.memory.page_count)
    s.say_lines(render.page_map(m.memory, chars, saving))
    if svg_path is not None:
        s.say(f"page map written to {svg_path}")


def _write_page_svg(s, path: str, chars: dict, total: int) -> None:
    from ...timeline import page_map_svg
    if total > 16384:
        raise CommandError(f"the memory has {total} pages; the picture is drawn for up to "
                           "16384 (64 MiB): use a smaller --mem")
    states = "".join(chars.get(i, ".") for i in range(total))
    write_text_atomically(path, page_map_svg(
        states, f"minivm memory pages at tick {s.machine.tick} ({total} pages of 4 KiB)"))


@command("status", aliases=("where",), usage="status", group="inspecting", needs="machine",
         summary="where the machine is, and checkpoints in progress")
def status(s, args: str) -> None:
    """
    Prints what the toolbar shows: tick, pc and source line, why the guest last
    stopped and any checkpoint still saving. Useful in scripts, which have no
    toolbar. Also: 'info status'.
    Example:  status
    """
    m = s.machine
    s.say(f"program {show(s.origin)}; tick {m.tick}")
    if m.fault is not None:
        s.say(str(m.fault))
    elif m.halted:
        s.say(f"halted: exit status {m.regs[0] & 0xFF}")
    else:
        s.say(f"=> {s.describe(m.pc)}")
    if s.last_stop:
        s.say(f"last stop: {s.last_stop}")
    saving = s.saving_status()
    if saving:
        s.say(saving)


@command("info", aliases=("i",), usage="info WHAT", group="inspecting", complete="info",
         min_args=1, missing="info what? registers, breakpoints, checkpoints, devices, "
                             "pages, status, catch or settings (e.g. 'i r')",
         summary="gdb style: i r, i b, i c, i d, i p, i s")
def info(s, args: str) -> None:
    """
    Another way to reach the listing commands, for gdb fingers. WHAT may be
    abbreviated: r (registers), b (breakpoints), c (checkpoints), d (devices),
    p (pages), s (status); 'info catch' lists the catchpoints; 'info settings'
    is 'show'.
    Examples:  i r      info breakpoints      i c      i r r1      info catch
    """
    word, _, rest = args.partition(" ")
    target = INFO_TOPICS.get(word.lower())
    if target is None:
        close = difflib.get_close_matches(word.lower(), list(INFO_TOPICS), n=1)
        hint = f"; did you mean 'info {close[0]}'?" if close else ""
        raise CommandError(f"unknown info topic '{word}'{hint} (registers, breakpoints, "
                           "checkpoints, devices, pages, status, catch, settings)")
    invoke(s, COMMANDS[target], rest.strip())
