"""Protocol probes: the checkpoint protocol's steps reporting themselves, so
that a debugger can stop the guest when one happens (the REPL's ``catch``).

A machine has no probes (``machine.probes`` is None) unless someone sets a
catchpoint; then a :class:`Probes` is attached to the machine, its memory and
its disk. The places that notify it are all on paths that are slow already:

* ``Memory.make_writable`` when it copies a page a checkpoint shares (P3);
* ``Disk.complete`` before a write reaches a disk layer (a disk COW fault,
  P3, and the case of P9), and before a read lands (whether the guest has
  copied its pages: P7);
* ``Checkpointer.log``, the protocol's own event log (P2, P5/P7, P6, P8, P10),
  and ``CheckpointJob`` for each page written to the store (P4).

Each checks ``probes is not None`` first, so a machine without catchpoints
runs exactly as before. An event that matches an armed catchpoint is
recorded as a :class:`Hit`; while the guest runs (inside ``Machine.run``:
``machine.in_run``) it also sets ``machine.stop_requested``: the machine
stops at the next instruction boundary (the same tick on both engines, see
:meth:`Probes.attach`), where the REPL reports the hit. Events during a
time-travel replay (the hooks' ``replaying``) are ignored: a replay does not
run the protocol again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .devices import BLOCK_SIZE


@dataclass(frozen=True)
class Event:
    """A protocol step that can be caught."""

    name: str
    step: str           # P2 ... P10 (docs/protocol.md)
    claims: str         # the claims of the patent the step implements
    what: str           # one line, for 'help catch'
    arg: str = ""       # PAGE or BLOCK: what the optional argument narrows to


EVENTS = {e.name: e for e in (
    Event("stop-window", "P2", "1, 19, 20",
          "stop: mark memory COW, save devices, switch disk"),
    Event("cow", "P3", "1, 19, 24",
          "a memory COW fault: a shared page is copied", "PAGE"),
    Event("disk-cow", "P3", "1, 19, 24",
          "a disk COW fault: a block group copied to the overlay", "BLOCK"),
    Event("save", "P4", "1, 22",
          "a page of the checkpoint written to the store", "PAGE"),
    Event("dma-land", "P5/P7", "8, 23, 17, 25",
          "a read in flight at the checkpoint lands in both"),
    Event("p6", "P6", "15, 26",
          "a new read first copies the shared pages it fills"),
    Event("p8", "P8", "16",
          "read then write of a block pending: both complete"),
    Event("p9", "P9", "18, 28",
          "a disk COW fault after a pending write to the group"),
    Event("commit", "P10", "3-6",
          "an overlay merged into its parent, the VM running on"),
)}


@dataclass
class Hit:
    """One caught event: which, its argument (page, block range...), where."""

    event: str
    arg: object
    tick: int
    pc: int
    detail: str
    running: bool = False     # it happened while the guest ran (else: at the prompt)


class Probes:
    """Where the protocol reports its steps while catchpoints are set.

    ``armed`` maps an event name to the arguments caught (None: any)."""

    def __init__(self):
        self.armed: dict[str, set] = {}
        self.hits: list[Hit] = []
        self.machine = None
        self._writes: deque = deque()     # completed writes a later one may follow (P9)
        self._copied: dict[int, list] = {}  # read id -> pages the guest had copied (P7)

    # ---- wiring ------------------------------------------------------------------------
    def attach(self, machine) -> None:
        """Notify from ``machine`` from now on. While ``cow`` is armed, the
        blocks engine's compiled stores hand a page that is not writable
        back to the exact path (as the reference engine does) instead of
        copying it inside the region, so that the stop comes right after the
        store on both engines."""
        if self.machine is not None and self.machine is not machine:
            self.detach()
        self.machine = machine
        machine.probes = machine.memory.probes = machine.disk.probes = self
        memory = machine.memory
        if "cow" in self.armed:
            memory.store_miss = _hand_back
        else:
            memory.__dict__.pop("store_miss", None)

    def detach(self) -> None:
        m = self.machine
        if m is not None:
            m.probes = m.memory.probes = m.disk.probes = None
            m.memory.__dict__.pop("store_miss", None)
        self.machine = None
        self._writes.clear()

    def arm(self, catches) -> None:
        """``catches``: (event, arg or None) pairs, every catchpoint set."""
        armed: dict[str, set] = {}
        for event, arg in catches:
            armed.setdefault(event, set()).add(arg)
        self.armed = armed
        if self.machine is not None:
            self.attach(self.machine)

    def take_hits(self) -> list[Hit]:
        hits, self.hits = self.hits, []
        return hits

    # ---- notifications -------------------------------------------------------------
    def notify(self, event: str, arg=None, detail: str = "") -> None:
        """``arg``: an int (a page) or a range (a block group's blocks)."""
        args = self.armed.get(event)
        m = self.machine
        if args is None or m is None or getattr(m.hooks, "replaying", False):
            return
        if None not in args and not any(
                (a in arg) if isinstance(arg, range) else a == arg for a in args):
            return
        self.hits.append(Hit(event, arg, m.tick, m.pc, detail, m.in_run))
        if m.in_run:                      # the guest runs: stop it at the next boundary
            m.stop_requested = True

    def protocol(self, job, step: str, event, detail: str) -> None:
        """From the checkpointer's event log: ``event`` is the name, or (name,
        the read's id) for dma-land."""
        if event is None:
            return
        if isinstance(event, tuple):
            event, read = event
            copied = ", ".join(map(str, self._copied.pop(read, [])))
            detail = (f"read #{read} landed in the checkpoint's page {copied} and the guest's "
                      "copy (P7)" if copied else
                      f"read #{read} landed in the checkpoint's memory and the guest's (P5)")
        if event == "stop-window":          # (the log's detail has host times)
            detail = (f"memory marked COW, devices saved, disk "
                      + ("switched" if job.chain is not None else "none")
                      + f", {len(job.inflight_at_stop)} in flight")
        self.notify(event, None, f"{job.name}: {detail}" if job is not None else detail)
        if event == "stop-window" and job.p8_drained:
            self.notify("p8", None, f"{job.name}: {job.p8_drained} pending request(s) "
                                    "completed before the guest resumed")

    def saved(self, job, index: int) -> None:
        self.notify("save", index, f"{job.name}: page {index} saved to the store")

    def disk_read(self, request) -> None:
        """A read is about to land (Disk.complete): which of its pages the
        guest has copied since the checkpoint (P7, where the read lands twice)."""
        memory = self.machine.memory if self.machine is not None else None
        self._copied = {}                 # (the checkpointer reports it right after landing)
        if memory is None or "dma-land" not in self.armed:
            return
        copied = memory.copied_in_range(request.addr, request.count * BLOCK_SIZE)
        if copied:
            self._copied[request.id] = copied

    def disk_write(self, request) -> None:
        """A write is about to reach its disk layer (Disk.complete): a disk COW
        fault for each group of an overlay it writes only in part and the
        overlay does not hold yet; P9 when an earlier write, still pending
        when this one was issued, wrote into that group too."""
        target = request.target
        writes = self._writes
        while writes and writes[0][1] <= request.issued:
            writes.popleft()                  # done before this one was issued
        if getattr(target, "kind", "") == "overlay":
            size = target.group_blocks
            end = request.block + request.count
            for group in range(request.block // size, (end - 1) // size + 1):
                blocks = range(group * size, min((group + 1) * size, target.block_count))
                covered = request.block <= blocks.start and end >= blocks.start + size
                if target.has_group(group) or covered:
                    continue
                self.notify("disk-cow", blocks, f"write #{request.id} copies group {group} "
                            f"(blocks {blocks.start}..{blocks[-1]}) into the overlay")
                earlier = [w for w in writes if w[2] is not target
                           and w[3] < blocks.stop and blocks.start < w[4]]
                if earlier:
                    self.notify("p9", blocks, f"write #{request.id} copies group {group} "
                                f"after pending write #{earlier[-1][0]} to it completed")
        writes.append((request.id, request.done, target, request.block,
                       request.block + request.count))


def _hand_back(addr: int, length: int):
    """Memory.store_miss while ``cow`` is caught: the exact path does the store."""
    raise IndexError(addr)
