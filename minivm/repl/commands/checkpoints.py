"""Commands for checkpoints (docs/protocol.md): timeline, checkpoint, commit,
checkpoints, sync, restore, diff."""

from __future__ import annotations

import os
import re
import textwrap

from ... import isa
from ...resume import open_chain, read_checkpoint, resolve_disk_chain
from ...container import write_text_atomically
from ...errors import MinivmError, show
from .. import guestrun, render
from .. import travel
from ..parsing import CommandError, split_args
from ..places import show_path
from ..registry import command

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@command("timeline", usage="timeline FILE.svg", group="checkpoints", min_args=1,
         needs="machine", summary="draw this session's checkpoints over time as SVG")
def timeline(s, args: str) -> None:
    """
    Writes a picture of what the checkpoints of this session did over virtual
    time, for a projector (1280 wide, text 16 px or more): each protocol step
    labelled on its tick (P2 stop, P4 saved, P5 to P9), the disk requests
    (those in flight at a checkpoint are the P5 cases), the pages saved in the
    background (P4), memory COW faults, overlay writes and disk COW faults
    (P3), and each stop window as a gap in host time. Every machine of the
    session that took a checkpoint is drawn, one under the other with a
    heading: those replaced by 'restore', 'reset' or 'load' first, then the
    current one.
    Example:  timeline demo.svg
    """
    svg, count, machines = guestrun.session_timeline(s)
    write_text_atomically(args, svg)
    of = f" of {machines} machines" if machines > 1 else ""
    s.say(f"timeline of {count} checkpoint(s){of} written to {args}")


@command("checkpoint", aliases=("ckpt", "cp"), usage="checkpoint [--incremental] [NAME]",
         group="checkpoints",
         needs="machine", summary="take a checkpoint now (saved in the background)")
def checkpoint(s, args: str) -> None:
    """
    Takes a checkpoint at the current instruction boundary with the protocol of
    docs/protocol.md: a copy-on-write disk overlay (P1), a short stop that marks
    memory copy-on-write and saves the device state (P2); the pages are then
    written to the checkpoint folder while the guest runs (P4) - 'checkpoints',
    'pages' and the toolbar show the progress; 'sync' finishes at once. NAME
    defaults to ckpt-NNNN. With --incremental (-i), the file stores only the
    pages written since this machine's previous checkpoint, and names that
    one as its parent (restore and 'minivm resume' follow the chain; the first
    checkpoint of a machine is always full).
    Examples:  checkpoint      checkpoint before-loop      ckpt      ckpt -i step2
    """
    m = s.machine
    if m.fault is not None or m.halted:
        raise CommandError(f"the machine has {'halted' if m.halted else 'faulted'}: there is "
                           "nothing left to checkpoint ('diff CKPT now' compares states)")
    words = split_args(args)
    incremental = False
    for flag in ("--incremental", "-i"):
        while flag in words:
            words.remove(flag)
            incremental = True
    if len(words) > 1 or any(w.startswith("-") for w in words):
        raise CommandError("usage: checkpoint [--incremental] [NAME]")
    name = words[0] if words else None
    if name is not None:
        if not NAME_RE.match(name) or name == "now":
            raise CommandError(f"'{name}' cannot name a checkpoint: use letters, digits, "
                               "'-', '_' and '.', not starting with '.' (and not 'now')")
        if name in s.checkpoints.names() or name in s.store.names():
            raise CommandError(f"there is already a checkpoint named '{name}' "
                               "('checkpoints' lists them)")
    job = s.checkpointer.take("repl", name, incremental=incremental)
    s.checkpoints.add(job, s.input_log)
    if job.p8_drained:                  # P8 changed the run: the replay must see it
        travel.changed(s, f"checkpoint {job.name} (P8)")
    s.say(f"checkpoint {job.name} at tick {job.tick}, {s.describe(job.pc)}")
    if job.incremental:
        s.say(f"  incremental: {job.pages_total} page(s) written since its parent "
              f"{job.parent.name}")
    elif incremental:
        s.say("  a full checkpoint: the first of this machine (or after a failed or "
              "in-memory one), so it has no parent")
    s.say_lines(render.checkpoint_notes(job, m))


