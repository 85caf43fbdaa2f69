"""The blocks engine's runs (emit.run_plan, emit.emit_runs): a loop whose
path back starts with a load or store at ``[r + c]`` and steps ``r`` by a
constant or by a register it does not write runs as ``range`` loops, one
page at a time, the page looked up once per run. Every access kind, both
directions, strides and offsets around page edges, the end of memory and
the top of a word, branch kinds and bounds, deadlines that fall anywhere,
and a checkpoint's frozen view: blocks must end exactly where interp does,
with the same memory and the same originals kept for the checkpoint."""

from __future__ import annotations

import hashlib
import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from minivm.assembler import assemble
from minivm.devices import BufferSink, ConsoleInput
from minivm.engine import ENGINES, blocks, emit
from minivm.machine import Machine
from support import ran_sieve, sliced_trail, threshold

BRANCHES = ("beq", "bne", "blt", "ble", "bgt", "bge")
ACCESSES = ("stb r4, [r1 + {off}]", "st r4, [r1 + {off}]", "ldb r2, [r1 + {off}]",
            "ld r2, [r1 + {off}]", "stb r1, [r1 + {off}]", "st r2, [r1 + {off}]")
BODIES = ("add r2, r2, r1", "xor r4, r4, r2", "add r4, r4, 1", "shl r5, r2, 3",
          "mov r7, r1", "sub r2, r2, r4",
          # the counter or the step register written in the body: no runs
          "add r1, r1, 2", "mov r6, r4")
# a memory whose last page is short: accesses reach its end
MEMORY = 3 * 4096 + 1000
EDGES = (0, 1, 2, 3, 4, 5, 100, 4092, 4093, 4094, 4095, 4096, 4097, 8190, 8192,
         MEMORY - 5, MEMORY - 4, MEMORY - 1, MEMORY, 2**31 - 5, 2**31 - 1, 2**31,
         2**32 - 4100, 2**32 - 4, 2**32 - 1)

# `di` hands back (it changes the interrupt state): the region it ends does
# not run on into the loop, so the loop's own region is entered at its root
SOURCE = """
        mov r1, {start}
        mov r6, {stride}
        mov r4, 0x01020304
        mov r2, 5
        di
loop:   {access}
        {body}
        {update}
        {branch} r1, {bound}, loop
        out 0x01, 88
        halt
"""


def program(start: int, access: str, off: int, body: list[str], update: str, branch: str,
            bound: int, stride: int = 3) -> str:
    """``update``: the counter's step, e.g. ``add r1, r1, 4`` or
    ``add r1, r1, r6`` (r6 = ``stride``)."""
    return SOURCE.format(start=start, stride=stride, access=access.format(off=off),
                         body="\n        ".join(body) if body else "nop", update=update,
                         branch=branch, bound=bound)


def digest(pages) -> str:
    h = hashlib.sha256()
    for index, page in enumerate(pages):
        if page is not None and any(page):
            h.update(index.to_bytes(4, "little") + bytes(page))
    return h.hexdigest()


def run(source: str, engine: str, slices, frozen: bool) -> list:
    """The trail of one run in slices of the given sizes (each a deadline):
    stop, pc, tick, registers; then memory, and with ``frozen`` the pages a
    checkpoint taken before the loop sees (what it must save)."""
    m = Machine(assemble(source, "runs.asm"), memory_size=MEMORY, console_sink=BufferSink(),
                console_input=ConsoleInput(b""), engine=engine)
    for index in range(m.memory.page_count):          # data on every page
        m.memory.write_bytes(index * 4096 + 7, bytes([index + 1]) * 9)
    view = m.memory.share() if frozen else None
    trail = sliced_trail(m, slices)
    trail.append(digest(m.memory.pages))
    if view is not None:
        trail.append(digest(view.page(i) for i in range(view.page_count())))
        trail.append(m.memory.cow_copies)
        view.release()
    return trail


def same_on_both(source: str, slices=(3000,), frozen: bool = False) -> list:
    with threshold(1):
        trails = {engine: run(source, engine, slices, frozen) for engine in ENGINES}
    assert trails["interp"] == trails["blocks"], source
    return trails["blocks"]


