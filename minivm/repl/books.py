"""What a session keeps besides its machine: the breakpoint book (breakpoints,
watchpoints and their shared numbering) and the checkpoint book (the
checkpoints taken, the console input each one's run had been fed, summaries
of checkpoint files from earlier sessions)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..machine import watched_register_name
from ..resume import read_checkpoint
from ..errors import MinivmError


class InputLog:
    """The console input fed in one run's lineage, by position in the input
    stream: the bytes from position ``start`` on (those before it were fed in
    a run this session did not see, e.g. a checkpoint file from an earlier
    session, and are not kept, so a file's ``input_consumed`` costs nothing).
    ``log += data`` feeds more; checkpoints share the log of their run."""

    def __init__(self, start: int = 0, data: bytes = b""):
        self.start = start
        self.data = bytearray(data)

    def __iadd__(self, data: bytes) -> "InputLog":
        self.data += data
        return self

    def after(self, consumed: int) -> bytes:
        """What was fed after the first ``consumed`` bytes (to be fed again on
        a restore); empty when that point is before what this log knows."""
        if consumed < self.start:
            return b""
        return bytes(self.data[consumed - self.start:])

    def fork(self, consumed: int) -> "InputLog":
        """A new lineage that continues from position ``consumed`` of this one."""
        return InputLog(consumed, self.after(consumed))


@dataclass
class Breakpoint:
    number: int
    pc: int
    spec: str
    hits: int = 0


@dataclass
class Watchpoint:
    """A watch on the word at ``addr``, or (``reg`` not None) on a register:
    its index, 16 for the pc (Machine.reg_watches)."""
    number: int
    addr: int
    spec: str
    hits: int = 0
    reg: int | None = None

    @property
    def key(self):
        """What a watch stop names (Stop detail): the address or the register's name."""
        return self.addr if self.reg is None else watched_register_name(self.reg)


@dataclass
class Catchpoint:
    """A protocol step to stop at (probes.EVENTS), for one page or block or any."""
    number: int
    event: str
    arg: int | None
    spec: str
    hits: int = 0

    def matches(self, hit) -> bool:
        if self.event != hit.event:
            return False
        if self.arg is None:
            return True
        return self.arg in hit.arg if isinstance(hit.arg, range) else self.arg == hit.arg


class Breakpoints:
    """Breakpoints, watchpoints and catchpoints, numbered together from 1 (as
    in gdb). The book only records; the session mirrors it into the machine."""

    def __init__(self):
        self.breaks: dict[int, Breakpoint] = {}
        self.watches: dict[int, Watchpoint] = {}
        self.catches: dict[int, Catchpoint] = {}
        self._next_number = 1

    def __len__(self) -> int:
        return len(self.breaks) + len(self.watches) + len(self.catches)

    def numbers(self) -> list[int]:
        return sorted(set(self.breaks) | set(self.watches) | set(self.catches))

    def __contains__(self, number: int) -> bool:
        return number in self.breaks or number in self.watches or number in self.catches

    def _number(self) -> int:
        number = self._next_number
        self._next_number += 1
        return number

    def add_break(self, pc: int, spec: str) -> Breakpoint:
        bp = Breakpoint(self._number(), pc, spec)
        self.breaks[bp.number] = bp
        return bp

    def add_watch(self, addr: int, spec: str, reg: int | None = None) -> Watchpoint:
        wp = Watchpoint(self._number(), addr, spec, reg=reg)
        self.watches[wp.number] = wp
        return wp

    def add_catch(self, event: str, arg: int | None, spec: str) -> Catchpoint:
        cp = Catchpoint(self._number(), event, arg, spec)
        self.catches[cp.number] = cp
        return cp

    def catch_of(self, event: str, arg: int | None) -> Catchpoint | None:
        return next((cp for cp in self.catches.values()
                     if cp.event == event and cp.arg == arg), None)

    def hit_catches(self, hit) -> list[Catchpoint]:
        """Count a caught event; the catchpoints it matches."""
        matched = [cp for cp in self.catches.values() if cp.matches(hit)]
        for cp in matched:
            cp.hits += 1
        return matched

    def break_at(self, pc: int) -> Breakpoint | None:
        return next((bp for bp in self.breaks.values() if bp.pc == pc), None)

    def watch_at(self, addr: int) -> Watchpoint | None:
        return next((wp for wp in self.watches.values()
                     if wp.reg is None and wp.addr == addr), None)

    def watch_of_register(self, reg: int) -> Watchpoint | None:
        return next((wp for wp in self.watches.values() if wp.reg == reg), None)

    def hit_breaks(self, pc: int) -> list[Breakpoint]:
        """Count a stop at ``pc``; the breakpoints that caused it."""
        hit = [bp for bp in self.breaks.values() if bp.pc == pc]
        for bp in hit:
            bp.hits += 1
        return hit

    def hit_watches(self, key) -> list[Watchpoint]:
        """``key``: the address, or the register's name, a watch stop names."""
        hit = [wp for wp in self.watches.values() if wp.key == key]
        for wp in hit:
            wp.hits += 1
        return hit

    def remove(self, number: int, machine) -> None:
        """Forget ``number``; clear it in ``machine`` (if any) unless another
        breakpoint is at the same pc."""
        if number in self.breaks:
            bp = self.breaks.pop(number)
            if machine is not None and self.break_at(bp.pc) is None:
                machine.clear_breakpoint(bp.pc)
        elif number in self.watches:
            wp = self.watches.pop(number)
            if machine is not None and wp.reg is not None:
                machine.reg_watches.pop(wp.reg, None)
            elif machine is not None:
                machine.watches.pop(wp.addr, None)
        else:
            del self.catches[number]          # the session re-arms its probes

    def clear(self) -> None:
        """Forget the breakpoints and watchpoints (a different program);
        catchpoints name protocol steps, which every program has: they stay."""
        self.breaks.clear()
        self.watches.clear()

    def install(self, machine) -> None:
        """Set every breakpoint and watch in a new machine."""
        for bp in self.breaks.values():
            machine.set_breakpoint(bp.pc)
        for wp in self.watches.values():
            if wp.reg is not None:
                machine.reg_watches[wp.reg] = machine.register_value(wp.reg)
            elif wp.addr + 4 <= machine.memory.size:
                machine.watches[wp.addr] = machine.memory.load_word(wp.addr)


class CheckpointBook:
    """The checkpoints of a session and what restoring one needs."""

    #: files larger than this are listed without being read
    LARGE = 16 << 20

    def __init__(self):
        self.jobs: list = []                   # every checkpoint taken in this session
        self._input: dict[str, InputLog] = {}
        self._announced: set[int] = set()
        self._file_meta: dict = {}

    def add(self, job, input_log: InputLog) -> None:
        """A checkpoint taken while the run had been fed ``input_log``."""
        self.jobs.append(job)
        self._input[job.name] = input_log

    def __contains__(self, job) -> bool:
        return job in self.jobs

    def names(self) -> set[str]:
        return {job.name for job in self.jobs}

    def saving(self) -> list:
        return [job for job in self.jobs if job.status == "saving"]

    def find(self, name: str):
        """The newest job called ``name``, or None."""
        return next((job for job in reversed(self.jobs) if job.name == name), None)

    def input_lineage(self, name: str) -> InputLog | None:
        return self._input.get(name)

    def to_announce(self) -> list:
        """Jobs that completed or failed and have not been announced yet."""
        done = []
        for job in self.jobs:
            if job.status == "saving" or id(job) in self._announced:
                continue
            self._announced.add(id(job))
            done.append(job)
        return done

    def file_summary(self, path: str) -> tuple[str, str]:
        """(tick, state) of a checkpoint file from an earlier session, cached
        by path, modification time and size."""
        try:
            stat = os.stat(path)
        except OSError as exc:
            return "?", f"unreadable: {exc.strerror}"
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._file_meta:
            if stat.st_size > self.LARGE:
                self._file_meta[key] = ("?", "complete (earlier session, not read: large)")
            else:
                try:
                    ckpt = read_checkpoint(path)
                    self._file_meta[key] = (str(ckpt.tick), "complete (earlier session)")
                except MinivmError as exc:
                    self._file_meta[key] = ("?", f"unreadable: {exc}")
        return self._file_meta[key]
