"""The REPL's renderers (minivm/repl/render.py): pure functions, exact text."""

from __future__ import annotations

import pytest

from minivm.assembler import assemble
from minivm.machine import Machine
from minivm.repl import render
from minivm.repl.books import Breakpoints
from minivm.repl.places import Places

SOURCE = """\
        mov r1, 5
loop:   sub r1, r1, 1
        st r1, [counter]
        bgt r1, 0, loop     ; count down
        halt
.data
msg:     .asciz "Hi!"
counter: .word 0
"""


@pytest.fixture
def stepped():
    """A machine three instructions in, the registers before, the places."""
    image = assemble(SOURCE, "count.asm")
    m = Machine(image, memory_size=64 * 1024)
    prev = list(m.regs[:16]) + [m.pc]
    m.run(max_ticks=3)
    return m, prev, Places(image)


def test_registers_mark_what_changed(stepped):
    m, prev, places = stepped
    assert render.registers(m, places, prev) == [
        "  r0  0x00000000 0               r8  0x00000000 0",
        "* r1  0x00000004 4               r9  0x00000000 0",
        "  r2  0x00000000 0               r10 0x00000000 0",
        "  r3  0x00000000 0               r11 0x00000000 0",
        "  r4  0x00000000 0               r12 0x00000000 0",
        "  r5  0x00000000 0               r13 0x00000000 0",
        "  r6  0x00000000 0               r14 0x00000000 0",
        "  r7  0x00000000 0               sp  0x00010000 65536",
        "  pc 3 <loop+2>  count.asm:4  bgt r1, 0, loop",
        "  tick 3   interrupts disabled   (* changed by the last run/step)"]
    assert render.registers(m, places, None)[1].startswith("  r1  0x00000004 4 ")
    assert render.reg_cell(15, 0xFFFFFFFF, None) == "  sp  0xffffffff -1         "


def test_hex_dump_shows_bytes_text_and_labels(stepped):
    m, _, places = stepped
    assert render.hex_dump(0, m.memory.read_bytes(0, 20), places.data_marks()) == [
        "0x00000000  48 69 21 00 04 00 00 00  00 00 00 00 00 00 00 00  "
        "|Hi!.............|  <msg, counter@0x4>",
        "0x00000010  00 00 00 00                                       |....            |"]
    assert render.hex_dump(0x12, b"A\x00", {}) == [
        "0x00000010        41 00                                       |  A.            |"]


def test_disassembly_marks_pc_breakpoints_and_labels(stepped):
    m, _, places = stepped
    assert render.disassembly(m.image, places, 0, 5, m.pc, {3}) == [
        "       0    mov r1, 5         ; count.asm:1",
        "         loop:",
        "       1    sub r1, r1, 1     ; count.asm:2",
        "       2    st r1, [4]        ; count.asm:3",
        "=>b    3    bgt r1, 0, loop   ; count.asm:4",
        "       4    halt              ; count.asm:5"]


def test_devices_of_a_machine_without_a_disk(stepped):
    m, _, places = stepped
    assert render.devices(m, places) == [
        "timer       stopped (fired 0 time(s))",
        "disk        none attached (repl --disk FILE)",
        "interrupts  disabled; none pending",
        "console     0 input byte(s) fed and not yet read (then reads give -1)",
        "            0 byte(s) read, 0 written"]


def test_page_map_of_a_small_memory(stepped):
    m, _, _ = stepped
    chars = render.page_states(m.memory, [])
    assert chars == {0: "p"}
    assert render.page_map(m.memory, chars, []) == [
        "16 pages of 4 KiB (64 KiB), 1 touched:",
        "  1 private, 0 shared (0 saved), 0 copied (0 saved)",
        "  0x0000  0  p...............",
        "legend: . untouched  p private  S shared with the checkpoint, not yet saved",
        "        s shared, saved  C copied, original not yet saved",
        "        c copied, original saved"]
    assert max(map(len, render.LEGEND.splitlines() + [render.LAZY_LEGEND])) <= 80


class _Memory:
    """Just what the page renderers read."""

    def __init__(self, kinds: dict[int, str], page_count: int):
        self.pages = [bytearray(1) if i in kinds else b"" for i in range(page_count)]
        self.kinds = kinds
        self.page_count = page_count
        self.size = page_count * 4096

    def page_kind(self, index: int) -> str:
        return self.kinds[index]


