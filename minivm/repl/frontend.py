"""``minivm repl``: the interactive layer over the session (core.py) and its
commands (registry.py, commands/).

* Interactive (stdin is a terminal): a prompt_toolkit ``PromptSession`` with a
  prompt that shows the machine state (``minivm[tick 1042 pc 17]>``), Tab
  completion (:class:`ReplCompleter`: command names with their one-line help,
  then labels, registers, checkpoint names or file paths, built on
  ``NestedCompleter``), history in ``~/.minivm_history`` (``MINIVM_HISTORY``
  overrides; in memory if that file cannot be written), suggestions from
  history, and a bottom toolbar with tick, pc, source line and the checkpoint
  being saved. ``patch_stdout`` keeps guest output from corrupting the prompt.
  Ctrl-C while the guest runs stops it at the next instruction boundary
  (``Machine.stop_requested``, see ``Session.running``), and what is typed
  while the guest runs waits for the next prompt (:class:`TypeAhead`);
  Ctrl-C at the prompt clears the line; Ctrl-D quits. Enter on an empty line repeats
  step/next/continue/x, as in gdb.
* Scripted (``--batch FILE``, or commands on a pipe): the same commands, each
  echoed after the prompt, so the transcript reads like an interactive
  session. Lines starting with ``#`` are printed as they are (comments for a
  classroom demo). Exit status 0, or 1 if any command failed (a guest fault is
  a result, not a failed command).
"""

from __future__ import annotations

import os
import sys

try:
    import termios
except ImportError:                        # not a POSIX host: no terminal modes to set
    termios = None

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import (Completer, Completion, NestedCompleter, PathCompleter,
                                       WordCompleter, merge_completers)
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from .. import isa
from ..devices import DEFAULT_MAX_INFLIGHT
from ..engine import DEFAULT_ENGINE
from ..errors import MinivmError, reason, show
from ..ckptfile import is_checkpoint_file
from ..memory import parse_size
from ..resume import close_pages, read_checkpoint
from ..store import CHECKPOINT_SUFFIX
from .commands.checkpoints import restore_checkpoint
from ..probes import EVENTS
from .core import Session
from .registry import COMMANDS, INFO_TOPICS

#: The first line of an interactive session (80 columns at most).
BANNER = "minivm REPL - 'help' lists commands, Tab completes, Ctrl-C stops, Ctrl-D quits"
REGISTERS = [isa.reg_name(i) for i in range(isa.NUM_REGS)] + ["r15"]
INFO_COMPLETIONS = ("registers", "breakpoints", "watchpoints", "checkpoints", "devices", "pages",
                    "status", "catch", "settings")
SETTINGS = ("save-rate", "history-budget", "history-interval")


# --- completion ------------------------------------------------------------------------

class _Offer(Completer):
    """Offer ``words`` for the first word but accept more (abbreviations) in
    ``nested`` for the words after it: ``info`` offers 'registers', and
    ``i r r1`` still completes the register."""

    def __init__(self, words, nested: NestedCompleter):
        self.first = WordCompleter(list(words), ignore_case=True)
        self.nested = nested

    def get_completions(self, document, complete_event):
        if " " in document.text_before_cursor.lstrip():
            yield from self.nested.get_completions(document, complete_event)
        else:
            yield from self.first.get_completions(document, complete_event)


