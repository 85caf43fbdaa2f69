"""The REPL's :class:`Session`: a machine (or none yet), its breakpoint and
checkpoint books, and the command boundary (docs/repl.md).

Nothing here needs a terminal: the front end (frontend.py) and the tests call
:meth:`Session.execute` with a line of text, and everything the session has
to say - its own messages and the guest's console output, in the order they
happen - goes to one text stream (``out``, default ``sys.stdout``).

The session uses only the machine's public interface (docs/architecture.md):
``Machine.run`` with ``max_ticks`` for stepping, ``set_breakpoint`` and a
temporary breakpoint for ``next``, ``watches``, ``stop_requested`` for
Ctrl-C, ``Checkpointer.take("repl", name)`` for checkpoints and
``checkpoint.read_checkpoint`` + ``resume`` for ``restore``. The commands
themselves are in ``commands/``, one module per group.
"""

from __future__ import annotations

import difflib
import os
import re

from .. import isa
from ..assembler import evaluate_expression
from ..checkpoint import SLICE_TICKS
from ..devices import DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT_BYTES, MAX_DELAY, ConsoleInput
from ..disks import close_chain, open_disk
from ..engine import DEFAULT_ENGINE, select_engine
from ..errors import GuestFault, MinivmError, show
from ..history import History
from ..machine import Machine
from ..memory import format_size, parse_size
from ..probes import Probes
from ..store import CHECKPOINT_SUFFIX, FileStore
from .books import Breakpoints, CheckpointBook, InputLog
from . import guestrun, travel
from .output import GuestSink, Output
from .parsing import CommandError
from .places import Places, show_path
from . import catching
from .registry import Command, invoke, resolve_command

#: Pages the background save writes per slice (a slice is every
#: checkpoint.SLICE_TICKS guest ticks). A fixed number instead of the
#: host-time budget `minivm run` uses, so that a REPL session (and a classroom
#: transcript) shows the same saving progress every time.
REPL_PAGES_PER_SLICE = 16
REG_RE = re.compile(r"^(?:r(\d{1,2})|sp)$", re.IGNORECASE)


def register_index(name: str) -> int | None:
    """r0..r15 or sp -> its index; anything else -> None."""
    match = REG_RE.match(name)
    if not match or (match.group(1) is not None and int(match.group(1)) >= isa.NUM_REGS):
        return None
    return isa.SP if match.group(1) is None else int(match.group(1))


