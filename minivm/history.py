"""Time travel: a recorded run the REPL can move through, backwards and
forwards, exactly (docs/protocol.md, "Reverse execution"; docs/repl.md).

minivm is deterministic given the program, the disk and the console input,
so a run is recorded as a few *snapshots* plus what came from outside, and
any tick is reached by restoring the nearest snapshot before it and running
forward (what rr does):

* A **snapshot** is a checkpoint kept in host memory: the machine's saved
  state (``Machine.save_state``, the P2 "save device state") and memory as
  *page versions*. It is incremental: it holds only the pages written since
  the snapshot before it, and those cost nothing to take. Like P2/P3, taking
  one marks the written pages copy-on-write (``Memory.protect`` with
  ``keep_versions``): the snapshot keeps the page objects themselves, and
  the guest's next store to such a page writes a copy. The first snapshot
  (the *base*) holds the whole page table. Memory at snapshot *k* is, page
  by page, the version in the latest snapshot at or before *k* that has it.
* The **disk** is followed by a journal of every write as it completes
  (``Disk.journal``): the blocks before and after. Moving back undoes
  writes, moving forward redoes them, so the disk always matches the
  position.
* **From outside**: console input fed at the prompt (tick and bytes: a
  replay feeds it again at the same tick), a checkpoint whose P8 rule
  completed the pending requests early (``ckpt``: done again on a replay),
  and any change a user makes at the prompt (``set``, a REPL checkpoint
  that drained the disk): a *pinned* snapshot right after it, which a replay
  installs when it reaches that tick. A change in the past drops the
  recorded future after it (the run has changed).
* ``wait`` moves the clock over ticks where no instruction starts; the
  machine notes those jumps (``Machine.wait_gaps``) so that stepping back
  one instruction over a ``wait`` lands on the ``wait``.

Snapshots are taken every ``interval`` ticks, at instruction boundaries,
through the machine's hooks (this object wraps the checkpointer, which still
gets every call). The interval grows when taking them costs more than
:data:`OVERHEAD` of the host time (``adaptive``; tests fix it), and old
snapshots are *thinned* to stay within the memory budget: the one whose
removal leaves the smallest gap for its distance from the present goes
first, so more stay near the present and fewer far back. Removing a
snapshot merges its pages into the next one. The base and pinned
snapshots are never removed; with a budget too small for anything else,
every jump replays from the base: still exact, only slower.

Recording never changes the run: the hooks only look, and the copy the
guest's store makes is invisible to it (tests/test_history.py compares runs
with and without).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from .machine import Hooks, Machine, Stop
from .devices import BufferSink
from .errors import MinivmError
from .memory import PAGE_SIZE

#: Ticks between two snapshots to begin with.
DEFAULT_INTERVAL = 20_000
#: The longest interval the adaptive spacing grows to.
MAX_INTERVAL = 1 << 21
#: The share of host time recording may take before the interval grows.
OVERHEAD = 0.04
#: What a snapshot's saved state is counted as, besides its pages.
STATE_COST = 2048
#: Snapshots kept at most, whatever the budget.
MAX_SNAPSHOTS = 4096
#: The default budget beyond the guest's own touched memory.
EXTRA_BUDGET = 64 << 20


class HistoryError(MinivmError):
    """A jump the history cannot make (before its start, while a commit waits...)."""


@dataclass
class Snapshot:
    tick: int
    state: dict
    fault: object
    pages: dict                  # page index -> version, written since the previous one
    disk_pos: int                # the journal's position here
    pinned: bool = False         # a change made at the prompt: never thinned
    why: str = ""
    seq: int = 0

    @property
    def cost(self) -> int:
        return len(self.pages) * PAGE_SIZE + STATE_COST


class DiskJournal:
    """Every disk write of the recorded run, in order: (tick, block, before,
    after). ``cursor`` is how many of them the disk holds now."""

    def __init__(self, disk):
        self.disk = disk
        self.entries: list[tuple[int, int, bytes, bytes]] = []
        self.cursor = 0
        self.bytes = 0

    def before_write(self, request) -> None:
        """Disk.complete is about to write ``request`` (a write) to the disk."""
        if self.cursor < len(self.entries):
            tick, block, _, after = self.entries[self.cursor]
            if tick == request.done and block == request.block and after == request.data:
                self.cursor += 1           # the recorded write, done again on a replay
                return
            self.truncate()                # the run has changed: the rest is not its future
        before = self.disk.backing.read_blocks(request.block, request.count)
        self.entries.append((request.done, request.block, before, bytes(request.data)))
        self.bytes += 2 * len(before)
        self.cursor += 1

    def truncate(self) -> None:
        for _, _, before, _ in self.entries[self.cursor:]:
            self.bytes -= 2 * len(before)
        del self.entries[self.cursor:]

    def move_to(self, position: int) -> None:
        """Undo or redo writes until the disk holds the first ``position``."""
        backing = self.disk.backing
        while self.cursor > position:
            self.cursor -= 1
            _, block, before, _ = self.entries[self.cursor]
            backing.write_blocks(block, before)
        while self.cursor < position:
            _, block, _, after = self.entries[self.cursor]
            backing.write_blocks(block, after)
            self.cursor += 1


@dataclass
class Hit:
    """Where a forward run would have stopped (reverse-continue's search)."""
    tick: int
    reason: str
    detail: object = None
    ordinal: int = 0             # which stop of its replay it is
    snapshot: int = 0            # the replay's start (index in ``snapshots``)


@dataclass
class _Muted:
    breakpoints: set = field(default_factory=set)
    watches: dict = field(default_factory=dict)
    trace: object = None
    sink: object = None
    reg_watches: dict = field(default_factory=dict)


class History(Hooks):
    """The recorded run of one machine; it is the machine's hooks object and
    passes every call on to ``inner`` (the checkpointer)."""

    def __init__(self, machine: Machine, inner: Hooks, *, budget: int | None = None,
                 interval: int = DEFAULT_INTERVAL, adaptive: bool = True):
        if interval < 1:
            raise MinivmError(f"the history interval must be at least 1 tick, not {interval}")
        self.machine = machine
        self.inner = inner
        self.budget = budget                 # None: touched memory + EXTRA_BUDGET
        self.interval = interval
        self.base_interval = interval
        self.adaptive = adaptive
        self.replaying = False               # a jump's replay: no checkpoints, no output
        self.searching = False               # a search's replay: no snapshots either
        self.snapshots: list[Snapshot] = []
        self._seq = 0
        memory = machine.memory
        memory.keep_versions = True
        self.dirty = memory.track_writes()
        self.journal = DiskJournal(machine.disk) if machine.disk.backing is not None else None
        machine.disk.journal = self.journal
        machine.wait_gaps = {}
        self.gaps = machine.wait_gaps
        source = machine.console.source
        self.input = bytearray(source.pending())      # every byte fed, from the start
        self.input_base = machine.console.input_consumed
        # (tick, len(self.input) after it): what was fed at each tick
        self.feeds: list[tuple[int, int]] = [(machine.tick, len(self.input))]
        self.drains: set[int] = set()                 # ticks where a 'ckpt' drained (P8)
        self.start = machine.tick
        self.horizon = machine.tick
        self.thinned = 0
        self.changes: list[int] = []                  # ticks where the run was changed
        self.host_time = 0.0                          # spent taking snapshots
        self._last_host = time.perf_counter()
        self._record_cost = 0.0
        # the base holds the whole page table, as a list (the others: dicts)
        base = Snapshot(machine.tick, machine.save_state(), machine.fault,
                        list(memory.pages), self._disk_pos(), True, "start")
        memory.protect(range(memory.page_count))
        self.dirty.clear()
        self._add(0, base)
        self.at = 0                                   # the snapshot memory is relative to
        machine.hooks = self

    # ---- bookkeeping -------------------------------------------------------------------
    def _disk_pos(self) -> int:
        return self.journal.cursor if self.journal is not None else 0

    def _add(self, index: int, snap: Snapshot) -> None:
        self._seq += 1
        snap.seq = self._seq
        self.snapshots.insert(index, snap)

    def close(self) -> None:
        """Stop recording: the machine runs on as if there had been none."""
        m = self.machine
        m.memory.untrack(self.dirty)
        m.memory.keep_versions = False
        m.disk.journal = None
        m.wait_gaps = None
        if m.hooks is self:
            m.hooks = self.inner
        self.snapshots = []

    @property
    def position(self) -> int:
        return self.machine.tick

    def memory_used(self) -> int:
        return (sum(s.cost for s in self.snapshots[1:]) + STATE_COST
                + 8 * len(self.snapshots[0].pages)
                + (self.journal.bytes if self.journal else 0) + len(self.input))

    def budget_bytes(self) -> int:
        if self.budget is not None:
            return self.budget
        return self.machine.memory.allocated * PAGE_SIZE + EXTRA_BUDGET

    def end(self) -> int:
        """The furthest tick recorded."""
        return max(self.horizon, self.machine.tick)

    def note_position(self) -> None:
        self.horizon = max(self.horizon, self.machine.tick)

    # ---- hooks: snapshots, feeds and pinned snapshots as the run passes them -----------------
    def _next_own(self) -> int | None:
        at = self.snapshots[self.at]
        due = at.tick + self.interval if not self.searching else 1 << 62
        if self.at + 1 < len(self.snapshots):
            due = min(due, self.snapshots[self.at + 1].tick)
        k = bisect.bisect_left(self.feeds, (self.machine.tick, -1))   # fed here or later
        if k < len(self.feeds):
            due = min(due, self.feeds[k][0])
        return due

    def next_tick(self) -> int | None:
        own = self._next_own()
        if self.replaying:
            return own
        other = self.inner.next_tick()
        return own if other is None or own < other else other

    def run_due(self, machine: Machine) -> None:
        now = machine.tick
        if not self.replaying:
            t = self.inner.next_tick()
            if t is not None and t <= now:
                self.inner.run_due(machine)
        self._pass(now)

    def _pass(self, now: int) -> None:
        """At a boundary at ``now``: pass the snapshots and feeds at or before it."""
        while self.at + 1 < len(self.snapshots) and self.snapshots[self.at + 1].tick <= now:
            nxt = self.snapshots[self.at + 1]
            if nxt.pinned:                       # a change made at the prompt, here
                self._install(self.at + 1)
            else:                                # the same state: memory is relative to it now
                self.machine.memory.protect(self.dirty)
                self.dirty.clear()
                self.at += 1
        k = bisect.bisect_left(self.feeds, (now, -1))
        while k < len(self.feeds) and self.feeds[k][0] == now:
            self._feed_to(self.feeds[k][1])
            k += 1
        if now >= self.snapshots[self.at].tick + self.interval and not self.searching:
            self.take()

    def _feed_to(self, end: int) -> None:
        """Feed the recorded input up to ``end`` (what the prompt fed at this tick)."""
        console = self.machine.console
        have = console.input_consumed - self.input_base + console.source.buffered()
        if have < end:
            console.source.feed(bytes(self.input[have:end]))

    def on_ckpt(self, machine: Machine) -> None:
        if self.replaying:                      # its file exists; only P8 shows to the guest
            if machine.tick in self.drains:
                machine.drain_disk()
            return
        queued = len(machine.disk.queue)
        self.inner.on_ckpt(machine)
        if len(machine.disk.queue) < queued:
            self.drains.add(machine.tick)

    def before_read_issued(self, request) -> None:
        self.inner.before_read_issued(request)

    def read_targets(self, request) -> list:
        return self.inner.read_targets(request)

    def request_done(self, request) -> None:
        self.inner.request_done(request)

    # ---- taking and thinning snapshots ----------------------------------------------------------
    def take(self, pinned: bool = False, why: str = "") -> Snapshot:
        """A snapshot now, after the one memory is relative to."""
        started = time.perf_counter()
        m = self.machine
        pages = m.memory.pages
        versions = {i: pages[i] for i in self.dirty}
        m.memory.protect(self.dirty)
        self.dirty.clear()
        snap = Snapshot(m.tick, m.save_state(), m.fault, versions, self._disk_pos(), pinned, why)
        self._add(self.at + 1, snap)
        self.at += 1
        self.note_position()
        self._thin()
        done = time.perf_counter()
        self.host_time += done - started
        if self.adaptive and not pinned:
            # the cost now, plus the copies the guest's next stores to these pages make
            cost = done - started + len(versions) * 3e-6
            span = max(done - self._last_host, 1e-9)
            if cost > OVERHEAD * span and self.interval < MAX_INTERVAL:
                self.interval *= 2
            elif cost < OVERHEAD * span / 8 and self.interval > self.base_interval:
                self.interval //= 2
        self._last_host = time.perf_counter()
        return snap

    def fit(self) -> None:
        """Thin the snapshots to the budget now (after it changed)."""
        self._thin()

    def _thin(self) -> None:
        budget, used = self.budget_bytes(), self.memory_used()
        while len(self.snapshots) > 2 and (used > budget or len(self.snapshots) > MAX_SNAPSHOTS):
            victim = self._victim()
            if victim is None:
                return
            used -= self._remove(victim)

    def _victim(self) -> int | None:
        snaps, here, end = self.snapshots, self.machine.tick, self.end()
        best, best_score = None, None
        for i in range(1, len(snaps)):
            s = snaps[i]
            if s.pinned or i == self.at:
                continue
            after = snaps[i + 1].tick if i + 1 < len(snaps) else end
            score = (after - snaps[i - 1].tick) / (1 + abs(s.tick - here))
            if best_score is None or score < best_score:
                best, best_score = i, score
        return best

    def _remove(self, i: int) -> int:
        """Remove snapshot ``i``; returns the bytes that frees."""
        snap = self.snapshots.pop(i)
        freed = snap.cost
        if i < len(self.snapshots):              # its pages are the next one's too
            later = self.snapshots[i].pages
            for index, version in snap.pages.items():
                if index not in later:
                    later[index] = version
                    freed -= PAGE_SIZE
        if self.at > i:
            self.at -= 1
        self.thinned += 1
        return freed

    # ---- moving -------------------------------------------------------------------------------
    def _version(self, index: int, k: int):
        snaps = self.snapshots
        for j in range(k, 0, -1):
            pages = snaps[j].pages
            if index in pages:
                return pages[index]
        return snaps[0].pages[index]             # the base has every page

    def _install(self, k: int) -> None:
        """The machine becomes snapshot ``k`` exactly."""
        m = self.machine
        lo, hi = sorted((self.at, k))
        changed = set(self.dirty)
        for j in range(lo + 1, hi + 1):
            changed.update(self.snapshots[j].pages)
        m.memory.install_pages({i: self._version(i, k) for i in changed})
        self.dirty.clear()
        snap = self.snapshots[k]
        if self.journal is not None:
            self.journal.move_to(snap.disk_pos)
        m.travel_to(snap.state, snap.fault)
        consumed = m.console.input_consumed - self.input_base
        k_feed = bisect.bisect_right(self.feeds, (snap.tick, 1 << 62))
        fed = self.feeds[k_feed - 1][1] if k_feed else 0
        m.console.source.replace(bytes(self.input[consumed:max(fed, consumed)]))
        m.refresh_watches()                      # a watch compares with the value here
        self.at = k

    def latest_at_or_before(self, tick: int) -> int:
        """Index of the snapshot a jump to ``tick`` starts from."""
        ticks = [s.tick for s in self.snapshots]
        return max(bisect.bisect_right(ticks, tick) - 1, 0)

    def muted(self):
        """Silence the machine for a jump's replay (no output, no stops)."""
        return _Mute(self)

    def goto(self, tick: int) -> None:
        """The machine becomes exactly what the run was at ``tick`` (at the
        first instruction boundary at or after it). Past the end of the
        record, it runs there (silently: the caller runs to print)."""
        self._check_jump()
        if tick < self.start:
            raise HistoryError(f"tick {tick} is before the start of the history (tick "
                               f"{self.start})")
        m = self.machine
        k = self.latest_at_or_before(tick)
        # from here when no snapshot is nearer (a short step forward), else from it
        if not (m.tick <= tick and self.snapshots[k].tick <= m.tick):
            self._install(k)
        with self.muted():
            m.run(max_ticks=max(tick - m.tick, 0))     # at least the boundary's work
        self.note_position()

    def _check_jump(self) -> None:
        inner = self.inner
        if getattr(inner, "_commit", None) is not None:
            raise HistoryError("a disk commit is waiting for pending writes (P10); "
                               "'continue' until it completes, then move in time")
        finish = getattr(inner, "finish_all", None)
        if finish is not None and getattr(inner, "saving", lambda: [])():
            finish()

    def diverge(self, why: str) -> None:
        """A change made at the prompt, now: the recorded future after it is
        not this run's any more; a pinned snapshot keeps the change."""
        self.truncate_future()
        self.take(pinned=True, why=why)

    def truncate_future(self) -> None:
        now = self.machine.tick
        self.changes.append(now)
        del self.snapshots[self.at + 1:]
        if self.journal is not None:
            self.journal.truncate()
        for end in [e for e in self.gaps if e > now]:
            del self.gaps[end]
        self.feeds = [f for f in self.feeds if f[0] <= now]
        del self.input[self.feeds[-1][1] if self.feeds else 0:]
        self.drains = {t for t in self.drains if t <= now}
        self.horizon = now

    def note_input(self, data: bytes) -> None:
        """The prompt fed console input now (``input``): a replay feeds it again."""
        if self.machine.tick < self.end():
            self.truncate_future()
        console = self.machine.console
        have = console.input_consumed - self.input_base + console.source.buffered()
        del self.input[have - len(data):]
        self.input += data
        self.feeds.append((self.machine.tick, len(self.input)))

    # ---- stepping back ------------------------------------------------------------------------------
    def instruction_back(self, tick: int, count: int) -> int:
        """The tick of the instruction ``count`` instructions before the one at ``tick``."""
        gaps = self.gaps
        for _ in range(count):
            if tick <= self.start:
                return self.start
            tick = gaps.get(tick, tick - 1)
        return max(tick, self.start)

    def find_stops(self, first: int, end: int, stops: "Stops") -> list[Hit]:
        """Replay from snapshot ``first`` to tick ``end``, stopping where
        ``stops`` says, and return every stop before ``end`` that ``stops``
        accepts. The machine is left somewhere in between: jump after."""
        m = self.machine
        self._install(first)
        hits: list[Hit] = []
        with _Mute(self, stops):
            ordinal = 0
            m.run(max_ticks=0)                   # this boundary's work: then a stop here counts
            if m.pc in m.breakpoints and m.tick < end and stops.accept(
                    m, Stop("breakpoint", m.pc)):
                hits.append(Hit(m.tick, "breakpoint", m.pc, 0, first))
            while m.fault is None and not m.halted and m.tick < end:
                stop = m.run(max_ticks=end - m.tick)
                if stop.reason == "interrupted":
                    raise KeyboardInterrupt
                if stop.reason not in ("breakpoint", "watch"):
                    break
                ordinal += 1
                # a watch sees the instruction before ``end`` change its word at ``end``
                if (m.tick < end or stop.reason == "watch") and stops.accept(m, stop):
                    hits.append(Hit(m.tick, stop.reason, stop.detail, ordinal, first))
        return hits

    def replay_to_stop(self, hit: Hit, stops: "Stops") -> None:
        """Land exactly on ``hit`` (found by :meth:`find_stops` with ``stops``)."""
        m = self.machine
        self._install(hit.snapshot)
        with _Mute(self, stops):
            m.run(max_ticks=0)
            for _ in range(hit.ordinal):
                m.run(max_ticks=hit.tick - m.tick + 1)
        self.note_position()

    def search_back(self, stops: "Stops", want=None):
        """The latest stop before the present that ``stops`` accepts (or, with
        ``want``, that ``want(hits_latest_first, carry)`` picks: it returns
        (hit or None, carry) for each interval, going back); lands on it and
        returns it, or returns None at the start of the history (the machine
        back where it was)."""
        self._check_jump()
        m = self.machine
        present = m.tick
        end = present
        k = self.latest_at_or_before(max(present - 1, self.start))
        carry = None
        while True:
            hits = [h for h in self.find_stops(k, end, stops) if h.tick < present]
            if want is None:
                found = hits[-1] if hits else None
            else:
                found, carry = want(list(reversed(hits)), carry)
            if found is not None:
                self.replay_to_stop(found, stops)
                return found
            if k == 0:
                self.goto(present)
                return None
            end = self.snapshots[k].tick
            k -= 1


class Stops:
    """What a search replay stops at: the user's breakpoints and watches
    (``breakpoints=None``), or only the given code addresses; ``accept(m,
    stop)`` filters the stops that count."""

    def __init__(self, breakpoints: set | None = None, watches: bool = True, accept=None):
        self.breakpoints = breakpoints
        self.watches = watches
        self._accept = accept

    def accept(self, machine, stop) -> bool:
        return self._accept is None or self._accept(machine, stop)


class _Mute:
    """A replay's machine: no console output and no trace; breakpoints and
    watches as ``stops`` says (none for a plain jump); no snapshots taken
    while searching."""

    def __init__(self, history: History, stops: Stops | None = None):
        self.h, self.stops = history, stops

    def __enter__(self):
        m, stops = self.h.machine, self.stops
        self.saved = _Muted(set(m.breakpoints), dict(m.watches), m.trace, m.console.sink,
                            dict(m.reg_watches))
        if stops is None or stops.breakpoints is not None:
            for pc in list(m.breakpoints):
                m.clear_breakpoint(pc)
            for pc in (stops.breakpoints if stops is not None else ()):
                m.set_breakpoint(pc)
        if stops is None or not stops.watches:
            m.watches.clear()
            m.reg_watches.clear()
        m.trace = None
        m.console.sink = BufferSink()
        self.h.replaying = True
        self.h.searching = stops is not None
        return self

    def __exit__(self, *exc):
        m, saved = self.h.machine, self.saved
        self.h.replaying = self.h.searching = False
        m.console.sink = saved.sink
        m.trace = saved.trace
        for pc in list(m.breakpoints):
            m.clear_breakpoint(pc)
        for pc in saved.breakpoints:
            m.set_breakpoint(pc)
        m.watches.clear()
        m.watches.update({addr: m.memory.load_word(addr) for addr in saved.watches})
        m.reg_watches.clear()
        m.reg_watches.update(saved.reg_watches)
        m.refresh_watches()
        return False
