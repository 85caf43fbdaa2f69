"""The virtual devices (docs/isa.md, section 4) and the virtual-time event queue.

Each device owns its state and declares it once, as a ``STATE`` record
(state.py: every saved field with its type and range, in the manner of
QEMU's VMStateDescription and Firecracker's ``Persist``). From it:

* ``save()`` returns plain data (ints, bytes, lists, dicts) that msgpack
  can store, and that is the device's *complete* state;
* ``restore(data)`` validates that data against the declaration, then puts
  the device into exactly that state (or raises
  :class:`~minivm.state.StateError` and changes nothing).

The checkpoint code only ever calls these two; it never looks inside a
device. Ports are declared by each device as ``out_ports`` / ``in_ports``
maps, so the interpreter binds every ``in``/``out`` to its handler once, at
decode time.

Time is virtual: a tick is one executed instruction. Devices schedule events
in ticks; :class:`EventQueue` merges them (timer before disk on a tie) and the
machine consults it between instructions. There are no threads, so a run is
a pure function of the program, the disk image and the console input.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from .container import MAX_FILE_BYTES
from .errors import GuestFault, MinivmError
from .isa import WORD_MASK, to_signed
from .state import (MAX_COUNT, MAX_FUTURE, MAX_LIST, MAX_TICK, Bool, Bytes, CodeAddr, Field,
                    Int, Limits, ListOf, OneOf, Record, StateError, show)

NO_HANDLER = WORD_MASK            # `out port, -1` clears a handler
BLOCK_SIZE = 512
MAX_PENDING_INTERRUPTS = 65536
DEFAULT_MAX_INFLIGHT = 1024
#: The most ``--max-inflight`` may be: every request in flight is saved in a
#: checkpoint's disk queue, and a saved list holds at most this many items.
MAX_INFLIGHT = MAX_LIST
#: Bytes the requests in flight may move at once (reads and writes): a write
#: holds its data from issue to completion, and a checkpoint saves that data.
DEFAULT_MAX_INFLIGHT_BYTES = 64 << 20
#: The most ``--max-inflight-bytes`` may be: a checkpoint's saved queue must
#: leave room in a file minivm will load (container.MAX_FILE_BYTES) for memory.
MAX_INFLIGHT_BYTES = MAX_FILE_BYTES // 4
MAX_REQUEST_BLOCKS = (1 << 32) // BLOCK_SIZE     # a request's DMA fits in the largest memory
#: Disk latency and per-block time: 2^24 ticks, so that a request's completion
#: (latency + per_block * MAX_REQUEST_BLOCKS, under 2^48) queued behind a full
#: queue still lies far inside MAX_FUTURE and msgpack's 64 bits.
MAX_DELAY = 1 << 24


# --- console ------------------------------------------------------------------------

def handler_address(value: int, code_size: int, device: str) -> int | None:
    """What ``out`` to a device's handler port sets: a code address, or None
    for -1 (no handler); anything else is a guest fault."""
    if value == NO_HANDLER:
        return None
    if value < code_size:
        return value
    raise GuestFault(f"bad handler address {to_signed(value)} for the {device}: the code "
                     f"has {code_size} instructions (use a code label, or -1 to clear)")


class ConsoleInput:
    """Bytes the guest can read: a file's contents, a stream, or REPL input."""

    def __init__(self, data: bytes = b"", stream=None):
        self._buffer = deque(data)
        self._stream = stream

    def feed(self, data: bytes) -> None:
        self._buffer.extend(data)

    def read(self) -> int:
        if self._buffer:
            return self._buffer.popleft()
        if self._stream is not None:
            chunk = self._stream.read(1)
            if chunk:
                return chunk[0]
            self._stream = None
        return -1

    def buffered(self) -> int:
        return len(self._buffer)

    def pending(self) -> bytes:
        """What is buffered, not yet read."""
        return bytes(self._buffer)

    def replace(self, data: bytes) -> None:
        """Time travel: what is buffered, not yet read, becomes ``data``."""
        self._buffer = deque(data)


