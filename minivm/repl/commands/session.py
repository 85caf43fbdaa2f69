"""Commands for the session itself: load, reset, input, help, pause, quit."""

from __future__ import annotations

import re
import textwrap

from ..books import InputLog
from ..parsing import CommandError, unescape
from ..registry import COMMANDS, GROUPS, command, resolve_command


@command("load", aliases=("file",), usage="load PROG", group="session", complete="path",
         min_args=1, missing="give a program; usage: load PROG (e.g. load programs/fib.asm)",
         summary="load a program (.asm source or .mvb image)")
def load(s, args: str) -> None:
    """
    Assembles (or reads) a program and starts a fresh machine with it, at tick 0.
    Breakpoints stay if it is the same program. Checkpoints of the previous
    machine that were still saving are completed first.
    Examples:  load programs/fib.asm      load build/sieve.mvb
    """
    path = args
    if len(path) >= 2 and path[0] == path[-1] and path[0] in "\"'":
        path = path[1:-1]
    if not path:
        raise CommandError(COMMANDS["load"].missing)
    s.load(path)


@command("reset", usage="reset", group="session", needs="machine",
         summary="start the program again from the beginning")
def reset(s, args: str) -> None:
    """
    Reloads the program (re-reading the file, so edits are picked up) into a fresh
    machine at tick 0. Its console input is what you fed after the program
    halted or faulted, if anything; input the old machine had not read is
    dropped (and said). Breakpoints and watches stay.
    Disk writes already made to the disk file are not undone: 'restore' a
    checkpoint for that.
    Example:  reset
    """
    s.reset()


@command("input", aliases=("in",), usage="input [-n] TEXT", group="session", needs="machine",
         summary="feed TEXT and a newline to the guest's console input", details=r"""
The guest's console input (port 0x02) comes only from this command, never from
the terminal. TEXT is fed followed by a newline; -n leaves the newline out.
Escapes: \n \t \r \0 \\ \" \xHH; quote TEXT to keep leading or trailing
spaces. When everything fed has been read, reads give -1 (end of input).
Input fed after the program has halted or faulted is for the next run: 'run'
or 'reset' feeds it to the fresh machine. Other input the program had not
read when 'reset' or 'load' replaces its machine is dropped, and they say so.
Examples:  input hello      input -n 42      input "  two spaces"      input \x04""")
def input_(s, args: str) -> None:
    m = s.machine
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
    if s.history is not None:
        if s.history.end() > m.tick:
            s.say(f"(input fed in the past changes the run: the recorded history after "
                  f"tick {m.tick} is dropped)")
            keep = m.console.input_consumed + m.console.source.buffered() - len(data)
            log = s.input_log                   # the stream up to here, then this input
            s.input_log = InputLog(log.start, bytes(log.data[:max(keep - log.start, 0)]))
        s.history.note_input(data)
    s.input_log += data
    if m.halted or m.fault is not None:
        s.pending_input += data
        s.say(f"fed {len(data)} byte(s) after the {'halt' if m.halted else 'fault'}: kept for "
              f"the next run\n  ('run' or 'reset' starts it with them; {len(s.pending_input)} "
              "kept)")
        return
    s.say(f"fed {len(data)} byte(s); {m.console.source.buffered()} buffered, not yet read")


@command("help", aliases=("h", "?"), usage="help [COMMAND]", group="session",
         complete="command", summary="list commands, or explain one with examples")
def help_(s, args: str) -> None:
    """
    Without an argument, lists every command with its aliases and a one-line
    summary. 'help COMMAND' (or an alias) explains one command with examples.
    Examples:  help      help break      help x
    """
    if args:
        s.say_lines(command_help(resolve_command(args.split()[0])))
        return
    s.say("minivm REPL commands (help COMMAND for details and examples):")
    for group in GROUPS:
        s.say(f"{group}:")
        for cmd in COMMANDS.values():
            if cmd.group == group:
                s.say_lines(_list_row(cmd))
    s.say("Values: numbers, labels, registers, expressions (buf+4, [sp], r1*2).\n"
          "Enter repeats step/next/continue/x. Tab completes. Ctrl-C stops the guest;\n"
          "Ctrl-D quits.")


def _list_row(cmd, width: int = 80) -> list[str]:
    """A command in 'help': its name and the aliases that fit the 24-column
    name field ('help NAME' lists them all), the summary wrapped to ``width``."""
    names = cmd.name
    for alias in cmd.aliases:
        if len(names) + 2 + len(alias) > 24:
            break
        names += ", " + alias
    return textwrap.wrap(cmd.summary, width, initial_indent=f"  {names:<24} ",
                         subsequent_indent=" " * 27, break_long_words=False)


def command_help(cmd) -> list[str]:
    """'help NAME': usage and aliases, summary, the text wrapped, the examples."""
    aliases = f"   (aliases: {', '.join(cmd.aliases)})" if cmd.aliases else ""
    lines = [f"{cmd.usage}{aliases}", f"  {cmd.summary}"]
    prose, _, examples = cmd.details.partition("\nExample")
    if cmd.details.startswith("Example"):
        prose, examples = "", cmd.details[len("Example"):]
    text: list[str] = []
    for row in prose.splitlines() + [""]:
        if row.startswith("  ") or not row.strip():     # a table row is kept as it is
            lines += [f"  {line}" for line in textwrap.wrap(" ".join(text), 76)]
            lines += [f"  {row}"] if row.strip() else []
            text = []
        else:
            text.append(row.strip())
    label, _, items = examples.partition(":")
    line = f"  Example{label}:"
    indent = " " * len(line)
    for item in re.split(r"\s{3,}", items.strip()):
        if len(line) + 4 + len(item) > 78 and line.strip():
            lines.append(line)
            line = indent
        line += ("  " if line == indent or line.endswith(":") else "    ") + item
    lines.append(line)
    return lines


@command("pause", usage="pause [TEXT]", group="session",
         summary="in a demo, stop for the presenter before going on")
def pause(s, args: str) -> None:
    """
    For scripted demos: ends a step. 'minivm demo' at a terminal stops there and
    asks the presenter what next (Enter goes on; b, r, a step number, p and q
    go back, replay, jump, open the REPL and quit), so a class can look at the
    screen first. In other batch runs it only shows TEXT.
    Example:  pause Now watch the pages being saved
    """
    s.say(f"-- {args or 'press Enter to go on'} --")
    if s.pause_hook is not None:
        s.pause_hook()


@command("quit", aliases=("exit", "q"), usage="quit", group="session",
         summary="leave (checkpoints still saving are finished first)")
def quit_(s, args: str) -> None:
    """
    Ends the session. Checkpoints still saving are completed first, so every
    checkpoint file is whole. Ctrl-D does the same.
    Example:  quit
    """
    s.quit_requested = True
