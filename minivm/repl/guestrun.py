"""Running the guest from a REPL session: the context every command that runs
it enters (:func:`running`), the session machine's checkpointer, which
announces a checkpoint the guest takes with ``ckpt`` at the moment it is
taken (between the guest's console output, on a line of its own), and the
checkpointers of earlier machines of the session, which ``timeline`` draws."""

from __future__ import annotations

import re
import textwrap
from contextlib import contextmanager
from html import escape

from .. import isa
from ..checkpoint import Checkpointer
from ..interrupts_guard import SigintGuard
from . import render, travel
from .parsing import CommandError
from .places import show_path


class SessionCheckpointer(Checkpointer):
    """The checkpointer of a session's machine: ``announce(job)`` is called
    as soon as a ``ckpt`` instruction of the guest has taken ``job``, while
    the guest is still running (the machine stops only for the stop window
    of P2, so the line comes between the console output before and after)."""

    def __init__(self, machine, store, *, announce, **options):
        super().__init__(machine, store, **options)
        self._announce = announce

    def on_ckpt(self, machine) -> None:
        before = len(self.jobs)
        super().on_ckpt(machine)
        for job in self.jobs[before:]:
            self._announce(job)


def announce_guest_checkpoint(s, job) -> None:
    """The guest took ``job`` with 'ckpt': into the book, and said now."""
    if job in s.checkpoints:
        return
    s.checkpoints.add(job, s.input_log)
    s.say(f"(the guest took checkpoint {job.name} at tick {job.tick} with 'ckpt')")
    if s.machine is not None:
        s.say_lines(render.checkpoint_notes(job, s.machine))


@contextmanager
def running(s):
    """Around anything that runs the guest: Ctrl-C stops it at the next
    instruction boundary (:class:`SigintGuard`); the front end's terminal
    guard (``s.while_running``, see frontend.py) keeps what is typed meanwhile
    for the next prompt; when nothing can run any more, saves finish."""
    m = s.machine
    s.prev_regs = list(m.regs[:isa.NUM_REGS]) + [m.pc]
    m.stop_requested = False
    guard = SigintGuard(m, enabled=s.handle_sigint)
    terminal = s.while_running() if s.while_running is not None else None
    try:
        if terminal is not None:
            terminal.__enter__()
        with guard:
            yield m
    finally:
        s.ctrl_c_echoed = guard.seen and (terminal is None or terminal.echoes_ctrl_c)
        if terminal is not None:
            terminal.__exit__(None, None, None)
        s.sigint_seen = guard.seen
        m.stop_requested = False
        travel.after_run(s)
        for job in s.checkpointer.jobs:        # (each is announced when taken; none is left)
            announce_guest_checkpoint(s, job)
        if m.halted or m.fault is not None:
            # Nothing will run any more: complete the saves now (as `minivm run` does).
            s.checkpointer.finish_all()


def wrap_note(message: str) -> list[str]:
    """A checkpointer's note in lines of 80 columns (a path longer is left whole)."""
    return textwrap.wrap(f"note: {message}", 80, subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)


def new_checkpointer(s, machine) -> SessionCheckpointer:
    return SessionCheckpointer(machine, s.store, pages_per_slice=s.pages_per_slice,
                               slice_ticks=s.save_interval,
                               report=lambda msg: s.say_lines(wrap_note(msg)),
                               announce=lambda job: announce_guest_checkpoint(s, job))


# ---- the timeline of the whole session ----------------------------------------------------
_SIZE_RE = re.compile(r'<svg\b[^>]*?\swidth="(\d+(?:\.\d+)?)"[^>]*?\sheight="(\d+(?:\.\d+)?)"')
HEADING = 40             # room above each machine's picture for its heading


def retire_checkpointer(s) -> None:
    """The session's machine is being replaced: keep its checkpointer (if it
    took any checkpoint) for the session's timeline."""
    cp = s.checkpointer
    if cp is not None and cp.jobs:
        s.past_runs.append((s.origin, cp))


def session_timeline(s) -> tuple[str, int, int]:
    """(SVG, checkpoints, machines): the timeline of every machine of the
    session that took a checkpoint, the earlier ones (replaced by 'restore',
    'reset' or 'load') first, each under a heading that says where it came
    from. One machine: its timeline as it is."""
    from ..timeline import timeline_svg
    runs = list(s.past_runs)
    if s.checkpointer is not None and s.checkpointer.jobs:
        runs.append((s.origin, s.checkpointer))
    if not runs:
        raise CommandError("no checkpoint has been taken in this session yet "
                           "('checkpoint' takes one)")
    count = sum(len(cp.jobs) for _, cp in runs)
    if len(runs) == 1:
        return timeline_svg(runs[0][1]), count, 1
    parts, y, width = [], 0, 0
    for number, (origin, cp) in enumerate(runs, 1):
        svg = timeline_svg(cp)
        match = _SIZE_RE.search(svg)
        w, h = (float(match.group(1)), float(match.group(2))) if match else (960.0, 500.0)
        now = " (the current one)" if cp is s.checkpointer else ""
        heading = (f"machine {number} of {len(runs)}{now}: from {show_path(origin)}, "
                   f"{len(cp.jobs)} checkpoint(s)")
        parts.append(f'<text x="12" y="{y + 28}" font-size="20" font-family="sans-serif" '
                     f'font-weight="bold" fill="#222222">{escape(heading)}</text>')
        parts.append(svg.replace("<svg ", f'<svg x="0" y="{y + HEADING}" ', 1).strip())
        y += HEADING + h
        width = max(width, w)
    width = int(width + 0.5)
    height = int(y + 0.5)
    title = f"minivm session timeline: {count} checkpoint(s) of {len(runs)} machine(s)"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">\n<title>{escape(title)}</title>\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(parts) + "\n</svg>\n"), count, len(runs)


# ---- console input fed after a halt is for the next run ----------------------------------------
def carry_input(s, old, keep: bool) -> None:
    """A fresh machine replaced ``old`` ('reset', 'run' after a halt: ``keep``;
    'load': not). Input fed while ``old`` had halted or faulted was for the
    next run: fed to the new machine when ``keep``. Whatever else ``old`` had
    not read is dropped with it, and either is said."""
    pending, s.pending_input = bytes(s.pending_input), bytearray()
    unread = old.console.source.buffered() - len(pending) if old is not None else 0
    if unread > 0:
        s.say(f"({unread} byte(s) of console input the program had not read are dropped "
              "with its machine)")
    if not pending:
        return
    if not keep:
        s.say(f"({len(pending)} byte(s) of console input fed after the halt or fault are dropped: "
              "they were for a 'run' or 'reset' of that program)")
        return
    m = s.machine
    m.console.source.feed(pending)
    if s.history is not None:
        s.history.note_input(pending)
    s.input_log += pending
    s.say(f"(console input fed after the halt or fault: {len(pending)} byte(s), fed to this run)")