class BufferSink:
    """Collects console output in memory (tests, the REPL, comparisons)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass


class StreamSink:
    """Writes console output to a binary stream, flushing at each newline."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data
        if b"\n" in data or len(self._pending) > 4096:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._stream.write(bytes(self._pending))
            self._pending.clear()
        self._stream.flush()


class Console:
    """Ports 0x00 (byte out), 0x01 (decimal out), 0x02 (byte in, -1 at end)."""

    name = "console"

    def __init__(self, sink=None, source: ConsoleInput | None = None):
        self.sink = sink if sink is not None else BufferSink()
        self.source = source if source is not None else ConsoleInput()
        self.input_consumed = 0
        self.bytes_written = 0
        self.out_ports = {0x00: (self.put_byte, False), 0x01: (self.put_number, False)}
        self.in_ports = {0x02: self.get_byte}

    def put_byte(self, value: int, tick: int = 0) -> None:
        self.sink.write(bytes((value & 0xFF,)))
        self.bytes_written += 1

    def put_number(self, value: int, tick: int = 0) -> None:
        text = str(to_signed(value)).encode()
        self.sink.write(text)
        self.bytes_written += len(text)

    def get_byte(self, tick: int = 0) -> int:
        value = self.source.read()
        if value < 0:
            return WORD_MASK
        self.input_consumed += 1
        return value

    # Console input is the outside world: only how much was read is state.
    STATE = Record("console", [
        Field("input_consumed", Int(0, MAX_TICK)),       # one byte per instruction at most
        Field("bytes_written", Int(0, 11 * MAX_TICK)),   # '-2147483648' is 11 bytes
    ])

    def save(self) -> dict:
        return self.STATE.save(self)

    def restore(self, data: dict, limits: Limits | None = None) -> None:
        self.STATE.restore(self, data, limits or Limits())


# --- timer --------------------------------------------------------------------------

class Timer:
    """Ports 0x10 (period), 0x11 (handler), 0x12 (read the tick)."""

    name = "timer"
    priority = 0                      # fires before the disk on a tie

    def __init__(self, code_size: int):
        self.code_size = code_size
        self.period = 0
        self.handler: int | None = None
        self.next_fire: int | None = None
        self.fired = 0
        self.out_ports = {0x10: (self.set_period, True), 0x11: (self.set_handler, False)}
        self.in_ports = {0x12: self.read_tick}

    def set_period(self, value: int, tick: int) -> None:
        self.period = value
        self.next_fire = tick + value if value else None

    def set_handler(self, value: int, tick: int = 0) -> None:
        self.handler = handler_address(value, self.code_size, self.name)

    def read_tick(self, tick: int) -> int:
        return tick & WORD_MASK

    def next_event(self) -> int | None:
        return self.next_fire

    def fire(self, now: int | None = None) -> tuple[int, bool]:
        """The due event happens; returns (its tick, whether it interrupts).

        With no handler an event only counts, so when several are due by
        ``now`` they are counted at once, in O(1) (no loop per period, however
        far behind the timer is); with a handler each one is raised."""
        tick = self.next_fire
        periods = 1
        if self.handler is None and now is not None and now >= tick + self.period:
            periods = (now - tick) // self.period + 1
            tick += (periods - 1) * self.period
        self.next_fire = tick + self.period
        self.fired += periods
        return tick, self.handler is not None

    @staticmethod
    def _check(values: dict, limits: Limits, path: str) -> None:
        if (values["next_fire"] is None) != (values["period"] == 0):
            raise StateError(f"{path}.next_fire", f"{values['next_fire']} does not match the "
                             f"period {values['period']} (nil exactly when the timer is stopped)")

    STATE = Record("timer", [
        Field("period", Int(0, WORD_MASK)),
        Field("handler", CodeAddr(optional=True)),
        Field("next_fire", Int(0, MAX_FUTURE, optional=True)),
        Field("fired", Int(0, MAX_TICK)),
    ], check=_check)

    def save(self) -> dict:
        return self.STATE.save(self)

    def limits(self) -> Limits:
        return Limits(code_size=self.code_size)

    def restore(self, data: dict, limits: Limits | None = None) -> None:
        self.STATE.restore(self, data, limits or self.limits())