class ReplCompleter(Completer):
    """First word: command names with their one-line help as meta text.
    After it: a ``NestedCompleter`` keyed by every command name and alias,
    rebuilt when the program, checkpoints or breakpoints change."""

    def __init__(self, session: Session):
        self.session = session
        self._key = None
        self._nested: NestedCompleter | None = None
        # WORD: a command name may hold '-' (reverse-step), which must not end the word
        self._first = WordCompleter(list(COMMANDS), ignore_case=True, WORD=True,
                                    meta_dict={name: cmd.summary for name, cmd in COMMANDS.items()})

    def _checkpoint_names(self) -> list[str]:
        s = self.session
        return sorted(s.checkpoints.names() | set(s.store.names()))

    def nested(self) -> NestedCompleter:
        s = self.session
        names = self._checkpoint_names()
        numbers = s.breakpoints.numbers()
        key = (id(s.image), tuple(names), tuple(numbers))
        if key != self._key:
            self._nested = self._build(names, [str(n) for n in numbers])
            self._key = key
        return self._nested

    def _build(self, checkpoints: list[str], numbers: list[str]) -> NestedCompleter:
        image = self.session.image
        symbols = image.symbols if image is not None else {}
        code = sorted(n for n, (sec, _) in symbols.items() if sec == "text")
        data = sorted(n for n, (sec, _) in symbols.items() if sec == "data")
        equ = sorted(n for n, (sec, _) in symbols.items() if sec == "equ")
        lines = sorted({os.path.basename(f) + ":" for f in (image.files or [image.source_file])}) \
            if image is not None else []
        path = PathCompleter(expanduser=True)
        regs = WordCompleter(REGISTERS + ["pc"], ignore_case=True, WORD=True)
        kinds = {
            "code": WordCompleter(code + lines, WORD=True),
            "data": WordCompleter(data + REGISTERS, WORD=True),
            "regs": regs,
            "set": WordCompleter(REGISTERS + ["pc", *SETTINGS], ignore_case=True, WORD=True),
            "any": WordCompleter(code + data + equ + REGISTERS + ["pc", "tick"], WORD=True),
            "path": path,
            "checkpoint": merge_completers([WordCompleter(checkpoints, WORD=True), path]),
            "checkpoint2": NestedCompleter.from_nested_dict(
                {name: WordCompleter(checkpoints + ["now"], WORD=True)
                 for name in checkpoints + ["now"]}),
            "command": WordCompleter(list(COMMANDS), ignore_case=True),
            "numbers": WordCompleter(numbers),
            "onoff": WordCompleter(["on", "off"]),
            "tick": WordCompleter(["0", "tick"], WORD=True),
            "catch": WordCompleter(list(EVENTS), WORD=True),
            "settings": WordCompleter(list(SETTINGS), WORD=True),
        }
        info = NestedCompleter({topic: (regs if target == "regs" else None)
                                for topic, target in INFO_TOPICS.items()})
        kinds["info"] = _Offer(INFO_COMPLETIONS, info)
        options = {}
        for cmd in COMMANDS.values():
            for name in (cmd.name,) + cmd.aliases:
                options[name] = kinds.get(cmd.complete)
        return NestedCompleter(options, ignore_case=True)

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor.lstrip()
        if " " not in text:
            yield from self._first.get_completions(document, complete_event)
            return
        for completion in self.nested().get_completions(document, complete_event):
            yield Completion(completion.text, completion.start_position,
                             display=completion.display, display_meta=completion.display_meta)


# --- the terminal while the guest runs ------------------------------------------------------

class TypeAhead:
    """The terminal while 'run', 'continue' or 'step' is busy: what you type
    is kept for the next prompt, not lost and not echoed into the guest's
    output. Echo and line editing are off (the bytes wait in the terminal's
    input queue, where the next prompt reads them as if typed there: a line
    ended with Enter runs as the next command, the rest is on the prompt's
    line); Ctrl-C still stops the guest, and with NOFLSH it no longer throws
    the typed text away. Carriage returns stay carriage returns, as
    prompt_toolkit reads them. On anything but a terminal it does nothing."""

    def __init__(self, fd: int):
        self.fd = fd
        self.saved = None

    @property
    def echoes_ctrl_c(self) -> bool:
        """Whether the terminal echoed ^C on the guest's line (as usual)."""
        return self.saved is None

    def __enter__(self) -> "TypeAhead":
        self.saved = None
        if termios is None:
            return self
        try:
            saved = termios.tcgetattr(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)
            attrs[3] = (attrs[3] & ~(termios.ECHO | termios.ICANON)) | termios.ISIG | termios.NOFLSH
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except (OSError, ValueError, termios.error):
            return self                    # not a terminal (a pipe, a file): nothing to do
        self.saved = saved
        return self

    def __exit__(self, *exc) -> bool:
        if self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
            except (OSError, termios.error):
                pass
            self.saved = None
        return False


def _input_fd(prompt: PromptSession) -> int | None:
    try:
        return prompt.input.fileno()
    except (AttributeError, NotImplementedError, OSError, ValueError):
        return None


# --- history and the prompt ----------------------------------------------------------------

def open_history(path: str | None = None):
    """(history, note): a FileHistory, or an in-memory one if the file cannot be written."""
    path = path or os.environ.get("MINIVM_HISTORY") or os.path.expanduser("~/.minivm_history")
    try:
        with open(path, "a", encoding="utf-8"):
            pass
        return FileHistory(path), None
    except OSError as exc:
        return InMemoryHistory(), (f"(command history is kept for this session only: cannot "
                                   f"write {path}: {exc.strerror or exc})")


