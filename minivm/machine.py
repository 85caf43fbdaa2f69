"""The machine: CPU state, devices, and the loop between instructions.

:meth:`Machine.run` alternates two things:

* the *boundary* (between instructions, at the current tick): the work of
  the machine's :class:`Hooks` that is due (a ``--checkpoint-at``
  checkpoint, a slice of a background save),
  then device events due now (timer before disk), then at most one interrupt
  delivery, then the stop conditions;
* the hot loop (:func:`~minivm.engine.reference.run_fast`) up to the *deadline*,
  the earliest tick at which the boundary has work to do, so that the check
  per instruction is the ``for`` loop's own bound and nothing more.

Instructions the hot loop hands back run through :meth:`Machine.step_slow`,
which is exact and fully checked (minivm/engine/exact.py). Faults are raised as
:class:`~minivm.errors.GuestFault` and reported with pc, tick and source line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import isa
from .devices import (BLOCK_SIZE, Console, Disk, EventQueue, InterruptController, Timer,
                      DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT_BYTES)
from .errors import GuestFault, MinivmError
from .engine import DEFAULT_ENGINE, select_engine
from .engine.decode import BREAK, FAULT, decode
from .engine.exact import step_exact
from .engine.reference import run_fast
from .isa import OUT_I, OUT_R, WORD_MASK
from .memory import DEFAULT_MEMORY, MAX_MEMORY, Memory
from .state import (MAX_TICK, SELF, Bool, CodeAddr, Field, Int, Limits, ListOf, OneOf, Record,
                    StateError)

INFINITY = math.inf
#: Slow-path instructions after which the boundary must run at once (they can
#: change what is scheduled, enable interrupts, or stop the machine). Others
#: (a COW store, a division, a register jump) go straight back to the batch.
NEEDS_BOUNDARY = isa.by_category(isa.SYSTEM) | {OUT_R, OUT_I, BREAK, FAULT}
#: Of those, the ones that only change whether interrupts are enabled: they
#: need the boundary only when an interrupt is pending (to deliver it at
#: once); else the batch goes on, to the same deadline (they schedule nothing).
#: ``iret`` at the end of every interrupt handler is the case that matters.
ONLY_ENABLE = frozenset({isa.IRET, isa.EI, isa.DI})
#: Longest stretch the hot loop runs before the boundary looks at the stop
#: flag (Ctrl-C in the REPL); about a millisecond or two of guest time.
SLICE = 1 << 14
STATE_VERSION = 1


@dataclass
class Stop:
    """Why :meth:`Machine.run` returned."""

    reason: str          # halt | fault | limit | breakpoint | watch | interrupted
    detail: object = None

    def __str__(self) -> str:
        return self.reason if self.detail is None else f"{self.reason}: {self.detail}"


class Hooks:
    """The one way host-side code plugs into a machine: ``machine.hooks``.

    The checkpoint protocol (checkpoint.Checkpointer) is the hooks object of a
    machine it checkpoints; this base class does nothing, and is what a
    machine without a checkpointer has. The methods:

    * ``next_tick()``: the earliest tick at which ``run_due`` has work, or
      None. The hot loop only runs up to it (it is part of the deadline);
    * ``run_due(machine)``: called at an instruction boundary once that tick
      is reached (a ``--checkpoint-at`` checkpoint, a background save batch);
    * ``on_ckpt(machine)``: the guest ran a ``ckpt`` instruction;
    * the in-flight DMA rules (P5-P7), called by the disk through the
      machine's DMA port: ``before_read_issued(request)`` (P6),
      ``read_targets(request)``, the checkpointed memories a read lands in
      besides the running one (P5), and ``request_done(request)``.
    """

    def next_tick(self) -> int | None:
        return None

    def run_due(self, machine: "Machine") -> None:
        pass

    def on_ckpt(self, machine: "Machine") -> None:
        pass

    def before_read_issued(self, request) -> None:
        pass

    def read_targets(self, request) -> list:
        return []

    def request_done(self, request) -> None:
        pass


NO_HOOKS = Hooks()


def watched_register_name(index: int) -> str:
    """The name a register watch reports: r0..r14, sp (r15), pc (index 16)."""
    return "pc" if index == isa.ZERO_REG else isa.reg_name(index)


class MemoryDma:
    """The disk's path to memory (devices.DmaPort).

    ``hooks`` is the machine's hooks object (set with ``machine.hooks``):
    its DMA rules (P5-P7, see checkpoint.py) step in between; without a
    checkpoint, DMA goes straight to memory.
    """

    def __init__(self, memory: Memory):
        self.memory = memory
        self.hooks: Hooks = NO_HOOKS

    def check(self, addr: int, length: int) -> None:
        self.memory.check_range(addr, length, "DMA")

    def read_memory(self, addr: int, length: int) -> bytes:
        return self.memory.read_bytes(addr, length)

    def before_read_issued(self, request) -> None:
        self.hooks.before_read_issued(request)

    def land_read(self, request, data: bytes) -> None:
        self.memory.land_read(request.addr, data, self.hooks.read_targets(request))

    def request_done(self, request) -> None:
        self.hooks.request_done(request)


def whole_limit(name: str, value, unit: str) -> None:
    """A run limit is None or an int: anything else raises TypeError, before
    anything runs (a float limit would never meet the whole-tick clock: a
    hang on interp, a broken region on blocks)."""
    if value is not None and not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of {unit} (an int), "
                        f"not {type(value).__name__} {value!r}")


class Machine:
    def __init__(self, image, *, memory_size: int = DEFAULT_MEMORY, disk=None,
                 console_sink=None, console_input=None, disk_latency: int = 100,
                 disk_per_block: int = 10, max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
                 load_data: bool = True, engine: str = DEFAULT_ENGINE):
        self.image = image
        self.engine = select_engine(engine)
        # an engine that takes the timer's ticks inside a batch itself (see
        # timer_boundary): its batches end only at the next other event
        self._engine_takes_timer = getattr(self.engine, "takes_timer", False)
        self.memory = Memory(memory_size)
        if len(image.data) > memory_size:
            raise MinivmError(f"the program's data ({len(image.data)} bytes) does not fit in "
                              f"memory ({memory_size} bytes); give more with --mem")
        if image.data and load_data:
            self.memory.write_bytes(0, image.data)
        self.regs = [0] * (isa.ZERO_REG + 1)
        self.regs[isa.SP] = memory_size & WORD_MASK
        self.pc = image.entry
        self.tick = 0
        self.halted = False
        self.fault: GuestFault | None = None
        self.interrupts_taken = 0
        ncode = len(image.code)
        self.ncode = ncode
        self.console = Console(console_sink, console_input)
        self.timer = Timer(ncode)
        self.dma = MemoryDma(self.memory)
        self._hooks: Hooks = NO_HOOKS     # see Hooks; the checkpointer sets it
        self.disk = Disk(disk, self.dma, ncode, disk_latency, disk_per_block, max_inflight,
                         max_inflight_bytes)
        self.interrupts = InterruptController()
        self.events = EventQueue([self.timer, self.disk])
        self.devices = {d.name: d for d in (self.console, self.timer, self.disk)}
        out_ports, in_ports = {}, {}
        for device in self.devices.values():
            out_ports.update(device.out_ports)
            in_ports.update(device.in_ports)
        self.code = decode(image, out_ports, in_ports)
        self._plain_code = list(self.code)
        self.breakpoints: set[int] = set()
        self.watches: dict[int, int] = {}
        self.reg_watches: dict[int, int] = {}   # register index -> last value seen
        self.probes = None                # protocol probes while catchpoints are set (probes.py)
        self.in_run = False               # inside run(): the guest is running
        self.trace = None                 # callable(str) to print each instruction
        self.stop_requested = False
        self._resume_break: tuple[int, int] | None = None
        # time travel (history.py): where a 'wait' jumped the clock, as
        # {tick after: tick of the wait}, when a history records this run
        self.wait_gaps: dict[int, int] | None = None

    @property
    def hooks(self) -> Hooks:
        """The host's hooks into this machine (see :class:`Hooks`)."""
        return self._hooks

    @hooks.setter
    def hooks(self, hooks: Hooks) -> None:
        self._hooks = hooks
        self.dma.hooks = hooks                # the disk's DMA rules, the same object

    # --- running -------------------------------------------------------------------
    def run(self, max_ticks: int | None = None) -> Stop:
        """Run until halt, fault, breakpoint, watch, stop request, or ``max_ticks``."""
        whole_limit("max_ticks", max_ticks, "ticks")
        limit = INFINITY if max_ticks is None else self.tick + max_ticks
        if self.fault is not None:
            return Stop("fault", self.fault)
        if self.halted:
            return Stop("halt")
        if self.pc in self.breakpoints:
            self._resume_break = (self.pc, self.tick)
        self.in_run = True                # (a caught protocol step stops it: probes.py)
        single = self.trace is not None or bool(self.watches) or bool(self.reg_watches)
        try:
            while True:
                stop = self._boundary(limit)
                if stop is not None:
                    return stop
                if single:
                    stop = self._single_step()
                    if stop is not None:
                        return stop
                    continue
                deadline = min(limit, self.tick + SLICE,
                               self._next_deadline(self._engine_takes_timer))
                while (op := self.engine(self, deadline)) is not None:
                    stop = self.step_slow()
                    if stop is not None:
                        return stop
                    if self.tick >= deadline or self.stop_requested:
                        break             # (a caught protocol step: probes.py)
                    if op in NEEDS_BOUNDARY and (op not in ONLY_ENABLE
                                                 or self.interrupts.has_pending()):
                        break
        except GuestFault as fault:
            self.fault = fault.locate(self.pc, self.tick, self.image.location(self.pc),
                                      self.image.source_text(self.pc))
            return Stop("fault", self.fault)
        finally:
            self.in_run = False
            self.console.sink.flush()

    def _next_deadline(self, skip_timer: bool = False) -> float:
        deadline = INFINITY
        nxt = self.events.next_tick(self.timer if skip_timer else None)
        if nxt is not None:
            deadline = nxt
        t = self._hooks.next_tick()
        if t is not None and t < deadline:
            deadline = t
        return max(deadline, self.tick + 1)

    def _boundary(self, limit) -> Stop | None:
        if self.halted:
            return Stop("halt")
        if self.pc >= self.ncode:       # ran off the end: the fault comes before anything else
            self.step_slow()
        hooks = self._hooks
        t = hooks.next_tick()
        if t is not None and t <= self.tick:
            hooks.run_due(self)
        self.timer_boundary()
        if self.stop_requested:
            self.stop_requested = False
            return Stop("interrupted")
        if self.tick >= limit:
            return Stop("limit")
        return None

    def timer_boundary(self) -> None:
        """The boundary's device part: fire every event due now, then deliver
        a pending interrupt if interrupts are enabled.

        An engine with ``takes_timer`` (blocks) also calls it at a timer tick
        inside a batch (``m.pc``/``m.tick`` set): its batch's deadline is the
        next event of any other kind (disk, host task, limit, slice), so at
        that tick this is all the full boundary would do but for the stop
        request (Ctrl-C), which waits for the end of the slice.

        The common case of an interrupt-heavy guest takes a fast path: only
        the timer is due, nothing is pending, interrupts are enabled, and the
        pc can be pushed in place. Then the timer fires, its interrupt is
        raised and at once delivered, with the state the slow way leaves (the
        pending heap empty again, its sequence number one up); the push comes
        first, so when it cannot be done in place nothing is done yet and the
        slow way runs. (The blocks engine has the same fast path inline.)"""
        timer = self.timer
        irq = self.interrupts
        tick = self.tick
        handler = timer.handler
        if (timer.next_fire == tick and irq.enabled and not irq._pending
                and handler is not None):
            other = self.events.next_tick(timer)
            sp = (self.regs[isa.SP] - 4) & WORD_MASK
            offset = sp & 4095
            writable = self.memory.writable
            page = writable[sp >> 12] if sp >> 12 < len(writable) else None
            if (other is None or other > tick) and page is not None and offset + 4 <= len(page):
                page[offset:offset + 4] = self.pc.to_bytes(4, "little")
                self.regs[isa.SP] = sp
                timer.next_fire = tick + timer.period
                timer.fired += 1
                irq._seq += 1
                irq.enabled = False
                self.pc = handler
                self.interrupts_taken += 1
                return
        self.events.fire_due(self.tick, self.interrupts.raise_irq)
        if self.interrupts.enabled and self.interrupts.has_pending():
            self._deliver_interrupt()

    def _watch_hit(self) -> Stop | None:
        """A watched word differs from the last value seen (by any cause:
        an instruction, a DMA read landing, an interrupt pushing the pc), or
        a watched register does (``reg_watches``; index 16 is the pc): the
        detail is (address or register name, old, new)."""
        for addr, old in self.watches.items():
            new = self.memory.load_word(addr)
            if new != old:
                self.watches[addr] = new
                return Stop("watch", (addr, old, new))
        for index, old in self.reg_watches.items():
            new = self.register_value(index)
            if new != old:
                self.reg_watches[index] = new
                return Stop("watch", (watched_register_name(index), old, new))
        return None

    def _single_step(self) -> Stop | None:
        stop = self._watch_hit()
        if stop is not None:
            return stop
        if self.trace is not None:
            from .disasm import format_instruction
            text = format_instruction(self.image, self.pc) if self.pc < self.ncode else "?"
            self.trace(f"tick {self.tick:>8}  pc {self.pc:>5}  {text:<28} ; "
                       f"{self.image.location(self.pc)}")
        if run_fast(self, self.tick + 1) is not None:
            stop = self.step_slow()
            if stop is not None:
                return stop
        return self._watch_hit()

    def _deliver_interrupt(self) -> None:
        while self.interrupts.has_pending():
            _, source = self.interrupts.pop()
            handler = self.devices[source].handler
            if handler is None:          # cleared while pending: dropped
                continue
            sp = (self.regs[isa.SP] - 4) & WORD_MASK
            try:
                self.memory.store_word(sp, self.pc)
            except GuestFault as fault:
                raise GuestFault(f"stack overflow while taking a {source} interrupt: "
                                 f"{fault.reason}") from None
            self.regs[isa.SP] = sp
            self.interrupts.enabled = False
            self.pc = handler
            self.interrupts_taken += 1
            return

    # --- the slow, exact path ------------------------------------------------------------
    def step_slow(self) -> Stop | None:
        """Execute the instruction at pc exactly, with every check (generated
        from the semantics table: :func:`minivm.engine.exact.step_exact`)."""
        if self.wait_gaps is None:
            return step_exact(self)
        t = self.tick
        stop = step_exact(self)
        if self.tick > t + 1:               # a 'wait' moved the clock: no boundary between
            self.wait_gaps[self.tick] = t
        return stop

    def stop(self, reason: str, detail=None) -> Stop:
        """A Stop for the exact path to return."""
        return Stop(reason, detail)

    def breakpoint_stop(self) -> Stop | None:
        """At a planted breakpoint: stop, unless the run is continuing from it."""
        if self._resume_break != (self.pc, self.tick):
            return Stop("breakpoint", self.pc)
        self._resume_break = None        # continuing from it: run the real instruction once
        pc = self.pc
        self.code[pc] = self._plain_code[pc]
        try:
            if run_fast(self, self.tick + 1) is not None:
                return self.step_slow()
            return None
        finally:
            if pc in self.breakpoints:
                self.code[pc] = (BREAK, 0, 0, 0)

    def drain_disk(self) -> int:
        """Complete every pending disk request at this tick (P8); returns how many."""
        done = self.disk.drain(self.tick)
        for _ in done:
            if self.disk.handler is not None:
                self.interrupts.raise_irq(self.tick, self.disk.priority, self.disk.name)
        return len(done)

    # --- debugger support ------------------------------------------------------------------
    def set_breakpoint(self, pc: int) -> None:
        if not 0 <= pc < self.ncode:
            raise MinivmError(f"no instruction at {pc} (the code has {self.ncode})")
        self.breakpoints.add(pc)
        self.code[pc] = (BREAK, 0, 0, 0)

    def clear_breakpoint(self, pc: int) -> None:
        self.breakpoints.discard(pc)
        self.code[pc] = self._plain_code[pc]

    def register_value(self, index: int) -> int:
        """A register by index, 16 meaning the pc (as ``reg_watches`` keys it)."""
        return self.pc if index == isa.ZERO_REG else self.regs[index]

    def refresh_watches(self) -> None:
        """Every watch (memory and register) takes the value now as the last
        one seen: after a jump in time or a change made at the prompt."""
        for addr in self.watches:
            self.watches[addr] = self.memory.load_word(addr)
        for index in self.reg_watches:
            self.reg_watches[index] = self.register_value(index)

    # --- state for checkpoints (P2) and tools ------------------------------------------------
    def save_state(self) -> dict:
        """The CPU's and every device's complete state, as plain data (P2: 'save
        device state'), from the declarations (:data:`MACHINE_STATE`)."""
        return MACHINE_STATE.save(self)

    def state_limits(self) -> Limits:
        """What this machine can restore: its code, memory and disk sizes (the
        in-flight limits are the saved run's own, part of its disk state)."""
        backing = self.disk.backing
        return Limits(code_size=self.ncode, memory_size=self.memory.size,
                      disk_blocks=None if backing is None else backing.block_count,
                      disk_attached=backing is not None)

    def travel_to(self, state: dict, fault) -> None:
        """Time travel (history.py): the CPU and devices become ``state`` (a
        :meth:`save_state` of this machine's own run) and ``fault`` (the
        machine's fault then, or None); memory and disk are the history's."""
        MACHINE_STATE.restore(self, state, self.state_limits())
        self.fault = fault
        self._resume_break = None
        self.stop_requested = False

    def restore_state(self, state: dict) -> None:
        """Inverse of :meth:`save_state`. The whole state is validated against
        the declarations first (every field, and the rules between them that a
        real run keeps); bad data raises :class:`~minivm.state.StateError`
        (a ValueError) and leaves the machine as it was."""
        MACHINE_STATE.restore(self, state, self.state_limits())