# --- block disk with asynchronous DMA -------------------------------------------------

class DmaPort(Protocol):
    """What the disk needs from the machine to move data to and from memory.

    Kept this small so that the checkpoint protocol can step in between
    (P5-P7) without the disk knowing about checkpoints.
    """

    def check(self, addr: int, length: int) -> None: ...
    def read_memory(self, addr: int, length: int) -> bytes: ...
    def before_read_issued(self, request: "Request") -> None: ...      # P6
    def land_read(self, request: "Request", data: bytes) -> None: ...  # P5, P7
    def request_done(self, request: "Request") -> None: ...


@dataclass
class Request:
    id: int
    command: int                # 1 read, 2 write
    block: int
    addr: int
    count: int
    issued: int                 # tick of the issuing instruction
    done: int                   # tick at which it completes
    data: bytes | None = None   # a write's bytes, taken from memory at issue
    target: object = None       # the disk layer in use when it was issued

    READ, WRITE = 1, 2

    @property
    def is_read(self) -> bool:
        return self.command == self.READ

    def blocks(self) -> range:
        return range(self.block, self.block + self.count)

    def describe(self) -> str:
        kind = "read " if self.is_read else "write"
        return (f"#{self.id} {kind} blocks {self.block}..{self.block + self.count - 1} "
                f"{'->' if self.is_read else '<-'} mem 0x{self.addr:x} "
                f"(issued tick {self.issued}, done tick {self.done})")


#: A request in flight, saved as ``[id, command, block, addr, count, issued, done, data]``.
REQUEST_STATE = Record("request", [
    Field("id", Int(1, MAX_COUNT)),
    Field("command", OneOf(Request.READ, Request.WRITE)),
    Field("block", Int(0, WORD_MASK)),
    Field("addr", Int(0, WORD_MASK)),
    Field("count", Int(0, MAX_REQUEST_BLOCKS)),
    Field("issued", Int(0, MAX_TICK)),
    Field("done", Int(0, MAX_FUTURE)),
    Field("data", Bytes(MAX_REQUEST_BLOCKS * BLOCK_SIZE, optional=True)),
], as_list=True)


def check_inflight_limits(max_inflight: int, max_inflight_bytes: int) -> None:
    """The run's in-flight limits, as ``--max-inflight`` / ``--max-inflight-bytes``
    give them: within what a checkpoint can save and resume (one rule for both)."""
    if type(max_inflight) is not int or not 1 <= max_inflight <= MAX_INFLIGHT:
        raise MinivmError(f"--max-inflight {max_inflight} is out of range: 1 .. {MAX_INFLIGHT} "
                         "requests (a checkpoint saves every request in flight)")
    if type(max_inflight_bytes) is not int or not 0 <= max_inflight_bytes <= MAX_INFLIGHT_BYTES:
        raise MinivmError(f"--max-inflight-bytes {max_inflight_bytes} is out of range: 0 .. "
                         f"{MAX_INFLIGHT_BYTES} bytes (a checkpoint saves the data of every "
                         "write in flight)")