def make_prompt_session(session: Session, *, input=None, output=None, history=None) -> PromptSession:
    return PromptSession(history=history if history is not None else InMemoryHistory(),
                         completer=ReplCompleter(session), complete_while_typing=True,
                         auto_suggest=AutoSuggestFromHistory(),
                         bottom_toolbar=session.toolbar_text,
                         input=input, output=output)


def interact(session: Session, prompt: PromptSession, close: bool = True) -> int:
    """The read-eval-print loop; returns the exit status (always 0). With
    ``close`` False the session stays open (``minivm demo``'s 'p' key)."""
    last_line = ""
    fd = _input_fd(prompt)
    if fd is not None and session.while_running is None:
        session.while_running = lambda: TypeAhead(fd)
    while not session.quit_requested:
        try:
            line = prompt.prompt(session.prompt_text())
        except KeyboardInterrupt:        # Ctrl-C at the prompt: a fresh line
            continue
        except EOFError:                 # Ctrl-D
            break
        if not line.strip():
            cmd = session.last_command
            if cmd is None or not cmd.repeat or not last_line:
                continue
            line = "x" if cmd.name == "mem" else last_line
        else:
            last_line = line
        session.execute(line)
    if close:
        session.close()
    return 0


# --- scripted mode --------------------------------------------------------------------------

def run_batch(session: Session, lines) -> int:
    """Run commands non-interactively, echoing each after the prompt."""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            session.say(line)
            continue
        if line.split()[0].lower() != "pause":       # a pause shows its own text
            session.say(session.prompt_text() + line)
        session.execute(line)
        if session.quit_requested:
            break
    session.close()
    return 1 if session.errors else 0


def open_start(session: Session, path: str) -> None:
    """What ``minivm repl PATH`` starts with: a checkpoint file (known by its
    magic bytes, whatever its name) is restored, anything else is loaded as a
    program. A file named .mvc that is not a checkpoint, or a checkpoint that
    does not validate, is an error that ends the command (exit status 2)."""
    if is_checkpoint_file(path):
        close_pages(read_checkpoint(path).pages)   # validates: a bad file fails here
        restore_checkpoint(session, path, undo=False)
    elif path.endswith(CHECKPOINT_SUFFIX) and not os.path.exists(path):
        raise MinivmError(f"checkpoint file '{show(path)}' does not exist")
    elif path.endswith(CHECKPOINT_SUFFIX) and os.path.isfile(path):
        raise MinivmError(f"'{show(path)}' is not a minivm checkpoint: it does not begin with "
                          "a checkpoint's magic bytes (minivm repl opens a program, .asm or "
                          ".mvb, or a checkpoint file written by minivm)")
    else:
        session.execute("load " + path)


def _read_batch(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            # one command per "\n" line (not str.splitlines(), which also splits
            # at \f, \x1c, \u2028...: a line of the file stays one command)
            text = f.read()
        return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] \
            if text else []
    except FileNotFoundError:
        raise MinivmError(f"the batch file '{show(path)}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MinivmError(f"cannot read the batch file '{show(path)}': {reason(exc)}") from None


def _budget(text: str | None) -> int | None:
    return None if text is None else parse_size(text, "--history-budget size")


def main(args) -> int:
    batch = getattr(args, "batch", None)
    lines = _read_batch(batch) if batch else None
    session = Session(mem=args.mem, disk=args.disk,
                      disk_latency=getattr(args, "disk_latency", 100),
                      disk_per_block=getattr(args, "disk_per_block", 10),
                      max_inflight=getattr(args, "max_inflight", DEFAULT_MAX_INFLIGHT),
                      max_inflight_bytes=parse_size(getattr(args, "max_inflight_bytes", "64M"),
                                                    "--max-inflight-bytes size"),
                      checkpoint_dir=getattr(args, "checkpoint_dir", None) or "checkpoints",
                      engine=getattr(args, "engine", DEFAULT_ENGINE),
                      history=not getattr(args, "no_history", False),
                      history_budget=_budget(getattr(args, "history_budget", None)))
    if lines is None and not sys.stdin.isatty():
        lines = sys.stdin                  # line by line, as they arrive on the pipe
    if lines is not None:
        if args.program:
            open_start(session, args.program)
        return run_batch(session, lines)
    history, note = open_history()
    prompt = make_prompt_session(session, history=history)
    with patch_stdout(raw=True):
        session.say(BANNER)
        if note:
            session.say(note)
        if args.program:
            open_start(session, args.program)
        return interact(session, prompt)