def source_of(text: str, pc: int = 5) -> str:
    m = Machine(assemble(text, "r.asm"), memory_size=MEMORY, console_sink=BufferSink(),
                console_input=ConsoleInput(b""), engine="blocks")
    return blocks.region_source(m, pc)


def test_a_strided_store_runs_by_page():
    """``stb r4, [r1 + c]`` / ``add r1, r1, r6`` / ``blt``: a range loop over
    each page, the page looked up once a run, and the same run as interp."""
    text = program(0, ACCESSES[0], 100, [], "add r1, r1, r6", "blt", 9000, stride=7)
    trail = same_on_both(text, (20000,))
    assert trail[0][0] == "halt" and trail[1] == b"88"
    source = source_of(text)
    # only the store reads r1: the loop steps the page offset itself, and
    # the value, which the loop does not write, is masked once a run
    assert "for o in range(o, o + n * step, step):" in source
    assert "v = r4 & 255" in source and "page[o] = v" in source
    assert "r1 = r1 + n * step" in source


def test_a_counter_the_body_reads_is_the_loop_variable():
    text = program(0, ACCESSES[0], 100, ["add r2, r2, r1"], "add r1, r1, r6", "blt", 9000,
                   stride=7)
    same_on_both(text, (20000,))
    source = source_of(text)
    assert "for r1 in range(r1, r1 + n * step, step):" in source
    assert "page[r1 + e] = v" in source
    # a value the body writes is read each iteration; a decreasing counter
    text = program(9000, ACCESSES[0], 0, ["add r4, r4, 1"], "sub r1, r1, 3", "bgt", 10)
    same_on_both(text, (40000,))
    source = source_of(text)
    assert "for o in range(o, o - n * 3, -3):" in source and "page[o] = r4 & 255" in source


def test_the_sieve_marks_its_multiples_in_runs():
    image, m = ran_sieve()
    inner = image.symbols["inner"][1] + 1           # rooted after the test (rotation)
    assert "for o in range(o, o + n * step, step):" in blocks.region_source(m, inner)


def test_runs_off_gives_the_same_runs():
    text = program(4000, ACCESSES[1], 3, ["add r2, r2, r1"], "add r1, r1, 4", "blt", 12000)
    on = same_on_both(text, (1, 7, 250, 3, 5000), frozen=True)
    saved = emit.RUNS
    emit.RUNS = False
    try:
        blocks.clear_code_cache()
        off = same_on_both(text, (1, 7, 250, 3, 5000), frozen=True)
        assert "page = " not in source_of(text)
    finally:
        emit.RUNS = saved
        blocks.clear_code_cache()
    assert on == off


def test_every_access_and_branch_around_page_edges():
    """Each access kind, counting up by a constant, down by a constant and
    up by a register, starting just before a page edge, with a bound on
    either side: entered at the root, and in the middle with short slices."""
    updates = ("add r1, r1, 1", "add r1, r1, 4", "sub r1, r1, 3", "add r1, r1, r6")
    for access, update, branch in itertools.product(ACCESSES, updates, BRANCHES):
        down = update.startswith("sub")
        for start, bound in ((4090, 4300), (8180, 8300), (40, 0), (4200, 4096), (300, 8)):
            if down != (bound < start):
                continue
            text = program(start, access, 0, [], update, branch, bound, stride=3)
            same_on_both(text, (800,))
            same_on_both(text, (3, 40, 800))


def test_accesses_past_the_end_of_memory_and_the_word():
    """Runs that reach the short last page and the end of memory (a word
    across it, a byte past it), and addresses that wrap past 2^32."""
    for access in ACCESSES:
        for off in (MEMORY - 4100, MEMORY - 40, 2**32 - 16, 2**32 - 4096):
            for update in ("add r1, r1, 1", "add r1, r1, 4", "add r1, r1, r6"):
                text = program(0, access, off, [], update, "blt", 5000, stride=5)
                same_on_both(text, (2000,))


