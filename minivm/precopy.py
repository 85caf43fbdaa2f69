"""Pre-copy checkpoints (``--checkpoint-mode precopy``, docs/protocol.md).

The strategy of live migration: copy memory while the guest runs, in rounds,
and stop only to copy what the last round left dirty.

* A checkpoint asked for at tick T starts **round 1** at T: a write tracker
  (memory.py, ``track_writes``) starts collecting, every page's write-table
  entry is cleared (``Memory.protect_all``: one table swap, as ``share`` does)
  so that the first store to each page is seen by the same slow path that
  makes COW faults, and every allocated page is copied into the *staging
  copy*, PAGES_PER_SLICE pages every SLICE_TICKS guest ticks, the first
  slice at once (a guest whose pages fit in it stops at once, nothing dirty).
  A page that holds only zeros is not copied and does not count: the staging
  copy reads zeros where it has no page, and whether such a page is
  allocated is the host's business (a resumed machine has none, since a
  checkpoint stores only non-zero pages), so it must not move the stop. A
  page a disk read in flight will write counts whatever it holds: a run
  resumed from a checkpoint that read was in flight at has its data there
  already (P5), the original run not yet.
* When a round has copied its pages, the tracker holds the pages written
  meanwhile: the *dirty set*. It becomes the next round's work (the tracker
  is swapped for a fresh one and only those pages are protected again),
  until the dirty set is at most THRESHOLD pages or MAX_ROUNDS rounds have
  run.
* A checkpoint asked for while the rounds run **joins** them: it is taken
  at the same final stop, as a second checkpoint of the same state (its own
  file, overlay and name). Nothing of pre-copy is left over at a final stop,
  so a checkpoint holds all that decides when a later one stops, and a
  resumed run stops where the original did (resume equivalence, also when a
  stop drains requests, P8, which the guest sees).
* Then the **final stop**: Checkpointer.take runs P1 and P2 as in cow mode,
  except that instead of marking memory COW it copies the dirty set into the
  staging copy, which is then exactly memory at the stop (:meth:`freeze`).
  The staging copy is the checkpoint's memory (:class:`StagedMemory`), and
  is written to the file by the background saver (P4) while the guest runs
  on: minivm's file lists each page once, in page order, so the rounds
  cannot append to it as a migration stream would.

Everything is counted in guest ticks and pages, never in host time, so the
rounds, the dirty sets and the tick of the final stop are the same on every
host and engine. A DMA read that lands during a round writes memory through
``Memory.make_writable``, so it dirties its page like a store. Requests in
flight at the final stop are treated as in cow mode (P5: reads land in the
staging copy too, through ``Memory.land_read``; writes keep the disk layer
they were issued to); P6 has nothing to do (the staging copy shares no page
with the running memory) and P7 is ``land_read`` writing both copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import MinivmError, reason
from .devices import BLOCK_SIZE
from .memory import drop_pages, holds_data, page_span

SLICE_TICKS = 1000          # guest ticks between two copying slices ...
PAGES_PER_SLICE = 64        # ... each copying this many pages (64 pages per 1,000 ticks)
THRESHOLD = 32              # stop when the dirty set is at most this many pages (128 KiB) ...
MAX_ROUNDS = 8              # ... or after this many rounds, whatever is dirty
SCAN_PER_PAGE = 4096        # round 1: page-table entries scanned per page of budget


class StagedPages(dict):
    """Page index -> the staged copy (a bytearray); a page not in it is zeros."""

    def __init__(self, memory):
        super().__init__()
        self._memory = memory

    def __missing__(self, index):
        return self._memory._zero_page(index)


class StagedMemory:
    """A pre-copy checkpoint's memory: the staging copy, complete at the final
    stop. It offers what the saver (checkpoint.CheckpointJob) and
    ``Memory.land_read`` (P5, P7) use of a FrozenMemory: ``originals`` is the
    staging copy itself, so an in-flight read lands in it."""

    def __init__(self, memory, pages: StagedPages):
        self._memory = memory
        self.originals = pages
        self.size = memory.size
        self.allocated = len(pages)
        self.released = False

    def saved_up_to(self, stop: int, start: int = 0) -> None:
        """The saver has written the pages in [start, stop): drop their copies."""
        drop_pages(self.originals, start, stop)

    def page_count(self) -> int:
        return self._memory.page_count

    def allocated_pages(self, start: int, stop: int) -> list[int]:
        staged = self.originals
        return [i for i in range(start, min(stop, self.page_count())) if i in staged]

    def page(self, index: int) -> bytes:
        return bytes(self.originals[index])

    def original(self, index: int):
        return self.originals[index]

    def release(self) -> None:
        self.released = True
        self.originals = StagedPages(self._memory)


@dataclass
class Round:
    """One pre-copy round: the pages it copied and the ones written meanwhile."""

    number: int
    start_tick: int
    end_tick: int = 0
    copied: int = 0
    dirty: int = 0


@dataclass
class PreCopyRun:
    """One pre-copy checkpoint, from its request to its final stop."""

    origin: str
    name: str | None
    tick: int                               # when it was asked for (round 1 starts)
    started: float                          # host time then
    rounds: list[Round] = field(default_factory=list)
    copies: int = 0                         # page copies made by the rounds
    distinct: set = field(default_factory=set)   # pages copied at least once
    final_pages: int = 0                    # pages copied in the final stop
    copy_seconds: float = 0.0               # host time the rounds took
    job: object = None                      # the CheckpointJob, after the final stop
    status: str = "copying"                 # copying | stopped | abandoned
    joined: list = field(default_factory=list)   # runs asked for during these rounds
    leader: "PreCopyRun | None" = None      # a joined run: the run whose stop it shares

    @property
    def written_twice(self) -> int:
        """Page copies beyond the first of each page: the cost of dirtying."""
        return self.copies - len(self.distinct)

    def summary(self) -> dict:
        return {"requested_tick": self.tick, "rounds": len(self.rounds),
                "pages_copied": self.copies, "pages_written_twice": self.written_twice,
                "final_stop_pages": self.final_pages,
                "dirty_per_round": [r.dirty for r in self.rounds]}

    def describe(self) -> str:
        if self.leader is not None:
            lead = self.leader
            which = lead.job.name if lead.job is not None else lead.name
            which = f"{which}, asked for at tick {lead.tick}" if which else \
                f"the checkpoint asked for at tick {lead.tick}"
            return (f"pre-copy: asked for during the rounds of {which}, so taken at their "
                    "final stop; " + lead.describe().removeprefix("pre-copy: "))
        dirty = ", ".join(str(r.dirty) for r in self.rounds)
        rounds = f", dirty after each round: {dirty}" if dirty else ""
        return (f"pre-copy: {len(self.rounds)} round(s), {self.copies} page copies "
                f"({self.written_twice} of them copies of a page copied before){rounds}; "
                f"{self.final_pages} page(s) copied in the final stop")


class PreCopy:
    """The pre-copy rounds of one Checkpointer (its ``precopy``): a request
    starts rounds, or joins the ones under way; ``run_due`` does one slice of
    copying."""

    def __init__(self, checkpointer, pages_per_slice: int = PAGES_PER_SLICE,
                 slice_ticks: int = SLICE_TICKS, threshold: int = THRESHOLD,
                 max_rounds: int = MAX_ROUNDS):
        if checkpointer.incremental:
            raise MinivmError("incremental checkpoints work in cow and stop-copy mode, not "
                              "precopy (its final stop copies only the last dirty pages, "
                              "not the pages written since the previous checkpoint)")
        self.cp = checkpointer
        self.pages_per_slice, self.slice_ticks = pages_per_slice, slice_ticks
        self.threshold, self.max_rounds = threshold, max_rounds
        self.current: PreCopyRun | None = None
        self.runs: list[PreCopyRun] = []
        self.next_slice: int | None = None
        self._tracker: set | None = None
        self._todo: list[int] | None = None   # round > 1: the pages to copy, sorted
        self._pos = 0
        self._staged: StagedPages | None = None

    # --- requests ---------------------------------------------------------------------
    def request(self, origin: str, name: str | None) -> PreCopyRun:
        """A checkpoint asked for now: round 1 starts at once (its first slice
        now, so a guest whose pages fit in one slice stops at once, having
        dirtied nothing), or, while rounds run, it joins them and is taken at
        their final stop. Returns the CheckpointJob if it stopped at once,
        else its PreCopyRun (whose ``job`` is set at the final stop)."""
        machine = self.cp.machine
        lead = self.current
        if lead is not None:
            run = PreCopyRun(origin, name, machine.tick, time.perf_counter(), leader=lead)
            lead.joined.append(run)
            self.runs.append(run)
            self.cp.log(None, "precopy", f"{name or 'a checkpoint'} asked for during the rounds "
                                         f"of {lead.name or 'another checkpoint'}: taken at "
                                         "their final stop")
            return run
        self._start(origin, name)
        run = self.runs[-1]
        return run.job if run.job is not None else run

    def _start(self, origin: str, name: str | None) -> None:
        machine = self.cp.machine
        run = PreCopyRun(origin, name, machine.tick, time.perf_counter())
        self.current = run
        self.runs.append(run)
        memory = machine.memory
        self._staged = StagedPages(memory)
        self._tracker = memory.track_writes()
        memory.protect_all()
        self._new_round(None)
        self.cp.log(None, "precopy", f"round 1 for {name or 'the next checkpoint'}: copying "
                                     "every page while the guest runs")
        self.next_slice = machine.tick
        self.run_due(machine.tick)                 # the first slice: now

    def _new_round(self, todo: list[int] | None) -> None:
        run = self.current
        run.rounds.append(Round(len(run.rounds) + 1, self.cp.machine.tick))
        self._todo, self._pos = todo, 0

    # --- the slices -------------------------------------------------------------------------
    def run_due(self, now: int) -> None:
        if self.next_slice is None or now < self.next_slice or self.current is None:
            return
        started = time.perf_counter()
        try:
            done = self._copy(self.pages_per_slice)
        except (OSError, MinivmError) as exc:
            self._abandon(f"a page could not be read: {reason(exc)}; the guest keeps running")
            return
        self.current.copy_seconds += time.perf_counter() - started
        self.cp.machine.memory.tidy()
        if done:
            self._end_round()
        if self.current is not None:
            self.next_slice = self.cp.machine.tick + self.slice_ticks

    def _copy(self, budget: int) -> bool:
        """Copy up to ``budget`` pages of the current round; True when it is done."""
        memory = self.cp.machine.memory
        run, staged = self.current, self._staged
        pages, saved = memory.pages, memory.saved
        round_ = run.rounds[-1]
        if self._todo is None:                      # round 1: every allocated page
            total = memory.page_count
            landing = self._read_targets()
            while budget > 0 and self._pos < total:
                start, stop = self._pos, min(total, self._pos + SCAN_PER_PAGE)
                found = [i for i, page in enumerate(pages[start:stop], start)
                         if page.__class__ is bytearray or (page is None and i in saved)
                         or i in landing]
                copied = 0
                for index in found:
                    if index not in landing and not self._has_data(index):
                        staged.pop(index, None)        # zeros: no copy, no place in the round
                        continue
                    if copied == budget:
                        stop = index                   # the next slice starts there
                        break
                    self._copy_page(index, memory, staged)
                    copied += 1
                round_.copied += copied
                budget -= max(copied, 1)               # a chunk scanned costs one page at least
                self._pos = stop
            return self._pos >= total
        todo = self._todo
        stop = min(len(todo), self._pos + max(budget, 0))
        for index in todo[self._pos:stop]:
            self._copy_page(index, memory, staged)
        round_.copied += stop - self._pos
        self._pos = stop
        return self._pos >= len(todo)

    def _read_targets(self) -> set:
        """The pages disk reads in flight will write. Round 1 counts them
        whatever they hold now: in a run resumed from a checkpoint those
        reads were in flight at, they hold the reads' data already (P5: the
        checkpoint's memory has it), in the original run not yet."""
        targets = set()
        for request in self.cp.machine.disk.queue:
            if request.is_read and request.count:
                targets.update(page_span(request.addr, request.count * BLOCK_SIZE))
        return targets

    def _has_data(self, index: int) -> bool:
        """Does page ``index`` hold a non-zero byte, as a checkpoint file would
        store it (a page still on file, lazily resumed, always does)?"""
        page = self.cp.machine.memory.pages[index]
        return self._is_data(index) and (page is None or holds_data(page))

    def _copy_page(self, index: int, memory, staged: StagedPages) -> None:
        """Copy page ``index`` into the staging copy."""
        page = memory.pages[index]
        if page is None:                              # lazily resumed, not read yet
            page = memory.saved[index] if index in memory.saved else None
        elif type(page) is not bytearray:             # the zero page
            page = None
        if page is None:
            staged.pop(index, None)
        else:
            staged[index] = bytearray(page)
        run = self.current
        run.copies += 1
        run.distinct.add(index)

    def _end_round(self) -> None:
        memory = self.cp.machine.memory
        run = self.current
        dirty = self._tracker
        round_ = run.rounds[-1]
        round_.end_tick, round_.dirty = self.cp.machine.tick, len(dirty)
        self.cp.log(None, "precopy", f"round {round_.number}: {round_.copied} page(s) copied, "
                                     f"{len(dirty)} written meanwhile")
        if len(dirty) <= self.threshold or len(run.rounds) >= self.max_rounds:
            self._final_stop()
            return
        memory.untrack(dirty)
        self._tracker = memory.track_writes()
        memory.protect(dirty)
        self._new_round(sorted(dirty))

    # --- the final stop ---------------------------------------------------------------------
    def _final_stop(self) -> None:
        run = self.current
        try:
            job = self.cp.take(run.origin, run.name, staged=self)
        except (OSError, MinivmError) as exc:
            self._abandon(f"{reason(exc)}; the guest keeps running")
            return
        job.precopy = run
        run.job, run.status = job, "stopped"
        self.cp.log(job, "precopy", run.describe())
        for other in run.joined:                      # the same stop, a checkpoint each
            try:
                again = self.cp.take(other.origin, other.name, staged=_Again(job.frozen))
            except (OSError, MinivmError) as exc:
                other.status = "abandoned"
                self.cp.report(f"the pre-copy checkpoint asked for at tick {other.tick} was "
                               f"not taken: {reason(exc)}; the guest keeps running")
                continue
            again.precopy = other
            other.rounds, other.copies, other.distinct = run.rounds, run.copies, run.distinct
            other.final_pages, other.copy_seconds = run.final_pages, run.copy_seconds
            other.job, other.status = again, "stopped"
            self.cp.log(again, "precopy", other.describe())
        self._next()

    def freeze(self) -> StagedMemory:
        """Inside the final stop (Checkpointer._stop, in place of Memory.share):
        copy the pages written since the last round, and hand over the
        staging copy, which is now memory as it is."""
        memory = self.cp.machine.memory
        dirty = self._tracker
        memory.untrack(dirty)
        self._tracker = None
        for index in sorted(dirty):
            self._copy_page(index, memory, self._staged)
        self.current.final_pages = len(dirty)
        frozen = StagedMemory(memory, self._staged)
        self._staged = None
        return frozen

    def _abandon(self, why: str) -> None:
        run = self.current
        if self._tracker is not None:
            self.cp.machine.memory.untrack(self._tracker)
            self._tracker = None
        for each in [run] + run.joined:
            each.status = "abandoned"
            self.cp.report(f"the pre-copy checkpoint asked for at tick {each.tick} was not "
                           f"taken: {why}")
        self._next()

    def _next(self) -> None:
        self.current, self._staged, self._todo = None, None, None
        self.next_slice = None

    def stop_now(self) -> None:
        """The run is over (Checkpointer.finish_all): every checkpoint asked
        for stops now, its rounds cut short; none if the guest has halted or
        faulted (there is no next instruction to resume at)."""
        machine = self.cp.machine
        while self.current is not None:
            if machine.halted or machine.fault is not None:
                self._abandon(f"the guest {'halted' if machine.halted else 'faulted'} at tick "
                              f"{machine.tick}, before the pre-copy rounds ended (ask for it "
                              "earlier, or give the guest more to do)")
            else:
                self._end_round_now()

    def _end_round_now(self) -> None:
        run = self.current
        round_ = run.rounds[-1]
        round_.end_tick, round_.dirty = self.cp.machine.tick, len(self._tracker)
        if self._todo is None or self._pos < len(self._todo):
            # the round did not finish: what it did not copy is dirty too
            rest = (range(self._pos, self.cp.machine.memory.page_count) if self._todo is None
                    else self._todo[self._pos:])
            self._tracker.update(i for i in rest if self._is_data(i))
        self._final_stop()

    def _is_data(self, index: int) -> bool:
        memory = self.cp.machine.memory
        page = memory.pages[index]
        return type(page) is bytearray or (page is None and index in memory.saved)


class _Again:
    """A joined checkpoint's final stop (Checkpointer._stop calls ``freeze``):
    the staging copy its leader's stop has just completed, as a second
    StagedMemory (a dict of its own, since an in-flight read landing, P5,
    adds pages to each checkpoint's copy; the pages themselves are the same)."""

    def __init__(self, frozen: StagedMemory):
        self._frozen = frozen

    def freeze(self) -> StagedMemory:
        frozen = self._frozen
        pages = StagedPages(frozen._memory)
        pages.update(frozen.originals)
        return StagedMemory(frozen._memory, pages)
