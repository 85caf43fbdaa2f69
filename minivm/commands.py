"""The REPL's command layer: a :class:`Session` that owns a machine and runs
one command line at a time (SPEC section 5, docs/repl.md).

Nothing here needs a terminal: the interactive layer (repl.py) and the tests
call :meth:`Session.execute` with a line of text, and everything the session
has to say - its own messages and the guest's console output, in the order
they happen - goes to one text stream (``out``, default ``sys.stdout``).

The session uses only the machine's public interface (docs/architecture.md):
``Machine.run`` with ``max_ticks`` for stepping, ``set_breakpoint`` and a
temporary breakpoint for ``next``, ``watches``, ``stop_requested`` for
Ctrl-C, ``Checkpointer.take("repl", name)`` for checkpoints and
``checkpoint.read_checkpoint`` + ``resume`` for ``restore``.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import signal
import sys
import textwrap
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from . import isa
from .checkpoint import Checkpointer
from .resume import read_checkpoint, resolve_disk_chain, resume
from .devices import BLOCK_SIZE, ConsoleInput
from .disasm import format_instruction
from .errors import GuestFault, MinivmError
from .isa import WORD_MASK, to_signed
from .machine import Machine, Stop
from .memory import PAGE_SIZE, format_size, parse_size
from .report import device_changes, index_ranges
from .store import CHECKPOINT_SUFFIX, FileStore

#: Pages the background save writes per slice (a slice is every
#: checkpoint.SLICE_TICKS guest ticks). A fixed number instead of the
#: host-time budget `minivm run` uses, so that a REPL session (and a classroom
#: transcript) shows the same saving progress every time.
REPL_PAGES_PER_SLICE = 16
PAGES_PER_ROW = 64
MAX_LISTED = 20
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
LEGEND = ("legend: . untouched  p private  S shared with the checkpoint, not yet saved\n"
          "        s shared, saved  C copied, original not yet saved  c copied, original saved")


class CommandError(MinivmError):
    """A bad command line: printed as one line, the session goes on."""


# --- output: the session's text and the guest's console, in order ---------------------

class Output:
    """One text stream for the session's messages and the guest's console bytes.

    The guest may leave a line unfinished (``out 0x01, r1`` with no newline);
    the session's next message then starts on a fresh line, and the newline
    the guest prints next is not doubled.
    """

    def __init__(self, stream=None):
        self._stream = stream
        self.at_line_start = True
        self._broke_guest_line = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def text(self, message: str = "") -> None:
        if not self.at_line_start:
            self.stream.write("\n")
            self.at_line_start = True
            self._broke_guest_line = True
        self.stream.write(message if message.endswith("\n") else message + "\n")

    def guest(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if not text:
            return
        if self._broke_guest_line and text.startswith("\n"):
            text = text[1:]
        self._broke_guest_line = False
        if text:
            self.stream.write(text)
            self.at_line_start = text.endswith("\n")

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, OSError, ValueError):
            return False

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


class GuestSink:
    """The machine's console sink: guest output goes straight to the session's stream."""

    def __init__(self, output: Output):
        self._output = output

    def write(self, data: bytes) -> None:
        self._output.guest(data)

    def flush(self) -> None:
        self._output.flush()


# --- the command table -------------------------------------------------------------------

@dataclass
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    summary: str
    details: str
    group: str
    complete: str | None          # what the arguments complete to (repl.py)
    handler: Callable
    repeat: bool = False          # an empty line repeats it (gdb habit)


COMMANDS: dict[str, Command] = {}
ALIASES: dict[str, str] = {}
GROUPS = ("running", "breakpoints", "inspecting", "checkpoints", "session")


def command(name, *, aliases=(), usage, summary, details, group, complete=None, repeat=False):
    def register(handler):
        COMMANDS[name] = Command(name, tuple(aliases), usage, summary, details.strip("\n"),
                                 group, complete, handler, repeat)
        for alias in aliases:
            ALIASES[alias] = name
        return handler
    return register


#: ``info WHAT`` (gdb) maps to these commands.
INFO_TOPICS = {"registers": "regs", "r": "regs", "reg": "regs", "regs": "regs",
               "breakpoints": "breakpoints", "b": "breakpoints", "break": "breakpoints",
               "watchpoints": "breakpoints", "watch": "breakpoints", "w": "breakpoints",
               "checkpoints": "checkpoints", "c": "checkpoints", "ckpt": "checkpoints",
               "devices": "devices", "d": "devices", "dev": "devices",
               "pages": "pages", "p": "pages", "memory": "pages",
               "status": "status", "s": "status"}


def resolve_command(word: str) -> Command:
    key = word.lower()
    if key in COMMANDS:
        return COMMANDS[key]
    if key in ALIASES:
        return COMMANDS[ALIASES[key]]
    close = difflib.get_close_matches(key, list(COMMANDS) + list(ALIASES), n=1, cutoff=0.6)
    hint = ""
    if close:
        hint = f"; did you mean '{ALIASES.get(close[0], close[0])}'?"
    raise CommandError(f"unknown command '{word}'{hint} (type 'help')")


# --- small parsing helpers ---------------------------------------------------------------

def split_args(text: str) -> list[str]:
    """Split on spaces outside (), [] and quotes: ``x (buf + 4) 16`` is two arguments."""
    args, current, depth, quote = [], "", 0, None
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch in "([":
            depth += 1
            current += ch
        elif ch in ")]":
            depth -= 1
            current += ch
        elif ch.isspace() and depth <= 0:
            if current:
                args.append(current)
            current = ""
        else:
            current += ch
    if current:
        args.append(current)
    return args


def strip_comment(text: str) -> str:
    """Source text without its ``;`` comment (quotes respected)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            return text[:i].rstrip()
    return text.rstrip()


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unescape(text: str) -> bytes:
    """``input`` text: C escapes \\n \\t \\r \\0 \\\\ \\" \\xHH; the rest as UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt].encode()
                i += 2
                continue
            if nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            raise CommandError(f"unknown escape '\\{nxt}' (use \\n \\t \\r \\0 \\\\ \\\" or \\xHH)")
        out += ch.encode()
        i += 1
    return bytes(out)


def _parse_count(text: str, what: str, usage: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f"'{text}' is not a number; usage: {usage}") from None
    if value < 1:
        raise CommandError(f"{what} must be at least 1; usage: {usage}")
    return value


# --- expressions: numbers, labels, registers, [memory] -----------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)"
                       r"|(?P<char>'(?:\\.|[^'\\])')"
                       r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
                       r"|(?P<op><<|>>|[-+*/%&|^~()\[\]]))")
_BINARY = [("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]
_LABEL_PREFIX = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_.]*:\s*)+")
_REG_RE = re.compile(r"^(?:r(\d{1,2})|sp)$", re.IGNORECASE)


class _Expr:
    """A tiny C-precedence evaluator for command arguments.

    Names are registers (r0..r15, sp), ``pc``, ``tick``, labels and ``.equ``
    names; ``[expr]`` reads a word of memory. ``want`` says what the value is
    for: a code address refuses data labels and the other way round.
    """

    def __init__(self, session: "Session", text: str, want: str):
        self.session, self.text, self.want = session, text, want
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, i = [], 0
        while i < len(text):
            if text[i:].strip() == "":
                break
            match = _TOKEN_RE.match(text, i)
            if not match:
                raise CommandError(f"cannot read '{text[i:].strip()}' in '{text}' (give a "
                                   "number, label, register or expression like 'buf+4')")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            i = match.end()
        return tokens

    def value(self) -> int:
        if not self.tokens:
            raise CommandError("an address or value is missing")
        result = self._binary(0)
        if self.pos != len(self.tokens):
            raise CommandError(f"unexpected '{self.tokens[self.pos][1]}' in '{self.text}'")
        return result

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _binary(self, level: int) -> int:
        if level == len(_BINARY):
            return self._unary()
        left = self._binary(level + 1)
        while self._peek()[0] == "op" and self._peek()[1] in _BINARY[level]:
            op = self.tokens[self.pos][1]
            self.pos += 1
            right = self._binary(level + 1)
            left = self._apply(op, left, right)
        return left

    def _apply(self, op: str, a: int, b: int) -> int:
        if op in "/%" and b == 0:
            raise CommandError(f"division by zero in '{self.text}'")
        if op in ("<<", ">>") and not 0 <= b <= 64:
            raise CommandError(f"shift count {b} is out of range in '{self.text}'")
        if op == "/" or op == "%":
            q = abs(a) // abs(b)
            q = -q if (a < 0) != (b < 0) else q
            return q if op == "/" else a - q * b
        return {"|": a | b, "^": a ^ b, "&": a & b, "+": a + b, "-": a - b, "*": a * b,
                "<<": a << b if op == "<<" else 0, ">>": a >> b if op == ">>" else 0}[op]

    def _unary(self) -> int:
        kind, tok = self._peek()
        if kind == "op" and tok in "-~+":
            self.pos += 1
            v = self._unary()
            return -v if tok == "-" else ~v if tok == "~" else v
        return self._primary()

    def _primary(self) -> int:
        kind, tok = self._peek()
        if kind is None:
            raise CommandError(f"'{self.text}' ends too early")
        self.pos += 1
        if kind == "num":
            return int(tok, 0)
        if kind == "char":
            body = tok[1:-1]
            data = unescape(body)
            if len(data) != 1:
                raise CommandError(f"{tok} is not one character")
            return data[0]
        if kind == "name":
            return self.session._name_value(tok, self.want)
        if tok == "(":
            v = self._binary(0)
            self._expect(")")
            return v
        if tok == "[":
            addr = self._binary(0)
            self._expect("]")
            return self.session._read_word(addr)
        raise CommandError(f"unexpected '{tok}' in '{self.text}'")

    def _expect(self, tok: str) -> None:
        if self._peek()[1] != tok:
            raise CommandError(f"missing '{tok}' in '{self.text}'")
        self.pos += 1


# --- breakpoints and watchpoints --------------------------------------------------------

@dataclass
class Breakpoint:
    number: int
    pc: int
    spec: str
    hits: int = 0


@dataclass
class Watchpoint:
    number: int
    addr: int
    spec: str
    hits: int = 0


# --- what diff compares -------------------------------------------------------------------

@dataclass
class _View:
    name: str
    regs: list
    pc: int
    tick: int
    halted: bool
    state: dict
    memory_size: int
    pages: dict
    disk: object = None          # a disk layer to read blocks from, or None
    disk_note: str = ""
    closers: tuple = ()


class Session:
    """One REPL session: a machine (or none yet), breakpoints, checkpoints."""

    def __init__(self, program: str | None = None, *, mem: str = "1M", disk: str | None = None,
                 disk_latency: int = 100, disk_per_block: int = 10,
                 checkpoint_dir: str = "checkpoints", out=None,
                 pages_per_slice: int = REPL_PAGES_PER_SLICE, handle_sigint: bool = True):
        self.out = Output(out)
        self.memory_size = parse_size(mem, "memory size")
        self.disk_path = disk
        self.disk_latency = disk_latency
        self.disk_per_block = disk_per_block
        self.store = FileStore(checkpoint_dir)
        self.pages_per_slice = pages_per_slice
        self.handle_sigint = handle_sigint
        self.image = None
        self.program_path: str | None = None
        self.origin = ""                       # what the machine came from
        self.machine: Machine | None = None
        self.checkpointer: Checkpointer | None = None
        self.jobs: list = []                   # every checkpoint taken in this session
        self.breakpoints: dict[int, Breakpoint] = {}
        self.watchpoints: dict[int, Watchpoint] = {}
        self._next_number = 1
        self.errors = 0
        self.quit_requested = False
        self.last_stop = ""
        self.last_command: Command | None = None
        self._prev_regs: list[int] | None = None
        self._x_next: int | None = None
        self._disasm_next: int | None = None
        self.pause_hook = None                 # called by 'pause' (minivm demo: wait for Enter)
        self._input_log = bytearray()          # console input of this run's lineage
        self._ckpt_input: dict[str, bytearray] = {}
        self._file_meta: dict = {}
        self._announced: set[int] = set()
        self._sigint_seen = False
        self._code_labels: list[tuple[int, str]] = []
        if program is not None:
            self.load(program)

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
                cmd.handler(self, rest.strip())
            finally:
                self._report_jobs()
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
        for job in self.jobs:
            if job.status == "saving":
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

    # ==== helpers: names, locations, values ==============================================
    def require_machine(self) -> Machine:
        if self.machine is None:
            raise CommandError("no program loaded; 'load PROG' first (or 'restore CKPT')")
        return self.machine

    def label_of(self, pc: int) -> str:
        """``<loop>`` or ``<loop+2>``: the nearest code label at or before pc."""
        best = None
        for value, name in self._code_labels:
            if value <= pc:
                best = (value, name)
            else:
                break
        if best is None:
            return ""
        return f"<{best[1]}>" if best[0] == pc else f"<{best[1]}+{pc - best[0]}>"

    def source_of(self, pc: int) -> str:
        """The instruction as written, without its comment or a label before it."""
        return _LABEL_PREFIX.sub("", strip_comment(self.image.source_text(pc)))

    def describe(self, pc: int) -> str:
        """``pc 3 <loop>  fib.asm:15  out 0x01, r1`` (pc, label, line, source)."""
        if not 0 <= pc < len(self.image.code):
            return f"pc {pc} (past the last instruction)"
        label = self.label_of(pc)
        return f"pc {pc}{' ' + label if label else ''}  {self.loc(pc)}  {self.source_of(pc)}"

    def loc(self, pc: int) -> str:
        """``fib.asm:15``: the source file's name (not its folder) and line."""
        image = self.image
        if 0 <= pc < len(image.lines):
            return f"{os.path.basename(image.source_file)}:{image.lines[pc]}"
        return image.location(pc)

    def data_label_at(self, addr: int) -> str:
        names = sorted(n for n, (sec, v) in self.image.symbols.items()
                       if sec == "data" and v == addr) if self.image else []
        return f" <{names[0]}>" if names else ""

    def _name_value(self, name: str, want: str) -> int:
        reg = _REG_RE.match(name)
        if reg and (reg.group(1) is None or int(reg.group(1)) < isa.NUM_REGS):
            index = isa.SP if reg.group(1) is None else int(reg.group(1))
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

    def _read_word(self, addr: int) -> int:
        m = self.require_machine()
        self._check_addr(addr, 4)
        return m.memory.load_word(addr)

    def _check_addr(self, addr: int, length: int = 1) -> None:
        size = self.require_machine().memory.size
        if not 0 <= addr or addr + length > size:
            raise CommandError(f"address {addr:#x} is outside memory "
                               f"({format_size(size)}, 0x0 .. {size - 1:#x})")

    def evaluate(self, text: str, want: str = "value") -> int:
        return _Expr(self, text, want).value()

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
        image = self.image
        source = image.source_file
        if filename and filename not in (source, os.path.basename(source)):
            raise CommandError(f"the program comes from '{source}', not '{filename}' "
                               f"(give {os.path.basename(source)}:LINE or :LINE)")
        candidates = [(ln, pc) for pc, ln in enumerate(image.lines) if ln >= line]
        if not candidates:
            last = max(image.lines) if image.lines else 0
            raise CommandError(f"line {line} is after the last instruction "
                               f"({os.path.basename(source)}:{last})")
        best_line = min(ln for ln, _ in candidates)
        pc = min(pc for ln, pc in candidates if ln == best_line)
        if best_line != line:
            self.say(f"(line {line} has no instruction; using line {best_line})")
        return pc

    def show_path(self, path: str) -> str:
        """A path for messages: relative to the current folder when inside it."""
        try:
            rel = os.path.relpath(path)
        except ValueError:
            return path
        return path if rel.startswith("..") else rel

    # ==== machines: load, reset, restore =================================================
    def _sink(self) -> GuestSink:
        return GuestSink(self.out)

    def _install(self, machine: Machine, image, origin: str) -> None:
        """Make ``machine`` the session's machine (after load, reset or restore)."""
        self._retire_machine()
        same = self.image is not None and self.image.same_program(image)
        self.image = image
        self.machine = machine
        self.origin = origin
        self._code_labels = sorted((v, n) for n, (sec, v) in image.symbols.items()
                                   if sec == "text")
        self.checkpointer = Checkpointer(machine, self.store, pages_per_slice=self.pages_per_slice,
                                         report=lambda msg: self.say(f"note: {msg}"))
        if not same and (self.breakpoints or self.watchpoints):
            self.say(f"(a different program: {len(self.breakpoints)} breakpoint(s) and "
                     f"{len(self.watchpoints)} watchpoint(s) deleted)")
            self.breakpoints.clear()
            self.watchpoints.clear()
        for bp in self.breakpoints.values():
            machine.set_breakpoint(bp.pc)
        for wp in self.watchpoints.values():
            if wp.addr + 4 <= machine.memory.size:
                machine.watches[wp.addr] = machine.memory.load_word(wp.addr)
        self._prev_regs = None
        self._x_next = None
        self._disasm_next = None
        self.last_stop = ""

    def _retire_machine(self) -> None:
        """The current machine is being replaced: finish its checkpoints (as
        `minivm run` does when a run ends) and close its disk files."""
        if self.machine is None:
            return
        if self.checkpointer is not None:
            self.checkpointer.finish_all()
        self._report_jobs()
        top = self.machine.disk.backing
        if top is not None:
            for layer in top.chain():
                layer.close()
        self.machine = None
        self.checkpointer = None

    def close(self) -> None:
        """End of the session: checkpoints still saving are completed."""
        saving = [job.name for job in self.jobs if job.status == "saving"]
        if saving:
            self.say(f"finishing {', '.join(saving)} before quitting ...")
        self._retire_machine()
        self.out.flush()

    def _new_machine(self, image) -> Machine:
        from .disks import open_disk
        disk = open_disk(self.disk_path) if self.disk_path else None
        try:
            return Machine(image, memory_size=self.memory_size, disk=disk,
                           console_sink=self._sink(), console_input=ConsoleInput(),
                           disk_latency=self.disk_latency, disk_per_block=self.disk_per_block)
        except BaseException:
            if disk is not None:
                disk.close()
            raise

    def load(self, path: str) -> None:
        from .program import load_program
        image = load_program(path)
        machine = self._new_machine(image)
        self.program_path = path
        self._input_log = bytearray()
        self._install(machine, image, path)
        data = f", {len(image.data)} data bytes" if image.data else ""
        self.say(f"loaded {path}: {len(image.code)} instructions{data}; "
                 f"memory {format_size(self.memory_size)}"
                 + (f"; disk {self.show_path(self.disk_path)}" if self.disk_path else ""))
        self.say(f"=> {self.describe(machine.pc)}")

    # ==== running ============================================================================
    @contextmanager
    def _running(self):
        """Around anything that runs the guest: Ctrl-C sets ``stop_requested``
        (the machine stops at the next instruction boundary, state intact); a
        second Ctrl-C before it has stopped raises KeyboardInterrupt."""
        m = self.machine
        self._prev_regs = list(m.regs[:isa.NUM_REGS]) + [m.pc]
        m.stop_requested = False
        self._sigint_seen = False
        previous = None
        install = self.handle_sigint and threading.current_thread() is threading.main_thread()
        if install:
            def on_sigint(signum, frame):
                self._sigint_seen = True
                if m.stop_requested:
                    raise KeyboardInterrupt
                m.stop_requested = True
            previous = signal.signal(signal.SIGINT, on_sigint)
        jobs_before = len(self.checkpointer.jobs)
        try:
            yield m
        finally:
            if install:
                signal.signal(signal.SIGINT, previous)
            m.stop_requested = False
            for job in self.checkpointer.jobs[jobs_before:]:
                if job not in self.jobs:
                    self.jobs.append(job)
                    self._ckpt_input[job.name] = self._input_log
                    self.say(f"(the guest took checkpoint {job.name} at tick {job.tick} "
                             "with 'ckpt')")
                    self._explain_checkpoint(job)
            if m.halted or m.fault is not None:
                # Nothing will run any more: complete the saves now (as `minivm run` does).
                self.checkpointer.finish_all()

    def _check_runnable(self, verb: str) -> Machine:
        m = self.require_machine()
        if m.fault is not None:
            raise CommandError(f"the machine has faulted ({m.fault.reason}); "
                               "'restore' a checkpoint or 'reset' to start again")
        if m.halted:
            raise CommandError(f"the program has halted (exit status {m.regs[0] & 0xFF}); "
                               f"nothing to {verb}: 'run' or 'reset' starts it again")
        return m

    def _report_stop(self, stop: Stop) -> None:
        m = self.machine
        reason = stop.reason
        if reason == "halt":
            self.last_stop = f"halted at tick {m.tick}"
            self.say(f"halted at tick {m.tick}: exit status {m.regs[0] & 0xFF} "
                     f"(r0 = {to_signed(m.regs[0])})")
            return
        if reason == "fault":
            self.last_stop = "fault"
            self.say(str(stop.detail))
            self.say("(stopped at the fault: inspect with regs, x, disasm; then 'restore' or 'reset')")
            return
        if reason == "breakpoint":
            numbers = [bp for bp in self.breakpoints.values() if bp.pc == m.pc]
            for bp in numbers:
                bp.hits += 1
            which = ", ".join(str(bp.number) for bp in numbers) or "?"
            self.last_stop = f"stopped at breakpoint {which}"
            self.say(f"Breakpoint {which} at tick {m.tick}")
        elif reason == "watch":
            addr, old, new = stop.detail
            numbers = [wp for wp in self.watchpoints.values() if wp.addr == addr]
            for wp in numbers:
                wp.hits += 1
            which = ", ".join(str(wp.number) for wp in numbers) or "?"
            self.last_stop = f"stopped at watchpoint {which}"
            self.say(f"Watchpoint {which}: word at {addr:#x}{self.data_label_at(addr)} "
                     f"changed {to_signed(old)} -> {to_signed(new)} "
                     f"({old:#x} -> {new:#x}) at tick {m.tick}")
        elif reason == "interrupted":
            self.last_stop = "interrupted"
            if self._sigint_seen and self.out.isatty():
                self.say()                     # the terminal echoed ^C on the guest's line
            self.say(f"interrupted (Ctrl-C) at tick {m.tick}")
        else:
            self.last_stop = ""
        self.say(f"=> {self.describe(m.pc)}")

    def _step(self, count: int, *, over: bool = False) -> Stop:
        """Execute ``count`` instructions (``next``: a call counts as one),
        printing each as it runs; stops early at a breakpoint, watch, halt..."""
        m = self.machine
        for i in range(count):
            pc, tick, taken = m.pc, m.tick, m.interrupts_taken
            self.say(f"  tick {tick}  {self.describe(pc)}")
            opcode = self.image.code[pc][0]
            if over and opcode in (isa.CALL_I, isa.CALL_R):
                stop = self._run_over_call(pc)
                if stop is not None:
                    return stop
            else:
                stop = m.run(max_ticks=1)
                if stop.reason != "limit":
                    return stop
            if m.interrupts_taken != taken:
                self.say(f"  (interrupt taken: jumped to {self.describe(m.pc)})")
            if i < count - 1 and m.pc in m.breakpoints:
                return Stop("breakpoint", m.pc)
        return Stop("limit")

    def _run_over_call(self, pc: int) -> Stop | None:
        """Run the call at ``pc`` until it returns to ``pc + 1`` at the same
        stack depth (recursion-safe); None when it returned."""
        m = self.machine
        ret, sp0 = pc + 1, m.regs[isa.SP]
        if ret >= m.ncode:                     # the call is the last instruction
            return m.run()
        temporary = ret not in m.breakpoints
        if temporary:
            m.set_breakpoint(ret)
        try:
            while True:
                stop = m.run()
                if stop.reason == "breakpoint" and m.pc == ret and m.regs[isa.SP] >= sp0:
                    return None
                if stop.reason == "breakpoint" and m.pc == ret and temporary:
                    continue                   # a deeper (recursive) return: go on
                return stop
        finally:
            if temporary:
                m.clear_breakpoint(ret)

    # ==== commands: running ================================================================
    @command("run", aliases=("r",), usage="run", group="running", summary=
             "run until halt, fault, breakpoint, watch or Ctrl-C", details="""
Runs the program from where it is. If it has halted or faulted, 'run' starts
it again from the beginning first (like 'reset' then 'run'); 'continue' never
does. Guest console output appears as it is printed. Ctrl-C stops the guest
between two instructions and returns to the prompt with every state intact.
Examples:  run      r""")
    def cmd_run(self, args: str) -> None:
        m = self.require_machine()
        if args:
            raise CommandError("'run' takes no arguments (to load a program: 'load PROG')")
        if m.halted or m.fault is not None:
            self.say("(starting again from the beginning)")
            self.cmd_reset("")
        self._continue()

    @command("continue", aliases=("c", "cont"), usage="continue [TICKS]", group="running",
             repeat=True, summary="continue running from the current pc", details="""
Continues until the guest halts, faults, reaches a breakpoint, changes a
watched word, or you press Ctrl-C. Prints why it stopped, with the source line.
With TICKS, it also stops after that many ticks (instructions), without
printing them (unlike 'step'): handy in scripts and to let a background save
make progress. Checkpoints still saving make progress while the guest runs.
Examples:  continue      c      c 5000""")
    def cmd_continue(self, args: str) -> None:
        parts = split_args(args)
        if len(parts) > 1:
            raise CommandError("too many arguments; usage: continue [TICKS]")
        ticks = _parse_count(parts[0], "TICKS", "continue [TICKS]") if parts else None
        self._continue(ticks)

    def _continue(self, ticks: int | None = None) -> None:
        self._check_runnable("continue")
        with self._running() as m:
            start = m.tick
            stop = m.run(ticks)
        if stop.reason == "limit":
            self.say(f"ran {m.tick - start} ticks")
        self._report_stop(stop)

    @command("step", aliases=("s", "si", "stepi"), usage="step [N]", group="running", repeat=True,
             summary="execute N instructions, showing each source line",
             details="""
Executes N instructions, printing each one before it runs (tick, pc, label,
file:line and source), then '=>' and the next instruction. Steps into calls
(see 'next'). Stops early at a breakpoint, a watch, halt, fault or Ctrl-C.
Pressing Enter on an empty line repeats the last step.
Examples:  step      s      step 10""")
    def cmd_step(self, args: str) -> None:
        self._stepping(args, over=False, usage="step [N]")

    @command("next", aliases=("n", "ni", "nexti"), usage="next [N]", group="running", repeat=True,
             summary="like step, but a call runs to its return as one step", details="""
Like 'step', but a 'call' instruction is stepped over: the callee runs until it
returns to the instruction after the call at the same stack depth (recursion
is handled). A breakpoint or watch inside the callee still stops there.
Examples:  next      n      next 3""")
    def cmd_next(self, args: str) -> None:
        self._stepping(args, over=True, usage="next [N]")

    def _stepping(self, args: str, *, over: bool, usage: str) -> None:
        parts = split_args(args)
        if len(parts) > 1:
            raise CommandError(f"too many arguments; usage: {usage}")
        count = _parse_count(parts[0], "the count", usage) if parts else 1
        self._check_runnable("step")
        with self._running():
            stop = self._step(count, over=over)
        self._report_stop(stop)

    # ==== commands: breakpoints and watches =================================================
    @command("break", aliases=("b", "br"), usage="break [LABEL|ADDR|FILE:LINE]", group="breakpoints",
             complete="code", summary="stop at a label, address or file:line",
             details="""
Sets a breakpoint: the guest stops before executing that instruction. The
location is a code label, an instruction address (a number or expression such
as loop+2), or a source line as FILE:LINE or :LINE (a line with no instruction
uses the next line that has one). With no argument: at the current pc.
Examples:  break loop      b 17      b fib.asm:15      b :15      b loop+2""")
    def cmd_break(self, args: str) -> None:
        m = self.require_machine()
        spec = args.strip() or str(m.pc)
        pc = self.code_address(spec)
        for bp in self.breakpoints.values():
            if bp.pc == pc:
                self.say(f"breakpoint {bp.number} is already at {self.describe(pc)}")
                return
        m.set_breakpoint(pc)
        bp = Breakpoint(self._next_number, pc, spec)
        self._next_number += 1
        self.breakpoints[bp.number] = bp
        self.say(f"Breakpoint {bp.number}: {self.describe(pc)}")

    @command("watch", aliases=("w",), usage="watch ADDR", group="breakpoints", complete="data",
             summary="stop when the word at ADDR changes", details="""
Sets a watchpoint on the 32-bit word at a memory address (a data label,
number, register or expression). The guest stops right after the instruction
that changed it, showing the old and new value. While any watch is set the
machine checks after every instruction, so it runs slower.
Examples:  watch counter      watch 0x100      watch buf+8      watch sp""")
    def cmd_watch(self, args: str) -> None:
        m = self.require_machine()
        if not args:
            raise CommandError("give an address; usage: watch ADDR (e.g. watch counter)")
        addr = self.evaluate(args, "data")
        self._check_addr(addr, 4)
        for wp in self.watchpoints.values():
            if wp.addr == addr:
                self.say(f"watchpoint {wp.number} already watches {addr:#x}")
                return
        value = m.memory.load_word(addr)
        m.watches[addr] = value
        wp = Watchpoint(self._next_number, addr, args)
        self._next_number += 1
        self.watchpoints[wp.number] = wp
        self.say(f"Watchpoint {wp.number}: word at {addr:#x}{self.data_label_at(addr)} "
                 f"(now {to_signed(value)})")

    @command("delete", aliases=("d", "del"), usage="delete [N...]", group="breakpoints",
             complete="numbers", summary="delete breakpoints/watchpoints N; alone: delete all",
             details="""
Deletes the breakpoints and watchpoints with the given numbers (see
'breakpoints'). With no number it deletes all of them (SPEC).
Examples:  delete 2      d 1 3      delete""")
    def cmd_delete(self, args: str) -> None:
        m = self.machine
        parts = split_args(args)
        if not parts:
            n = len(self.breakpoints) + len(self.watchpoints)
            for number in list(self.breakpoints) + list(self.watchpoints):
                self._delete(number, m)
            self.say(f"deleted all breakpoints and watchpoints ({n})")
            return
        numbers = []
        for part in parts:
            try:
                number = int(part)
            except ValueError:
                raise CommandError(f"'{part}' is not a breakpoint number; usage: delete [N...] "
                                   "('breakpoints' lists them)") from None
            if number not in self.breakpoints and number not in self.watchpoints:
                raise CommandError(f"no breakpoint or watchpoint number {number} "
                                   "('breakpoints' lists them)")
            numbers.append(number)
        for number in numbers:
            self._delete(number, m)
        self.say(f"deleted {', '.join(map(str, numbers))}")

    def _delete(self, number: int, m) -> None:
        if number in self.breakpoints:
            bp = self.breakpoints.pop(number)
            if m is not None and not any(b.pc == bp.pc for b in self.breakpoints.values()):
                m.clear_breakpoint(bp.pc)
        else:
            wp = self.watchpoints.pop(number)
            if m is not None:
                m.watches.pop(wp.addr, None)

    @command("breakpoints", aliases=("bl", "watches"), usage="breakpoints", group="breakpoints",
             summary="list breakpoints and watchpoints", details="""
Lists every breakpoint and watchpoint with its number (for 'delete'), where it
is and how many times it has stopped the guest. Also: 'info breakpoints', 'i b'.
Example:  breakpoints""")
    def cmd_breakpoints(self, args: str) -> None:
        if not self.breakpoints and not self.watchpoints:
            self.say("no breakpoints or watchpoints ('break LABEL', 'watch ADDR' set them)")
            return
        self.say("  num  type        where")
        for number in sorted({**self.breakpoints, **self.watchpoints}):
            if number in self.breakpoints:
                bp = self.breakpoints[number]
                where = self.describe(bp.pc) if self.image else str(bp.pc)
                self.say(f"  {number:>3}  breakpoint  {where}" + self._hits(bp.hits))
            else:
                wp = self.watchpoints[number]
                value = ""
                if self.machine is not None and wp.addr in self.machine.watches:
                    value = f" = {to_signed(self.machine.watches[wp.addr])}"
                self.say(f"  {number:>3}  watch       word at {wp.addr:#x}"
                         f"{self.data_label_at(wp.addr)}{value}" + self._hits(wp.hits))

    @staticmethod
    def _hits(n: int) -> str:
        return f"  (hit {n} time{'s' if n != 1 else ''})" if n else ""

    # ==== commands: inspecting ============================================================
    @command("regs", aliases=("registers",), usage="regs [REG...]", group="inspecting",
             complete="regs", summary="show the registers ('i r'); * marks changes", details="""
Shows r0..r15 (sp is r15) in hex and signed decimal, then pc, tick and the
interrupt flag. A '*' marks the registers the last run/step changed. With
register names, shows only those. Also: 'info registers', 'i r'.
Examples:  regs      i r      regs r1 sp""")
    def cmd_regs(self, args: str) -> None:
        m = self.require_machine()
        prev = self._prev_regs
        names = split_args(args)
        if names:
            for name in names:
                match = _REG_RE.match(name)
                if name.lower() == "pc":
                    self.say(f"  {self.describe(m.pc)}")
                    continue
                if not match or (match.group(1) is not None and int(match.group(1)) >= 16):
                    raise CommandError(f"'{name}' is not a register (r0..r15, sp, pc)")
                i = isa.SP if match.group(1) is None else int(match.group(1))
                self.say(self._reg_cell(i, m.regs[i], prev).rstrip())
            return
        changed = False
        for row in range(8):
            left = self._reg_cell(row, m.regs[row], prev)
            right = self._reg_cell(row + 8, m.regs[row + 8], prev)
            changed |= "*" in left + right
            self.say(f"{left}   {right}".rstrip())
        self.say(f"  {self.describe(m.pc)}")
        state = ("halted" if m.halted else "faulted" if m.fault is not None else "")
        self.say(f"  tick {m.tick}   interrupts {'enabled' if m.interrupts.enabled else 'disabled'}"
                 + (f"   {state}" if state else "")
                 + ("   (* changed by the last run/step)" if changed else ""))

    @staticmethod
    def _reg_cell(i: int, value: int, prev) -> str:
        mark = "*" if prev is not None and prev[i] != value else " "
        return f"{mark} {isa.reg_name(i):<3} {value:#010x} {to_signed(value):<11}"

    @command("print", aliases=("p",), usage="print EXPR", group="inspecting", complete="any",
             summary="evaluate an expression (registers, labels, [memory])", details="""
Evaluates an expression with C operators + - * / % & | ^ << >> ~ and
parentheses. Names are registers (r0..r15, sp), pc, tick, labels and .equ
names; [EXPR] reads the word at that memory address.
Examples:  print r1 + r2      p buf+4      p [sp]      p COUNT * 4""")
    def cmd_print(self, args: str) -> None:
        if not args:
            raise CommandError("give an expression; usage: print EXPR (e.g. print r1 + 4)")
        value = self.evaluate(args, "value")
        word = value & WORD_MASK
        self.say(f"{args} = {value}" + (f"  ({word:#010x})" if value != word or value > 9 else ""))

    @command("set", usage="set REG VALUE | set [ADDR] VALUE", group="inspecting", complete="regs",
             summary="change a register or a word of memory", details="""
Sets a register (r0..r15, sp, pc) or the 32-bit word at a memory address to a
value (any expression). A store into a page a saving checkpoint still shares
copies the page first, as a guest store would (P3) - try it with 'pages'.
Examples:  set r1 42      set r2 = r1 * 2      set [counter] 0      set pc loop""")
    def cmd_set(self, args: str) -> None:
        m = self.require_machine()
        parts = split_args(args.replace("=", " ", 1) if "=" in args else args)
        if len(parts) < 2:
            raise CommandError("usage: set REG VALUE | set [ADDR] VALUE (e.g. set r1 42)")
        target, value_text = parts[0], " ".join(parts[1:])
        if target.lower() == "pc":
            pc = self.code_address(value_text)
            m.pc = pc
            self.say(f"pc set: {self.describe(pc)}")
            return
        value = self.evaluate(value_text, "value")
        if not -(1 << 31) <= value <= WORD_MASK:
            raise CommandError(f"{value} does not fit in 32 bits")
        match = _REG_RE.match(target)
        if match and (match.group(1) is None or int(match.group(1)) < 16):
            i = isa.SP if match.group(1) is None else int(match.group(1))
            m.regs[i] = value & WORD_MASK
            self.say(f"{isa.reg_name(i)} = {to_signed(m.regs[i])} ({m.regs[i]:#010x})")
            return
        if target.startswith("[") and target.endswith("]"):
            addr = self.evaluate(target[1:-1], "data")
            self._check_addr(addr, 4)
            m.memory.store_word(addr, value & WORD_MASK)
            if addr in m.watches:
                m.watches[addr] = value & WORD_MASK
            self.say(f"word at {addr:#x}{self.data_label_at(addr)} = {to_signed(value & WORD_MASK)}")
            return
        raise CommandError(f"'{target}' is not a register or [ADDR]; usage: set REG VALUE | "
                           "set [ADDR] VALUE")

    @command("mem", aliases=("x",), usage="mem ADDR [N]", group="inspecting", complete="data",
             repeat=True, summary="hex + ASCII dump of N bytes of memory (default 64)",
             details="""
Dumps N bytes (default 64) from a memory address (a data label, number,
register or expression; give an expression with spaces in parentheses).
'x' with no address continues after the previous dump. Reading does not
allocate pages.
Examples:  x msg      mem 0x100 32      x sp 16      x (buf + 16)      x""")
    def cmd_mem(self, args: str) -> None:
        m = self.require_machine()
        parts = split_args(args)
        if len(parts) > 2:
            raise CommandError("too many arguments; usage: mem ADDR [N] (put an expression "
                               "with spaces in parentheses)")
        if not parts:
            if self._x_next is None:
                raise CommandError("give an address; usage: mem ADDR [N] (e.g. x msg 32)")
            addr, count = self._x_next
        else:
            addr = self.evaluate(parts[0], "data")
            count = _parse_count(parts[1], "the byte count", "mem ADDR [N]") if len(parts) > 1 else 64
        self._check_addr(addr, 1)
        count = min(count, m.memory.size - addr, 1 << 16)
        data = m.memory.read_bytes(addr, count)
        marks = {}
        if self.image:
            for name, (sec, v) in self.image.symbols.items():
                if sec == "data":
                    marks.setdefault(v, []).append(name)
        start = addr - addr % 16
        for row in range(start, addr + count, 16):
            cells, text = [], []
            for col in range(16):
                a = row + col
                if addr <= a < addr + count:
                    byte = data[a - addr]
                    cells.append(f"{byte:02x}")
                    text.append(chr(byte) if 32 <= byte < 127 else ".")
                else:
                    cells.append("  ")
                    text.append(" ")
            names = [f"{n}" if a == row else f"{n}@{a:#x}"
                     for a in range(max(row, addr), min(row + 16, addr + count))
                     for n in sorted(marks.get(a, []))]
            self.say(f"{row:#010x}  {' '.join(cells[:8])}  {' '.join(cells[8:])}  "
                     f"|{''.join(text)}|" + (f"  <{', '.join(names)}>" if names else ""))
        self._x_next = (addr + count, count) if addr + count < m.memory.size else None

    @command("disasm", aliases=("dis", "l", "list"), usage="disasm [ADDR] [N]",
             group="inspecting", complete="code", summary="disassemble around pc (or at ADDR)",
             details="""
Lists N instructions (default 10) with address, label, source line and text.
'=>' marks pc and 'b' a breakpoint. Without an address: around pc; ADDR may
be a label, number, expression or FILE:LINE.
Examples:  disasm      disasm loop      dis 0 30      disasm fib.asm:20""")
    def cmd_disasm(self, args: str) -> None:
        m = self.require_machine()
        parts = split_args(args)
        if len(parts) > 2:
            raise CommandError("too many arguments; usage: disasm [ADDR] [N]")
        count = _parse_count(parts[1], "the count", "disasm [ADDR] [N]") if len(parts) > 1 else 10
        start = self.code_address(parts[0]) if parts else max(0, m.pc - 3)
        labels = self.image.code_labels()
        stop = min(m.ncode, start + count)
        width = max(len(format_instruction(self.image, pc, labels)) for pc in range(start, stop))
        for pc in range(start, stop):
            for name in sorted(labels.get(pc, [])):
                self.say(f"{'':9}{name}:")
            mark = "=>" if pc == m.pc else "  "
            brk = "b" if pc in m.breakpoints else " "
            text = format_instruction(self.image, pc, labels)
            self.say(f"{mark}{brk}{pc:>5}    {text:<{width}}   ; {self.loc(pc)}")

    @command("devices", aliases=("dev",), usage="devices", group="inspecting",
             summary="timer, disk queue, pending interrupts, console input", details="""
Shows each device's state: the timer (period, next event, handler), the disk
(the file in use, requests in flight with their blocks and completion ticks),
the interrupt flag and pending interrupts, and the console (input fed with
'input' and not yet read, bytes read and written). Also: 'info devices'.
Example:  devices""")
    def cmd_devices(self, args: str) -> None:
        m = self.require_machine()
        t = m.timer
        if t.period:
            handler = "none (events are dropped)" if t.handler is None else self._handler(t.handler)
            self.say(f"timer       period {t.period} ticks, next at tick {t.next_fire}, "
                     f"handler {handler}, fired {t.fired} time(s)")
        else:
            self.say(f"timer       stopped (fired {t.fired} time(s))")
        d = m.disk
        if d.backing is None:
            self.say("disk        none attached (repl --disk FILE)")
        else:
            chain = d.backing.chain()
            files = " on ".join(f"{self.show_path(layer.path)} ({layer.kind})" for layer in chain)
            self.say(f"disk        {d.backing.block_count} blocks; writes go to {files}")
            self.say(f"            {len(d.queue)} request(s) in flight; last completed "
                     f"#{d.last_completed}; handler {self._handler(d.handler)}; "
                     f"latency {d.latency} + {d.per_block}/block")
            for request in d.queue:
                self.say(f"              {request.describe()}")
        pending = m.interrupts.pending()
        self.say(f"interrupts  {'enabled' if m.interrupts.enabled else 'disabled'}; "
                 + ("none pending" if not pending else
                    "pending: " + ", ".join(f"{src} (tick {tick})" for tick, src in pending)))
        c = m.console
        self.say(f"console     {c.source.buffered()} input byte(s) fed and not yet read "
                 f"(then reads give -1); {c.input_consumed} read, {c.bytes_written} written")

    def _handler(self, pc: int | None) -> str:
        return "none" if pc is None else f"{pc} {self.label_of(pc)}".rstrip()

    @command("pages", usage="pages [--svg FILE]", group="inspecting",
             summary="memory page map: untouched/private/shared/copied", details="""
One character per 4 KiB page, 64 per row: '.' untouched (costs nothing),
'p' private (the machine's own), 'S' shared with a checkpoint that is still
saving and not yet saved, 's' shared and already saved, 'C' copied by a
copy-on-write fault (the checkpoint keeps the original, not yet saved),
'c' copied with the original saved. Runs of untouched rows are folded, so a
4 GiB memory still fits. Run it after 'checkpoint', a 'step' that stores and
'continue' to watch the protocol (P2-P4) at work. Also: 'info pages'.
'pages --svg FILE' also draws the map as an SVG picture (every page, one
square each, for memories up to 64 MiB).
Examples:  pages      pages --svg pages.svg""")
    def cmd_pages(self, args: str) -> None:
        m = self.require_machine()
        mem = m.memory
        words = args.split()
        svg_path = None
        if words:
            if words[0] != "--svg" or len(words) != 2:
                raise CommandError("usage: pages [--svg FILE]")
            svg_path = words[1]
        saving = [job for job in self.checkpointer.jobs if job.status == "saving"]
        touched = [i for i, page in enumerate(mem.pages) if type(page) is not bytes]
        counts = {"p": 0, "S": 0, "s": 0, "C": 0, "c": 0}

        def saved(index: int) -> bool:
            return bool(saving) and all(index in job.saved_page_indexes() for job in saving)

        chars = {}
        for i in touched:
            kind = mem.page_kind(i)
            if kind == "shared":
                ch = "s" if saved(i) else "S"
            elif kind == "copied":
                ch = "C" if saving and not saved(i) else "c"
            else:
                ch = "p"
            chars[i] = ch
            counts[ch] += 1
        total = mem.page_count
        self.say(f"{total} pages of 4 KiB ({format_size(mem.size)}), {len(touched)} touched: "
                 f"{counts['p']} private, {counts['S'] + counts['s']} shared "
                 f"({counts['s']} saved), {counts['C'] + counts['c']} copied ({counts['c']} saved)")
        for job in saving:
            self.say(f"{job.name} is saving: {job.pages_done} of {job.pages_total} page(s) "
                     "examined so far")
        rows = sorted({i // PAGES_PER_ROW for i in touched} | {0})
        nrows = (total + PAGES_PER_ROW - 1) // PAGES_PER_ROW
        previous = -1
        for row in rows + [nrows]:
            if row - previous > 1:
                first, last = (previous + 1) * PAGES_PER_ROW, min(row * PAGES_PER_ROW, total) - 1
                self.say(f"  ... pages {first}-{last} untouched "
                         f"({(first * PAGE_SIZE):#010x}..{(last + 1) * PAGE_SIZE - 1:#010x})")
            if row >= nrows:
                break
            start = row * PAGES_PER_ROW
            line = "".join(chars.get(i, ".") for i in range(start, min(start + PAGES_PER_ROW, total)))
            self.say(f"  {start * PAGE_SIZE:#010x} {start:>7}  {line}")
            previous = row
        self.say(LEGEND)
        if svg_path is not None:
            self._write_page_svg(svg_path, chars, total)

    def _write_page_svg(self, path: str, chars: dict, total: int) -> None:
        from .cli import write_text_atomically
        from .timeline import page_map_svg
        if total > 16384:
            raise CommandError(f"the memory has {total} pages; the picture is drawn for up to "
                               "16384 (64 MiB): use a smaller --mem")
        states = "".join(chars.get(i, ".") for i in range(total))
        m = self.require_machine()
        write_text_atomically(path, page_map_svg(
            states, f"minivm memory pages at tick {m.tick} ({total} pages of 4 KiB)"))
        self.say(f"page map written to {path}")

    @command("timeline", usage="timeline FILE.svg", group="checkpoints",
             summary="draw this session's checkpoints over time as SVG", details="""
Writes a picture of what the checkpoints taken since the program was loaded
did over virtual time: each stop window (P2), the disk requests in flight
(those in flight at a checkpoint are the P5 cases), the pages saved in the
background (P4), memory copy-on-write faults and overlay writes (P3).
Example:  timeline demo.svg""")
    def cmd_timeline(self, args: str) -> None:
        from .cli import write_text_atomically
        from .timeline import timeline_svg
        path = args.strip()
        if not path:
            raise CommandError("usage: timeline FILE.svg")
        self.require_machine()
        if not self.checkpointer.jobs:
            raise CommandError("no checkpoint has been taken yet ('checkpoint' takes one)")
        write_text_atomically(path, timeline_svg(self.checkpointer))
        self.say(f"timeline of {len(self.checkpointer.jobs)} checkpoint(s) written to {path}")

    @command("status", aliases=("where",), usage="status", group="inspecting",
             summary="where the machine is, and checkpoints in progress", details="""
Prints what the toolbar shows: tick, pc and source line, why the guest last
stopped and any checkpoint still saving. Useful in scripts, which have no
toolbar. Also: 'info status'.
Example:  status""")
    def cmd_status(self, args: str) -> None:
        m = self.require_machine()
        self.say(f"program {self.origin}; tick {m.tick}")
        if m.fault is not None:
            self.say(str(m.fault))
        elif m.halted:
            self.say(f"halted: exit status {m.regs[0] & 0xFF}")
        else:
            self.say(f"=> {self.describe(m.pc)}")
        if self.last_stop:
            self.say(f"last stop: {self.last_stop}")
        saving = self.saving_status()
        if saving:
            self.say(saving)

    @command("info", aliases=("i",), usage="info WHAT", group="inspecting", complete="info",
             summary="gdb style: i r, i b, i c, i d, i p, i s",
             details="""
Another way to reach the listing commands, for gdb fingers. WHAT may be
abbreviated: r (registers), b (breakpoints), c (checkpoints), d (devices),
p (pages), s (status).
Examples:  i r      info breakpoints      i c      i r r1""")
    def cmd_info(self, args: str) -> None:
        word, _, rest = args.partition(" ")
        if not word:
            raise CommandError("info what? registers, breakpoints, checkpoints, devices, "
                               "pages or status (e.g. 'i r')")
        target = INFO_TOPICS.get(word.lower())
        if target is None:
            close = difflib.get_close_matches(word.lower(), list(INFO_TOPICS), n=1)
            hint = f"; did you mean 'info {close[0]}'?" if close else ""
            raise CommandError(f"unknown info topic '{word}'{hint} (registers, breakpoints, "
                               "checkpoints, devices, pages, status)")
        COMMANDS[target].handler(self, rest.strip())

    # ==== commands: checkpoints =================================================================
    @command("checkpoint", aliases=("ckpt", "cp"), usage="checkpoint [NAME]", group="checkpoints",
             summary="take a checkpoint now (saved in the background)",
             details="""
Takes a checkpoint at the current instruction boundary with the protocol of
SPEC section 4: a copy-on-write disk overlay (P1), a short stop that marks
memory copy-on-write and saves the device state (P2); the pages are then
written to the checkpoint folder while the guest runs (P4) - 'checkpoints',
'pages' and the toolbar show the progress; 'sync' finishes at once. NAME
defaults to ckpt-NNNN.
Examples:  checkpoint      checkpoint before-loop      ckpt""")
    def cmd_checkpoint(self, args: str) -> None:
        m = self.require_machine()
        if m.fault is not None or m.halted:
            raise CommandError(f"the machine has {'halted' if m.halted else 'faulted'}: there is "
                               "nothing left to checkpoint ('diff CKPT now' compares states)")
        name = args.strip() or None
        if name is not None:
            if not NAME_RE.match(name) or name == "now":
                raise CommandError(f"'{name}' cannot name a checkpoint: use letters, digits, "
                                   "'-', '_' and '.', not starting with '.' (and not 'now')")
            if any(job.name == name for job in self.jobs) or name in self.store.names():
                raise CommandError(f"there is already a checkpoint named '{name}' "
                                   "('checkpoints' lists them)")
        job = self.checkpointer.take("repl", name)
        self.jobs.append(job)
        self._ckpt_input[job.name] = self._input_log
        self.say(f"checkpoint {job.name} at tick {job.tick}, {self.describe(job.pc)}")
        self._explain_checkpoint(job)

    def _explain_checkpoint(self, job) -> None:
        """What the protocol just did (P1, P2, P5, P8), in a few lines."""
        m = self.require_machine()
        notes = [f"memory marked copy-on-write, {job.pages_total} page(s) to save while the "
                 f"guest runs -> {self.show_path(job.location)}"]
        if m.disk.backing is not None:
            notes.append(f"disk writes now go to the overlay {self.show_path(m.disk.backing.path)} "
                         f"(P1); {len(job.inflight_at_stop)} request(s) in flight belong to the "
                         "checkpoint (P5)")
        if job.p8_drained:
            notes.append(f"P8: {job.p8_drained} pending request(s) completed first (a pending "
                         "read was followed by a write to the same block)")
        for note in notes:
            self.say(f"  {note}")

    @command("commit", usage="commit", group="checkpoints",
             summary="merge the disk overlay into its parent (P10), live", details="""
The VM switches to a fresh overlay at once, and the overlay it was using is
merged into its parent as soon as no pending write still targets it (claims
3-5); the guest keeps running meanwhile. Checkpoints whose disk is that
parent no longer match it afterwards (their fingerprint changes).
Example:  commit""")
    def cmd_commit(self, args: str) -> None:
        self.require_machine()
        self.say(self.checkpointer.commit_disk())

    @command("checkpoints", aliases=("ckpts",), usage="checkpoints", group="checkpoints",
             summary="list checkpoints: tick, saving/complete/failed, size", details="""
Lists the checkpoints of this session and those found in the checkpoint
folder: name, tick, state (saving with progress, complete, failed) and size.
Also: 'info checkpoints', 'i c'.
Example:  checkpoints""")
    def cmd_checkpoints(self, args: str) -> None:
        rows = []
        seen = set()
        for job in self.jobs:
            seen.add(job.name)
            if job.status == "saving":
                state = f"saving, {job.pages_done} of {job.pages_total} pages"
                size = "-"
            elif job.status == "complete":
                state = f"complete, {job.pages_saved} page(s)"
                size = f"{job.bytes_written} B"
            else:
                state = f"failed: {job.error}"
                size = "-"
            rows.append((job.name, str(job.tick), state, size, self.show_path(job.location)))
        for name in self.store.names():
            if name in seen:
                continue
            path = self.store.location(name)
            tick, state = self._file_summary(path)
            try:
                size = f"{os.path.getsize(path)} B"
            except OSError:
                size = "?"
            rows.append((name, tick, state, size, self.show_path(path)))
        if not rows:
            self.say(f"no checkpoints yet in {self.show_path(self.store.folder)} "
                     "('checkpoint [NAME]' takes one)")
            return
        widths = [max(len(r[i]) for r in rows + [("name", "tick", "state", "size", "file")])
                  for i in range(5)]
        header = ("name", "tick", "state", "size", "file")
        for row in [header] + rows:
            self.say(f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  "
                     f"{row[3]:>{widths[3]}}  {row[4]}")

    def _file_summary(self, path: str) -> tuple[str, str]:
        """(tick, state) of a checkpoint file from an earlier session."""
        try:
            stat = os.stat(path)
        except OSError as exc:
            return "?", f"unreadable: {exc.strerror}"
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._file_meta:
            if stat.st_size > 16 << 20:
                self._file_meta[key] = ("?", "complete (earlier session, not read: large)")
            else:
                try:
                    ckpt = read_checkpoint(path)
                    self._file_meta[key] = (str(ckpt.tick), "complete (earlier session)")
                except MinivmError as exc:
                    self._file_meta[key] = ("?", f"unreadable: {exc}")
        return self._file_meta[key]

    @command("sync", usage="sync", group="checkpoints",
             summary="finish saving checkpoints now (guest stays put)", details="""
Checkpoints are saved in the background while the guest runs; 'sync' writes
the rest now. A checkpoint that still waits for a disk read in flight at the
checkpoint (P5) cannot finish until the guest runs on; 'sync' says so.
Example:  sync""")
    def cmd_sync(self, args: str) -> None:
        self.require_machine()
        saving = [job for job in self.checkpointer.jobs if job.status == "saving"]
        if not saving:
            self.say("no checkpoint is saving")
            return
        for job in saving:
            self._finish_now(job)
            if job.status == "saving":
                self.say(f"{job.name} still waits for in-flight disk requests (P5); "
                         "'continue' or 'step' so they can complete")

    def _finish_now(self, job) -> None:
        """Write the rest of the saving checkpoints of the current machine (P4)."""
        self.checkpointer.sync()

    def _resolve_checkpoint(self, spec: str) -> tuple[str, str]:
        """(name, path) of a checkpoint given by name or file path."""
        for job in reversed(self.jobs):
            if job.name == spec:
                if job.status == "saving":
                    if self.checkpointer is not None and job in self.checkpointer.jobs:
                        self._finish_now(job)
                        self._report_jobs()
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
        known = sorted({job.name for job in self.jobs} | set(self.store.names()))
        close = difflib.get_close_matches(spec, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (known: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})" \
            if known else " (none taken yet)"
        raise CommandError(f"no checkpoint named '{spec}'{hint}{listing}; or give a .mvc file path")

    @command("restore", aliases=("resume",), usage="restore NAME|FILE", group="checkpoints",
             complete="checkpoint", summary="go back to a checkpoint (by name or file)",
             details="""
Rebuilds the machine from a checkpoint and makes it the current one, as
'minivm resume' does: registers, memory, devices, disk queue, tick. The disk
it checkpointed is not written: a fresh overlay takes the new writes.
Breakpoints and watches stay. Console input you fed since the checkpoint's
point is fed again, so 'restore' + 'continue' replays the same run.
Examples:  restore ckpt-0001      restore before-loop      restore old/ckpt-0003.mvc""")
    def cmd_restore(self, args: str) -> None:
        spec = args.strip()
        if not spec:
            raise CommandError("give a checkpoint; usage: restore NAME|FILE ('checkpoints' "
                               "lists them)")
        name, path = self._resolve_checkpoint(spec)
        ckpt = read_checkpoint(path)
        consumed = ckpt.state.get("console", {}).get("input_consumed", 0)
        lineage = self._ckpt_input.get(name)
        log = bytearray(lineage) if lineage is not None and len(lineage) >= consumed \
            else bytearray(consumed)
        replay = bytes(log[consumed:])
        machine, overlay = resume(ckpt, self.store, console_sink=self._sink(),
                                  console_input=ConsoleInput(replay))
        self._install(machine, ckpt.image, f"{self.show_path(path)}")
        self._input_log = log
        self.say(f"restored {name} (tick {machine.tick}) from {self.show_path(path)}")
        if machine.halted:
            self.say("the checkpoint was taken after the program halted")
        else:
            self.say(f"=> {self.describe(machine.pc)}")
        if replay:
            self.say(f"  console input: {len(replay)} byte(s) fed after that point are fed again")
        if overlay:
            self.say(f"  disk writes now go to {self.show_path(overlay)}; the checkpointed disk "
                     "stays unchanged")

    @command("diff", usage="diff A B", group="checkpoints", complete="checkpoint2",
             summary="compare two checkpoints, or one and 'now'",
             details="""
Compares two checkpoints, or a checkpoint and the running machine ('now'):
registers, pc and tick, memory pages (with how many bytes differ in each),
disk blocks, and device state (timer, disk queue, console counters).
Examples:  diff ckpt-0001 ckpt-0002      diff before-loop now      diff ckpt-0001""")
    def cmd_diff(self, args: str) -> None:
        parts = split_args(args)
        if len(parts) == 1:
            parts.append("now")
        if len(parts) != 2:
            raise CommandError("usage: diff A B (checkpoint names or files, or 'now')")
        a = self._view(parts[0])
        try:
            b = self._view(parts[1])
            try:
                self._print_diff(a, b)
            finally:
                for close in b.closers:
                    close()
        finally:
            for close in a.closers:
                close()

    def _view(self, spec: str) -> _View:
        if spec == "now":
            m = self.require_machine()
            pages = {i: bytes(p) for i, p in enumerate(m.memory.pages) if type(p) is not bytes}
            return _View("now", list(m.regs[:isa.NUM_REGS]), m.pc, m.tick, m.halted,
                         m.save_state(), m.memory.size, pages, m.disk.backing)
        name, path = self._resolve_checkpoint(spec)
        ckpt = read_checkpoint(path)
        cpu = ckpt.state["cpu"]
        view = _View(name, list(cpu["regs"]), cpu["pc"], cpu["tick"], cpu["halted"], ckpt.state,
                     ckpt.memory_size, dict(ckpt.pages))
        if ckpt.disk is not None:
            from .disks import open_disk
            try:
                chain = resolve_disk_chain(ckpt, None)
                top = open_disk(chain[0]["resolved"])
                view.disk = top
                view.closers = tuple(layer.close for layer in top.chain())
            except MinivmError as exc:
                view.disk_note = str(exc)
        return view

    def _print_diff(self, a: _View, b: _View) -> None:
        self.say(f"diff {a.name} (tick {a.tick}) -> {b.name} (tick {b.tick})")
        regs = [f"{isa.reg_name(i)} {to_signed(x)} -> {to_signed(y)}"
                for i, (x, y) in enumerate(zip(a.regs, b.regs)) if x != y]
        if a.pc != b.pc:
            regs.append(f"pc {a.pc} -> {b.pc}")
        if a.halted != b.halted:
            regs.append(f"halted {a.halted} -> {b.halted}")
        self.say("  registers: " + (", ".join(regs) if regs else "same"))
        if a.memory_size != b.memory_size:
            self.say(f"  memory: sizes differ ({a.memory_size} vs {b.memory_size} bytes)")
        else:
            differ = []
            for index in sorted(set(a.pages) | set(b.pages)):
                size = min(PAGE_SIZE, a.memory_size - index * PAGE_SIZE)
                pa = a.pages.get(index) or bytes(size)
                pb = b.pages.get(index) or bytes(size)
                if pa != pb:
                    differ.append((index, sum(1 for x, y in zip(pa, pb) if x != y)))
            if not differ:
                self.say("  memory: same")
            else:
                listed = ", ".join(f"{i} ({n} byte{'s' if n != 1 else ''})"
                                   for i, n in differ[:MAX_LISTED])
                more = f", and {len(differ) - MAX_LISTED} more" if len(differ) > MAX_LISTED else ""
                self.say(f"  memory: {len(differ)} page(s) differ: {listed}{more}")
        self.say("  disk: " + self._disk_diff(a, b))
        devices = device_changes(a.state, b.state)
        self.say("  devices: " + ("; ".join(devices) if devices else "same"))

    def _disk_diff(self, a: _View, b: _View) -> str:
        notes = [v.disk_note for v in (a, b) if v.disk_note]
        if notes:
            return "cannot compare: " + "; ".join(notes)
        if a.disk is None and b.disk is None:
            return "none attached"
        if a.disk is None or b.disk is None:
            return f"attached only to {a.name if a.disk is not None else b.name}"
        if a.disk.block_count != b.disk.block_count:
            return f"sizes differ ({a.disk.block_count} vs {b.disk.block_count} blocks)"
        differ = []
        chunk = 64
        for start in range(0, a.disk.block_count, chunk):
            n = min(chunk, a.disk.block_count - start)
            da, db = a.disk.read_blocks(start, n), b.disk.read_blocks(start, n)
            if da != db:
                for k in range(n):
                    if da[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE] != db[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE]:
                        differ.append(start + k)
        if not differ:
            return f"same ({a.disk.block_count} blocks)"
        return f"{len(differ)} block(s) differ: {index_ranges(differ)}"

    # ==== commands: session ======================================================================
    @command("load", aliases=("file",), usage="load PROG", group="session", complete="path",
             summary="load a program (.asm source or .mvb image)", details="""
Assembles (or reads) a program and starts a fresh machine with it, at tick 0.
Breakpoints stay if it is the same program. Checkpoints of the previous
machine that were still saving are completed first.
Examples:  load programs/fib.asm      load build/sieve.mvb""")
    def cmd_load(self, args: str) -> None:
        path = args.strip()
        if len(path) >= 2 and path[0] == path[-1] and path[0] in "\"'":
            path = path[1:-1]
        if not path:
            raise CommandError("give a program; usage: load PROG (e.g. load programs/fib.asm)")
        self.load(path)

    @command("reset", usage="reset", group="session",
             summary="start the program again from the beginning", details="""
Reloads the program (re-reading the file, so edits are picked up) into a fresh
machine at tick 0 with empty console input. Breakpoints and watches stay.
Disk writes already made to the disk file are not undone: 'restore' a
checkpoint for that.
Example:  reset""")
    def cmd_reset(self, args: str) -> None:
        self.require_machine()
        if self.program_path is None:
            image = self.image
            machine = self._new_machine(image)
            self._input_log = bytearray()
            self._install(machine, image, self.origin)
        else:
            from .program import load_program
            image = load_program(self.program_path)
            machine = self._new_machine(image)
            self._input_log = bytearray()
            self._install(machine, image, self.program_path)
        self.say("reset: a fresh machine at tick 0")
        self.say(f"=> {self.describe(machine.pc)}")

    @command("input", aliases=("in",), usage="input [-n] TEXT", group="session",
             summary="feed TEXT and a newline to the guest's console input", details="""
The guest's console input (port 0x02) comes only from this command, never from
the terminal. TEXT is fed followed by a newline; -n leaves the newline out.
Escapes: \\n \\t \\r \\0 \\\\ \\" \\xHH; quote TEXT to keep leading or trailing
spaces. When everything fed has been read, reads give -1 (end of input).
Examples:  input hello      input -n 42      input "  two spaces"      input \\x04""")
    def cmd_input(self, args: str) -> None:
        m = self.require_machine()
        newline = True
        text = args
        if text == "-n" or text.startswith("-n "):
            newline, text = False, text[3:]
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        data = unescape(text) + (b"\n" if newline else b"")
        if not data:
            raise CommandError("nothing to feed; usage: input [-n] TEXT")
        m.console.source.feed(data)
        self._input_log += data
        self.say(f"fed {len(data)} byte(s); {m.console.source.buffered()} buffered, not yet read")

    @command("help", aliases=("h", "?"), usage="help [COMMAND]", group="session",
             complete="command", summary="list commands, or explain one with examples",
             details="""
Without an argument, lists every command with its aliases and a one-line
summary. 'help COMMAND' (or an alias) explains one command with examples.
Examples:  help      help break      help x""")
    def cmd_help(self, args: str) -> None:
        if args:
            cmd = resolve_command(args.split()[0])
            aliases = f"   (aliases: {', '.join(cmd.aliases)})" if cmd.aliases else ""
            self.say(f"{cmd.usage}{aliases}")
            self.say(f"  {cmd.summary}")
            prose, _, examples = cmd.details.partition("\nExample")
            if cmd.details.startswith("Example"):
                prose, examples = "", cmd.details[len("Example"):]
            for line in textwrap.wrap(" ".join(prose.split()), 76):
                self.say(f"  {line}")
            label, _, items = examples.partition(":")
            line = f"  Example{label}:"
            indent = " " * len(line)
            for item in re.split(r"\s{3,}", items.strip()):
                if len(line) + 4 + len(item) > 78 and line.strip():
                    self.say(line)
                    line = indent
                line += ("  " if line == indent or line.endswith(":") else "    ") + item
            self.say(line)
            return
        self.say("minivm REPL commands (help COMMAND for details and examples):")
        for group in GROUPS:
            self.say(f"{group}:")
            for cmd in COMMANDS.values():
                if cmd.group == group:
                    names = ", ".join((cmd.name,) + cmd.aliases)
                    self.say(f"  {names:<24} {cmd.summary}")
        self.say("Values: numbers, labels, registers, expressions (buf+4, [sp], r1*2).\n"
                 "Enter repeats step/next/continue/x. Tab completes. Ctrl-C stops the guest;\n"
                 "Ctrl-D quits.")

    @command("pause", usage="pause [TEXT]", group="session",
             summary="in a demo, wait for Enter before going on", details="""
For scripted demos ('minivm demo'): shows TEXT and, when a presenter is at a
terminal, waits for Enter, so a class can look at the screen first. In other
batch runs it only shows TEXT.
Example:  pause Now watch the pages being saved""")
    def cmd_pause(self, args: str) -> None:
        self.say(f"-- {args.strip() or 'press Enter to go on'} --")
        if self.pause_hook is not None:
            self.pause_hook()

    @command("quit", aliases=("exit", "q"), usage="quit", group="session",
             summary="leave (checkpoints still saving are finished first)", details="""
Ends the session. Checkpoints still saving are completed first, so every
checkpoint file is whole. Ctrl-D does the same.
Example:  quit""")
    def cmd_quit(self, args: str) -> None:
        self.quit_requested = True

    # ==== reporting checkpoint progress ============================================================
    def _report_jobs(self) -> None:
        """Announce each checkpoint once, when it completes or fails."""
        for job in self.jobs:
            if job.status == "saving" or id(job) in self._announced:
                continue
            self._announced.add(id(job))
            if job.status == "complete":
                self.say(f"checkpoint {job.name} is complete: {job.pages_saved} page(s) "
                         f"-> {self.show_path(job.location)}")
            else:
                self.say(f"checkpoint {job.name} failed: {job.error}")


def command_names() -> list[str]:
    return list(COMMANDS)
