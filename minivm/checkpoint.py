"""The checkpoint protocol, step by step (docs/protocol.md, P1-P11).

Read :meth:`Checkpointer.take` from top to bottom to follow a checkpoint:

* P1  create a copy-on-write overlay over the disk in use (the VM is running);
* P2  stop the VM; if a pending read is followed by a pending write to the
      same block, let every pending request complete first (P8); mark memory
      copy-on-write; save the device state to memory; switch the disk to the
      overlay; resume. Only this runs with the VM stopped, and its cost is
      page-table bookkeeping, whatever the guest has touched.

Then, while the guest keeps running (:meth:`Checkpointer.run_due`, called
between instruction batches by the machine):

* P3  memory COW faults copy a page on the guest's first store to it
      (memory.py, ``make_writable``); disk writes go to the overlay, which
      copies a block group from its parent on a partial write (disks.py);
* P4  the saved device state, then the original pages, are written to the
      store (P11: a file or memory, store.py), a few pages per batch;
* P5  requests in flight at the checkpoint belong to it: their reads land in
      the checkpointed memory and the running memory (:meth:`read_targets`),
      their writes reach the checkpointed disk (they keep the disk layer they
      were issued to) and through it the ongoing one; saving memory waits
      until those reads have landed, and the checkpoint's disk is
      fingerprinted only once those writes are done;
* P6  a new read first COW-faults every shared page it will write
      (:meth:`before_read_issued`);
* P7  an in-flight read whose page was COW-faulted meanwhile lands in the
      original and in the copy (memory.py, ``land_read``);
* P9  a partial write into a group not yet in the overlay copies the group
      from the parent when the write completes; the disk serves requests in
      issue order, so a pending write to that group, issued earlier, has
      always completed by then and the copy includes it;
* P10 the checkpoint records the disk chain with fingerprints; the overlay can
      be committed into its parent while the VM runs on a fresh overlay
      (:meth:`Checkpointer.commit_disk`, and ``minivm disk commit``).

Incremental checkpoints (``incremental``): at every P2 the Checkpointer swaps
its write tracker (memory.py, ``track_writes``) for a fresh one, so at the
next P2 the old one holds exactly the pages written in between (P3 sees every
first store); such a checkpoint saves only those pages, zeros included, and
names the previous checkpoint as its parent (ckptfile.py, the ``parent``
record), completing after it. The first checkpoint of a machine is full.

Resuming a checkpoint (and exporting one) is in resume.py.

Stop-and-copy mode (``--checkpoint-mode stop-copy``) is the baseline: the
same steps, but P4 writes the state and every page inside the stop window
(the file's last records and its fsync follow as soon as the guest runs
again), and requests in flight are sent to the overlay so the checkpointed
disk is final at once.
"""

from __future__ import annotations

import bisect
import gc
from array import array
import os
import time
from dataclasses import dataclass

from .version import __version__
from .ckptfile import MAX_PARENTS, CheckpointWriter, chain_entry, parent_record
from .devices import BLOCK_SIZE
from .memory import holds_data
from .disks import MAX_CHAIN, Overlay, commit_overlay
from .errors import MinivmError, reason
from .machine import Hooks, Machine
from .modes import COW, MODES, PRECOPY, STOP_COPY  # noqa: F401  (checkpoint.MODES, as before)
from .precopy import PreCopy
from .store import CheckpointStore, StoreError

SLICE_TICKS = 2048          # guest ticks between two background-save batches ...
FIRST_SLICE_TICKS = 128     # ... starting this soon after a checkpoint, doubling each time
SAVE_DUTY = 0.15            # share of host time the background save may take
OPEN_WHILE_SAVING = 4       # up to this many checkpoints saving keep their file open
MIN_BATCH_GAP = 1e-3        # adaptive mode: at least this much guest time between batches
MAX_SLICE_TICKS = 1 << 18
SCAN_PER_PAGE = 64          # page-table entries scanned per page of budget
#: Environment variable that fixes the background save rate (pages per batch)
#: wherever no rate is given: the tests set it so that nothing they compare
#: depends on how fast the host is.
SAVE_RATE_ENV = "MINIVM_SAVE_RATE"


def default_save_rate() -> int | None:
    """Pages per background batch from ``MINIVM_SAVE_RATE``, or None (adaptive)."""
    text = os.environ.get(SAVE_RATE_ENV, "").strip()
    if not text:
        return None
    try:
        rate = int(text)
    except ValueError:
        rate = 0
    if rate < 1:
        raise MinivmError(f"{SAVE_RATE_ENV}={text!r}: the save rate must be a whole "
                          "number of pages, 1 or more")
    return rate


@dataclass
class Sample:
    """The protocol's counters at one tick, for the timeline picture."""

    tick: int
    cow_faults: int             # memory COW faults since the first checkpoint
    disk_cow_faults: int        # block groups copied into overlays
    overlay_writes: int         # writes that reached an overlay
    pages_done: dict            # checkpoint name -> pages examined by the saver


MAX_LOGGED_REQUESTS = 20_000


