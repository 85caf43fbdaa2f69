"""Hostile numbers in checkpoint files (issue 12): every numeric field has a
range the restoring code can live with, checked at load, and no command does
work proportional to a number read from a file.

The hostile files are made as the attack made them: a real checkpoint's
sections decoded, fields changed consistently (so that only the range being
tested is wrong), and the file's digests recomputed. Each is written in both
formats (``VERSIONS``): version-1 files still load, and must be checked as
strictly as the current ones.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from minivm.assembler import assemble_file
from minivm.checkpoint import Checkpointer
from minivm.devices import BufferSink, ConsoleInput, EventQueue, Timer
from minivm.engine import DEFAULT_ENGINE
from minivm.disks import open_disk
from minivm.errors import FormatError, MinivmError
from minivm.machine import Machine
from minivm.report import describe_checkpoint
from minivm.repl import Session
from minivm.resume import read_checkpoint, resume
from minivm.store import FileStore
from tests import ckpt_files
from tests.ckpt_strategies import close_disks
from tests.support import ROOT, bounded, run_cli, time_limit

DISK_BYTES = 64 * 1024
#: The checkpoint formats a hostile file is written in: each must refuse it.
VERSIONS = pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])


def make_seed(folder: Path, disk_name: str = "disk.img") -> Path:
    """checkpoint_demo at its ckpt: DMA in flight, the timer running, a disk."""
    folder.mkdir(parents=True, exist_ok=True)
    image = assemble_file(str(ROOT / "programs" / "checkpoint_demo.asm"))
    disk_path = folder / disk_name
    disk_path.write_bytes(bytes((i * 7) & 0xFF for i in range(DISK_BYTES)))
    machine = Machine(image, disk=open_disk(str(disk_path)), console_sink=BufferSink(),
                      console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")))
    machine.run(5_000_000)
    cp.finish_all()
    close_disks(machine)
    assert cp.jobs and all(job.status == "complete" for job in cp.jobs)
    return Path(cp.jobs[0].location)


def patched(seed: Path, out: Path, edit, version: int = 2) -> Path:
    """``seed`` with ``edit(section_name, tree)`` applied to each section's
    decoded tree (it may change the tree in place or return a new one),
    written as a checkpoint file of format ``version`` (the current one by
    default) with its digests recomputed (tests/ckpt_files.py)."""
    out.write_bytes(ckpt_files.edit(seed.read_bytes(), edit, version))
    return out


def in_state(fn):
    return lambda name, tree: fn(tree) if name == "state" else None


def shift_time(state: dict, tick: int) -> None:
    """Move the whole saved state to ``tick``, keeping it consistent: every
    scheduled and past tick moves by the same amount."""
    delta = tick - state["cpu"]["tick"]
    state["cpu"]["tick"] = tick
    timer = state["timer"]
    if timer["next_fire"] is not None:
        timer["next_fire"] += delta
    disk = state["disk"]
    disk["busy_until"] += delta
    for r in disk["queue"]:
        r[5] += delta
        r[6] += delta
    for p in state["interrupts"]["pending"]:
        p[0] += delta


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    return make_seed(tmp_path_factory.mktemp("hostile-numbers"))


def repl(tmp_path: Path, engine: str, *lines: str) -> str:
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "repl-ck"), out=out, handle_sigint=False,
                      engine=engine)
    for line in lines:
        session.execute(line)
    session.close()
    text = out.getvalue()
    assert "internal error" not in text and "Traceback" not in text, text
    return text


# --- input_consumed and tick: the REPL allocated a byte per input byte consumed -------------

@VERSIONS
@pytest.mark.parametrize("tick", [1 << 31, 1 << 40], ids=["2^31", "2^40"])
def test_repl_restore_of_a_late_tick_allocates_nothing_per_input_byte(seed, tmp_path, tick,
                                                                     version, engine):
    def edit(state):
        shift_time(state, tick)
        state["console"]["input_consumed"] = tick
    path = patched(seed, seed.parent / f"late-{tick}-v{version}.mvc", in_state(edit), version)
    with bounded("restore of a checkpoint at a late tick", megabytes=64):
        text = repl(tmp_path, engine, f"restore {path}", "status", "continue 1000", "devices")
    assert f"tick {tick}" in text, text
    assert "halted" in text, text


# --- scheduled events in the past: resume caught up on them one by one -----------------------

def stale_timer(state, tick):
    state["cpu"]["tick"] = tick
    state["console"]["input_consumed"] = 0
    state["timer"].update(period=1, next_fire=0, handler=None)
    state["disk"]["queue"] = []
    state["disk"]["busy_until"] = 0


@VERSIONS
@pytest.mark.parametrize("tick", [10 ** 8, 10 ** 12], ids=["10^8", "10^12"])
def test_timer_event_before_the_tick_is_refused_at_load(seed, tmp_path, tick, version):
    path = patched(seed, tmp_path / "stale.mvc", in_state(lambda s: stale_timer(s, tick)), version)
    with bounded("loading a checkpoint with a stale timer", megabytes=64):
        with pytest.raises(FormatError, match="timer.next_fire: 0 is before the checkpoint's"):
            read_checkpoint(str(path))
        text = repl(tmp_path, DEFAULT_ENGINE, f"restore {path}")   # refused at load
    assert "timer.next_fire" in text
    proc = run_cli("resume", str(path), cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and b"timer.next_fire" in proc.stderr, proc.stderr


@pytest.mark.parametrize("field, where", [
    (lambda s: s["disk"]["queue"][0].__setitem__(6, s["disk"]["queue"][0][5]),
     "disk.queue[0].done"),
    (lambda s: s["interrupts"]["pending"].append([s["cpu"]["tick"] + 5, 0, 0, "timer"]),
     "interrupts.pending[0].tick"),
], ids=["request-done-in-the-past", "interrupt-raised-in-the-future"])
@VERSIONS
def test_events_out_of_time_are_refused_at_load(seed, tmp_path, field, where, version):
    path = patched(seed, tmp_path / "bad.mvc", in_state(field), version)
    with pytest.raises(FormatError, match=where.replace("[", r"\[").replace("]", r"\]")):
        read_checkpoint(str(path))


def test_timer_without_handler_catches_up_in_constant_work():
    """A timer far behind (a restore that bypasses the file checks, a bug):
    events with no handler are counted at once, not fired one per period."""
    timer = Timer(code_size=4)
    timer.period, timer.next_fire = 1, 0
    raised = []
    queue = EventQueue([timer])
    calls = 0
    real_fire = timer.fire

    def counting_fire(*args):
        nonlocal calls
        calls += 1
        return real_fire(*args)
    timer.fire = counting_fire
    with time_limit(60, "a timer 10^12 periods behind catching up"):
        queue.fire_due(10 ** 12, lambda *a: raised.append(a))
    assert calls == 1 and raised == []
    assert timer.fired == 10 ** 12 + 1 and timer.next_fire == 10 ** 12 + 1
    timer.period, timer.next_fire, timer.fired = 7, 3, 0
    queue.fire_due(100, lambda *a: raised.append(a))
    assert timer.fired == 14 and timer.next_fire == 101     # 3, 10, ..., 94


def test_timer_catch_up_gives_the_same_state_as_firing_one_by_one():
    for period, start, now in [(1, 0, 0), (1, 0, 5), (3, 2, 2), (3, 2, 4), (3, 2, 5), (5, 9, 1000)]:
        a, b = Timer(4), Timer(4)
        for t in (a, b):
            t.period, t.next_fire = period, start
        EventQueue([a]).fire_due(now, lambda *x: None)
        while b.next_fire <= now:
            b.fire()
        assert (a.next_fire, a.fired) == (b.next_fire, b.fired), (period, start, now)


# --- disk latency: 2^64-1 gave an OverflowError traceback when the REPL saved ----------------

@VERSIONS
@pytest.mark.parametrize("value", [(1 << 64) - 1, (1 << 48)], ids=["2^64-1", "2^48"])
def test_disk_latency_in_a_file_is_range_checked(seed, tmp_path, value, version):
    path = patched(seed, tmp_path / "slow.mvc",
                   in_state(lambda s: s["disk"].update(latency=value)), version)
    with pytest.raises(FormatError, match="disk.latency"):
        read_checkpoint(str(path))


@pytest.mark.parametrize("option", ["--disk-latency", "--disk-per-block"])
def test_repl_disk_latency_option_is_range_checked(tmp_path, option):
    proc = run_cli("repl", "--batch", os.devnull, option, str((1 << 64) - 1), timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err and option in err, err


def test_session_with_a_huge_latency_is_refused(tmp_path):
    with pytest.raises(MinivmError, match="disk latency"):
        Session(checkpoint_dir=str(tmp_path / "ck"), disk_latency=(1 << 64) - 1,
                out=io.StringIO(), handle_sigint=False)


# --- a disk chain that names one file 4,096 times: inspect hashed it 4,096 times --------------

@VERSIONS
def test_disk_chain_that_repeats_a_file_is_refused(seed, tmp_path, version):
    def edit(name, tree):
        if name == "disk":
            tree["chain"] = tree["chain"] * 4096
    path = patched(seed, seed.parent / f"repeat-v{version}.mvc", edit, version)
    with bounded("loading a chain that repeats one file", megabytes=64):
        with pytest.raises(FormatError, match="more than once"):
            read_checkpoint(str(path))


@VERSIONS
def test_inspect_fingerprints_each_file_once(seed, tmp_path, monkeypatch, version):
    """Two entries that name one file by different paths (a symlink): inspect
    checks it once."""
    link = seed.parent.parent / f"link-v{version}.img"
    link.symlink_to(seed.parent.parent / "disk.img")

    def edit(name, tree):
        if name == "disk":
            first = dict(tree["chain"][0])
            first.update(path=str(link), relpath=os.path.relpath(link, seed.parent))
            tree["chain"] = [tree["chain"][0], first]
    path = patched(seed, seed.parent / f"twice-v{version}.mvc", edit, version)
    ckpt = read_checkpoint(str(path))
    import minivm.report as report
    calls = []
    real = report.check_identity
    monkeypatch.setattr(report, "check_identity",
                        lambda p, *a: calls.append(p) or real(p, *a))
    text = describe_checkpoint(ckpt)
    assert len(calls) == 1, calls
    assert text.count("present, unchanged") == 2, text
