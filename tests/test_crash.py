"""Crash safety with real SIGKILLs (issue 6).

(a) ``minivm run GUEST --checkpoint-dir DIR --checkpoint-at T1,T2,T3`` is
    killed while its checkpoint files are being written (when the hidden temp
    file ``.ckpt-NNNN.mvc.*.tmp`` reaches a random size) and at random delays.
    After every kill: each ``*.mvc`` in DIR is in the current format, loads
    with every saved page reading back (each page's CRC-32 is checked only
    when it is read), and resumes to exactly the output of an uninterrupted
    run after that checkpoint's tick; a checkpoint
    seen complete before the kill is still there; nothing half-written has a
    final name; and the parent disk image is a state the contract allows: it only
    ever receives the writes issued before the first checkpoint (docs/contract.md,
    "the checkpointed disk"), all of them once ckpt-0001.mvc exists.
(b) ``minivm disk commit OVERLAY`` is killed at many points: the parent is
    either exactly the old content or exactly the committed content, and
    running the commit again finishes the job. (Every kill point of a commit,
    deterministically, with every checkpoint checked: tests/test_commit_chain.py.)

The number of kill points is MINIVM_KILLS (default 16 for (a), 12 for (b));
MINIVM_KILL_SEED fixes the random kill points (printed on failure).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

from minivm.assembler import assemble
from minivm.resume import read_checkpoint, resume
from minivm.ckptfile import CHECKPOINT_VERSION
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import Overlay, close_chain, describe_chain, open_disk
from minivm.engine import ENGINES
from minivm.errors import MinivmError
from minivm.machine import Machine
from minivm.store import FileStore
from tests import ckpt_files

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("MINIVM_KILLS", "0")) or None
HANG_SECONDS = 120       # a run that takes longer is hung (it takes a few seconds)
SEED = int(os.environ.get("MINIVM_KILL_SEED", str(random.SystemRandom().randrange(1 << 30))))

#: Touches 1024 pages (4 MiB) per phase, so each checkpoint file is ~4 MB and
#: is written in the background over a few hundred milliseconds; writes one
#: disk block per phase and reads them all back at the end.
GUEST = """
.equ PAGES, 1024
.equ PHASES, 6
.equ HEAP, 0x10000
.equ SPIN, 200000
        mov r10, 0
phase:
        mov r1, HEAP
        mov r2, 0
touch:
        add r3, r2, r10
        mul r3, r3, 2654435761
        add r3, r3, 1
        st r3, [r1]
        st r3, [r1 + 2048]
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, PAGES, touch
        mov r1, 0
fill:
        mul r4, r1, r10
        add r4, r4, r3
        st r4, [r1 + buf]
        add r1, r1, 4
        blt r1, 512, fill
        out 0x20, r10
        out 0x21, buf
        out 0x22, 1
        out 0x23, 2
poll:
        in r4, 0x24
        bne r4, 0, poll
        out 0x01, r10
        out 0x00, 32
        out 0x01, r3
        out 0x00, 10
        mov r5, 0
spin:
        add r5, r5, 1
        blt r5, SPIN, spin
        add r10, r10, 1
        blt r10, PHASES, phase
        mov r10, 0
back:
        out 0x20, r10
        out 0x21, buf2
        out 0x22, 1
        out 0x23, 1
poll2:
        in r4, 0x24
        bne r4, 0, poll2
        mov r1, 0
        mov r6, 0
sum:
        ld r4, [r1 + buf2]
        xor r6, r6, r4
        mul r6, r6, 31
        add r1, r1, 4
        blt r1, 512, sum
        out 0x01, r6
        out 0x00, 10
        add r10, r10, 1
        blt r10, PHASES, back
        mov r1, HEAP
        mov r2, 0
        mov r6, 0
msum:
        ld r4, [r1]
        add r6, r6, r4
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, PAGES, msum
        out 0x01, r6
        out 0x00, 10
        mov r0, 0
        halt