def _put_regs(machine: Machine, regs: list[int]) -> None:
    machine.regs[:isa.NUM_REGS] = regs


def _check_machine(values: dict, limits: Limits, path: str) -> None:
    """Rules between the sections: what the ticks allow, memory and disk."""
    tick, console, queue = values["cpu"]["tick"], values["console"], values["disk"]["queue"]
    size = values["memory_size"]
    if limits.memory_size is not None and size != limits.memory_size:
        raise StateError("memory_size", f"{size} bytes does not match the machine's memory "
                                        f"({limits.memory_size} bytes)")
    if console["input_consumed"] > tick:
        raise StateError("console.input_consumed", f"{console['input_consumed']} input bytes "
                         f"read in {tick} instructions")
    if console["bytes_written"] > 11 * tick:
        raise StateError("console.bytes_written", f"{console['bytes_written']} bytes written "
                         f"in {tick} instructions")
    for i, r in enumerate(queue):
        end = r["addr"] + r["count"] * BLOCK_SIZE
        if end > size:
            raise StateError(f"disk.queue[{i}].addr", f"DMA range 0x{r['addr']:x}..0x"
                             f"{max(end, r['addr'] + 1) - 1:x} is out of range: memory is "
                             f"{size} bytes (0x0 .. 0x{size - 1:x})")
    if queue and limits.disk_attached is False:
        raise StateError("disk.queue", f"{len(queue)} request(s) in flight but no disk "
                                       "is attached")


#: The CPU's saved fields (``cpu`` in a checkpoint's state section).
CPU_STATE = Record("cpu", [
    Field("regs", ListOf(Int(0, WORD_MASK), min_len=isa.NUM_REGS, max_len=isa.NUM_REGS),
          get=lambda m: m.regs[:isa.NUM_REGS], put=_put_regs, doc="the registers"),
    Field("pc", CodeAddr()),
    Field("tick", Int(0, MAX_TICK)),
    Field("halted", Bool()),
    Field("interrupts_taken", Int(0, MAX_TICK), default=0),
])

#: A machine's whole saved state: the ``state`` section of a checkpoint file
#: (docs/formats.md). The key order is the order in the file.
MACHINE_STATE = Record("machine state", [
    Field("version", OneOf(STATE_VERSION), attr=None, get=lambda m: STATE_VERSION),
    Field("cpu", CPU_STATE, attr=SELF),
    Field("memory_size", Int(1, MAX_MEMORY), attr=None, get=lambda m: m.memory.size,
          doc="the memory size"),
    Field("interrupts", InterruptController.STATE),
    Field("console", Console.STATE),
    Field("timer", Timer.STATE),
    Field("disk", Disk.STATE),
], check=_check_machine, prefix="")
