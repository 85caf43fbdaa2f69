"""The Python API: minivm from a script, a notebook or a grader (docs/api.md).

``import minivm`` gives these names (the package re-exports them lazily, so
importing minivm stays cheap)::

    result = minivm.run("student.asm", input=b"3 4\\n", max_ticks=10**6)
    result.output, result.exit_status, result.stop, result.ticks, result.regs

    vm = minivm.boot("prog.asm", mem="64K")      # a machine to drive
    vm.feed(b"hello\\n"); vm.run(max_ticks=500); vm.step(3)
    vm.regs[1], vm.read(0x100, 16), vm.devices()
    path = vm.checkpoint("ck/before.mvc")       # the full protocol, finished
    vm.goto(120); vm.reverse_step(2)              # time travel
    later = minivm.restore(path)                  # another machine, same run

Everything here is built on the layers below (the assembler, the machine,
the checkpointer, resume, the time-travel history); nothing is private to
the command line. Errors a user can cause raise :class:`minivm.MinivmError`
(one readable message); a guest fault is not an exception but a result
(``result.stop == "fault"``, ``result.fault``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field

from . import isa
from .assembler import assemble as _assemble
from .checkpoint import Checkpointer
from .devices import BufferSink, ConsoleInput
from .disks import close_chain, open_disk
from .engine import DEFAULT_ENGINE
from .errors import GuestFault, MinivmError, show
from .history import History
from .image import Image
from .machine import Machine, whole_limit
from .memory import parse_size
from .resume import read_checkpoint, resume as _resume
from .store import FileStore

#: How many ticks a run goes between two looks at its output (``max_output``).
OUTPUT_CHECK_TICKS = 4096

__all__ = ["assemble", "load", "boot", "run", "restore", "VM", "Result", "Fault",
           "MinivmError", "GuestFault", "Image"]


def assemble(source: str, name: str = "<string>") -> Image:
    """Assemble source text into an image (a MinivmError locates any mistake)."""
    return _assemble(source, name)


def load(program) -> Image:
    """An image from a path (``.asm`` source or ``.mvb`` image), or an Image as is."""
    if isinstance(program, Image):
        return program
    from .program import load_program
    return load_program(os.fspath(program))


@dataclass
class Fault:
    """A guest fault: what happened, where."""
    reason: str
    pc: int | None
    tick: int | None
    location: str          # file:line of the instruction
    source: str            # its source text

    def __str__(self) -> str:
        return f"{self.location}: fault: {self.reason} (pc {self.pc}, tick {self.tick})"


@dataclass
class Result:
    """How a run ended. ``stop`` is one of ``halt``, ``fault``, ``limit``
    (``max_ticks`` reached), ``output-limit`` (``max_output`` bytes printed),
    ``breakpoint``, ``watch`` or ``interrupted``."""
    stop: str
    exit_status: int | None          # r0 & 0xFF after a halt, else None
    ticks: int
    pc: int
    output: bytes
    regs: list[int]
    fault: Fault | None = None
    checkpoints: list[str] = field(default_factory=list)
    #: how a resumed run was resumed (``minivm resume``: resumestats.ResumeStats
    #: as a dict), None for any other run
    resume: dict | None = None

    @property
    def halted(self) -> bool:
        return self.stop == "halt"

    def to_dict(self) -> dict:
        """As plain data (``minivm run --json``; docs/formats.md)."""
        data = asdict(self)
        data["output"] = self.output.decode("utf-8", errors="backslashreplace")
        data["output_bytes"] = len(self.output)
        data["registers"] = {isa.reg_name(i): v for i, v in enumerate(self.regs)}
        del data["regs"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


class VM:
    """One machine to drive: run, step, feed input, look, checkpoint, travel.

    Made by :func:`boot` or :func:`resume`. Its console output is collected
    (``output``); its checkpoints go to ``checkpoint_dir`` (a fresh
    temporary folder unless given). Close it (or use ``with``) to close its
    disk files.
    """

    def __init__(self, machine: Machine, checkpoint_dir: str | None = None,
                 history: bool = False, checkpoint_mode: str = "cow"):
        self.machine = machine
        self._own_dir = checkpoint_dir is None     # removed at close if nothing is in it
        self.checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="minivm-")
        self.checkpointer = Checkpointer(machine, FileStore(self.checkpoint_dir),
                                         mode=checkpoint_mode)
        self.history = History(machine, self.checkpointer) if history else None
        self._closed = False

    # ---- state -----------------------------------------------------------------------
    @property
    def output(self) -> bytes:
        """Everything the guest has printed so far."""
        return bytes(self.machine.console.sink.data)

    @property
    def regs(self) -> list[int]:
        """r0..r15 (r15 is sp), unsigned 32-bit values (a copy)."""
        return list(self.machine.regs[:isa.NUM_REGS])

    @property
    def pc(self) -> int:
        return self.machine.pc

    @property
    def tick(self) -> int:
        return self.machine.tick

    @property
    def halted(self) -> bool:
        return self.machine.halted

    @property
    def fault(self) -> Fault | None:
        return _fault(self.machine.fault)

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes of memory from ``addr`` (a GuestFault-free check first)."""
        self.machine.memory.check_range(addr, length, "read")
        return self.machine.memory.read_bytes(addr, length)

    def read_word(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def read_disk(self, block: int, count: int = 1) -> bytes:
        """``count`` blocks (512 bytes each) of the disk from ``block``, as the
        guest would read them now: through the overlay a checkpoint or a
        resume writes to, so what a resumed run wrote is there (a request
        still in flight is not, until it completes). MinivmError if the
        machine has no disk or the blocks are not all on it."""
        disk = self.machine.disk.backing
        if disk is None:
            raise MinivmError("this machine has no disk (give one: boot(..., disk=FILE))")
        if type(block) is not int or type(count) is not int:
            raise MinivmError(f"read_disk takes whole numbers, not {block!r} and {count!r}")
        if block < 0 or count < 1 or block + count > disk.block_count:
            raise MinivmError(f"blocks {block}..{block + count - 1} are not all on the disk "
                              f"({disk.block_count} blocks, 0..{disk.block_count - 1})")
        return disk.read_blocks(block, count)

    def symbol(self, name: str) -> int:
        """A label's or .equ name's value (NoSymbol, a MinivmError and a
        KeyError, if the program has none)."""
        image = self.machine.image
        if name not in image.symbols:
            known = ", ".join(sorted(image.symbols)[:12]) or "none"
            raise NoSymbol(f"{show(image.source_file or '<program>')} has no label or .equ "
                           f"named '{show(name)}' (it has: {known})")
        return image.symbols[name][1]

    def devices(self) -> dict:
        """The timer, console, disk and interrupt state, as saved in a checkpoint."""
        state = self.machine.save_state()
        return {k: state[k] for k in ("interrupts", "console", "timer", "disk")}

    # ---- running ------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Console input for the guest (port 0x02), after what it has not read yet."""
        data = _input_bytes(data)
        self.machine.console.source.feed(data)
        if self.history is not None:
            self.history.note_input(data)

    def run(self, max_ticks: int | None = None, max_output: int | None = None) -> Result:
        """Run until halt, fault, breakpoint, or a limit: ``max_ticks`` more
        ticks, or ``max_output`` bytes of output in all (checked every
        OUTPUT_CHECK_TICKS ticks; the output is cut at the limit)."""
        whole_limit("max_ticks", max_ticks, "ticks")
        whole_limit("max_output", max_output, "bytes")
        m = self.machine
        start = m.tick
        while True:
            left = None if max_ticks is None else start + max_ticks - m.tick
            chunk = left if max_output is None else (
                OUTPUT_CHECK_TICKS if left is None else min(left, OUTPUT_CHECK_TICKS))
            stop = m.run(chunk)
            reason = stop.reason
            if max_output is not None and len(m.console.sink.data) >= max_output:
                del m.console.sink.data[max_output:]
                reason = "output-limit"
                break
            if reason != "limit" or left is None or m.tick >= start + max_ticks:
                break
        if self.history is not None:
            self.history.note_position()
        if m.halted or m.fault is not None:
            self.checkpointer.finish_all()
        return self.result(reason)

    def step(self, count: int = 1) -> Result:
        """Execute ``count`` instructions (fewer at a halt, fault or breakpoint)."""
        return self.run(max_ticks=count) if count > 0 else self.result("limit")

    def result(self, stop: str = "limit") -> Result:
        return result_of(self.machine, stop, self.checkpointer)

    def break_at(self, where) -> None:
        """A breakpoint at a code label or instruction index."""
        pc = self.symbol(where) if isinstance(where, str) else int(where)
        self.machine.set_breakpoint(pc)

    # ---- checkpoints and time travel ----------------------------------------------------
    def checkpoint(self, path: str | None = None) -> str:
        """Take a checkpoint now (the whole protocol, P1-P10), finish saving
        it, and return its file's path (``path``, or one in checkpoint_dir)."""
        if path is None:
            job = self.checkpointer.take("api")
        else:
            folder, name = os.path.split(os.path.abspath(os.fspath(path)))
            name = name[:-4] if name.endswith(".mvc") else name
            cp, home = self.checkpointer, self.checkpointer.store
            cp.store = FileStore(folder)          # this one checkpoint goes there
            try:
                job = cp.take("api", name)
            finally:
                cp.store = home
        self.checkpointer.finish_all()
        return self._done(getattr(job, "job", job))   # precopy: the job of its final stop

    @staticmethod
    def _done(job) -> str:
        if job.status != "complete":
            raise MinivmError(f"checkpoint {job.name} failed: {job.error}")
        return job.location

    def _travel(self) -> History:
        if self.history is None:
            raise MinivmError("time travel needs a recorded run: boot(..., history=True)")
        return self.history

    def goto(self, tick: int) -> None:
        """Become exactly what the run was at ``tick`` (recorded runs only)."""
        self._travel().goto(tick)

    def reverse_step(self, count: int = 1) -> None:
        h = self._travel()
        h.goto(h.instruction_back(self.machine.tick, count))

    # ---- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.checkpointer.finish_all()
            close_chain(self.machine.disk.backing)
            if self._own_dir:
                try:                # a run that wrote nothing leaves no folder in /tmp
                    os.rmdir(self.checkpoint_dir)
                except OSError:     # its checkpoints (or overlay) are still wanted
                    pass

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def result_of(machine: Machine, stop: str, checkpointer=None) -> Result:
    """The Result of a machine that stopped for ``stop`` (its console sink a
    BufferSink), with the checkpoints ``checkpointer`` completed."""
    m = machine
    jobs = checkpointer.jobs if checkpointer is not None else []
    return Result(stop, m.regs[0] & 0xFF if m.halted else None, m.tick, m.pc,
                  bytes(m.console.sink.data), list(m.regs[:isa.NUM_REGS]), _fault(m.fault),
                  [job.location for job in jobs if job.status == "complete"])


def _fault(fault: GuestFault | None) -> Fault | None:
    if fault is None:
        return None
    return Fault(fault.reason, fault.pc, fault.tick, fault.location, fault.source)


class NoSymbol(MinivmError, KeyError):
    """VM.symbol (and break_at) of a name the program does not define."""

    def __str__(self) -> str:           # the message, not KeyError's repr of it
        return str(self.args[0])


def _input_bytes(data) -> bytes:
    """Console input as bytes: a str is taken as UTF-8 text (as the pytest fixture does)."""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def boot(program, *, mem: str | int = "1M", disk: str | None = None, input: bytes = b"",
         engine: str = DEFAULT_ENGINE, checkpoint_dir: str | None = None,
         history: bool = False, checkpoint_mode: str = "cow") -> VM:
    """A fresh machine at tick 0 running ``program`` (a path or an Image).
    ``disk`` is a raw disk image the guest writes to; ``history`` records the
    run for :meth:`VM.goto` / :meth:`VM.reverse_step`; ``checkpoint_mode``
    is ``cow``, ``stop-copy`` or ``precopy``, as ``--checkpoint-mode``."""
    image = load(program)
    size = parse_size(mem, "memory size") if isinstance(mem, str) else int(mem)
    layer = open_disk(disk) if disk else None
    try:
        machine = Machine(image, memory_size=size, disk=layer, console_sink=BufferSink(),
                          console_input=ConsoleInput(_input_bytes(input)), engine=engine)
    except BaseException:
        close_chain(layer)
        raise
    return VM(machine, checkpoint_dir, history, checkpoint_mode)


def run(program, *, input: bytes = b"", max_ticks: int | None = None,
        max_output: int | None = None, mem: str | int = "1M", disk: str | None = None,
        engine: str = DEFAULT_ENGINE) -> Result:
    """Assemble (or load) ``program``, run it to the end or a limit, and
    return the :class:`Result`."""
    with boot(program, mem=mem, disk=disk, input=input, engine=engine) as vm:
        return vm.run(max_ticks=max_ticks, max_output=max_output)


def restore(checkpoint: str, *, input: bytes = b"", engine: str = DEFAULT_ENGINE,
            checkpoint_dir: str | None = None, history: bool = False,
            checkpoint_mode: str = "cow", eager: bool = False) -> VM:
    """A machine rebuilt from a checkpoint file, ready to go on, as ``minivm
    resume`` does (its disk writes go to a fresh overlay in ``checkpoint_dir``).
    ``input`` is the console input from the checkpoint's point on. Memory
    pages are read on the guest's first access to each (lazy, the default),
    or all before it starts with ``eager=True``, as ``resume --eager``. (Named
    ``restore`` because ``minivm.resume`` is the module that implements it.)"""
    ckpt = read_checkpoint(os.fspath(checkpoint))
    folder = checkpoint_dir or tempfile.mkdtemp(prefix="minivm-")
    machine, _ = _resume(ckpt, FileStore(folder), console_sink=BufferSink(),
                         console_input=ConsoleInput(_input_bytes(input)), engine=engine,
                         eager=eager)
    vm = VM(machine, folder, history, checkpoint_mode)
    vm._own_dir = checkpoint_dir is None
    return vm


#: The pytest plugin's fixture offers it under the command line's name too.
resume = restore