class Disk:
    """Ports 0x20-0x23 (set up and issue), 0x24/0x25 (status), 0x26 (handler)."""

    name = "disk"
    priority = 1

    def __init__(self, backing, dma: DmaPort, code_size: int, latency: int = 100,
                 per_block: int = 10, max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES):
        check_inflight_limits(max_inflight, max_inflight_bytes)
        self.backing = backing            # current top disk layer (None: no disk)
        self.dma = dma
        self.code_size = code_size
        self.latency = latency
        self.per_block = per_block
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0           # bytes the queued requests move (reads and writes)
        self.reg_block = self.reg_addr = self.reg_count = 0
        self.next_id = 1
        self.last_completed = 0
        self.handler: int | None = None
        self.busy_until = 0
        self.queue: deque[Request] = deque()
        self.journal = None               # time travel (history.py): sees each write first
        self.probes = None                # catchpoints (probes.py): see each write too
        self.out_ports = {0x20: (self.set_block, False), 0x21: (self.set_addr, False),
                          0x22: (self.set_count, False), 0x23: (self.command, True),
                          0x26: (self.set_handler, False)}
        self.in_ports = {0x24: self.in_flight, 0x25: self.last_done}

    def set_block(self, value: int, tick: int = 0) -> None:
        self.reg_block = value

    def set_addr(self, value: int, tick: int = 0) -> None:
        self.reg_addr = value

    def set_count(self, value: int, tick: int = 0) -> None:
        self.reg_count = value

    def set_handler(self, value: int, tick: int = 0) -> None:
        self.handler = handler_address(value, self.code_size, self.name)

    def in_flight(self, tick: int = 0) -> int:
        return len(self.queue)

    def last_done(self, tick: int = 0) -> int:
        return self.last_completed

    def command(self, value: int, tick: int) -> None:
        """Issue a request (``out 0x23, 1|2``); it completes later, in issue order."""
        if value not in (Request.READ, Request.WRITE):
            raise GuestFault(f"unknown disk command {to_signed(value)} (1 = read, 2 = write)")
        if self.backing is None:
            raise GuestFault("disk request with no disk attached (run with --disk FILE; "
                             "create one with 'minivm disk create FILE SIZE')")
        block, addr, count = self.reg_block, self.reg_addr, self.reg_count
        if count & 0x8000_0000:
            raise GuestFault(f"disk request count {to_signed(count)} is negative")
        if block + count > self.backing.block_count:
            last = block + count - 1
            raise GuestFault(f"disk request for blocks {block}..{last} is outside the disk "
                             f"({self.backing.block_count} blocks, 0..{self.backing.block_count - 1})"
                             if count else
                             f"disk request at block {block} is outside the disk "
                             f"({self.backing.block_count} blocks)")
        nbytes = count * BLOCK_SIZE
        try:
            self.dma.check(addr, nbytes)
        except GuestFault:
            raise GuestFault(f"disk DMA range 0x{addr:x}..0x{addr + max(nbytes, 1) - 1:x} "
                             f"({count} blocks) is outside memory") from None
        if len(self.queue) >= self.max_inflight:
            raise GuestFault(f"too many disk requests in flight (the limit is {self.max_inflight})")
        if self.inflight_bytes + nbytes > self.max_inflight_bytes:
            raise GuestFault(f"too many bytes in flight: this request moves {nbytes} bytes "
                             f"({count} blocks), and {self.inflight_bytes} bytes are in "
                             f"flight already; the limit is {self.max_inflight_bytes} bytes "
                             "(--max-inflight-bytes)")
        start = max(tick, self.busy_until)
        done = start + self.latency + self.per_block * count
        request = Request(self.next_id, value, block, addr, count, tick, done,
                          None, self.backing)
        if value == Request.WRITE:
            request.data = self.dma.read_memory(addr, nbytes)
        else:
            self.dma.before_read_issued(request)
        self.next_id += 1
        self.busy_until = done
        self.queue.append(request)
        self.inflight_bytes += nbytes

    def next_event(self) -> int | None:
        return self.queue[0].done if self.queue else None

    def fire(self) -> tuple[int, bool]:
        """The oldest request completes: a write reaches the disk, a read lands in memory."""
        request = self.queue[0]
        self.complete(request)          # if the host write fails, it stays queued
        self.queue.popleft()
        self.inflight_bytes -= request.count * BLOCK_SIZE
        return request.done, self.handler is not None

    def complete(self, request: Request) -> None:
        if request.is_read:
            data = request.target.read_blocks(request.block, request.count)
            if self.probes is not None:           # catchpoints (probes.py): P5 or P7
                self.probes.disk_read(request)
            self.dma.land_read(request, data)
        else:
            if self.journal is not None:          # time travel: the old blocks first
                self.journal.before_write(request)
            if self.probes is not None:           # catchpoints (probes.py): P3, P9
                self.probes.disk_write(request)
            request.target.write_blocks(request.block, request.data)
        self.last_completed = request.id
        self.dma.request_done(request)

    def switch_to(self, layer) -> None:
        """New requests go to ``layer`` (P2: switch the VM to the overlay)."""
        self.backing = layer

    def pending_for(self, layer) -> list[Request]:
        """Queued requests that will reach ``layer`` when they complete."""
        return [r for r in self.queue if r.target is layer]

    def drain(self, now: int) -> list[Request]:
        """Complete every pending request now (P8); returns them in order."""
        done = []
        while self.queue:
            request = self.queue[0]
            request.done = now
            self.complete(request)
            self.queue.popleft()
            self.inflight_bytes -= request.count * BLOCK_SIZE
            done.append(request)
        self.busy_until = now
        return done

    @staticmethod
    def _check(values: dict, limits: Limits, path: str) -> None:
        """The rules between fields that a real run keeps (so that a hand-made
        state cannot ask for absurd work): requests in id and time order, below
        ``next_id``, inside the disk, each write with exactly its data."""
        queue = values["queue"]
        if len(queue) > values["max_inflight"]:
            raise StateError(f"{path}.queue", f"{len(queue)} requests in flight, more than "
                             f"the run's limit of {values['max_inflight']} (max_inflight)")
        nbytes = sum(r["count"] for r in queue) * BLOCK_SIZE
        if nbytes > values["max_inflight_bytes"]:
            raise StateError(f"{path}.queue", f"the requests in flight move {nbytes} bytes, "
                             f"more than the run's limit of {values['max_inflight_bytes']} "
                             "(max_inflight_bytes)")
        previous_id, previous_done = 0, 0
        for i, r in enumerate(queue):
            where = f"{path}.queue[{i}]"
            if r["id"] <= previous_id or r["id"] >= values["next_id"]:
                raise StateError(f"{where}.id", f"request {r['id']} is out of order (ids "
                                 f"increase, from {previous_id + 1} to next_id "
                                 f"{values['next_id']} - 1)")
            if r["issued"] > r["done"] or r["done"] < previous_done:
                raise StateError(f"{where}.done", f"request {r['id']} completes at tick "
                                 f"{r['done']}, before it was issued ({r['issued']}) or "
                                 f"before the request ahead of it ({previous_done})")
            if limits.disk_blocks is not None and r["block"] + r["count"] > limits.disk_blocks:
                raise StateError(f"{where}.block", f"request {r['id']} for blocks "
                                 f"{r['block']}..{r['block'] + r['count'] - 1} is outside the "
                                 f"disk ({limits.disk_blocks} blocks)")
            if r["command"] == Request.WRITE:
                if r["data"] is None or len(r["data"]) != r["count"] * BLOCK_SIZE:
                    raise StateError(f"{where}.data", f"write {r['id']} of {r['count']} "
                                     f"block(s) carries {show(r['data'])}, expected "
                                     f"{r['count'] * BLOCK_SIZE} bytes")
            elif r["data"] is not None:
                raise StateError(f"{where}.data", f"read {r['id']} carries data")
            previous_id, previous_done = r["id"], r["done"]

    def _put_queue(self, requests: list[dict]) -> None:
        self.queue = deque(Request(**r, target=self.backing) for r in requests)
        self.inflight_bytes = sum(r.count for r in self.queue) * BLOCK_SIZE

    STATE = Record("disk", [
        Field("block", Int(0, WORD_MASK), attr="reg_block"),
        Field("addr", Int(0, WORD_MASK), attr="reg_addr"),
        Field("count", Int(0, WORD_MASK), attr="reg_count"),
        Field("next_id", Int(1, MAX_COUNT)),
        Field("last_completed", Int(0, MAX_COUNT)),
        Field("handler", CodeAddr(optional=True)),
        Field("busy_until", Int(0, MAX_FUTURE)),
        Field("latency", Int(0, MAX_DELAY)),
        Field("per_block", Int(0, MAX_DELAY)),
        # The run's limits (--max-inflight, --max-inflight-bytes) are saved, so
        # that a resumed run faults where the original would (older files:
        # the defaults of their time).
        Field("max_inflight", Int(1, MAX_INFLIGHT), default=DEFAULT_MAX_INFLIGHT),
        Field("max_inflight_bytes", Int(0, MAX_INFLIGHT_BYTES),
              default=DEFAULT_MAX_INFLIGHT_BYTES),
        Field("queue", ListOf(REQUEST_STATE, max_len=MAX_INFLIGHT),
              put=_put_queue, doc="disk requests in flight"),
    ], check=_check)

    def save(self) -> dict:
        return self.STATE.save(self)

    def limits(self) -> Limits:
        return Limits(code_size=self.code_size,
                      disk_blocks=None if self.backing is None else self.backing.block_count)

    def restore(self, data: dict, limits: Limits | None = None) -> None:
        self.STATE.restore(self, data, limits or self.limits())


