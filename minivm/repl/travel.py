"""Time travel in a REPL session: the session's recorded run (minivm/history.py),
the changes made at the prompt that alter it, the jumps and the points
'undo' comes back to. The commands are in commands/timetravel.py."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

from .. import isa
from ..checkpoint import Checkpointer
from ..ckptfile import load_checkpoint
from ..devices import ConsoleInput
from ..errors import MinivmError
from ..history import DEFAULT_INTERVAL, History, HistoryError
from ..interrupts_guard import SigintGuard
from ..memory import format_size, parse_size
from ..resume import resume
from ..store import MemoryStore
from .books import InputLog
from .parsing import CommandError, parse_count, split_args
from .places import show_path

#: How many jumps in time 'undo' can take back.
UNDO_DEPTH = 64


@dataclass
class UndoPoint:
    """Where the machine was before a jump: a tick of the same recorded run
    (``travel``) or a checkpoint taken just before a ``restore``."""
    kind: str
    label: str
    tick: int
    history: object = None
    changes: int = 0
    checkpoint: str = ""
    store: object = None
    input_log: object = None


# ---- recording ------------------------------------------------------------------------------
def start_history(s, only_if_on: bool = False) -> None:
    """Record the session machine's run from now on (a new machine: if on)."""
    if only_if_on and not s.history_on:
        return
    s.history = History(s.machine, s.checkpointer, budget=s.history_budget,
                        interval=s.history_interval or DEFAULT_INTERVAL,
                        adaptive=s.history_interval is None)


def stop_history(s, keep_undo: bool = False) -> None:
    """Stop recording (and forget the record: 'history off', a new machine)."""
    if s.history is not None:
        s.history.close()
        s.history = None
    if not keep_undo:
        s.undo_points = [u for u in s.undo_points if u.kind != "travel"]


def after_run(s) -> None:
    """The guest ran (forward): the record reaches further."""
    if s.history is not None:
        s.history.note_position()


def require_history(s) -> History:
    s.require_machine()
    if s.history is None:
        raise CommandError("the run is not being recorded ('history on' records from "
                           "now on), so there is nothing to go back to")
    return s.history


def changed(s, why: str) -> None:
    """The user changed the machine at the prompt (``set``, a checkpoint that
    drained the disk): the recorded future after this point is dropped."""
    if s.history is not None:
        dropped = s.history.end() > s.machine.tick
        s.history.diverge(why)
        if dropped:
            s.say(f"(the run changed at tick {s.machine.tick}: the recorded history "
                  "after it is dropped)")


# ---- jumps ---------------------------------------------------------------------------------
def travel(s, move, label: str):
    """Run ``move(history)`` (a jump in time) with an undo point for it; Ctrl-C
    puts the machine back where it was."""
    h = require_history(s)
    m = s.machine
    s.prev_regs = list(m.regs[:isa.NUM_REGS]) + [m.pc]
    point = UndoPoint("travel", label, m.tick, h, len(h.changes))
    before = m.tick
    guard = SigintGuard(m, enabled=s.handle_sigint)
    terminal = s.while_running() if s.while_running is not None else nullcontext()
    try:
        with terminal, guard:              # typed meanwhile: kept for the next prompt
            result = move(h)
    except KeyboardInterrupt:
        h.goto(before)
        raise CommandError(f"interrupted: still at tick {before}") from None
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    s.undo_points.append(point)
    del s.undo_points[:-UNDO_DEPTH]
    s.x_next = None
    return result


def arrived(s, before: int, what: str = "") -> None:
    """Say where a jump from tick ``before`` landed."""
    m = s.machine
    delta = m.tick - before
    way = "back" if delta < 0 else "forward"
    moved = f"{way} {abs(delta)} tick{'s' if abs(delta) != 1 else ''}" if delta else "no move"
    s.say(f"{what}at tick {m.tick} ({moved})")
    if m.fault is not None:
        s.say(f"(this is the fault: {m.fault.reason})")
    elif m.halted:
        s.say(f"(the program has halted here: exit status {m.regs[0] & 0xFF})")
    else:
        s.say(f"=> {s.describe(m.pc)}")


def undo_point_valid(s, point) -> bool:
    if point.kind != "travel":
        return True
    h = point.history
    return h is s.history and all(t > point.tick for t in h.changes[point.changes:])