.data
buf:    .space 512
buf2:   .space 512
"""
TICKS = (300_000, 900_000, 1_500_000)
MEM = 8 << 20
DISK_SIZE = 64 * 1024


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# --- the reference: an uninterrupted in-process run --------------------------------------------

@dataclass
class Reference:
    output: bytes
    out_before: dict                      # checkpoint tick -> output bytes before it
    disk_states: list                     # parent contents the contract allows, in order
    disk_at_first: bytes                  # the parent once ckpt-0001 is complete
    sizes: dict = field(default_factory=dict)   # checkpoint number -> file size
    run_seconds: float = 0.0


#: The reference run is on the reference engine, the killed runs (``minivm run``)
#: on the default one and the resumes on the other engine, so the comparisons
#: of outputs and disks compare the engines too, at no extra cost.
REFERENCE, OTHER = ENGINES


def reference_run(folder: Path, guest: Path, initial_disk: bytes) -> Reference:
    disk_path = folder / "ref-disk.img"
    disk_path.write_bytes(initial_disk)
    machine = Machine(assemble(guest.read_text(), str(guest)), memory_size=MEM,
                      disk=open_disk(str(disk_path)), console_sink=BufferSink(),
                      console_input=ConsoleInput(b""), engine=REFERENCE)
    writes = []                                    # (tick issued, disk content after it)
    complete = machine.disk.complete

    def recording_complete(request):
        complete(request)
        if not request.is_read:
            writes.append((request.issued, disk_path.read_bytes()))
    machine.disk.complete = recording_complete
    out_before = {}
    for tick in TICKS:
        stop = machine.run(tick - machine.tick)
        assert stop.reason == "limit" and machine.tick == tick
        out_before[tick] = len(machine.console.sink.data)
    stop = machine.run(50_000_000)
    assert stop.reason == "halt" and machine.regs[0] == 0
    machine.disk.backing.close()
    before_first = [content for issued, content in writes if issued < TICKS[0]]
    states = [initial_disk] + before_first
    return Reference(bytes(machine.console.sink.data), out_before, states, states[-1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    guest = folder / "guest.asm"
    guest.write_text(GUEST)
    initial = bytes((i * 13 + 5) & 0xFF for i in range(DISK_SIZE))
    ref = reference_run(folder, guest, initial)
    # One uninterrupted CLI run: the same output, and the size of each checkpoint file.
    run_dir = folder / "full"
    run_dir.mkdir()
    (run_dir / "disk.img").write_bytes(initial)
    start = time.perf_counter()
    proc = subprocess.run(cli_run_args(guest, run_dir), cwd=run_dir, env=env(),
                          capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=HANG_SECONDS)
    ref.run_seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ref.output
    for n in (1, 2, 3):
        ref.sizes[n] = (run_dir / "ck" / f"ckpt-{n:04d}.mvc").stat().st_size
    assert (run_dir / "disk.img").read_bytes() == ref.disk_at_first
    return folder, guest, initial, ref


def cli_run_args(guest: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "minivm", "run", str(guest), "--mem", "8M",
            "--disk", str(run_dir / "disk.img"), "--checkpoint-dir", str(run_dir / "ck"),
            "--checkpoint-at", ",".join(map(str, TICKS))]


# --- killing ----------------------------------------------------------------------------------

def run_and_kill(cmd, cwd: Path, watch: Path, trigger) -> tuple[set, str]:
    """Start ``cmd``; SIGKILL it when ``trigger(entries, elapsed)`` says so.

    Returns the final checkpoint names seen complete before the kill, and
    what happened ("killed: ..." or "finished before the kill point").
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    seen_complete: set = set()
    outcome = "finished before the kill point"
    try:
        while proc.poll() is None:
            elapsed = time.perf_counter() - start
            # host time only picks kill points (the triggers); this is a hang guard, as
            # generous as the uninterrupted run's timeout, not a speed requirement
            assert elapsed < HANG_SECONDS, f"the guest ran over {HANG_SECONDS} s: a hang"
            entries = {}
            try:
                with os.scandir(watch) as it:
                    for entry in it:
                        try:
                            entries[entry.name] = entry.stat().st_size
                        except FileNotFoundError:
                            pass
            except FileNotFoundError:
                pass
            # listed before any kill: these files were complete
            seen_complete |= {n for n in entries if n.endswith(".mvc") and not n.startswith(".")}
            reason = trigger(entries, elapsed)
            if reason:
                proc.send_signal(signal.SIGKILL)
                outcome = f"killed: {reason}"
                break
            time.sleep(0.0002)
    finally:
        if proc.poll() is None and not outcome.startswith("killed"):
            proc.kill()
        proc.wait()
    return seen_complete, outcome


def size_trigger(number: int, fraction: float, expected: int):
    prefix, final = f".ckpt-{number:04d}.mvc.", f"ckpt-{number:04d}.mvc"

    def trigger(entries, elapsed):
        for name, size in entries.items():
            if name.startswith(prefix) and name.endswith(".tmp") and size >= fraction * expected:
                return f"temp file of checkpoint {number} at {size} of ~{expected} bytes"
        if final in entries:
            return f"checkpoint {number} was complete before the poll saw the size"
        return None
    return trigger