# --- interrupts and the event queue ------------------------------------------------------

#: A pending interrupt, saved as ``[tick, priority, seq, source]``.
PENDING_STATE = Record("interrupt", [
    Field("tick", Int(0, MAX_FUTURE)),
    Field("priority", Int(0, 1)),
    Field("seq", Int(0, MAX_COUNT)),
    Field("source", OneOf("timer", "disk")),
], as_list=True)


class InterruptController:
    """Enable flag plus the interrupts that are pending, in time order."""

    name = "interrupts"

    def __init__(self):
        self.enabled = False
        self._pending: list[tuple[int, int, int, str]] = []   # heap: (tick, priority, seq, source)
        self._seq = 0

    def raise_irq(self, tick: int, priority: int, source: str) -> None:
        if len(self._pending) >= MAX_PENDING_INTERRUPTS:
            raise GuestFault(f"more than {MAX_PENDING_INTERRUPTS} interrupts pending while "
                             "interrupts are disabled")
        heapq.heappush(self._pending, (tick, priority, self._seq, source))
        self._seq += 1

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pop(self) -> tuple[int, str]:
        tick, _, _, source = heapq.heappop(self._pending)
        return tick, source

    def pending(self) -> list[tuple[int, str]]:
        return [(t, s) for t, _, _, s in sorted(self._pending)]

    def _put_pending(self, items: list[dict]) -> None:
        self._pending = [(p["tick"], p["priority"], p["seq"], p["source"]) for p in items]
        heapq.heapify(self._pending)

    STATE = Record("interrupts", [
        Field("enabled", Bool()),
        Field("seq", Int(0, MAX_COUNT), attr="_seq"),
        Field("pending", ListOf(PENDING_STATE, max_len=MAX_PENDING_INTERRUPTS),
              get=lambda irq: sorted(irq._pending), put=_put_pending, doc="pending interrupts"),
    ])

    def save(self) -> dict:
        return self.STATE.save(self)

    def restore(self, data: dict, limits: Limits | None = None) -> None:
        self.STATE.restore(self, data, limits or Limits())