@dataclass
class ProtocolEvent:
    """One step of the protocol, for the timeline and the REPL."""

    tick: int
    host_time: float
    checkpoint: str
    step: str
    detail: str = ""


class _IncrementalDone:
    """The pages an incremental checkpoint's saver is done with (``in`` only)."""

    def __init__(self, job: "CheckpointJob"):
        self._job = job

    def __contains__(self, index) -> bool:
        job = self._job
        if index not in job.save_set:
            return True
        return job._scan > 0 and job.save_only is not None and index <= job.save_only[job._scan - 1]


class CheckpointJob:
    """One checkpoint, from P2 until its file is complete (P4, P5)."""

    def __init__(self, checkpointer: "Checkpointer", seq: int, name: str, origin: str,
                 mode: str, state: dict, frozen, chain, inflight, pending, location,
                 dirty: set | None = None, previous: "CheckpointJob | None" = None,
                 incremental: bool = False):
        self.checkpointer = checkpointer
        # Incremental checkpoints (WriteLog): ``dirty`` is every page written
        # between the P2 of ``previous``, the last checkpoint in a file before
        # this one, and this one's (None: no record, the first of the machine);
        # ``parent``, the checkpoint this one is a delta of (None: a full one),
        # whose file must be complete before this one can be; ``save_set``,
        # the pages this file stores (None: every non-zero page).
        self.dirty, self.previous = dirty, previous
        self.parent, self.save_set = (choose_parent(previous, location, dirty) if incremental
                                      else (None, None))
        self.depth = self.parent.depth + 1 if self.parent is not None else 0
        self.save_only: list[int] | None = None     # save_set in order (sorted after P2)
        self.identity: dict | None = None          # size and end_sha256, once complete
        self.seq, self.name, self.origin, self.mode = seq, name, origin, mode
        self.state = state
        self.tick = state["cpu"]["tick"]
        self.pc = state["cpu"]["pc"]
        self.frozen = frozen
        self.chain = chain                 # checkpointed disk layers, top first
        self.inflight_reads = {r.id for r in inflight if r.is_read}
        self.inflight_writes = {r.id for r in inflight if not r.is_read}
        self.inflight_at_stop = [r.describe() for r in inflight]
        self.inflight_reads_at_stop = frozenset(self.inflight_reads)
        self.inflight_writes_at_stop = frozenset(self.inflight_writes)
        self.reads_not_landed: list[int] = []
        self.writes_not_done: list[int] = []
        self.pending = pending
        self.location = location
        self.status = "saving"
        self.error = ""
        self.pause_seconds = 0.0
        self.p8_drained = 0
        self.pages_done = 0                # allocated pages examined
        self.pages_saved = 0               # non-zero pages written
        self.bytes_written = 0
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.finished_tick: int | None = None
        self.precopy = None                # precopy.PreCopyRun: the rounds before the stop
        self._scan = 0
        self._examined = array("I")         # the allocated pages the saver went through
        self._stage = "state"
        self._writer = CheckpointWriter(pending.file, {"name": name, "tick": self.tick},
                                        frozen.size, sparse_index=self.parent is not None)

    @property
    def pages_total(self) -> int:
        if self.save_set is not None:
            return len(self.save_set)
        return max(self.frozen.allocated, self.pages_done)

    @property
    def incremental(self) -> bool:
        return self.parent is not None

    def progress(self) -> str:
        if self.status == "saving":
            wait = {"wait-reads": f", waiting for {len(self.inflight_reads)} in-flight read(s) (P5)",
                    "wait-disk": ", waiting for in-flight writes to reach the disk (P5)"}
            return (f"saving, {self.pages_done} of {self.pages_total} pages"
                    + wait.get(self._stage, ""))
        if self.status == "failed":
            return f"failed: {self.error}"
        return f"complete, {self.pages_saved} pages, {self.bytes_written} bytes"

    def examined(self, start: int = 0) -> list[int]:
        """The allocated page indexes the saver has examined so far, in order
        (from the ``start``-th on)."""
        if self.save_only is not None:
            return list(self.save_only[start:self._scan])
        return list(self._examined[start:])

    def examined_count(self) -> int:
        return self._scan if self.save_only is not None else len(self._examined)

    def saved_page_indexes(self):
        """Page indexes already examined by the saver (for the REPL's page map):
        ``in`` is O(1). An incremental checkpoint never needs a page it does not
        store (its parent holds it)."""
        if self.save_set is not None:
            return _IncrementalDone(self)
        return range(0, self._scan)

    # P4: write device state, then (after P5) the original pages, then the disk.
    def advance(self, budget: int, finish: bool = True) -> int:
        """Do up to ``budget`` pages of work; returns the budget left. With
        ``finish`` False, stop before the last records (stop-and-copy writes
        them once the guest runs again, when its stop window is known)."""
        if self.status != "saving":
            return budget
        try:
            if self._stage == "state":
                self._writer.image(self.checkpointer.machine.image)
                self._writer.state(self.state)
                self._stage = "wait-reads"
                self.checkpointer.log(self, "P4", "device state written to the store")
            if self._stage == "wait-reads":
                if self.inflight_reads:
                    self.pending.suspend()          # no open file while it waits
                    return budget                   # P5: memory waits for those reads
                self._stage = "pages"
                if self.save_set is not None and self.save_only is None:
                    self.save_only = sorted(self.save_set)     # not inside the stop window
            if self._stage == "pages":
                budget = self._save_pages(budget)
                if self._scan < (len(self.save_only) if self.save_only is not None
                                 else self.frozen.page_count()):
                    return budget                   # (its file: Checkpointer._batch)
                self._stage = "wait-disk"
                self.checkpointer.log(self, "P4", f"{self.pages_saved} pages written")
            if self._stage == "wait-disk" and finish:
                if not self.checkpointer.chain_sealed(self.chain) or not self._parent_done():
                    self.pending.suspend()
                    return budget
                self._finish()
        except (OSError, MinivmError) as exc:
            self._fail(exc)
        return budget

    def _forget_earlier(self) -> None:
        """This checkpoint is complete: no later one looks past it for its
        parent (choose_parent), so the pages written before it are forgotten."""
        earlier = self.previous
        self.previous = self.dirty = None
        while earlier is not None:
            earlier.dirty, earlier.previous, earlier = None, None, earlier.previous

    def _parent_done(self) -> bool:
        """An incremental checkpoint completes after its parent (it records the
        parent's identity); one whose parent failed fails too."""
        parent = self.parent
        if parent is None or parent.status == "complete":
            return True
        if parent.status == "failed":
            raise MinivmError(f"its parent checkpoint {parent.name} failed, and it holds only "
                              f"the pages written since {parent.name}")
        return False

    def _save_incremental(self, budget: int) -> int:
        """Write up to ``budget`` of the pages written since the parent, each as
        the checkpoint sees it, zeros included (they override the parent)."""
        pages, writer, frozen = self.save_only, self._writer, self.frozen
        probes = self.checkpointer.machine.probes
        stop = min(len(pages), self._scan + max(budget, 0))
        for index in pages[self._scan:stop]:
            writer.page(index, frozen.original(index))
            if probes is not None:
                probes.saved(self, index)
        done = stop - self._scan
        if done:          # the pages in between are its parent's: not needed either
            frozen.saved_up_to(pages[stop - 1] + 1, frozen.saved_below)
        self._scan = stop
        self.pages_done += done
        self.pages_saved = writer.pages_written
        return budget - done

    def _save_pages(self, budget: int) -> int:
        """Write up to ``budget`` pages, each straight to the file as it is
        (ckptfile.CheckpointWriter.page); scanning empty page-table entries
        costs one unit per SCAN_PER_PAGE entries, so a huge, sparse memory
        still ends."""
        if self.save_only is not None:
            return self._save_incremental(budget)
        frozen = self.frozen
        total = frozen.page_count()
        writer = self._writer
        probes = self.checkpointer.machine.probes
        while budget > 0 and self._scan < total:
            stop = min(total, self._scan + SCAN_PER_PAGE)
            allocated = frozen.allocated_pages(self._scan, stop)
            if len(allocated) > budget:
                allocated = allocated[:budget]
                stop = allocated[-1] + 1
            for index in allocated:
                data = frozen.original(index)
                if holds_data(data):
                    writer.page(index, data)        # only non-zero pages are stored
                    if probes is not None:
                        probes.saved(self, index)
            self._examined.extend(allocated)
            frozen.saved_up_to(stop, self._scan)    # in the file: a store copies them no more
            self.pages_done += len(allocated)
            budget -= max(1, len(allocated))
            self._scan = stop
        self.pages_saved = writer.pages_written
        return budget

    def _meta(self) -> dict:
        extra = {"chain_depth": self.depth} if self.parent is not None else {}
        return {"name": self.name, "seq": self.seq, "tick": self.tick, "pc": self.pc, **extra,
                "origin": self.origin, "mode": self.mode, "created": time.time(),
                "minivm": __version__, "p8_drained": self.p8_drained,
                "pause_us": round(self.pause_seconds * 1e6, 1),
                "inflight_at_stop": self.inflight_at_stop}

    def _finish(self) -> None:
        disk = None
        if self.chain is not None:
            disk = {"chain": [chain_entry(layer, self.checkpointer.fingerprint_of(layer),
                                          self.location if not self.location.startswith("memory:")
                                          else None)
                              for layer in self.chain],
                    "group_blocks": self.checkpointer.group_blocks,
                    "reads_not_landed": self.reads_not_landed,
                    "writes_not_done": self.writes_not_done}
        self._writer.disk(disk)
        if self.parent is not None:
            parent = self.parent
            self._writer.parent(parent_record(parent.location, parent.identity, parent.name,
                                              parent.tick, self.location))
        self._writer.meta(self._meta())
        self._writer.finish()
        self.bytes_written = self._writer.bytes_written
        self.pending.commit()
        self.identity = self._writer.identity
        self.status = "complete"
        if not self.location.startswith("memory:"):
            self._forget_earlier()
        self.finished = time.perf_counter()
        self.finished_tick = self.checkpointer.machine.tick
        self.frozen.release()
        self.checkpointer.log(self, "done", f"{self.location} is complete and loadable")

    def _fail(self, exc: Exception) -> None:
        self.status = "failed"
        self.error = reason(exc)
        try:
            self.pending.abort()
        finally:
            self.frozen.release()
        self.checkpointer.log(self, "failed", self.error)
        self.checkpointer.report(f"checkpoint {self.name} failed: {self.error}; "
                                 "the guest keeps running")

    def force_finish(self) -> None:
        """The run is over: finish with what there is (reads that never landed
        stay in the saved queue and land when the checkpoint is resumed)."""
        if self.status != "saving":
            return
        self.reads_not_landed = sorted(self.inflight_reads)
        self.writes_not_done = sorted(self.inflight_writes)
        self.inflight_reads.clear()
        self.checkpointer.seal_layers(force=True)
        if self.parent is not None:
            self.parent.force_finish()            # (done already: jobs finish in order)
        while self.status == "saving":
            self.advance(1 << 30)