def test_runs_under_a_checkpoint_keep_the_originals():
    """Stores in runs after a checkpoint shared memory: each page's first
    store of a run makes the copy-on-write copy, the checkpoint keeps every
    original, as interp's stores do."""
    for update in ("add r1, r1, 1", "add r1, r1, 4", "sub r1, r1, 2", "add r1, r1, r6"):
        down = update.startswith("sub")
        start, bound = (MEMORY - 8, 16) if down else (0, MEMORY - 8)
        text = program(start, ACCESSES[1], 0, ["add r4, r4, 1"], update,
                       "bgt" if down else "blt", bound, stride=6)
        trail = same_on_both(text, (5000, 7, 4000, 60000), frozen=True)
        assert trail[-1] >= 3                  # copies were made


def test_a_counter_or_step_written_in_the_body_gets_no_runs():
    for body, update in ((["add r1, r1, 2"], "add r1, r1, 1"), (["mov r6, r4"], "add r1, r1, r6"),
                         ([], "add r1, r1, r1")):
        text = program(0, ACCESSES[0], 0, body, update, "blt", 5000)
        same_on_both(text, (2000,))
        assert "page = " not in source_of(text), (body, update)


NEAR = st.integers(0, MEMORY + 100)              # addresses and bounds inside memory, mostly
UPDATES = ("add r1, r1, 1", "add r1, r1, 4", "sub r1, r1, 1", "sub r1, r1, 4",
           "add r1, r1, 4095", "add r1, r1, r6", "add r1, r1, r6", "sub r1, r1, 2147483648")


@settings(max_examples=int(os.environ.get("MINIVM_EXAMPLES", 300)), deadline=None)
@given(start=st.sampled_from(EDGES) | NEAR | st.integers(0, 2**32 - 1),
       access=st.sampled_from(ACCESSES),
       off=st.sampled_from((0, 0, 1, 3, 4093, 4096, 2**31, 2**32 - 1, 2**32 - 4097)) | NEAR,
       body=st.lists(st.sampled_from(BODIES), max_size=3),
       update=st.sampled_from(UPDATES),
       stride=st.sampled_from((0, 1, 2, 4, 7, 4096, 2**31 - 1, 2**31, 2**32 - 1)) |
       st.integers(1, 300),
       branch=st.sampled_from(BRANCHES),
       bound=st.sampled_from(EDGES) | NEAR,
       slices=st.lists(st.integers(1, 700), min_size=1, max_size=5),
       frozen=st.booleans())
def test_generated_loops_end_where_interp_ends(start, access, off, body, update, stride, branch,
                                               bound, slices, frozen):
    same_on_both(program(start, access, off, body, update, branch, bound, stride),
                 slices + [3000], frozen)


@settings(max_examples=int(os.environ.get("MINIVM_EXAMPLES", 300)), deadline=None)
@given(start=NEAR, length=st.integers(0, 2 * 4096), access=st.sampled_from(ACCESSES),
       off=st.sampled_from((0, 1, 3, 4093, 4095, 4096)) | NEAR,
       body=st.lists(st.sampled_from(BODIES[:6]), max_size=3),
       step=st.sampled_from((1, 2, 3, 4, 5, 8, 100, 4095, 4096, 5000, None)),
       down=st.booleans(),
       branch=st.sampled_from(("lt", "le", "ne")),
       slices=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
       frozen=st.booleans())
def test_generated_loops_that_run_long(start, length, access, off, body, step, down, branch,
                                       slices, frozen):
    """Loops that go on for a while (the branch keeps them going till the
    counter passes a bound ``length`` bytes on), so that runs do run: up
    by a constant or by a register, or down by a constant."""
    if step is None:                     # by a register (only counting up)
        update, stride, down = "add r1, r1, r6", 1 + length % 37, False
    else:
        update, stride = f"{'sub' if down else 'add'} r1, r1, {step}", 3
    bound = max(start - length, 0) if down else start + length
    kind = {"lt": "bgt" if down else "blt", "le": "bge" if down else "ble", "ne": "bne"}[branch]
    if kind == "bne":                    # a bound the counter meets exactly
        moves = step if step is not None else stride
        bound = start - (length // moves) * moves if down else start + (length // moves) * moves
        if bound < 0 or bound == start:
            return
    same_on_both(program(start, access, off, body, update, kind, bound, stride),
                 slices + [40000], frozen)