@command("commit", usage="commit", group="checkpoints", needs="machine", max_args=0,
         summary="merge the disk overlay into its parent (P10), live")
def commit(s, args: str) -> None:
    """
    The VM switches to a fresh overlay at once, and the overlay it was using is
    merged into its parent as soon as no pending write still targets it
    (docs/protocol.md, P10); the guest keeps running meanwhile. Checkpoints whose
    disk is that parent no longer match it afterwards (their fingerprint changes,
    so 'restore' refuses them), as after 'minivm disk commit': 'commit' names
    them when it starts.
    Example:  commit
    """
    cp = s.checkpointer
    top = s.machine.disk.backing
    parent = top.parent if top is not None and top.kind == "overlay" else None
    message = cp.commit_disk()
    done = message == cp.last_commit    # merged at once: reported already, as a note
    if not done:
        s.say_lines(textwrap.wrap(message, 80, subsequent_indent="  ", break_long_words=False))
    affected = _checkpoints_on(s, parent.path) if parent is not None else []
    if affected:
        names = ", ".join(job.name for job in affected)
        when = "so they no longer match it" if done else \
            "once the merge is done they no longer match it"
        s.say_lines(textwrap.wrap(
            f"warning: {show_path(parent.path)} was the disk of checkpoint(s) {names}; "
            f"{when} and 'restore' refuses them (as after 'minivm disk commit')",
            80, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))


def _checkpoints_on(s, path: str) -> list:
    """The session's complete or saving checkpoints whose disk chain holds ``path``."""
    where = os.path.abspath(path)
    return [job for job in s.jobs if job.status != "failed" and job.chain
            and any(os.path.abspath(layer.path) == where for layer in job.chain)]


@command("checkpoints", aliases=("ckpts",), usage="checkpoints", group="checkpoints",
         summary="list checkpoints: tick, saving/complete/failed, size")
def checkpoints(s, args: str) -> None:
    """
    Lists the checkpoints of this session and those found in the checkpoint
    folder: name, tick, state (saving with progress, complete, failed) and size.
    Also: 'info checkpoints', 'i c'.
    Example:  checkpoints
    """
    rows = []
    for job in s.jobs:
        if job.status == "saving":
            state, size = f"saving, {job.pages_done} of {job.pages_total} pages", "-"
        elif job.status == "complete":
            state, size = f"complete, {job.pages_saved} page(s)", f"{job.bytes_written} B"
        else:
            state, size = f"failed: {job.error}", "-"
        rows.append((job.name, str(job.tick), state, size, show_path(job.location)))
    seen = s.checkpoints.names()
    for name in s.store.names():
        if name in seen:
            continue
        path = s.store.location(name)
        tick, state = s.checkpoints.file_summary(path)
        try:
            size = f"{os.path.getsize(path)} B"
        except OSError:
            size = "?"
        rows.append((show(name), tick, show(state), size, show_path(path)))   # a file's name
    if not rows:
        s.say(f"no checkpoints yet in {show_path(s.store.folder)} "
              "('checkpoint [NAME]' takes one)")
        return
    s.say_lines(render.checkpoint_table(rows))


@command("sync", usage="sync", group="checkpoints", needs="machine",
         summary="finish saving checkpoints now (guest stays put)")
def sync(s, args: str) -> None:
    """
    Checkpoints are saved in the background while the guest runs; 'sync' writes
    the rest now. A checkpoint that still waits for a disk read in flight at the
    checkpoint (P5) cannot finish until the guest runs on; 'sync' says so.
    Example:  sync
    """
    saving = [job for job in s.checkpointer.jobs if job.status == "saving"]
    if not saving:
        s.say("no checkpoint is saving")
        return
    for job in saving:
        s.checkpointer.sync()
        if job.status == "saving":
            s.say(f"{job.name} still waits for in-flight disk requests (P5); "
                  "'continue' or 'step' so they can complete")