class WriteLog:
    """For incremental checkpoints: the pages written since the last checkpoint
    in a file, in a write tracker (memory.py, ``track_writes``; ``share`` makes
    every page's next store seen again). At the P2 of a checkpoint in a file
    it is swapped for a fresh one, in O(1); a checkpoint in memory (the
    REPL's history, tests) can be no parent, and leaves it collecting."""

    def __init__(self):
        self._tracker: set | None = None     # None until the first checkpoint
        self._last = None                    # the last checkpoint in a file

    def at_stop(self, memory, location: str):
        """At P2, after ``Memory.share``: (the pages written since the last
        checkpoint in a file, or None; that checkpoint, or None)."""
        if self._tracker is not None and location.startswith("memory:"):
            return None, None
        written = self._tracker
        if written is not None:
            memory.untrack(written)
        self._tracker = memory.track_writes()
        return written, self._last

    def taken(self, job: "CheckpointJob") -> None:
        if not job.location.startswith("memory:"):
            self._last = job


def seal_layers(checkpointer: "Checkpointer", fingerprints: dict, force: bool = False) -> None:
    """Fingerprint each disk layer below the live one, bottom up, once no
    pending request can change it any more (``force``: now, the run is over),
    into ``fingerprints`` (P5: the checkpointed disk is final once the writes
    in flight at the checkpoint are done; P10); a layer that cannot be
    fingerprinted fails the checkpoints that name it."""
    top = checkpointer.machine.disk.backing
    if top is None:
        return
    chain = top.chain()
    for i in range(len(chain) - 1, 0, -1):        # bottom up; the top is live
        layer = chain[i]
        if id(layer) in fingerprints:
            continue
        if not force and checkpointer.machine.disk.pending_for(layer):
            return
        try:
            layer.sync()
            fingerprint = layer.fingerprint()
            chain[i - 1].set_parent_fingerprint(fingerprint)
        except (OSError, MinivmError) as exc:
            # The checkpoints that name this layer cannot be completed:
            # each fails (reported), and the guest goes on.
            for job in checkpointer.saving():
                if job.chain is not None and any(x is layer for x in job.chain):
                    job._fail(exc)
            return
        fingerprints[id(layer)] = fingerprint
        layer.park()                              # only read from now on: close it


