"""The blocks engine's scans (emit.scan_plan, emit.emit_scan): a loop that
loads a byte at ``[r + c]``, goes on while it is not a constant, and steps
``r`` by 1 (up or down), with or without a bound on ``r`` (the sieve's
search for the next prime; ``strlen``), finds the byte it stops at with
``bytearray.find`` (``rfind`` down) on the page, then runs on from the
load. Every rotation of the loop (entered at each of its instructions),
both directions, every branch kind for the bound, bytes around page edges,
the short last page and the end of memory, untouched pages, and deadlines
that fall anywhere: blocks must end exactly where interp does."""

from __future__ import annotations

import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from minivm import bench
from minivm.assembler import assemble
from minivm.devices import BufferSink, ConsoleInput
from minivm.engine import ENGINES, blocks, emit
from minivm.machine import Machine
from support import ran_sieve, sliced_trail, threshold

MEMORY = 3 * 4096 + 1000                        # the last page is short
BRANCHES = ("beq", "bne", "blt", "ble", "bgt", "bge")

# A bounded search: the sieve's shape. ``{keep}`` is the test on the byte:
# "bne r2, V, step" goes on while r2 != V by the taken side, "beq r2, V,
# found" by the side that falls through (then ``jmp step``). ``{leave}``
# leaves when the counter passes the bound. `di` hands back, so the loop's
# region is entered at {entry}: every rotation of the loop.
SEARCH = """
        mov r1, {start}
        mov r2, 99
        di
        jmp {entry}
head:   {leave} r1, {bound}, done
load:   ldb r2, [r1 + {off}]
        {keep}
step:   {update}
        jmp head
found:  out 0x01, 70
        halt
done:   out 0x01, 68
        halt
"""

# strlen: no bound but the byte (and the page, the clock and the top or the
# bottom of the counter's range)
STRLEN = """
        mov r1, {start}
        mov r2, 99
        di
        jmp {entry}
load:   ldb r2, [r1 + {off}]
step:   {update}
        {keep}
        out 0x01, 70
        halt
"""


def search(start, off, update, leave, bound, v, taken=True, entry="load") -> str:
    keep = f"bne r2, {v}, step\n        jmp found" if taken else f"beq r2, {v}, found"
    return SEARCH.format(start=start, off=off, update=update, leave=leave, bound=bound,
                         keep=keep, entry=entry)


def strlen(start, off, update, v, taken=True, entry="load") -> str:
    keep = f"bne r2, {v}, load" if taken else f"beq r2, {v}, out\n        jmp load\nout:"
    return STRLEN.format(start=start, off=off, update=update, keep=keep, entry=entry)


def run(source: str, engine: str, slices, marks, fill) -> list:
    """The trail of one run in slices (each a deadline): stop, pc, tick,
    registers; then the output. Memory holds ``fill`` everywhere (None:
    untouched) and the byte values ``marks`` gives at their addresses."""
    m = Machine(assemble(source, "scan.asm"), memory_size=MEMORY, console_sink=BufferSink(),
                console_input=ConsoleInput(b""), engine=engine)
    if fill is not None:
        m.memory.write_bytes(0, bytes([fill]) * MEMORY)
    for address, value in marks:
        if 0 <= address < MEMORY:
            m.memory.write_bytes(address, bytes([value]))
    return sliced_trail(m, slices)


def same_on_both(source: str, slices=(40000,), marks=(), fill=65) -> list:
    with threshold(1):
        trails = {engine: run(source, engine, slices, marks, fill) for engine in ENGINES}
    assert trails["interp"] == trails["blocks"], source
    return trails["blocks"]


def scans(source: str, fill=65) -> list:
    """The pcs of the compiled regions of a run whose source searches by find."""
    with threshold(1):
        m = Machine(assemble(source, "scan.asm"), memory_size=MEMORY, console_sink=BufferSink(),
                    console_input=ConsoleInput(b""), engine="blocks")
        if fill is not None:
            m.memory.write_bytes(0, bytes([fill]) * MEMORY)
        m.run(40000)
        state = blocks._STATES[m]
        return [pc for pc in sorted(state.regions)
                if "find(" in (blocks.region_source(m, pc) or "")]


def test_the_sieve_searches_by_find():
    image, m = ran_sieve()
    nxt = image.symbols["next"][1]                  # rooted after the inner loop's exit
    source = blocks.region_source(m, nxt)
    assert "f = page.find(0, o, o + n)" in source
    same_on_both(bench.SIEVE_LOOP.format(n=2), (1, 5, 999, 30011, 3_000_000))


def test_every_rotation_finds_the_byte():
    """Entered at each instruction of the loop, up and down, the byte's test
    by either side: the search stops at the marked byte, on both engines,
    and every rotation searches by find (rooted at the counter's branch,
    the step before it is at the path's other end)."""
    for entry, taken, down in itertools.product(("head", "load", "step"), (True, False),
                                                (False, True)):
        update = "sub r1, r1, 1" if down else "add r1, r1, 1"
        start, bound, mark = (9000, 10, 5000) if down else (10, 9000, 5000)
        text = search(start, 0, update, "ble" if down else "bge", bound, 0, taken, entry)
        trail = same_on_both(text, marks=[(mark, 0)])
        assert trail[-1] == b"70"
        assert scans(text) != [], (entry, taken, down)
        text = strlen(start, 0, update, 7, taken, "step" if entry == "head" else entry)
        assert same_on_both(text, marks=[(mark, 7)])[-1] == b"70"
        assert scans(text) != [], (entry, taken, down)