class Session:
    """One REPL session: a machine (or none yet), breakpoints, checkpoints."""

    def __init__(self, program: str | None = None, *, mem: str = "1M", disk: str | None = None,
                 disk_latency: int = 100, disk_per_block: int = 10,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
                 checkpoint_dir: str = "checkpoints", out=None,
                 pages_per_slice: int = REPL_PAGES_PER_SLICE, handle_sigint: bool = True,
                 engine: str = DEFAULT_ENGINE, history: bool = True,
                 history_budget: int | None = None, history_interval: int | None = None):
        self.out = Output(out)
        self.memory_size = parse_size(mem, "memory size")
        for what, value in (("disk latency", disk_latency), ("disk per-block time", disk_per_block)):
            if not 0 <= value <= MAX_DELAY:
                raise MinivmError(f"the {what} {value} is outside 0..{MAX_DELAY} ticks")
        self.disk_path = disk
        self.disk_latency = disk_latency
        self.disk_per_block = disk_per_block
        self.max_inflight, self.max_inflight_bytes = max_inflight, max_inflight_bytes
        self.store = FileStore(checkpoint_dir)
        self.pages_per_slice, self.save_interval = pages_per_slice, SLICE_TICKS  # set save-rate
        self.handle_sigint = handle_sigint
        select_engine(engine)                  # an unknown name: a clear error now
        self.engine = engine
        self.image = None
        self.places: Places | None = None
        self.program_path: str | None = None
        self.origin = ""                       # what the machine came from
        self.machine: Machine | None = None
        self.checkpointer: guestrun.SessionCheckpointer | None = None
        self.checkpoints = CheckpointBook()
        self.past_runs: list = []              # (origin, checkpointer) of replaced machines
        self.breakpoints = Breakpoints()
        self.probes = Probes()                 # armed from the book's catchpoints (catching.py)
        self.errors, self.quit_requested = 0, False
        self.last_stop = ""
        self.last_command: Command | None = None
        self.prev_regs: list[int] | None = None  # before the last run/step: regs marks changes
        self.x_next: tuple[int, int] | None = None  # where a bare 'x' continues
        self.pause_hook = None                 # called by 'pause' (minivm demo: wait for Enter)
        self.input_log = InputLog()           # console input of this run's lineage
        self.pending_input = bytearray()       # fed after a halt: for the next run
        self.sigint_seen = False
        self.ctrl_c_echoed = False             # the terminal echoed ^C on the guest's line
        self.while_running = None              # the front end's terminal guard (frontend.py)
        # time travel (travel.py): the recorded run, its settings (None: the
        # defaults), the jumps 'undo' takes back and where its checkpoints go
        self.history: History | None = None
        self.history_on, self.history_budget = history, history_budget
        self.history_interval, self.undo_points, self.undo_store = history_interval, [], None
        if program is not None:
            self.load(program)

    @property
    def jobs(self) -> list:
        """Every checkpoint taken in this session."""
        return self.checkpoints.jobs

    # ==== the command boundary ========================================================
    def execute(self, line: str) -> bool:
        """Run one command line; returns False if it was an error. Never raises
        for anything a user can do: errors are printed as one line (or a few,
        for an assembly error with its caret) and the session goes on."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        word, _, rest = text.partition(" ")
        try:
            cmd = resolve_command(word)
            self.last_command = cmd
            try:
                invoke(self, cmd, rest.strip())
            finally:
                self.report_jobs()
                catching.report(self, stopped=False)   # caught at the prompt, or left over
            return True
        except GuestFault as exc:          # e.g. 'set' out of range: not a guest fault
            self.error(exc.reason)
        except MinivmError as exc:
            self.error(str(exc))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            self.error(f"{exc.strerror or exc}{where}")
        except KeyboardInterrupt:
            self.error("interrupted; the session goes on ('status' shows where the machine is)")
        except RecursionError:
            self.error("that expression is nested too deeply")
        except MemoryError:
            self.error("out of memory: that command needed more memory than the host gives "
                       "minivm; the session goes on")
        except Exception as exc:           # a bug, but never a traceback at the prompt
            self.error(f"internal error: {type(exc).__name__}: {exc} (please report this; "
                       "the session goes on)")
        finally:
            self.out.flush()
        return False

    def error(self, message: str) -> None:
        self.errors += 1
        self.out.text(f"error: {message}")

    def say(self, message: str = "") -> None:
        self.out.text(message)

    def say_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.out.text(line)

    # ==== state shown by the prompt and toolbar =========================================
    def prompt_text(self) -> str:
        m = self.machine
        if m is None:
            return "minivm> "
        if m.fault is not None:
            return f"minivm[fault tick {m.tick} pc {m.pc}]> "
        if m.halted:
            return f"minivm[halted tick {m.tick}]> "
        return f"minivm[tick {m.tick} pc {m.pc}]> "

    def saving_status(self) -> str:
        parts = []
        for job in self.checkpoints.saving():
            text = f"saving {job.name}: {job.pages_done} of {job.pages_total} pages"
            if job.inflight_reads:
                text += f" (waiting for {len(job.inflight_reads)} in-flight read(s), P5)"
            parts.append(text)
        return "; ".join(parts)

    def toolbar_text(self) -> str:
        m = self.machine
        if m is None:
            return " no program loaded: 'load PROG' (Tab completes file names) | 'help' lists commands"
        fields = [f" tick {m.tick}"]
        if m.fault is not None:
            fields.append(f"FAULT at pc {m.pc} {self.loc(m.pc)}")
        elif m.halted:
            fields.append(f"halted, exit status {m.regs[0] & 0xFF}")
        else:
            fields.append(self.describe(m.pc))
        saving = self.saving_status()
        if saving:
            fields.append(saving)
        elif self.last_stop:
            fields.append(self.last_stop)
        return " | ".join(fields)

    # ==== what commands need ===========================================================
    def require_machine(self) -> Machine:
        if self.machine is None:
            raise CommandError("no program loaded; 'load PROG' first (or 'restore CKPT')")
        return self.machine

    def check_runnable(self, verb: str) -> Machine:
        m = self.require_machine()
        if m.fault is not None:
            raise CommandError(f"the machine has faulted ({m.fault.reason}); "
                               "'restore' a checkpoint or 'reset' to start again")
        if m.halted:
            raise CommandError(f"the program has halted (exit status {m.regs[0] & 0xFF}); "
                               f"nothing to {verb}: 'run' or 'reset' starts it again")
        return m

    # ==== names, locations, values =======================================================
    def label_of(self, pc: int) -> str:
        return self.places.label_of(pc)

    def source_of(self, pc: int) -> str:
        return self.places.source_of(pc)

    def describe(self, pc: int) -> str:
        return self.places.describe(pc)

    def loc(self, pc: int) -> str:
        return self.places.loc(pc)

    def data_label_at(self, addr: int) -> str:
        return self.places.data_label_at(addr) if self.places else ""

    show_path = staticmethod(show_path)

    def name_value(self, name: str, want: str) -> int:
        """A name in an expression: a register, pc, tick, a label or .equ name.
        ``want`` ("code", "data" or "value") refuses the wrong kind of label."""
        index = register_index(name)
        if index is not None:
            return self.require_machine().regs[index]
        if name.lower() == "pc":
            return self.require_machine().pc
        if name.lower() == "tick":
            return self.require_machine().tick
        if self.image is None:
            raise CommandError(f"'{name}' is not known: no program is loaded")
        symbol = self.image.symbols.get(name)
        if symbol is None:
            close = difflib.get_close_matches(name, list(self.image.symbols), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise CommandError(f"no label or register named '{name}'{hint}")
        section, value = symbol
        if want == "code" and section == "data":
            raise CommandError(f"'{name}' is a data label (byte address {value:#x}), "
                               "not a code address")
        if want == "data" and section == "text":
            raise CommandError(f"'{name}' is a code label (instruction {value}); this needs a "
                               "memory address (a data label, number or register)")
        return value

    def read_word(self, addr: int) -> int:
        m = self.require_machine()
        self.check_addr(addr, 4)
        return m.memory.load_word(addr)

    def check_addr(self, addr: int, length: int = 1) -> None:
        size = self.require_machine().memory.size
        if not 0 <= addr or addr + length > size:
            raise CommandError(f"address {addr:#x} is outside memory "
                               f"({format_size(size)}, 0x0 .. {size - 1:#x})")

    def evaluate(self, text: str, want: str = "value") -> int:
        """A command argument's value, with the assembler's expression rules
        (grammar.lark ``expr_start``) and the session's names."""
        return evaluate_expression(text, lambda name: self.name_value(name, want), self.read_word)

    def code_address(self, text: str) -> int:
        """A breakpoint/disasm location: label, number, expression or file:line."""
        m = self.require_machine()
        line = re.fullmatch(r"(?P<file>[^\s:]*):(?P<line>\d+)", text)
        if line:
            return self._line_address(line.group("file"), int(line.group("line")))
        pc = self.evaluate(text, "code")
        if not 0 <= pc < m.ncode:
            raise CommandError(f"no instruction at {pc}: the code has {m.ncode} "
                               f"instructions (0..{m.ncode - 1})")
        return pc

    def _line_address(self, filename: str, line: int) -> int:
        pc, note = self.places.line_address(filename, line)
        if note:
            self.say(note)
        return pc

    # ==== machines: load, reset, restore =================================================
    def sink(self) -> GuestSink:
        return GuestSink(self.out)

    def install(self, machine: Machine, image, origin: str) -> None:
        """Make ``machine`` the session's machine (after load, reset or restore)."""
        self._retire_machine()
        same = self.image is not None and self.image.same_program(image)
        self.image = image
        self.places = Places(image)
        self.machine = machine
        self.origin = origin
        self.checkpointer = guestrun.new_checkpointer(self, machine)
        book = self.breakpoints
        if not same and (book.breaks or book.watches):
            self.say(f"(a different program: {len(book.breaks)} breakpoint(s) and "
                     f"{len(book.watches)} watchpoint(s) deleted)")
            book.clear()
        book.install(machine)
        catching.sync(self)
        travel.start_history(self, only_if_on=True)
        self.prev_regs = None
        self.x_next = None
        self.last_stop = ""

    def _retire_machine(self) -> None:
        """The current machine is being replaced: finish its checkpoints (as
        `minivm run` does when a run ends) and close its disk files."""
        if self.machine is None:
            return
        travel.stop_history(self, keep_undo=True)
        if self.checkpointer is not None:
            self.checkpointer.finish_all()
        self.report_jobs()
        guestrun.retire_checkpointer(self)
        close_chain(self.machine.disk.backing)
        self.machine = None
        self.checkpointer = None

    def close(self) -> None:
        """End of the session: checkpoints still saving are completed."""
        saving = [job.name for job in self.checkpoints.saving()]
        if saving:
            self.say(f"finishing {', '.join(saving)} before quitting ...")
        self._retire_machine()
        self.out.flush()

    def new_machine(self, image) -> Machine:
        disk = open_disk(self.disk_path) if self.disk_path else None
        try:
            return Machine(image, memory_size=self.memory_size, disk=disk,
                           console_sink=self.sink(), console_input=ConsoleInput(),
                           disk_latency=self.disk_latency, disk_per_block=self.disk_per_block,
                           max_inflight=self.max_inflight,
                           max_inflight_bytes=self.max_inflight_bytes, engine=self.engine)
        except BaseException:
            close_chain(disk)
            raise

    def load(self, path: str) -> None:
        from ..program import load_program
        image = load_program(path)
        machine = self.new_machine(image)
        self.program_path = path
        self.input_log = InputLog()
        old = self.machine
        self.install(machine, image, path)
        guestrun.carry_input(self, old, keep=False)
        data = f", {len(image.data)} data bytes" if image.data else ""
        parts = [f"loaded {path}: {len(image.code)} instructions{data}",
                 f"memory {format_size(self.memory_size)}"]
        parts += [f"disk {show_path(self.disk_path)}"] if self.disk_path else []
        line = "; ".join(parts)      # on two lines if it would not fit 80 columns
        self.say(line if len(line) <= 80 else parts[0] + ";\n  " + "; ".join(parts[1:]))
        self.say(f"=> {self.describe(machine.pc)}")

    def reset(self) -> None:
        """A fresh machine at tick 0 with the program re-read (edits are picked up)."""
        self.require_machine()
        if self.program_path is None:
            image, origin = self.image, self.origin
        else:
            from ..program import load_program
            image, origin = load_program(self.program_path), self.program_path
        machine = self.new_machine(image)
        self.input_log = InputLog()
        old = self.machine
        self.install(machine, image, origin)
        self.say("reset: a fresh machine at tick 0")
        guestrun.carry_input(self, old, keep=True)
        self.say(f"=> {self.describe(machine.pc)}")

    # ==== running ============================================================================
    def running(self):
        """The context of every command that runs the guest (guestrun.running)."""
        return guestrun.running(self)

    # ==== checkpoints ==============================================================================
    def report_jobs(self) -> None:
        """Announce each checkpoint once, when it completes or fails."""
        for job in self.checkpoints.to_announce():
            if job.status == "complete":
                self.say(f"checkpoint {job.name} is complete: {job.pages_saved} page(s) "
                         f"-> {show_path(job.location)}")
            else:
                self.say(f"checkpoint {job.name} failed: {job.error}")

    def resolve_checkpoint(self, spec: str) -> tuple[str, str]:
        """(name, path) of a checkpoint given by name or file path; one still
        saving is finished first."""
        job = self.checkpoints.find(spec)
        if job is not None:
            if job.status == "saving":
                if self.checkpointer is not None and job in self.checkpointer.jobs:
                    self.checkpointer.sync()
                    self.report_jobs()
                if job.status == "saving":
                    raise CommandError(f"{job.name} is still saving and waits for disk "
                                       "requests in flight (P5); 'continue' or 'step' a "
                                       "little first")
            if job.status == "failed":
                raise CommandError(f"{job.name} failed: {job.error}")
            return job.name, job.location
        if spec in self.store.names():
            return spec, self.store.location(spec)
        if os.path.isfile(spec):
            name = os.path.basename(spec)
            if name.endswith(CHECKPOINT_SUFFIX):
                name = name[:-len(CHECKPOINT_SUFFIX)]
            return name, spec
        known = sorted(self.checkpoints.names() | set(self.store.names()))
        close = difflib.get_close_matches(spec, known, n=1)
        hint = f"; did you mean '{show(close[0])}'?" if close else ""
        listing = f" (known: {', '.join(show(k) for k in known[:8])}" \
            f"{' ...' if len(known) > 8 else ''})" \
            if known else " (none taken yet)"
        raise CommandError(f"no checkpoint named '{spec}'{hint}{listing}; or give a .mvc file path")
