"""The ``blocks`` engine: hot code compiled to Python functions.

:func:`run_blocks` has exactly the contract of
:func:`~minivm.engine.reference.run_fast`. Cold code runs through the
reference loop one basic block at a time; a block start reached
``THRESHOLD`` times gets a compiled *region* (built by
:mod:`minivm.engine.regions`, written by :mod:`minivm.engine.emit`). How it
works, and why it is exact: docs/performance.md, "How the blocks engine
works".
"""

from __future__ import annotations

from operator import itemgetter
import weakref
from weakref import WeakKeyDictionary

from ..isa import WORD_MASK
from .decode import FAST_PATH_ERRORS, WORD
from .regions import MAX_PATH, block_lengths, build, rotation
from .reference import run_fast

#: Visits of a block start (through run_fast) before a region is compiled there.
THRESHOLD = 16
#: Take a timer interrupt inside the batch without Machine.timer_boundary
#: when nothing else is due or pending (tests turn it off to compare).
FAST_TIMER = True
#: Compiled code objects kept across machines, keyed by source text.
CODE_CACHE_SIZE = 4096

_CODE_CACHE: dict = {}
#: Each machine's compiled regions and counts, kept beside it (not in it).
_STATES: "WeakKeyDictionary" = WeakKeyDictionary()


def clear_code_cache() -> None:
    """Forget every compiled region's code (a benchmark's first run then
    pays for compiling, as a fresh process does)."""
    _CODE_CACHE.clear()


# --- the driver ----------------------------------------------------------------------

class _State:
    """Per-machine compiled regions and hotness counts."""

    __slots__ = ("table", "counts", "bblen", "cover", "getter", "expect", "loops",
                 "__weakref__")

    def __init__(self, code: list):
        #: by pc: [function, ticks needed, stepped form, uses], or None (the
        #: driver's lookup, a list index)
        self.table: list = [None] * len(code)
        self.counts: dict = {}           # pc -> visits through the cold path
        self.loops: dict = {}            # pc on a compiled loop -> [(root, its loop pcs)]
        self.bblen = block_lengths(code)
        self.cover: list = []            # pcs whose instructions the regions used
        self.getter = None
        self.expect = None

    @property
    def regions(self) -> dict:
        """pc -> the region compiled there (a new dict, for inspection)."""
        return {pc: entry for pc, entry in enumerate(self.table) if entry is not None}

    def add_cover(self, code: list, pcs) -> None:
        self.cover = sorted(set(self.cover).union(pcs))
        cover = self.cover if len(self.cover) > 1 else self.cover * 2
        self.getter = itemgetter(*cover)
        self.expect = self.getter(code)


def state_of(m):
    """The machine's compiled regions and counts (None before its first run)."""
    return _STATES.get(m)


#: The last machine run and its state: an interrupt-heavy guest enters the
#: engine every few hundred ticks, and a WeakKeyDictionary lookup makes a
#: new weak reference each time.
#: Both weakly: this keeps neither alive.
_last: list = [lambda: None, lambda: None]


def _state(m) -> _State:
    st = _last[1]() if _last[0]() is m else _STATES.get(m)
    code = m.code
    if st is not None and st.getter is not None:
        try:
            same = st.getter(code) == st.expect
        except IndexError:
            same = False
        if not same:                      # a breakpoint was set or cleared
            st = None
    if st is None or len(st.bblen) != len(code):
        st = _State(code)
        _STATES[m] = st
    if _last[1]() is not st:
        _last[:] = [weakref.ref(m), weakref.ref(st)]
    return st


def run_blocks(m, deadline: int):
    """Run from ``m.pc`` until the clock reads ``deadline`` (see module doc).
    Timer ticks before it are taken here (``takes_timer``: Machine.run ends a
    batch only at the next event of another kind): at each, timer_boundary
    fires it and delivers the interrupt as the boundary would; a protocol step
    it caught (probes.py) ends the batch there, for the boundary to stop at."""
    st = _state(m)
    table = st.table
    counts = st.counts
    bblen = st.bblen
    regs = m.regs
    memory = m.memory
    pages = memory.pages
    writable = memory.writable
    load_miss = memory.load_miss
    store_miss = memory.store_miss
    timer = m.timer
    irq = m.interrupts
    pack = WORD.pack_into
    ncode = m.ncode
    pc = m.pc
    t = m.tick
    soft = timer.next_fire
    if soft is None or soft >= deadline:
        soft = deadline
    fast = FAST_TIMER
    while True:
        if t < soft:
            entry = table[pc]
            if entry is not None and soft - t >= entry[1]:
                pc, t = entry[0](regs, pages, writable, t, soft, load_miss, store_miss)
                if pc >= 0:
                    continue
                pc = ~pc
                m.pc = pc
                m.tick = t
                return m.code[pc][0]
            if entry is None:
                n = counts.get(pc, 0) + 1
                counts[pc] = n
                if n >= THRESHOLD:
                    table[pc] = _compile_region(m, st, pc)
                    continue
                # cold code: one basic block through run_fast
                end = t + bblen[pc]
                if end > soft:
                    end = soft
            else:
                # fewer ticks left than the region may need: its stepped form
                # (compiled when this happens often: before every timer tick),
                # else finish with run_fast
                step = entry[2]
                if step is None:
                    entry[3] += 1
                    if entry[3] >= THRESHOLD:
                        step = entry[2] = _compile_stepped(m, st, pc, entry[1])
                if step is not None:
                    pc, t = step(regs, pages, writable, t, soft, load_miss, store_miss)
                    if pc >= 0:
                        continue
                    pc = ~pc
                    m.pc = pc
                    m.tick = t
                    return m.code[pc][0]
                end = soft
            m.pc = pc
            m.tick = t
            op = run_fast(m, end)
            if op is not None:
                return op
            pc = m.pc
            t = m.tick
            continue
        if soft == deadline:
            break
        # a timer tick inside the batch
        if pc >= ncode:                 # ran off the end: that fault comes first
            m.pc = pc
            m.tick = t
            return m.code[pc][0]
        handler = timer.handler
        if fast and irq.enabled and not irq._pending and handler is not None:
            # The common case, in one step: only the timer is due (every
            # other event is at or after the deadline), nothing is pending,
            # interrupts are enabled: it fires, its interrupt is raised and
            # at once delivered. The same state as Machine.timer_boundary's
            # slow way (fire_due, raise_irq, _deliver_interrupt), whose pending
            # heap would be empty again: only its sequence number advances.
            # The push of the pc comes first, so that a push that cannot be
            # stored in place (an untouched or shared page, no stack) leaves
            # nothing done, for timer_boundary below.
            sp = (regs[15] - 4) & WORD_MASK
            try:
                pack(writable[sp >> 12], sp & 4095, pc)
            except FAST_PATH_ERRORS:
                pass
            else:
                regs[15] = sp
                soft = timer.next_fire = t + timer.period
                timer.fired += 1
                irq._seq += 1
                irq.enabled = False
                m.interrupts_taken += 1
                pc = handler
                if soft >= deadline:
                    soft = deadline
                continue
        m.pc = pc
        m.tick = t
        m.timer_boundary()
        if m.stop_requested:            # a caught protocol step (see above)
            return None
        pc = m.pc
        soft = timer.next_fire
        if soft is None or soft >= deadline:
            soft = deadline
    m.pc = pc
    m.tick = deadline
    return None


