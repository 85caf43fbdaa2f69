"""The virtual devices (docs/isa.md, section 4) and the virtual-time event queue.

Each device owns its state and declares it through two methods, in the
manner of QEMU's VMStateDescription and Firecracker's ``Persist``:

* ``snapshot()`` returns plain data (ints, bytes, lists, dicts) that msgpack
  can store, and that is the device's *complete* state;
* ``restore(data)`` puts a fresh device into exactly that state.

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

from .errors import GuestFault
from .isa import WORD_MASK, to_signed

NO_HANDLER = WORD_MASK            # `out port, -1` clears a handler
BLOCK_SIZE = 512
MAX_PENDING_INTERRUPTS = 65536
DEFAULT_MAX_INFLIGHT = 1024


def _check_type(data: dict, key: str, kind, what: str):
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{what}: field '{key}' is missing or has the wrong type")
    return value


def _check_handler(data: dict, code_size: int, what: str):
    if "handler" not in data:
        raise ValueError(f"{what}: field 'handler' is missing")
    value = data["handler"]
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < code_size:
        raise ValueError(f"{what}: handler {value!r} is outside the code")
    return value


# --- console ------------------------------------------------------------------------

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

    def snapshot(self) -> dict:
        # Console input is the outside world: only how much was read is state.
        return {"input_consumed": self.input_consumed, "bytes_written": self.bytes_written}

    def restore(self, data: dict) -> None:
        self.input_consumed = _check_type(data, "input_consumed", int, "console state")
        self.bytes_written = _check_type(data, "bytes_written", int, "console state")
        if self.input_consumed < 0 or self.bytes_written < 0:
            raise ValueError("console state: negative byte counts")


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
        if value == NO_HANDLER:
            self.handler = None
        elif value < self.code_size:
            self.handler = value
        else:
            raise GuestFault(f"bad handler address {to_signed(value)} for the timer: the code "
                             f"has {self.code_size} instructions (use a code label, or -1 to clear)")

    def read_tick(self, tick: int) -> int:
        return tick & WORD_MASK

    def next_event(self) -> int | None:
        return self.next_fire

    def fire(self) -> tuple[int, bool]:
        """The due event happens; returns (its tick, whether it interrupts)."""
        tick = self.next_fire
        self.next_fire = tick + self.period
        self.fired += 1
        return tick, self.handler is not None

    def snapshot(self) -> dict:
        return {"period": self.period, "handler": self.handler,
                "next_fire": self.next_fire, "fired": self.fired}

    def restore(self, data: dict) -> None:
        self.period = _check_type(data, "period", int, "timer state")
        if not 0 <= self.period <= WORD_MASK:
            raise ValueError("timer state: period out of range")
        self.handler = _check_handler(data, self.code_size, "timer state")
        if "next_fire" not in data:
            raise ValueError("timer state: field 'next_fire' is missing")
        nxt = data["next_fire"]
        if nxt is not None and (type(nxt) is not int or nxt < 0):
            raise ValueError("timer state: next_fire is not a tick")
        if (nxt is None) != (self.period == 0):
            raise ValueError("timer state: next_fire does not match the period")
        self.next_fire = nxt
        self.fired = _check_type(data, "fired", int, "timer state")


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

    def to_list(self) -> list:
        return [self.id, self.command, self.block, self.addr, self.count,
                self.issued, self.done, self.data]

    def describe(self) -> str:
        kind = "read " if self.is_read else "write"
        return (f"#{self.id} {kind} blocks {self.block}..{self.block + self.count - 1} "
                f"{'->' if self.is_read else '<-'} mem 0x{self.addr:x} "
                f"(issued tick {self.issued}, done at tick {self.done})")


class Disk:
    """Ports 0x20-0x23 (set up and issue), 0x24/0x25 (status), 0x26 (handler)."""

    name = "disk"
    priority = 1

    def __init__(self, backing, dma: DmaPort, code_size: int, latency: int = 100,
                 per_block: int = 10, max_inflight: int = DEFAULT_MAX_INFLIGHT):
        self.backing = backing            # current top disk layer (None: no disk)
        self.dma = dma
        self.code_size = code_size
        self.latency = latency
        self.per_block = per_block
        self.max_inflight = max_inflight
        self.reg_block = self.reg_addr = self.reg_count = 0
        self.next_id = 1
        self.last_completed = 0
        self.handler: int | None = None
        self.busy_until = 0
        self.queue: deque[Request] = deque()
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
        if value == NO_HANDLER:
            self.handler = None
        elif value < self.code_size:
            self.handler = value
        else:
            raise GuestFault(f"bad handler address {to_signed(value)} for the disk: the code "
                             f"has {self.code_size} instructions (use a code label, or -1 to clear)")

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

    def next_event(self) -> int | None:
        return self.queue[0].done if self.queue else None

    def fire(self) -> tuple[int, bool]:
        """The oldest request completes: a write reaches the disk, a read lands in memory."""
        request = self.queue[0]
        self.complete(request)          # if the host write fails, it stays queued
        self.queue.popleft()
        return request.done, self.handler is not None

    def complete(self, request: Request) -> None:
        if request.is_read:
            data = request.target.read_blocks(request.block, request.count)
            self.dma.land_read(request, data)
        else:
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
            done.append(request)
        self.busy_until = now
        return done

    def snapshot(self) -> dict:
        return {"block": self.reg_block, "addr": self.reg_addr, "count": self.reg_count,
                "next_id": self.next_id, "last_completed": self.last_completed,
                "handler": self.handler, "busy_until": self.busy_until,
                "latency": self.latency, "per_block": self.per_block,
                "queue": [r.to_list() for r in self.queue]}

    def restore(self, data: dict) -> None:
        what = "disk state"
        for key in ("block", "addr", "count"):
            value = _check_type(data, key, int, what)
            if not 0 <= value <= WORD_MASK:
                raise ValueError(f"{what}: register {key} out of range")
        self.reg_block, self.reg_addr, self.reg_count = data["block"], data["addr"], data["count"]
        self.next_id = _check_type(data, "next_id", int, what)
        self.last_completed = _check_type(data, "last_completed", int, what)
        self.handler = _check_handler(data, self.code_size, what)
        self.busy_until = _check_type(data, "busy_until", int, what)
        self.latency = _check_type(data, "latency", int, what)
        self.per_block = _check_type(data, "per_block", int, what)
        if self.latency < 0 or self.per_block < 0 or self.next_id < 1:
            raise ValueError(f"{what}: timing values out of range")
        queue = _check_type(data, "queue", list, what)
        if len(queue) > self.max_inflight:
            raise ValueError(f"{what}: {len(queue)} requests in flight, more than the limit "
                             f"of {self.max_inflight}")
        self.queue = deque()
        previous_id, previous_done = 0, 0
        for item in queue:
            if (not isinstance(item, list) or len(item) != 8
                    or not all(type(x) is int for x in item[:7])):
                raise ValueError(f"{what}: a queued request is malformed")
            rid, command, block, addr, count, issued, done, payload = item
            if command not in (1, 2) or count < 0 or block < 0 or addr < 0 or rid <= previous_id \
                    or rid >= self.next_id or done < previous_done or issued > done:
                raise ValueError(f"{what}: queued request {rid} has impossible values")
            if self.backing is not None and block + count > self.backing.block_count:
                raise ValueError(f"{what}: queued request {rid} is outside the disk")
            self.dma.check(addr, count * BLOCK_SIZE)
            if command == Request.WRITE:
                if not isinstance(payload, bytes) or len(payload) != count * BLOCK_SIZE:
                    raise ValueError(f"{what}: queued write {rid} has the wrong amount of data")
            elif payload is not None:
                raise ValueError(f"{what}: queued read {rid} carries data")
            self.queue.append(Request(rid, command, block, addr, count, issued, done,
                                      payload, self.backing))
            previous_id, previous_done = rid, done


# --- interrupts and the event queue ------------------------------------------------------

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

    def snapshot(self) -> dict:
        return {"enabled": self.enabled, "seq": self._seq,
                "pending": [list(p) for p in sorted(self._pending)]}

    def restore(self, data: dict) -> None:
        enabled = data.get("enabled")
        if not isinstance(enabled, bool):
            raise ValueError("interrupt state: 'enabled' is not a boolean")
        self.enabled = enabled
        self._seq = _check_type(data, "seq", int, "interrupt state")
        pending = _check_type(data, "pending", list, "interrupt state")
        if len(pending) > MAX_PENDING_INTERRUPTS:
            raise ValueError("interrupt state: too many pending interrupts")
        self._pending = []
        for item in pending:
            if (not isinstance(item, list) or len(item) != 4
                    or not all(type(x) is int for x in item[:3])
                    or item[3] not in ("timer", "disk")):
                raise ValueError("interrupt state: a pending interrupt is malformed")
            self._pending.append(tuple(item))
        heapq.heapify(self._pending)


class EventQueue:
    """The devices' scheduled events, merged in virtual time.

    The sources are few (timer, disk), so the queue asks each for its next
    event instead of keeping a heap: the state then lives in the devices
    alone, and a restored machine needs no queue of its own.
    """

    def __init__(self, sources):
        self.sources = sorted(sources, key=lambda s: s.priority)

    def next_tick(self) -> int | None:
        ticks = [t for t in (s.next_event() for s in self.sources) if t is not None]
        return min(ticks) if ticks else None

    def fire_due(self, now: int, on_interrupt: Callable[[int, int, str], None]) -> int:
        """Fire every event due at or before ``now`` in (tick, priority) order."""
        fired = 0
        while True:
            best = None
            for source in self.sources:
                t = source.next_event()
                if t is not None and t <= now and (best is None or t < best[0]):
                    best = (t, source)
            if best is None:
                return fired
            source = best[1]
            tick, interrupts = source.fire()
            fired += 1
            if interrupts:
                on_interrupt(tick, source.priority, source.name)
