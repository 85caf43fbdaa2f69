"""The REPL's pictures of the machine, as pure functions returning lines.

Each takes what it shows (a machine, an image's :class:`~.places.Places`, a
breakpoint book, two saved states) and returns the lines the session prints;
nothing here prints, runs the guest or changes state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import isa
from ..devices import BLOCK_SIZE
from ..disasm import format_instruction
from ..isa import to_signed
from ..memory import PAGE_SIZE, format_size
from ..probes import EVENTS
from ..report import device_changes, index_ranges
from .places import show_path

PAGES_PER_ROW = 64
MAX_LISTED = 20
LEGEND = ("legend: . untouched  p private  S shared with the checkpoint, not yet saved\n"
          "        s shared, saved  C copied, original not yet saved\n"
          "        c copied, original saved")             # each line fits 80 columns
LAZY_LEGEND = "        f in the checkpoint file, read on the guest's first access (lazy resume)"


# --- registers ----------------------------------------------------------------------------

def reg_cell(i: int, value: int, prev) -> str:
    """``* r1  0x00000001 1          ``: '*' when it differs from ``prev[i]``."""
    mark = "*" if prev is not None and prev[i] != value else " "
    return f"{mark} {isa.reg_name(i):<3} {value:#010x} {to_signed(value):<11}"


def registers(m, places, prev) -> list[str]:
    """Two columns of registers, then pc, tick and the interrupt flag."""
    lines, changed = [], False
    for row in range(8):
        left = reg_cell(row, m.regs[row], prev)
        right = reg_cell(row + 8, m.regs[row + 8], prev)
        changed |= "*" in left + right
        lines.append(f"{left}   {right}".rstrip())
    lines.append(f"  {places.describe(m.pc)}")
    state = ("halted" if m.halted else "faulted" if m.fault is not None else "")
    lines.append(f"  tick {m.tick}   interrupts {'enabled' if m.interrupts.enabled else 'disabled'}"
                 + (f"   {state}" if state else "")
                 + ("   (* changed by the last run/step)" if changed else ""))
    return lines


# --- memory -------------------------------------------------------------------------------

def hex_dump(addr: int, data: bytes, marks: dict[int, list[str]]) -> list[str]:
    """16 bytes a row from ``addr``: hex, ASCII, and the data labels in the row."""
    count = len(data)
    lines = []
    for row in range(addr - addr % 16, addr + count, 16):
        cells, text = [], []
        for col in range(16):
            a = row + col
            if addr <= a < addr + count:
                byte = data[a - addr]
                cells.append(f"{byte:02x}")
                text.append(chr(byte) if 32 <= byte < 127 else ".")
            else:
                cells.append("  ")
                text.append(" ")
        names = [f"{n}" if a == row else f"{n}@{a:#x}"
                 for a in range(max(row, addr), min(row + 16, addr + count))
                 for n in sorted(marks.get(a, []))]
        lines.append(f"{row:#010x}  {' '.join(cells[:8])}  {' '.join(cells[8:])}  "
                     f"|{''.join(text)}|" + (f"  <{', '.join(names)}>" if names else ""))
    return lines


# --- code ---------------------------------------------------------------------------------

def disassembly(image, places, start: int, stop: int, pc: int, breakpoints) -> list[str]:
    """Instructions ``start`` .. ``stop - 1``; '=>' marks pc, 'b' a breakpoint."""
    labels = image.code_labels()
    width = max(len(format_instruction(image, at, labels)) for at in range(start, stop))
    lines = []
    for at in range(start, stop):
        for name in sorted(labels.get(at, [])):
            lines.append(f"{'':9}{name}:")
        mark = "=>" if at == pc else "  "
        brk = "b" if at in breakpoints else " "
        text = format_instruction(image, at, labels)
        lines.append(f"{mark}{brk}{at:>5}    {text:<{width}}   ; {places.loc(at)}")
    return lines


# --- devices ------------------------------------------------------------------------------

def devices(m, places) -> list[str]:
    """Timer, disk (files and requests in flight), interrupts, console."""
    lines = []
    t = m.timer
    if t.period:
        handler = "none (events are dropped)" if t.handler is None else places.handler(t.handler)
        lines.append(f"timer       period {t.period} ticks, next at tick {t.next_fire}, "
                     f"handler {handler}, fired {t.fired} time(s)")
    else:
        lines.append(f"timer       stopped (fired {t.fired} time(s))")
    d = m.disk
    if d.backing is None:
        lines.append("disk        none attached (repl --disk FILE)")
    else:
        chain = d.backing.chain()
        files = " on ".join(f"{show_path(layer.path)} ({layer.kind})" for layer in chain)
        lines.append(f"disk        {d.backing.block_count} blocks; writes go to {files}")
        lines.append(f"            {len(d.queue)} request(s) in flight; last completed "
                     f"#{d.last_completed}; handler {places.handler(d.handler)}")
        lines.append(f"            latency {d.latency} + {d.per_block}/block")
        lines += [f"            {request.describe()}" for request in d.queue]
    pending = m.interrupts.pending()
    lines.append(f"interrupts  {'enabled' if m.interrupts.enabled else 'disabled'}; "
                 + ("none pending" if not pending else
                    "pending: " + ", ".join(f"{src} (tick {tick})" for tick, src in pending)))
    c = m.console
    lines.append(f"console     {c.source.buffered()} input byte(s) fed and not yet read "
                 "(then reads give -1)")
    lines.append(f"            {c.input_consumed} byte(s) read, {c.bytes_written} written")
    return lines


# --- pages --------------------------------------------------------------------------------

def page_states(mem, saving) -> dict[int, str]:
    """page index -> its letter ('p', 'S', 's', 'C', 'c') for every touched page;
    ``saving`` are the checkpoints still saving."""
    def saved(index: int) -> bool:
        return bool(saving) and all(index in job.saved_page_indexes() for job in saving)

    chars = {}
    for i, page in enumerate(mem.pages):
        if type(page) is bytes:
            continue
        kind = mem.page_kind(i)
        if kind == "untouched":
            continue
        if kind == "on-file":
            chars[i] = "f"
        elif kind == "shared":
            chars[i] = "s" if saved(i) else "S"
        elif kind == "copied":
            chars[i] = "C" if saving and not saved(i) else "c"
        else:
            chars[i] = "p"
    return chars


def page_map(mem, chars: dict[int, str], saving) -> list[str]:
    """The summary, one row of 64 pages a line (untouched rows folded), the legend."""
    counts = {"p": 0, "S": 0, "s": 0, "C": 0, "c": 0, "f": 0}
    for ch in chars.values():
        counts[ch] += 1
    total = mem.page_count
    lines = [f"{total} pages of 4 KiB ({format_size(mem.size)}), {len(chars)} touched:",
             f"  {counts['p']} private, {counts['S'] + counts['s']} shared "
             f"({counts['s']} saved), {counts['C'] + counts['c']} copied ({counts['c']} saved)"
             + (f", {counts['f']} still in the checkpoint file (lazily resumed)"
                if counts["f"] else "")]
    lines += [f"{job.name} is saving: {job.pages_done} of {job.pages_total} page(s) "
              "examined so far" for job in saving]
    # as wide as this memory's addresses and page numbers need: a row of 64
    # pages fits 80 columns up to 256 MiB
    address_width = len(f"{max(mem.size - 1, 1):#x}")
    index_width = len(str(max(total - 1, 0)))
    rows = sorted({i // PAGES_PER_ROW for i in chars} | {0})
    nrows = (total + PAGES_PER_ROW - 1) // PAGES_PER_ROW
    previous = -1
    for row in rows + [nrows]:
        if row - previous > 1:
            first, last = (previous + 1) * PAGES_PER_ROW, min(row * PAGES_PER_ROW, total) - 1
            lines.append(f"  ... pages {first}-{last} untouched "
                         f"({first * PAGE_SIZE:#0{address_width}x}.."
                         f"{(last + 1) * PAGE_SIZE - 1:#0{address_width}x})")
        if row >= nrows:
            break
        start = row * PAGES_PER_ROW
        line = "".join(chars.get(i, ".") for i in range(start, min(start + PAGES_PER_ROW, total)))
        lines.append(f"  {start * PAGE_SIZE:#0{address_width}x} {start:>{index_width}}  {line}")
        previous = row
    lines += LEGEND.split("\n")
    if counts["f"]:
        lines.append(LAZY_LEGEND)
    return lines


# --- breakpoints --------------------------------------------------------------------------

def _hits(n: int) -> str:
    return f"  (hit {n} time{'s' if n != 1 else ''})" if n else ""


def breakpoint_list(book, places, machine) -> list[str]:
    """The table of breakpoints, watchpoints and catchpoints; ``places`` and
    ``machine`` may be None."""
    if not len(book):
        return ["no breakpoints, watchpoints or catchpoints ('break LABEL', 'watch ADDR', "
                "'catch EVENT' set them)"]
    lines = ["  num  type        where"]
    for number in book.numbers():
        if number in book.breaks:
            bp = book.breaks[number]
            where = places.describe(bp.pc) if places else str(bp.pc)
            lines.append(f"  {number:>3}  breakpoint  {where}" + _hits(bp.hits))
        elif number in book.watches:
            wp = book.watches[number]
            lines.append(f"  {number:>3}  watch       {watch_text(wp, places, machine)}"
                         + _hits(wp.hits))
        else:
            cp = book.catches[number]
            lines.append(f"  {number:>3}  catch       {catch_text(cp)}" + _hits(cp.hits))
    return lines


def watch_text(wp, places, machine) -> str:
    """What a watchpoint watches, with its value now."""
    if wp.reg is not None:
        value = ""
        if machine is not None and wp.reg in machine.reg_watches:
            value = f" = {to_signed(machine.reg_watches[wp.reg])}"
        return f"register {wp.key}{value}"
    value = ""
    if machine is not None and wp.addr in machine.watches:
        value = f" = {to_signed(machine.watches[wp.addr])}"
    label = places.data_label_at(wp.addr) if places else ""
    return f"word at {wp.addr:#x}{label}{value}"


def catch_text(cp) -> str:
    """A catchpoint: its event, the step and what it narrows to."""
    event = EVENTS[cp.event]
    narrow = "" if cp.arg is None else f" {event.arg.lower()} {cp.arg}"
    return f"{cp.event}{narrow} ({event.step})"


def catch_list(book) -> list[str]:
    """'info catch': number, event, argument, hits."""
    if not book.catches:
        return ["no catchpoints ('catch EVENT' sets one; 'help catch' lists the events)"]
    lines = ["  num  event        arg      step   hits"]
    for number in sorted(book.catches):
        cp = book.catches[number]
        arg = "any" if cp.arg is None else f"{EVENTS[cp.event].arg.lower()} {cp.arg}"
        lines.append(f"  {number:>3}  {cp.event:<11}  {arg:<8} {EVENTS[cp.event].step:<6} "
                     f"{cp.hits:>4}")
    return lines


# --- checkpoints --------------------------------------------------------------------------

def checkpoint_table(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    """name, tick, state, size, file: aligned under a header."""
    header = ("name", "tick", "state", "size", "file")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    return [f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  "
            f"{row[3]:>{widths[3]}}  {row[4]}" for row in [header] + rows]


@dataclass
class View:
    """One side of a diff: a checkpoint's saved state or the running machine's."""
    name: str
    regs: list
    pc: int
    tick: int
    halted: bool
    state: dict
    memory_size: int
    pages: Mapping          # page index -> bytes (a checkpoint's are read on demand)
    disk: object = None          # a disk layer to read blocks from, or None
    disk_note: str = ""
    closers: tuple = ()


def state_diff(a: View, b: View) -> list[str]:
    """Registers, memory pages, disk blocks and device state that differ."""
    lines = [f"diff {a.name} (tick {a.tick}) -> {b.name} (tick {b.tick})"]
    regs = [f"{isa.reg_name(i)} {to_signed(x)} -> {to_signed(y)}"
            for i, (x, y) in enumerate(zip(a.regs, b.regs)) if x != y]
    if a.pc != b.pc:
        regs.append(f"pc {a.pc} -> {b.pc}")
    if a.halted != b.halted:
        regs.append(f"halted {a.halted} -> {b.halted}")
    lines.append("  registers: " + (", ".join(regs) if regs else "same"))
    lines.append(_memory_diff(a, b))
    lines.append("  disk: " + _disk_diff(a, b))
    lines.append("  devices: " + _device_diff(a, b))
    return lines


def _memory_diff(a: View, b: View) -> str:
    if a.memory_size != b.memory_size:
        return f"  memory: sizes differ ({a.memory_size} vs {b.memory_size} bytes)"
    differ = []
    for index in sorted(set(a.pages) | set(b.pages)):
        size = min(PAGE_SIZE, a.memory_size - index * PAGE_SIZE)
        pa = a.pages.get(index) or bytes(size)
        pb = b.pages.get(index) or bytes(size)
        if pa != pb:
            differ.append((index, sum(1 for x, y in zip(pa, pb) if x != y)))
    if not differ:
        return "  memory: same"
    listed = ", ".join(f"{i} ({n} byte{'s' if n != 1 else ''})" for i, n in differ[:MAX_LISTED])
    more = f", and {len(differ) - MAX_LISTED} more" if len(differ) > MAX_LISTED else ""
    return f"  memory: {len(differ)} page(s) differ: {listed}{more}"


def _device_diff(a: View, b: View) -> str:
    devices = device_changes(a.state, b.state)
    return "; ".join(devices) if devices else "same"


def _disk_diff(a: View, b: View) -> str:
    notes = [v.disk_note for v in (a, b) if v.disk_note]
    if notes:
        return "cannot compare: " + "; ".join(notes)
    if a.disk is None and b.disk is None:
        return "none attached"
    if a.disk is None or b.disk is None:
        return f"attached only to {a.name if a.disk is not None else b.name}"
    if a.disk.block_count != b.disk.block_count:
        return f"sizes differ ({a.disk.block_count} vs {b.disk.block_count} blocks)"
    differ = []
    chunk = 64
    for start in range(0, a.disk.block_count, chunk):
        n = min(chunk, a.disk.block_count - start)
        da, db = a.disk.read_blocks(start, n), b.disk.read_blocks(start, n)
        if da != db:
            for k in range(n):
                if da[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE] != db[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE]:
                    differ.append(start + k)
    if not differ:
        return f"same ({a.disk.block_count} blocks)"
    return f"{len(differ)} block(s) differ: {index_ranges(differ)}"


def checkpoint_notes(job, machine) -> list[str]:
    """What the protocol just did for a checkpoint (P1, P2, P5, P8), indented."""
    # lines that fit 80 columns (a projector's terminal), the paths on their own
    notes = [f"memory marked copy-on-write: {job.pages_total} page(s) to save while "
             "the guest runs,", f"  to {show_path(job.location)}"]
    if machine.disk.backing is not None:
        notes.append(f"disk writes now go to the overlay {show_path(machine.disk.backing.path)} "
                     "(P1)")
        notes.append(f"{len(job.inflight_at_stop)} disk request(s) in flight belong to the "
                     "checkpoint (P5)")
    if job.p8_drained:
        notes.append(f"P8: {job.p8_drained} pending request(s) completed first")
        notes.append("  (a pending read was followed by a write to the same block)")
    return [f"  {note}" for note in notes]
