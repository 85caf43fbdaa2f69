"""The blocks engine's groups (emit.group_plan): a register-only loop
whose counter moves by a constant runs whole groups of unrolled iterations
with one test per group. Every branch kind, both directions, steps and
bounds around the edges (0, the sign bit, the top of a word), counters that
start on either side of the group bound, and deadlines that fall anywhere:
blocks must end exactly where interp does."""

from __future__ import annotations

import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from minivm.assembler import assemble
from minivm.devices import BufferSink, ConsoleInput
from minivm.engine import ENGINES, blocks, emit
from minivm.machine import Machine
from support import sliced_trail, threshold

BRANCHES = ("beq", "bne", "blt", "ble", "bgt", "bge")
EDGES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 100, 1000, 2**30, 2**31 - 9, 2**31 - 2,
         2**31 - 1, 2**31, 2**31 + 1, 2**32 - 9, 2**32 - 1)
BODIES = ("add r2, r2, r1", "xor r3, r3, r2", "mul r4, r4, 3", "shl r5, r2, 3",
          "mov r6, r1", "sub r2, r2, r1", "or r3, r3, 5", "and r4, r4, r2",
          # the counter written in the body too: no groups for such a loop
          "add r1, r1, 2", "mov r1, r4")

# `di` hands back (it changes the interrupt state): the region it ends does
# not run on into the loop, so the loop's own region is entered at its root
# with r1 = start
SOURCE = """
        mov r1, {start}
        mov r4, 1
        di
loop:   {body}
        {op} r1, {source}, {step}
        {branch} r1, {bound}, loop
        out 0x01, 88
        halt
"""


def program(start: int, body: list[str], op: str, step: int, branch: str, bound: int,
            source: str = "r1") -> str:
    """``source``: the register the counter's add/sub reads (r1 itself, or
    another one: then r1 is no counter)."""
    lines = "\n        ".join(body) if body else "nop"
    return SOURCE.format(start=start, body=lines, op=op, step=step, branch=branch, bound=bound,
                         source=source)


def run(source: str, engine: str, slices) -> list:
    """The trail of one run in slices of the given sizes (each a deadline),
    and the state it ends in."""
    m = Machine(assemble(source, "groups.asm"), console_sink=BufferSink(),
                console_input=ConsoleInput(b""), engine=engine)
    return sliced_trail(m, slices)


def same_on_both(source: str, slices=(5000,)) -> list:
    with threshold(1):
        trails = {engine: run(source, engine, slices) for engine in ENGINES}
    assert trails["interp"] == trails["blocks"], source
    return trails["blocks"]


def test_the_countdown_runs_in_groups():
    """The region of `sub r1, r1, 1` / `bne r1, 0` has a group loop, and it
    ends where interp does (the last iterations after the groups)."""
    source = program(1003, [], "sub", 1, "bne", 0)
    trail = same_on_both(source)
    assert trail[-2][0] == "halt" and trail[-1] == b"88"
    m = Machine(assemble(source, "g.asm"), console_sink=BufferSink(),
                console_input=ConsoleInput(b""), engine="blocks")
    with threshold(1):
        m.run()
    text = blocks.region_source(m, 3)
    assert "while r1 > gs:" in text
    assert 3 in blocks.state_of(m).regions        # the region the run used


def test_groups_off_gives_the_same_runs():
    source = program(2**31 + 5, ["add r2, r2, r1", "xor r3, r3, r2"], "sub", 3, "bgt", 40)
    on = same_on_both(source, (1, 7, 250, 3, 5000))
    saved = emit.GROUPS
    emit.GROUPS = False
    try:
        blocks.clear_code_cache()
        off = same_on_both(source, (1, 7, 250, 3, 5000))
    finally:
        emit.GROUPS = saved
        blocks.clear_code_cache()
    assert on == off


def test_every_branch_both_directions_at_the_edges():
    """Starting values around each group bound (v +- n*d, +-1) and the
    word's edges, each branch kind, adding and subtracting."""
    for branch, op, step, bound in itertools.product(
            BRANCHES, ("add", "sub"), (1, 3, 4, 2**30), (0, 1, 9, 100, 2**31 - 2)):
        span = 4 * step
        starts = {0, 1, 2**31 - 1, 2**31, 2**32 - 1}
        for k in (-1, 0, 1):
            # the sign bit one step away: a signed compare's other bound
            starts.update({(2**31 + step + k) % 2**32, (2**31 - step + k) % 2**32})
            for edge in (bound + span, bound - span, bound + span // 4, bound - span // 4):
                starts.add((edge + k) % 2**32)
        for start in sorted(starts):
            source = program(start, ["add r2, r2, r1"], op, step, branch, bound)
            same_on_both(source, (1000,))           # the loop entered at its root
            same_on_both(source, (3, 40, 1000))     # ... and in its middle


@settings(max_examples=int(os.environ.get("MINIVM_EXAMPLES", 300)), deadline=None)
@given(start=st.sampled_from(EDGES) | st.integers(0, 2**32 - 1),
       body=st.lists(st.sampled_from(BODIES), max_size=4),
       op=st.sampled_from(("add", "sub")),
       step=st.sampled_from((1, 2, 3, 4, 5, 7, 8, 255, 2**30, 2**31 - 1, 2**31)),
       branch=st.sampled_from(BRANCHES),
       bound=st.sampled_from(EDGES),
       source=st.sampled_from(("r1", "r1", "r1", "r6")),
       slices=st.lists(st.integers(1, 700), min_size=1, max_size=6))
def test_generated_loops_end_where_interp_ends(start, body, op, step, branch, bound, source,
                                               slices):
    same_on_both(program(start, body, op, step, branch, bound, source), slices + [3000])


def test_a_counter_written_twice_or_from_another_register_gets_no_groups():
    """``add r1, r1, 2`` in the body, or ``sub r1, r6, 1``: r1 does not move
    by one constant step per iteration, so its region has no group loop."""
    for body, source in ((["add r1, r1, 2"], "r1"), (["mov r6, r1"], "r6"),
                         (["mov r6, r2"], "r6")):
        text = program(500, body, "sub", 1, "bne", 0, source)
        same_on_both(text, (1000,))
        m = Machine(assemble(text, "g.asm"), console_sink=BufferSink(),
                    console_input=ConsoleInput(b""), engine="blocks")
        assert "g0 = r1" not in blocks.region_source(m, 3), (body, source)
