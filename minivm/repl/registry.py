"""The command table: every REPL command is a function registered with its
metadata, and :func:`invoke` is the one place that checks what a command
needs (a machine, a machine that can still run, how many arguments) before
calling it. Modelled on trepan3k's one-function-per-command with
``setup(category=, max_args=, need_stack=)``.

A handler is ``handler(session, args)``: ``args`` is the text after the
command word, stripped. Its help is its docstring: the first paragraph is
the detailed text shown by ``help NAME`` (ending with ``Examples:``).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable

from .parsing import CommandError, split_args

GROUPS = ("running", "time travel", "breakpoints", "inspecting", "checkpoints", "session")


@dataclass
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    summary: str
    details: str
    group: str
    complete: str | None          # what the arguments complete to (frontend.py)
    handler: Callable
    repeat: bool = False          # an empty line repeats it (gdb habit)
    needs: str | None = None      # None, "machine" or "runnable"
    verb: str = ""                # for "runnable": "nothing to VERB" when halted
    min_args: int = 0
    max_args: int | None = None   # None: the arguments are free text
    missing: str = ""             # the message when fewer than min_args are given
    too_many: str = ""            # the message when more than max_args are given


COMMANDS: dict[str, Command] = {}
ALIASES: dict[str, str] = {}


def command(name, *, aliases=(), usage, summary, group, details=None, complete=None,
            repeat=False, needs=None, verb="", min_args=0, max_args=None, missing="",
            too_many=""):
    """Register the decorated function as command ``name``; its docstring is
    the help text unless ``details`` is given."""
    def register(handler):
        text = details if details is not None else inspect.cleandoc(handler.__doc__ or "")
        COMMANDS[name] = Command(name, tuple(aliases), usage, summary, text.strip("\n"), group,
                                 complete, handler, repeat, needs, verb or name, min_args,
                                 max_args, missing, too_many)
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
               "status": "status", "s": "status",
               "catch": "catchpoints", "catchpoints": "catchpoints",
               "settings": "show", "set": "show", "save-rate": "show"}


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


def invoke(session, cmd: Command, args: str) -> None:
    """Check what ``cmd`` needs, then run it: the only place that does."""
    if cmd.needs == "machine":
        session.require_machine()
    elif cmd.needs == "runnable":
        session.check_runnable(cmd.verb)
    if cmd.min_args or cmd.max_args is not None:
        count = len(split_args(args))
        if count < cmd.min_args:
            raise CommandError(cmd.missing or f"usage: {cmd.usage}")
        if cmd.max_args is not None and count > cmd.max_args:
            raise CommandError(cmd.too_many or f"too many arguments; usage: {cmd.usage}")
    cmd.handler(session, args)


def command_names() -> list[str]:
    return list(COMMANDS)