class EventQueue:
    """The devices' scheduled events, merged in virtual time.

    The sources are few (timer, disk), so the queue asks each for its next
    event instead of keeping a heap: the state then lives in the devices
    alone, and a restored machine needs no queue of its own.
    """

    def __init__(self, sources):
        self.sources = sorted(sources, key=lambda s: s.priority)
        self._timer = next((s for s in self.sources if isinstance(s, Timer)), None)

    def next_tick(self, skip=None) -> int | None:
        """The tick of the next event (of a source other than ``skip``)."""
        # runs at every boundary (an interrupt-heavy guest: every few hundred
        # ticks): a plain loop, no temporary lists
        best = None
        for source in self.sources:
            if source is skip:
                continue
            t = source.next_event()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def fire_due(self, now: int, on_interrupt: Callable[[int, int, str], None]) -> int:
        """Fire every event due at or before ``now`` in (tick, priority) order."""
        fired = 0
        while True:
            source = None
            best = now
            for candidate in self.sources:     # by priority: the first of equal ticks wins
                t = candidate.next_event()
                if t is not None and (t < best or (t == best and source is None)):
                    source, best = candidate, t
            if source is None:
                return fired
            tick, interrupts = source.fire(now) if source is self._timer else source.fire()
            fired += 1
            if interrupts:
                on_interrupt(tick, source.priority, source.name)