@command("restore", aliases=("resume",), usage="restore NAME|FILE", group="checkpoints",
         complete="checkpoint", min_args=1,
         missing="give a checkpoint; usage: restore NAME|FILE ('checkpoints' lists them)",
         summary="go back to a checkpoint (by name or file)")
def restore(s, args: str) -> None:
    """
    Rebuilds the machine from a checkpoint and makes it the current one, as
    'minivm resume' does: registers, memory, devices, disk queue, tick. The disk
    it checkpointed is not written: a fresh overlay takes the new writes.
    Breakpoints and watches stay. Console input you fed since the checkpoint's
    point is fed again, so 'restore' + 'continue' replays the same run. A
    checkpoint of the machine as it is (undo-NNNN) is taken first, so 'undo'
    (or 'restore -') comes back; the time-travel history starts again at the
    restored tick.
    Examples:  restore ckpt-0001      restore before-loop      restore -
    """
    if args.strip() == "-":
        travel.undo_last(s)
        return
    restore_checkpoint(s, args)


def restore_checkpoint(s, spec: str, undo: bool = True) -> None:
    """'restore SPEC'; with ``undo``, a checkpoint taken first lets 'undo' come back."""
    name, path = s.resolve_checkpoint(spec)
    ckpt = read_checkpoint(path)
    lineage = s.checkpoints.input_lineage(name)
    if undo and s.machine is not None:
        travel.undo_checkpoint(s, f"restore {spec}")
    travel.restore_from(s, ckpt, name, show_path(path), lineage)



@command("diff", usage="diff A [B]", group="checkpoints", complete="checkpoint2",
         min_args=1, max_args=2,
         missing="usage: diff A [B] (checkpoint names or files, or 'now'; B defaults to 'now')",
         too_many="usage: diff A [B] (checkpoint names or files, or 'now'; B defaults to 'now')",
         summary="compare two checkpoints, or one and 'now'")
def diff(s, args: str) -> None:
    """
    Compares two checkpoints, or a checkpoint and the running machine ('now',
    what B is when it is left out): registers, pc and tick, memory pages (with how many bytes differ in each),
    disk blocks, and device state (timer, disk queue, console counters).
    Examples:  diff ckpt-0001 ckpt-0002      diff before-loop now      diff ckpt-0001
    """
    parts = split_args(args)
    if len(parts) == 1:
        parts.append("now")
    a = _view(s, parts[0])
    try:
        b = _view(s, parts[1])
        try:
            s.say_lines(render.state_diff(a, b))
        finally:
            for close in b.closers:
                close()
    finally:
        for close in a.closers:
            close()


def _view(s, spec: str) -> render.View:
    """What diff compares: the running machine ('now') or a checkpoint file,
    with its disk opened read-only (the caller closes it)."""
    if spec == "now":
        m = s.require_machine()
        mem = m.memory          # (a lazily resumed page still in its file is read, not installed)
        pages = {i: bytes(p) if p is not None else mem.saved_page(i)
                 for i, p in enumerate(mem.pages)
                 if type(p) is not bytes and (p is not None or i in mem.saved)}
        return render.View("now", list(m.regs[:isa.NUM_REGS]), m.pc, m.tick, m.halted,
                           m.save_state(), m.memory.size, pages, m.disk.backing)
    name, path = s.resolve_checkpoint(spec)
    ckpt = read_checkpoint(path)
    cpu = ckpt.state["cpu"]
    view = render.View(name, list(cpu["regs"]), cpu["pc"], cpu["tick"], cpu["halted"],
                       ckpt.state, ckpt.memory_size, ckpt.pages)     # pages read as compared
    if ckpt.disk is not None:
        try:
            chain = resolve_disk_chain(ckpt, None)
            top = open_chain(chain)
            view.disk = top
            view.closers = tuple(layer.close for layer in top.chain())
        except MinivmError as exc:
            view.disk_note = str(exc)
    return view