def undo_last(s) -> None:
    """'undo' / 'restore -': back to before the last jump that can be taken back."""
    while s.undo_points:
        point = s.undo_points.pop()
        if not undo_point_valid(s, point):
            s.say(f"(cannot undo '{point.label}': the run was changed before tick "
                  f"{point.tick} since)")
            continue
        if point.kind == "travel":
            m = s.machine
            before = m.tick
            s.prev_regs = list(m.regs[:isa.NUM_REGS]) + [m.pc]
            point.history.goto(point.tick)
            arrived(s, before, f"undid '{point.label}': ")
        else:
            ckpt = load_checkpoint(point.store.load(point.checkpoint),
                                   f"the checkpoint taken before '{point.label}'")
            restore_from(s, ckpt, point.checkpoint, "memory", point.input_log)
            s.say(f"(undid '{point.label}')")
        return
    raise CommandError("nothing to undo: no jump in time since the program was loaded")


# ---- restore ----------------------------------------------------------------------------------
def undo_checkpoint(s, label: str) -> None:
    """Before a 'restore': a checkpoint of the machine as it is, for 'undo'.
    It is kept in host memory (a MemoryStore, P11), not listed with the
    session's checkpoints; only its disk overlay, if a disk is attached, is
    a file (in the checkpoint folder's .undo/)."""
    m = s.machine
    if m.fault is not None or m.halted:
        return                      # 'reset' or 'restore' again: nothing to come back to
    if s.undo_store is None:
        s.undo_store = MemoryStore(os.path.join(s.store.folder, ".undo"))
    hooks = m.hooks
    queued = len(m.disk.queue)
    try:
        taker = Checkpointer(m, s.undo_store)
        job = taker.take("repl", f"undo-{s.undo_store.next_sequence():04d}")
        taker.finish_all()
    except (OSError, MinivmError) as exc:
        s.say(f"(no checkpoint for 'undo' could be taken: {exc}; 'undo' will not come "
              "back here)")
        return
    finally:
        m.hooks = hooks
    if len(m.disk.queue) < queued:
        changed(s, "the checkpoint for 'undo' (P8)")
    if job.status != "complete":
        s.say(f"(the checkpoint for 'undo' failed: {job.error})")
        return
    s.undo_points.append(UndoPoint("restore", label, m.tick, checkpoint=job.name,
                                   store=s.undo_store, input_log=s.input_log))
    del s.undo_points[:-UNDO_DEPTH]


def restore_from(s, ckpt, name: str, where: str, lineage) -> None:
    """The session's machine becomes the one ``ckpt`` describes (restore, undo)."""
    consumed = ckpt.state["console"]["input_consumed"]      # validated by the loader
    log = lineage.fork(consumed) if lineage is not None else InputLog(consumed)
    replay = bytes(log.data)
    machine, overlay = resume(ckpt, s.store, console_sink=s.sink(),
                              console_input=ConsoleInput(replay), engine=s.engine)
    s.install(machine, ckpt.image, where)
    s.input_log = log
    s.pending_input = bytearray()   # fed after a halt: in the log if it is this run's lineage
    s.say(f"restored {name} (tick {machine.tick}) from {where}")
    if machine.halted:
        s.say("the checkpoint was taken after the program halted")
    else:
        s.say(f"=> {s.describe(machine.pc)}")
    if replay:
        s.say(f"  console input: {len(replay)} byte(s) fed after that point are fed again")
    if overlay:
        s.say(f"  disk writes now go to {show_path(overlay)};\n"
              "    the checkpointed disk stays unchanged")


# ---- settings ---------------------------------------------------------------------------------
def set_history_setting(s, name: str, value: str) -> bool:
    """``set history-budget SIZE`` / ``set history-interval TICKS``; False if
    ``name`` is not a history setting."""
    key = name.lower()
    if key == "history-budget":
        if value.lower() == "auto":
            s.history_budget = None
        else:
            try:
                s.history_budget = parse_size(value, "history budget")
            except MinivmError as exc:
                raise CommandError(str(exc)) from None
        if s.history is not None:
            s.history.budget = s.history_budget
            s.history.fit()
        shown = "auto" if s.history_budget is None else format_size(s.history_budget)
        s.say(f"history budget: {shown}")
        return True
    if key == "history-interval":
        if value.lower() == "auto":
            s.history_interval = None
        else:
            parts = split_args(value)
            s.history_interval = parse_count(parts[0] if parts else "", "the interval",
                                             "set history-interval TICKS")
        if s.history is not None:
            h = s.history
            h.interval = h.base_interval = s.history_interval or DEFAULT_INTERVAL
            h.adaptive = s.history_interval is None
        s.say(f"history interval: {s.history_interval or 'auto'}")
        return True
    return False