class _Job:
    name, pages_done, pages_total = "ck", 1, 4

    def saved_page_indexes(self):
        return {1, 3}


def test_page_states_and_folded_rows_while_a_checkpoint_saves():
    mem = _Memory({0: "private", 1: "shared", 2: "shared", 3: "copied", 200: "copied"}, 256)
    chars = render.page_states(mem, [_Job()])
    assert chars == {0: "p", 1: "s", 2: "S", 3: "c", 200: "C"}
    assert render.page_map(mem, chars, [_Job()])[:6] == [
        "256 pages of 4 KiB (1 MiB), 5 touched:",
        "  1 private, 2 shared (1 saved), 2 copied (1 saved)",
        "ck is saving: 1 of 4 page(s) examined so far",
        "  0x00000   0  psSc............................................................",
        "  ... pages 64-191 untouched (0x40000..0xbffff)",
        "  0xc0000 192  ........C......................................................."]
    assert len(render.page_map(mem, chars, [_Job()])) == 9     # the last row is not folded
    assert max(map(len, render.page_map(mem, chars, [_Job()]))) <= 80


def test_breakpoint_list(stepped):
    m, _, places = stepped
    book = Breakpoints()
    assert render.breakpoint_list(book, places, m) == [
        "no breakpoints, watchpoints or catchpoints ('break LABEL', 'watch ADDR', "
        "'catch EVENT' set them)"]
    book.add_break(1, "loop")
    book.add_watch(4, "counter")
    book.add_watch(-1, "r1", reg=1)
    book.add_catch("cow", 2, "cow 2")
    book.hit_breaks(1)
    m.watches[4] = 3
    m.reg_watches[1] = 7
    assert render.breakpoint_list(book, places, m) == [
        "  num  type        where",
        "    1  breakpoint  pc 1 <loop>  count.asm:2  sub r1, r1, 1  (hit 1 time)",
        "    2  watch       word at 0x4 <counter> = 3",
        "    3  watch       register r1 = 7",
        "    4  catch       cow page 2 (P3)"]
    assert render.breakpoint_list(book, None, None)[1:] == [
        "    1  breakpoint  1  (hit 1 time)",
        "    2  watch       word at 0x4",
        "    3  watch       register r1",
        "    4  catch       cow page 2 (P3)"]


def test_checkpoint_table_aligns_columns():
    assert render.checkpoint_table([("ckpt-0001", "12", "complete, 3 page(s)", "900 B", "c/a.mvc"),
                                    ("b", "1500", "saving, 1 of 4 pages", "-", "c/b.mvc")]) == [
        "  name       tick  state                  size  file",
        "  ckpt-0001    12  complete, 3 page(s)   900 B  c/a.mvc",
        "  b          1500  saving, 1 of 4 pages      -  c/b.mvc"]


def _view(name, **changes):
    fields = dict(regs=[0] * 16, pc=0, tick=0, halted=False,
                  state={"timer": {"period": 0}, "console": {"input_consumed": 0}},
                  memory_size=8192, pages={})
    fields.update(changes)
    return render.View(name, **fields)


def test_state_diff_lists_what_differs():
    a = _view("a", pages={0: bytes(4096)})
    b = _view("b", regs=[0, 7] + [0] * 14, pc=3, tick=9,
              state={"timer": {"period": 5}, "console": {"input_consumed": 0},
                     "interrupts": {"pending": [[1, "timer"]]}},
              pages={1: b"\x01\x02" + bytes(4094)})
    assert render.state_diff(a, b) == [
        "diff a (tick 0) -> b (tick 9)",
        "  registers: r1 0 -> 7, pc 0 -> 3",
        "  memory: 1 page(s) differ: 1 (2 bytes)",
        "  disk: none attached",
        "  devices: timer period 0 -> 5; pending interrupts 0 -> 1"]
    assert render.state_diff(a, _view("now")) == [
        "diff a (tick 0) -> now (tick 0)",
        "  registers: same", "  memory: same", "  disk: none attached", "  devices: same"]
    assert render.state_diff(a, _view("c", memory_size=4096, disk_note="gone"))[2:4] == [
        "  memory: sizes differ (8192 vs 4096 bytes)", "  disk: cannot compare: gone"]