def delay_trigger(seconds: float):
    def trigger(entries, elapsed):
        return f"after {seconds:.3f} s" if elapsed >= seconds else None
    return trigger


# --- checking a killed run's folder ------------------------------------------------------------

_verified: dict = {}


def _resume_key(path: Path) -> str:
    """Everything that decides a resumed run: every record but 'meta' (which
    holds the wall-clock time it was written and the measured pause), and the
    page data; the disk record has the chain's fingerprints."""
    _, sections = ckpt_files.split(path.read_bytes())
    return sha(msgpack.packb([(n, p) for n, p in sections if n != "meta"]))


def _open_whole(path: Path):
    """``path`` loaded, and every saved page read back (a lazy load checks
    each page's CRC-32 only when it is read): a file under its final name must
    pass both, or the kill left a file that does not open."""
    ckpt = read_checkpoint(str(path))
    for index in ckpt.pages:
        ckpt.pages[index]
    return ckpt


def check_folder(run_dir: Path, ref: Reference, seen_complete: set, context: str) -> int:
    """All the checks after one kill; returns the number of files lost."""
    ck = run_dir / "ck"
    names = sorted(p.name for p in ck.iterdir()) if ck.exists() else []
    final = [n for n in names if n.endswith(".mvc") and not n.startswith(".")]
    lost = sorted(seen_complete - set(final))
    assert not lost, f"{context}: complete checkpoint(s) {lost} disappeared"
    assert all(n.startswith(".") for n in names if n.endswith(".tmp")), names
    if ck.exists():
        assert FileStore(str(ck)).names() == [n[:-4] for n in final], (names, context)
    parent = (run_dir / "disk.img").read_bytes()
    assert parent in ref.disk_states, (
        f"{context}: the parent disk holds a state the contract does not allow "
        f"({sha(parent)} not in {[sha(s) for s in ref.disk_states]})")
    if "ckpt-0001.mvc" in final:
        assert parent == ref.disk_at_first, (
            f"{context}: ckpt-0001.mvc is complete, so the parent must hold every write "
            "issued before tick %d and none after" % TICKS[0])
    for name in final:
        path = ck / name
        try:
            ckpt = _open_whole(path)
        except MinivmError as exc:
            raise AssertionError(f"{context}: {name} is under its final name but does not "
                                 f"load: {exc}") from None
        assert ckpt.format_version == CHECKPOINT_VERSION, (context, name)
        assert ckpt.tick in ref.out_before, (context, name, ckpt.tick)
        key = _resume_key(path)
        if key not in _verified:
            _verified[key] = resumed_output(ckpt, run_dir)
        expected = ref.output[ref.out_before[ckpt.tick]:]
        assert _verified[key] == expected, (
            f"{context}: resuming {name} (tick {ckpt.tick}) printed "
            f"{_verified[key][:80]!r}..., expected {expected[:80]!r}...")
    for name in names:                   # overlays without a checkpoint: refused or usable
        if name.endswith(".cow") and name[:-4] + ".mvc" not in final:
            try:
                describe_chain(str(ck / name))
            except MinivmError:
                pass
    return 0


def resumed_output(ckpt, run_dir: Path) -> bytes:
    before = (run_dir / "disk.img").read_bytes()
    with tempfile.TemporaryDirectory() as store:
        machine, _ = resume(ckpt, FileStore(store), console_sink=BufferSink(),
                            console_input=ConsoleInput(b""), engine=OTHER)
        try:
            stop = machine.run(50_000_000)
        finally:
            close_chain(machine.disk.backing)
    assert stop.reason == "halt" and machine.regs[0] == 0, stop
    assert (run_dir / "disk.img").read_bytes() == before, "resume wrote to the checkpointed disk"
    return bytes(machine.console.sink.data)