#: Machine.run: this engine takes the timer's ticks inside a batch itself.
run_blocks.takes_timer = True


def _compile_region(m, st: _State, root: int):
    from .emit import emit_region        # the emitter loads with the first hot loop
    code = m.code
    top, covered = build(code, m.ncode, root)
    body = rotation(code, top, root)
    if body is not None:
        # a loop tested at its top: compile it rooted after the test (where
        # its add and the test meet), and this root as a prologue to it: the
        # test alone, exiting to the loop or past it
        if st.table[body] is None:
            st.table[body] = _compile_region(m, st, body)
        stop = body
        generated = emit_region(code, m.ncode, root, body, max_path=1,
                                chain=st.table[body][1])
    else:
        stop = None
        generated = emit_region(code, m.ncode, root, None, top, covered)
    loop_pcs = generated[-1]
    for other, pcs in st.loops.get(root, ()):
        if pcs == loop_pcs:                 # the same cycle, entered elsewhere
            stop = other
            generated = emit_region(code, m.ncode, root, other, chain=st.table[other][1])
            break
    source, lines, need, ports, covered, loop_pcs = generated
    # a region whose paths stop at another region's root calls it there
    # itself (CHAIN), without a trip through the driver
    function = _function(m, source, lines, ports, f"<minivm region {root}>",
                         None if stop is None else st.table[stop][0])
    st.add_cover(code, sorted(covered))
    if loop_pcs:
        entry = (root, frozenset(loop_pcs))
        for pc in loop_pcs:
            st.loops.setdefault(pc, []).append(entry)
    # the driver's entry: function, ticks of room it needs, its stepped form
    # (compiled later, if needed), how often that was needed
    return [function, need, None, 0]


def _compile_stepped(m, st: _State, root: int, need: int):
    """The stepped form of the region at ``root`` (emit_region's
    ``stepped``): for the fewer than ``need`` ticks left before a deadline,
    so its paths need be no longer."""
    from .emit import emit_region
    source, lines, _, ports, covered, _ = emit_region(m.code, m.ncode, root, max_path=need,
                                                      stepped=True)
    function = _function(m, source, lines, ports, f"<minivm tail {root}>")
    st.add_cover(m.code, sorted(covered))
    return function


def _function(m, source: str, lines: dict, ports: list, name: str, chain=None):
    """The region function of ``source``, bound to this machine (and to the
    region it chains to, ``chain``)."""
    compiled = _CODE_CACHE.get(source)
    if compiled is None:
        if len(_CODE_CACHE) >= CODE_CACHE_SIZE:
            _CODE_CACHE.clear()
        compiled = _CODE_CACHE[source] = compile(source, name, "exec")
    namespace = {"unpack": WORD.unpack_from, "pack": WORD.pack_into,
                 "FAST_PATH_ERRORS": FAST_PATH_ERRORS, "LINES": lines,
                 # for a compiled iret: this machine's interrupt controller and
                 # the stack pointer of an empty stack
                 "INTC": m.interrupts, "STACK_TOP": m.memory.size & WORD_MASK,
                 "CHAIN": chain}
    for index, fn in enumerate(ports):
        namespace[f"P{index}"] = fn
    exec(compiled, namespace)
    return namespace["region"]


def region_source(m, pc: int, stop=None, stepped: bool = False) -> str:
    """The generated source of the region at ``pc`` (for docs and debugging),
    a loop tested at its top as the prologue _compile_region makes of it;
    ``stepped``: its stepped form (for the last ticks before a deadline)."""
    from .emit import emit_region
    if stepped:
        st = _STATES.get(m)
        entry = st.table[pc] if st is not None and pc < len(st.table) else None
        need = entry[1] if entry is not None else MAX_PATH
        return emit_region(m.code, m.ncode, pc, max_path=need, stepped=True)[0]
    if stop is None:
        body = rotation(m.code, build(m.code, m.ncode, pc)[0], pc)
        if body is not None:
            return emit_region(m.code, m.ncode, pc, body, max_path=1)[0]
    return emit_region(m.code, m.ncode, pc, stop)[0]