def choose_parent(previous, location: str, dirty: set | None):
    """The parent an incremental checkpoint at ``location`` can have, and the
    pages it must store: ``previous``, the last checkpoint in a file, if it
    has not failed, and the pages written since it; else the one before it,
    and so on, the pages written since then too; (None, None) for a full
    checkpoint: the first of a machine, one in memory, or one that would make
    the chain longer than MAX_PARENTS files."""
    if dirty is None or location.startswith("memory:"):
        return None, None
    pages = dirty                             # (copied only if a union is needed)
    while previous is not None:
        if previous.status != "failed":
            if previous.depth + 1 >= MAX_PARENTS:
                return None, None             # a chain as long as allowed: start anew
            return previous, pages
        if previous.dirty is None:
            return None, None
        pages = pages | previous.dirty
        previous = previous.previous
    return None, None


def pending_read_then_write(queue) -> bool:
    """P8 (claim 16): in the disk ``queue``, a pending read followed by a
    pending write to a common block."""
    starts: list[int] = []          # the blocks of the reads so far, as disjoint
    ends: list[int] = []            # intervals [starts[k], ends[k]), sorted
    for request in queue:           # one pass, not pairs: up to 65,536 requests
        lo, hi = request.block, request.block + request.count
        if lo == hi:
            continue
        k = bisect.bisect_right(ends, lo)         # the first interval ending after lo
        if not request.is_read:
            if k < len(starts) and starts[k] < hi:
                return True
            continue
        j = bisect.bisect_left(starts, hi, lo=k)  # intervals [k, j) touch [lo, hi)
        if k < j:
            lo, hi = min(lo, starts[k]), max(hi, ends[j - 1])
        starts[k:j], ends[k:j] = [lo], [hi]
    return False