def test_kill_during_checkpoint_writes(setup):
    folder, guest, initial, ref = setup
    rng = random.Random(SEED)
    total = KILLS or 16
    points = []
    for i in range(total):
        if i % 3 == 2:
            points.append(("delay", rng.uniform(0.25, max(ref.run_seconds, 0.5))))
        else:
            n = rng.choice((1, 2, 3))
            points.append(("size", n, rng.uniform(0.0, 1.0)))
    report = []
    lost = 0
    for i, point in enumerate(points):
        run_dir = folder / f"kill-{i:03d}"
        run_dir.mkdir()
        (run_dir / "disk.img").write_bytes(initial)
        trigger = (delay_trigger(point[1]) if point[0] == "delay"
                   else size_trigger(point[1], point[2], ref.sizes[point[1]]))
        seen, outcome = run_and_kill(cli_run_args(guest, run_dir), run_dir, run_dir / "ck",
                                     trigger)
        context = f"kill point {i} {point} (MINIVM_KILL_SEED={SEED}): {outcome}"
        lost += check_folder(run_dir, ref, seen, context)
        report.append(context)
        shutil.rmtree(run_dir)
    killed = sum(1 for line in report if ": killed:" in line)
    print(f"\n{len(points)} kill points ({killed} killed mid-run), files lost: {lost}")
    print("\n".join(report))
    assert lost == 0
    assert killed >= len(points) // 2, report


# --- (b) killing `minivm disk commit` -----------------------------------------------------------

COMMIT_DISK = 16 << 20


@pytest.fixture(scope="module")
def commit_setup(tmp_path_factory):
    """A raw disk with random content and an overlay holding 1024 changed groups."""
    folder = tmp_path_factory.mktemp("commit")
    pristine = folder / "pristine"
    pristine.mkdir()
    rng = random.Random(7)
    (pristine / "disk.img").write_bytes(rng.randbytes(COMMIT_DISK))
    raw = open_disk(str(pristine / "disk.img"))
    overlay = Overlay.create(str(pristine / "disk.cow"), raw, 8,
                             parent_fingerprint=raw.fingerprint())
    for group in range(0, COMMIT_DISK // 4096, 4):
        overlay.write_blocks(group * 8, rng.randbytes(4096 if group % 8 else 1024))
    overlay.close()
    raw.close()
    done = folder / "done"
    shutil.copytree(pristine, done)
    proc = subprocess.run([sys.executable, "-m", "minivm", "disk", "commit",
                           str(done / "disk.cow")], env=env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    old = (pristine / "disk.img").read_bytes()
    new = (done / "disk.img").read_bytes()
    assert old != new
    return folder, pristine, old, new


def commit_trigger(parent_name: str, delay: float):
    temp = f".{parent_name}.commit.tmp"
    state = {}

    def trigger(entries, elapsed):
        if "since" not in state and temp in entries:
            state["since"] = elapsed
        if "since" in state and elapsed - state["since"] >= delay:
            return f"{delay * 1000:.1f} ms after the commit's temp file appeared"
        return None
    return trigger


def test_kill_during_disk_commit(commit_setup):
    folder, pristine, old, new = commit_setup
    rng = random.Random(SEED + 1)
    total = KILLS or 12
    outcomes = {"old": 0, "committed": 0}
    report = []
    for i in range(total):
        work = folder / f"kill-{i:03d}"
        shutil.copytree(pristine, work)
        if i % 3 == 2:
            trigger, what = delay_trigger(rng.uniform(0.1, 0.5)), "random delay"
        else:
            trigger, what = commit_trigger("disk.img", rng.uniform(0, 0.05)), "temp file"
        cmd = [sys.executable, "-m", "minivm", "disk", "commit", str(work / "disk.cow")]
        _, outcome = run_and_kill(cmd, work, work, trigger)
        parent = (work / "disk.img").read_bytes()
        context = f"commit kill point {i} ({what}, MINIVM_KILL_SEED={SEED}): {outcome}"
        assert parent in (old, new), f"{context}: the parent is neither old nor committed"
        state = "old" if parent == old else "committed"
        outcomes[state] += 1
        # Run the commit again: it finishes the job (or, if the kill came after the
        # rename, says truly that there is nothing to do). Every kill point, each
        # checkpoint and file checked: tests/test_commit_chain.py.
        again = subprocess.run(cmd, env=env(), capture_output=True, timeout=120)
        err = again.stderr.decode()
        assert b"Traceback" not in again.stderr, err
        if state == "old":
            assert again.returncode == 0, f"{context}: re-running the commit failed: {err}"
        else:
            assert again.returncode == 0 and "nothing to do" in err, err
        assert (work / "disk.img").read_bytes() == new, f"{context}: after the re-run"
        report.append(f"{context} -> parent {state}; re-run exit {again.returncode}")
        shutil.rmtree(work)
    print(f"\n{total} commit kill points: {outcomes}; files lost: 0")
    print("\n".join(report))