def test_the_bound_ends_the_search_before_the_byte():
    for leave, down in itertools.product(BRANCHES, (False, True)):
        update = "sub r1, r1, 1" if down else "add r1, r1, 1"
        for start, bound in ((100, 4200), (4090, 4100), (8000, 8192), (0, 3)):
            if down:
                start, bound = bound, start
            text = search(start, 0, update, leave, bound, 0)
            same_on_both(text, (2, 13, 5000, 40000))
            same_on_both(text, (40000,), marks=[(bound, 0), (start + 3, 0)])


def test_page_edges_the_short_page_and_the_end_of_memory():
    """Bytes just before and after a page edge, the last page (short), the
    search running off the end of memory (the load there faults, at its own
    tick) or wrapping at the counter's top and bottom, untouched pages."""
    for down in (False, True):
        update = "sub r1, r1, 1" if down else "add r1, r1, 1"
        for start, off in ((4090, 0), (4100, 0), (MEMORY - 10, 0), (0, MEMORY - 20),
                           (2**32 - 5, 0), (3, 2**32 - 2), (5, 4096)):
            for marks in ((), ((4095, 0),), ((4096, 0),), ((MEMORY - 1, 0),)):
                for fill in (65, None):
                    text = strlen(start, off, update, 0)
                    same_on_both(text, (7, 4000, 40000), marks, fill)
                    text = search(start, off, update, "beq", 2**31, 0)
                    same_on_both(text, (40000,), marks, fill)


def test_no_scan_without_the_shape():
    """A step of 2, a word load, a byte compared with a value no byte has,
    a search that goes on while the byte equals the constant, or the byte's
    register the counter itself: no find, and still the same run."""
    for text in (search(0, 0, "add r1, r1, 2", "bge", 9000, 0),
                 search(0, 0, "add r1, r1, 1", "bge", 9000, 256),
                 SEARCH.format(start=0, off=0, update="add r1, r1, 1", leave="bge",
                               bound=9000, keep="beq r2, 65, step\n        jmp found",
                               entry="load"),
                 SEARCH.replace("ldb r2", "ld r2").format(
                     start=0, off=0, update="add r1, r1, 1", leave="bge", bound=9000,
                     keep="bne r2, 0, step\n        jmp found", entry="load")):
        same_on_both(text, (40000,), marks=[(5000, 0)])
        assert scans(text) == [], text


def test_scans_off_gives_the_same_runs():
    text = search(100, 7, "add r1, r1, 1", "bge", 9000, 0, entry="step")
    on = same_on_both(text, (1, 7, 250, 3, 40000), marks=[(6000, 0)])
    saved = emit.SCANS
    emit.SCANS = False
    try:
        blocks.clear_code_cache()
        off = same_on_both(text, (1, 7, 250, 3, 40000), marks=[(6000, 0)])
        assert scans(text) == []
    finally:
        emit.SCANS = saved
        blocks.clear_code_cache()
    assert on == off


NEAR = st.integers(0, MEMORY + 100)
EDGES = (0, 1, 4094, 4095, 4096, 4097, 8191, 8192, MEMORY - 2, MEMORY - 1, MEMORY,
         2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)


@settings(max_examples=int(os.environ.get("MINIVM_EXAMPLES", 300)), deadline=None)
@given(shape=st.sampled_from(("search", "strlen")),
       start=st.sampled_from(EDGES) | NEAR | st.integers(0, MEMORY // 2),
       off=st.sampled_from((0, 0, 1, 4095, 2**32 - 1)) | st.integers(0, 4096),
       down=st.booleans(), leave=st.sampled_from(BRANCHES + ("go on",) * 4),
       distance=st.integers(-20, 9000) | st.sampled_from(EDGES),
       v=st.sampled_from((0, 0, 7, 255)),
       taken=st.booleans(), entry=st.sampled_from(("head", "load", "step")),
       marks=st.lists(st.tuples(st.sampled_from(EDGES) | NEAR,
                                st.sampled_from((0, 7, 65, 255))), max_size=4),
       fill=st.sampled_from((65, 65, 0, None)),
       slices=st.lists(st.integers(1, 3000), min_size=1, max_size=4))
def test_generated_searches_end_where_interp_ends(shape, start, off, down, leave, distance, v,
                                                  taken, entry, marks, fill, slices):
    """Any search or strlen loop, the bound ``distance`` bytes on from the
    start (with a test that keeps it going till there, half of them: most
    go on for thousands of ticks), bytes marked anywhere."""
    update = "sub r1, r1, 1" if down else "add r1, r1, 1"
    bound = (start - distance if down else start + distance) % 2**32
    if leave == "go on":                # a test that keeps the loop going till the bound
        leave = ("ble", "blt", "beq") if down else ("bge", "bgt", "beq")
        leave = leave[start % 3]
    if shape == "search":
        text = search(start, off, update, leave, bound, v, taken, entry)
    else:
        text = strlen(start, off, update, v, taken, "step" if entry == "head" else entry)
    same_on_both(text, slices + [40000], marks, fill)