def merged_note(due: list[int], now: int, start_tick: int) -> str:
    """--checkpoint-at ticks the clock passed without a boundary at them: one
    checkpoint, now, stands for them all; what to say."""
    asked = ", ".join(map(str, due[:10])) + (", ..." if len(due) > 10 else "")
    them = "it" if len(due) == 1 else f"these {len(due)} ticks"
    if now == start_tick:
        why = f"the run starts at tick {now}, after {them}"
    else:
        why = (f"the clock jumped past {them} in one step (a 'wait' runs until the "
               "next device event)")
    return (f"--checkpoint-at {asked}: {why}, so one checkpoint is taken at tick "
            f"{now} for {'it' if len(due) == 1 else 'them'}")


def p7_note(memory, request) -> str:
    """What P7 does for a read in flight at a checkpoint whose target pages the
    guest's copy-on-write has copied since: it lands in the original and the copy."""
    copied = memory.copied_in_range(request.addr, request.count * BLOCK_SIZE)
    return (f"read #{request.id} lands in both copies of page {', '.join(map(str, copied))}"
            if copied else "")


def log_disk_cow(checkpointer, request) -> None:
    """After a write completes: if it copied a block group into an overlay, log it."""
    faults = sum(o.cow_faults for o in checkpointer._overlays)
    if faults > checkpointer._disk_cow_seen:
        checkpointer._disk_cow_seen = faults
        checkpointer.log(None, *disk_cow_step(request, checkpointer.completed_requests,
                                              checkpointer.group_blocks))


def disk_cow_step(request, completed, default_group: int) -> tuple[str, str]:
    """A completed write copied a block group into an overlay (P3): the step to
    log. P9 (claims 18, 28) when an earlier write to that group was still
    pending at its issue: the copy was made after that write, so includes it."""
    g = getattr(request.target, "group_blocks", default_group)

    def groups(block, count):
        return set(range(block // g, (block + max(count, 1) - 1) // g + 1))

    mine = groups(request.block, request.count)
    waited = [rid for rid, is_read, block, count, _, done in completed
              if not is_read and rid < request.id and done > request.issued
              and mine & groups(block, count)]
    where = ", ".join(str(x) for x in sorted(mine))
    if waited:
        return "P9", f"write #{request.id} copies group {where} after write #{waited[-1]}"
    return "P3", f"write #{request.id} copies group {where} into the overlay"


def land_future_reads(memory, frozen, queue) -> None:
    """Stop-and-copy cannot wait for in-flight reads (P5), but it can know
    what they will deliver: the disk serves requests in issue order, so a
    read gets the disk as it is now plus the pending writes queued before
    it. That data goes into the checkpoint's memory only."""
    written: dict[int, bytes] = {}
    for request in queue:
        if request.is_read:
            data = b"".join(written.get(b) or request.target.read_blocks(b, 1)
                            for b in request.blocks())
            memory.land_in_frozen(frozen, request.addr, data)
        else:
            for k, b in enumerate(request.blocks()):
                written[b] = request.data[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE]


class _DiskCommit:
    """P10 for :class:`Checkpointer`: commit the overlay into its parent while
    the VM keeps running (a part of the checkpointer, kept apart for size)."""

    def commit_disk(self) -> str:
        """Switch the VM to a fresh overlay, then merge the old one into its parent
        as soon as no pending write still targets it (claims 3-5)."""
        machine = self.machine
        top = machine.disk.backing
        if top is None or top.kind != "overlay":
            raise MinivmError("there is no overlay to commit (no checkpoint has been taken "
                              "with a disk attached)")
        if self.saving() or self._commit is not None:
            raise MinivmError("a checkpoint is still saving (or a commit is running); "
                              "commit when it is complete")
        seq = self.store.next_sequence()
        fresh = Overlay.create(self.store.overlay_path(f"commit-{seq:04d}"), top,
                               self.group_blocks)
        machine.disk.switch_to(fresh)
        self._overlays.append(fresh)
        self._commit = (top, fresh)
        self.log(None, "P10", f"VM switched to {fresh.path}; committing {top.path}")
        if self._next_slice is None:
            self._next_slice = machine.tick + self._interval
        self._try_commit()
        if self._commit is None:
            return self.last_commit
        return (f"the VM now runs on {os.path.basename(fresh.path)}; "
                f"{os.path.basename(top.path)} is merged into its parent once its "
                "pending writes complete")

    def _try_commit(self) -> None:
        top, fresh = self._commit
        if any(self.machine.disk.pending_for(layer) for layer in top.chain()):
            return
        self._fingerprints.pop(id(top.parent), None)
        merged, parent = commit_overlay(top)
        fresh.reparent(parent, parent.fingerprint())
        top.close()
        self._commit = None
        self.last_commit = (f"committed {merged} block group(s) from {os.path.basename(top.path)} "
                            f"into {parent.path}; the VM runs on {os.path.basename(fresh.path)}")
        self.log(None, "P10", self.last_commit, "commit")
        self.report(self.last_commit)


class Checkpointer(_DiskCommit, Hooks):
    """Runs the checkpoint protocol for one machine, and is its hooks object
    (machine.Hooks: the host task, the ``ckpt`` instruction, the DMA rules)."""

    def __init__(self, machine: Machine, store: CheckpointStore, *, mode: str = COW,
                 group_blocks: int = 8, schedule=(), pages_per_slice: int | None = None,
                 slice_ticks: int = SLICE_TICKS, report=None, incremental: bool = False,
                 precopy_options: dict | None = None):
        if mode not in MODES:
            raise MinivmError(f"unknown checkpoint mode '{mode}' (use {' or '.join(MODES)})")
        self.machine = machine
        self.store = store
        self.mode = mode
        self.group_blocks = group_blocks
        self.jobs: list[CheckpointJob] = []
        self.events: list[ProtocolEvent] = []
        self.p6_faults = 0
        self._disk_cow_seen = 0                # overlay COW faults already logged (P3, P9)
        self.samples: list[Sample] = []
        self.completed_requests: list = []     # (id, is_read, block, count, issued, done)
        self._cow_base = 0                     # COW faults counted before the last share()
        self._overlays: list = []              # every overlay this run has written to
        self._schedule = sorted(set(schedule))
        self._start_tick = machine.tick
        self._pages_per_slice = (default_save_rate() if pages_per_slice is None
                                 else pages_per_slice)
        self._slice_ticks = slice_ticks
        self._interval = slice_ticks
        self._next_slice: int | None = None
        self._last_slice_host = time.perf_counter()
        self._page_cost = 20e-6          # seconds per page of saving, measured as we go
        self._credit = 0.0               # pages of saving earned by the guest's running time
        self._fingerprints: dict[int, dict] = {}
        self._report = report
        self._commit = None              # (overlay being committed, fresh overlay)
        self.last_commit = ""
        self.incremental = incremental   # ckpt and --checkpoint-at take incremental ones
        self._writes = WriteLog()
        self.precopy = PreCopy(self, **(precopy_options or {})) if mode == PRECOPY else None
        machine.hooks = self

    def on_ckpt(self, machine: Machine) -> None:
        """The guest's ``ckpt`` instruction (machine.Hooks)."""
        self._take_or_report("ckpt")

    def _take_or_report(self, origin: str) -> None:
        """A checkpoint the guest or ``--checkpoint-at`` asked for: one that cannot
        be written is reported, and the guest goes on as if it had been taken
        (it cannot tell the difference)."""
        try:
            self.take(origin, incremental=self.incremental)
        except (OSError, MinivmError) as exc:
            why = reason(exc)
            self.report(f"checkpoint at tick {self.machine.tick} could not be taken: {why}; "
                        "the guest keeps running")

    # --- small helpers -------------------------------------------------------------
    def log(self, job, step: str, detail: str = "", catch: str | None = None) -> None:
        """Record a protocol step; ``catch``: the event a catchpoint can stop at."""
        self.events.append(ProtocolEvent(self.machine.tick, time.perf_counter(),
                                         job.name if job else "", step, detail))
        if catch is not None and self.machine.probes is not None:
            self.machine.probes.protocol(job, step, catch, detail)

    def report(self, message: str) -> None:
        if self._report is not None:
            self._report(message)

    def saving(self) -> list[CheckpointJob]:
        return [job for job in self.jobs if job.status == "saving"]

    # --- the protocol ----------------------------------------------------------------
    def take(self, origin: str = "repl", name: str | None = None,
             incremental: bool = False, staged=None) -> CheckpointJob:
        """Take a checkpoint now, at an instruction boundary (P1, P2);
        ``incremental``: only the pages written since the previous one.
        Precopy mode: starts the rounds; their final stop comes back with ``staged``."""
        if self.precopy is not None and staged is None:
            return self.precopy.request(origin, name)
        machine = self.machine
        if self._commit is not None:
            raise MinivmError("a disk commit is waiting for pending writes (P10); take the "
                              "checkpoint once it has completed")
        disk = machine.disk.backing
        if disk is not None and len(disk.chain()) > MAX_CHAIN:
            raise MinivmError(f"the disk is a chain of {len(disk.chain())} files, more than "
                              f"the {MAX_CHAIN} a checkpoint may name (disks.MAX_CHAIN): one "
                              "overlay per checkpoint; commit them to go on "
                              "('minivm disk commit')")
        seq = self.store.next_sequence()
        name = name or f"ckpt-{seq:04d}"
        location = self.store.location(name)

        # P1: create the COW overlay over the disk in use, while the VM runs.
        overlay = None
        if disk is not None:
            overlay_path = self.store.overlay_path(name)
            if overlay_path is None:
                raise StoreError("this checkpoint store has no folder for the disk overlay")
            overlay = Overlay.create(overlay_path, disk, self.group_blocks)
        try:
            pending = self.store.begin(name)
        except BaseException:
            if overlay is not None:
                overlay.close()
                os.unlink(overlay.path)
            raise

        self.sample()
        self._cow_base += machine.memory.cow_copies
        collecting = gc.isenabled()
        gc.disable()          # no garbage collection pass inside the stop window
        try:
            job = self._stop(seq, name, origin, disk, overlay, pending, location, incremental,
                             staged)
        finally:
            if collecting:
                gc.enable()
        inflight, drained = job.inflight_at_stop, job.p8_drained
        if job.status == "saving":
            try:
                pending.suspend()                     # no open file until its first batch
            except OSError as exc:
                job._fail(exc)
        self.log(job, "P1", f"overlay {overlay.path}" if overlay else "no disk attached")
        self.log(job, "P2", f"stopped {job.pause_seconds * 1e6:.0f} us; "
                            f"{len(inflight)} request(s) in flight"
                            + (f"; P8: {drained} pending request(s) completed first" if drained else ""),
                 "stop-window")
        # The first batch comes soon; never later than one already due (taking a
        # checkpoint every 100 ticks must not put every save off for ever).
        self._interval = min(FIRST_SLICE_TICKS, self._slice_ticks)
        first = machine.tick + self._interval
        if self._next_slice is None or first < self._next_slice:
            self._next_slice = first
            self._last_slice_host = time.perf_counter()
        self.sample()
        return job

    def _stop(self, seq, name, origin, disk, overlay, pending, location,
              incremental: bool = False, staged=None) -> "CheckpointJob":
        """P2: everything done with the VM stopped; returns the new job, its
        stop window measured (``pause_seconds``)."""
        machine = self.machine
        stopped = time.perf_counter()                 # stop the VM ...
        drained = 0
        if pending_read_then_write(machine.disk.queue):   # P8
            drained = machine.drain_disk()
        # ... mark memory COW (precopy: complete the staging copy instead) ...
        frozen = machine.memory.share() if staged is None else staged.freeze()
        dirty, previous = self._writes.at_stop(machine.memory, location)   # (incremental)
        state = machine.save_state()                  # ... save device state to memory ...
        inflight = list(machine.disk.queue)
        chain = disk.chain() if disk is not None else None
        if overlay is not None:
            machine.disk.switch_to(overlay)           # ... switch to the overlay ...
            self._overlays.append(overlay)
            disk.park()     # below the top now: its file is closed until it is used
        job = CheckpointJob(self, seq, name, origin, self.mode, state, frozen, chain,
                            inflight, pending, location, dirty, previous, incremental)
        self._writes.taken(job)
        job.p8_drained = drained
        self.jobs.append(job)
        if self.mode == STOP_COPY:                    # baseline: memory saved while stopped
            land_future_reads(machine.memory, frozen, inflight)
            job.inflight_reads.clear()
            job.advance(1 << 30, finish=False)        # all but the last records
        job.pause_seconds = time.perf_counter() - stopped   # ... resume.
        return job

    def sample(self) -> None:
        """Record the counters now (called at checkpoints and background batches)."""
        memory = self.machine.memory
        self.samples.append(Sample(
            self.machine.tick, self._cow_base + memory.cow_copies,
            sum(o.cow_faults for o in self._overlays),
            sum(o.writes for o in self._overlays),
            {job.name: job.pages_done for job in self.jobs}))

    # --- in-flight DMA rules (machine.Hooks; the machine's DMA port calls these) ---
    def before_read_issued(self, request) -> None:
        """P6 (claims 15, 26): a new read cannot reach checkpointed memory."""
        faulted = self.machine.memory.unshare_range(request.addr, request.count * BLOCK_SIZE)
        if faulted:
            self.p6_faults += faulted
            self.log(None, "P6", f"read #{request.id}: {faulted} shared page(s) COW-faulted "
                     "before issue", "p6")

    def read_targets(self, request) -> list:
        """P5 (claims 8, 23): a read in flight at a checkpoint lands in its memory too;
        P7 (claims 17, 25) where the guest's copy of a page exists, in both."""
        jobs = [job for job in self.jobs
                if job.status == "saving" and request.id in job.inflight_reads]
        if jobs and (note := p7_note(self.machine.memory, request)):
            self.log(jobs[0], "P7", note)
        return [job.frozen for job in jobs]

    def request_done(self, request) -> None:
        if len(self.completed_requests) < MAX_LOGGED_REQUESTS:
            self.completed_requests.append((request.id, request.is_read, request.block,
                                            request.count, request.issued, request.done))
            if self.jobs:
                self.sample()
        if not request.is_read and self._overlays:
            log_disk_cow(self, request)
        for job in self.jobs:
            if request.id in job.inflight_reads:
                job.inflight_reads.discard(request.id)
                self.log(job, "P5", f"in-flight read #{request.id} landed in checkpointed memory",
                         ("dma-land", request.id))
            if request.id in job.inflight_writes:
                job.inflight_writes.discard(request.id)
                self.log(job, "P5", f"in-flight write #{request.id} reached the checkpointed disk")

    # --- disk layers: fingerprint each once nothing more can change it (P5, P10) ----------------
    def seal_layers(self, force: bool = False) -> None:
        seal_layers(self, self._fingerprints, force)      # (below the WriteLog class)

    def chain_sealed(self, chain) -> bool:
        return chain is None or all(id(layer) in self._fingerprints for layer in chain)

    def fingerprint_of(self, layer) -> dict:
        return self._fingerprints[id(layer)]

    # --- the host task (machine.Hooks: next_tick, run_due) ---
    def next_tick(self) -> int | None:
        candidates = []
        if self._schedule:
            candidates.append(self._schedule[0])
        if self._next_slice is not None:
            candidates.append(self._next_slice)
        if self.precopy is not None and self.precopy.next_slice is not None:
            candidates.append(self.precopy.next_slice)
        return min(candidates) if candidates else None

    def run_due(self, machine: Machine) -> None:
        now = machine.tick
        if self._schedule and self._schedule[0] <= now:
            due = []
            while self._schedule and self._schedule[0] <= now:
                due.append(self._schedule.pop(0))
            if due[0] < now:
                self.report(merged_note([t for t in due if t < now], now, self._start_tick))
            self._take_or_report("host")
        if self.precopy is not None:
            self.precopy.run_due(now)
        if self._next_slice is not None and self._next_slice <= now:
            self.background_slice()

    def background_slice(self) -> None:
        """P4 in the background: one batch of saving work between guest batches.

        The batch is sized so that saving takes about SAVE_DUTY of the host
        time (measured: the guest's time since the last batch, and the cost of
        a page in the batches so far), so the guest keeps most of its speed
        whatever the engine. ``pages_per_slice`` fixes the size instead (tests).
        """
        start = time.perf_counter()
        guest_time = start - self._last_slice_host
        if self._pages_per_slice is not None:
            budget = self._pages_per_slice
        else:
            self._credit = min(self._credit + guest_time * SAVE_DUTY / self._page_cost, 4096)
            budget = int(self._credit)
        spent = self._batch(budget)
        end = time.perf_counter()
        if spent:
            self._page_cost = 0.7 * self._page_cost + 0.3 * max((end - start) / spent, 1e-7)
        if self._pages_per_slice is None:
            self._credit = max(self._credit - spent, 0.0)
        self._last_slice_host = end
        busy = self.saving() or self._commit is not None or self.machine.memory.tidy(0)
        if self._pages_per_slice is not None:       # fixed schedule: deterministic
            self._interval = min(self._interval * 2, self._slice_ticks)
        elif guest_time < MIN_BATCH_GAP:            # a fast engine: batch less often
            self._interval = min(self._interval * 2, MAX_SLICE_TICKS)
        elif guest_time > 4 * MIN_BATCH_GAP and self._interval > FIRST_SLICE_TICKS:
            self._interval //= 2
        self._next_slice = self.machine.tick + self._interval if busy else None

    def _batch(self, budget: int) -> int:
        """One batch of P4 work, up to ``budget`` pages; returns the pages spent."""
        self.seal_layers()
        self.machine.memory.tidy()
        spent = 0
        saving = self.saving()
        for job in saving:
            left = job.advance(budget - spent)
            spent = budget - left
            if left <= 0:
                break
        if len(saving) > OPEN_WHILE_SAVING:
            # a file stays open till the next batch (reopening it costs more
            # than a page), unless many save at once: then none holds a descriptor
            for job in saving:
                if job.status == "saving":
                    job.pending.suspend()
        self.seal_layers()
        if self._commit is not None:
            try:
                self._try_commit()
            except (OSError, MinivmError) as exc:
                why = reason(exc)
                self.report(f"the commit of {os.path.basename(self._commit[0].path)} "
                            f"failed: {why}; the guest keeps running")
                self._commit = None
        self.sample()
        return spent

    # --- the save rate: how much P4 does per batch, and how often -------------------------
    @property
    def save_rate(self) -> int | None:
        """Pages per background batch, or None: sized by host time (adaptive)."""
        return self._pages_per_slice

    @property
    def save_interval(self) -> int:
        """Guest ticks between two background batches (once the first few are done)."""
        return self._slice_ticks

    def set_save_rate(self, pages: int | None, ticks: int | None = None) -> None:
        """Change the rate from now on, for checkpoints saving and to come."""
        self._pages_per_slice = pages
        if ticks is not None:
            self._slice_ticks = ticks
            self._interval = min(self._interval, ticks)
            if self._next_slice is not None:
                self._next_slice = min(self._next_slice, self.machine.tick + self._interval)

    def save_batch(self, pages: int) -> list[tuple["CheckpointJob", list[int]]]:
        """Do one batch of ``pages`` pages of background saving now, between two
        guest instructions; returns each checkpoint that was saving with the
        page indexes this batch examined for it."""
        before = [(job, job.examined_count()) for job in self.saving()]
        self._batch(pages)
        return [(job, job.examined(seen)) for job, seen in before]

    def sync(self) -> None:
        """Do all the background work that can be done now, without waiting
        for the guest: a checkpoint that waits for in-flight requests (P5)
        stays 'saving' until they complete."""
        self.seal_layers()
        for job in self.saving():
            job.advance(1 << 30)
        self.seal_layers()
        for job in self.saving():
            job.advance(1 << 30)

    def finish_all(self) -> None:
        """Complete every checkpoint still saving (the run is over)."""
        if self.precopy is not None:
            self.precopy.stop_now()
        for job in self.saving():
            job.force_finish()
        if self.jobs:
            self.sample()
        self._next_slice = None
        if self._commit is not None:
            self.report(f"the commit of {self._commit[0].path} did not run: writes to it were "
                        "still pending when the run ended; run 'minivm disk commit' on it")
            self._commit = None
