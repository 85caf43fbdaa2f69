"""Committing overlays of a chain (issue 12): what a commit may change, at every
kill point and every failure point.

A run with three checkpoints leaves the chain

    ckpt-0003.cow -> ckpt-0002.cow -> ckpt-0001.cow -> disk.img

and the checkpoints ckpt-0001.mvc (its disk: disk.img), ckpt-0002.mvc
(ckpt-0001.cow) and ckpt-0003.mvc (ckpt-0002.cow). Committing an overlay O
into its parent P changes what P holds, read on its own, to what O reads; it
changes nothing that is read through O. So after a commit:

* every file but P reads exactly what it read before (through its chain);
* P reads what O reads;
* a checkpoint whose disk is P no longer resumes (refused: its disk changed);
  every other checkpoint resumes, to the same run.

A commit killed at any point, or failing at any point, leaves either every file
and every checkpoint as they were, or (once its rename is done) the state of a
finished commit; running it again finishes it. The kill points are every call
that changes a file (``MUTATORS``), before and after it, found by tracing one
commit: no timing is involved.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from ckpt_strategies import close_disks, disk_pattern, read_file_blocks, write_disk
from minivm import cli
from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import close_chain, fingerprint_file, open_disk
from minivm.engine import ENGINES
from minivm.errors import DiskError
from minivm.machine import Machine
from minivm.report import describe_checkpoint
from minivm.resume import open_chain, read_checkpoint, resolve_disk_chain, resume
from minivm.store import FileStore

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 512
PATTERN = disk_pattern()
CHECKPOINTS = ("ckpt-0001", "ckpt-0002", "ckpt-0003")
FILES = ("disk.img", "ck/ckpt-0001.cow", "ck/ckpt-0002.cow", "ck/ckpt-0003.cow")
#: what each checkpoint's disk is (the top of its chain)
DISK_OF = {"ckpt-0001": "disk.img", "ckpt-0002": "ck/ckpt-0001.cow",
           "ckpt-0003": "ck/ckpt-0002.cow"}


def _write(block_no: int, char: str) -> str:
    label = f"{char}{block_no}"
    return f"""
        mov r1, {ord(char) * 0x01010101}
        mov r2, 0x2000
f{label}: st r1, [r2]
        add r2, r2, 4
        blt r2, 0x2200, f{label}
        out 0x20, {block_no}
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2
d{label}: in r7, 0x24
        beq r7, 0, e{label}
        wait
        jmp d{label}
e{label}: nop
"""


def _read_and_print(block_no: int) -> str:
    return f"""
        out 0x20, {block_no}
        out 0x21, 0x3000
        out 0x22, 1
        out 0x23, 1
rd{block_no}: in r7, 0x24
        beq r7, 0, p{block_no}
        wait
        jmp rd{block_no}
p{block_no}: ld r1, [0x3000]
        out 0x01, r1
        out 0x00, 10
"""


#: Writes in every interval between checkpoints (one block rewritten), then
#: reads every written block back and prints it: a resumed run's output
#: depends on every layer of its chain.
GUEST = (_write(1, "A") + "        ckpt\n" + _write(9, "B") + "        ckpt\n"
         + _write(17, "C") + _write(1, "D") + "        ckpt\n" + _write(25, "E")
         + _write(9, "F") + "".join(_read_and_print(b) for b in (1, 9, 17, 25, 40))
         + "        halt\n")


#: The engine of the original run, and the other one, which resumes after commits.
REFERENCE, OTHER = ENGINES


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The folder of the run, and for each checkpoint the output of resuming it.
    The run and these resumes are on the reference engine; the tests resume on
    the other (``resumed``'s default), so every comparison of outputs below
    compares the engines too."""
    folder = tmp_path_factory.mktemp("chain")
    disk_path = write_disk(folder / "disk.img", PATTERN)
    machine = Machine(assemble(GUEST, "chain.asm"), memory_size=64 * 1024,
                      disk=open_disk(disk_path, writable=True), console_sink=BufferSink(),
                      console_input=ConsoleInput(b""), engine=REFERENCE)
    cp = Checkpointer(machine, FileStore(str(folder / "ck")))
    assert machine.run(5_000_000).reason == "halt"
    cp.finish_all()
    close_disks(machine)
    assert [job.status for job in cp.jobs] == ["complete"] * 3
    outputs = {name: resumed(folder, name, folder / "resumed", REFERENCE)
               for name in CHECKPOINTS}
    assert all(outputs.values())
    assert bytes(machine.console.sink.data).endswith(outputs["ckpt-0001"])
    shutil.rmtree(folder / "resumed")
    return folder, outputs


def resumed(folder: Path, name: str, store: Path, engine: str = OTHER) -> bytes:
    """Resume a checkpoint of ``folder`` to the end, taking the guest's later
    checkpoints as ``minivm resume`` does (they seal the resumed chain); its
    console output."""
    machine, _ = resume(read_checkpoint(str(folder / "ck" / f"{name}.mvc")),
                        FileStore(str(store)), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""), engine=engine)
    cp = Checkpointer(machine, FileStore(str(store)))
    try:
        assert machine.run(5_000_000).reason == "halt"
        cp.finish_all()
        assert all(job.status == "complete" for job in cp.jobs), [j.status for j in cp.jobs]
    finally:
        close_disks(machine)
    return bytes(machine.console.sink.data)


def snapshot(folder: Path) -> dict:
    """What every file reads (through its chain), or the error opening it;
    and for each checkpoint what its chain reads, or why it does not resume."""
    state = {}
    for name in FILES:
        try:
            state[name] = read_file_blocks(str(folder / name))
        except DiskError as exc:
            state[name] = f"refused: {exc}"
    for name in CHECKPOINTS:
        try:
            chain = resolve_disk_chain(read_checkpoint(str(folder / "ck" / f"{name}.mvc")))
            top = open_chain(chain)
            try:
                state[name] = top.read_blocks(0, top.block_count)
            finally:
                close_chain(top)
        except DiskError as exc:
            state[name] = f"refused: {exc}"
    return state


def expected_after(before: dict, overlay: str, parent: str) -> dict:
    """The snapshot a finished commit of ``overlay`` into ``parent`` leaves."""
    after = dict(before)
    after[parent] = before[overlay]
    for name, disk in DISK_OF.items():
        if disk == parent:
            after[name] = "refused"
    return after


def same(state: dict, expected: dict) -> list[str]:
    """The entries where ``state`` is not ``expected`` ("refused" matches any refusal)."""
    bad = []
    for key, want in expected.items():
        got = state[key]
        if want == "refused":
            if not (isinstance(got, str) and "has changed since the checkpoint" in got):
                bad.append(f"{key} should be refused as changed, got "
                           f"{got[:200] if isinstance(got, str) else 'resumable'}")
        elif got != want:
            bad.append(f"{key}: {got[:300] if isinstance(got, str) else 'different data'}")
    return bad


def commit(folder: Path, overlay: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        status = cli.main(["disk", "commit", str(folder / overlay)])
    return status, err.getvalue()


def copy(pristine_folder: Path, where: Path) -> Path:
    shutil.copytree(pristine_folder, where)
    return where


def file_bytes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- what a finished commit changes ----------------------------------------------------------

@pytest.mark.parametrize("overlay,parent", [("ck/ckpt-0001.cow", "disk.img"),
                                            ("ck/ckpt-0002.cow", "ck/ckpt-0001.cow"),
                                            ("ck/ckpt-0003.cow", "ck/ckpt-0002.cow")])
def test_a_commit_changes_only_what_its_parent_reads(pristine, tmp_path, overlay, parent):
    """After committing any overlay of the chain (the bottom one, a middle one, the
    run's top one): every other file reads the same, the parent reads what the
    overlay read, and only the checkpoint whose disk was the parent is refused.
    Found: after committing a middle overlay, the run's top overlay was refused,
    and ckpt-0002.mvc stopped resuming after a commit of ckpt-0001.cow."""
    folder, outputs = pristine
    work = copy(folder, tmp_path / "w")
    before = snapshot(work)
    status, err = commit(work, overlay)
    assert status == 0, err
    assert not same(snapshot(work), expected_after(before, overlay, parent)), \
        same(snapshot(work), expected_after(before, overlay, parent))
    for name in CHECKPOINTS:                     # the survivors resume to the same run
        if DISK_OF[name] != parent:
            assert resumed(work, name, tmp_path / f"r-{name}") == outputs[name], name
    # Running it again: nothing to do, said truly, and nothing written.
    files = file_bytes(work)
    status, err = commit(work, overlay)
    assert status == 0 and "has already been committed" in err and "nothing to do" in err, err
    assert file_bytes(work) == files


def test_committing_down_the_chain_gets_every_write_into_the_raw_disk(pristine, tmp_path):
    """Commit ckpt-0001.cow, then ckpt-0002.cow (which lands in ckpt-0001.cow), then
    ckpt-0001.cow again: the raw disk holds what ckpt-0002.cow read. Found: the
    second commit said ckpt-0002.cow 'has already been committed' (an AlreadyCommitted
    from the layer below it), exit 0, and the raw disk never got its writes."""
    folder, _ = pristine
    work = copy(folder, tmp_path / "w")
    before = snapshot(work)
    status, err = commit(work, "ck/ckpt-0001.cow")
    assert status == 0, err
    status, err = commit(work, "ck/ckpt-0002.cow")
    assert status == 0 and "already" not in err, err
    assert "committed 2 block group(s)" in err and "ckpt-0001.cow" in err, err
    assert "disk commit" in err, "the message says how to carry them on down"
    status, err = commit(work, "ck/ckpt-0001.cow")
    assert status == 0 and "already" not in err, err
    assert (work / "disk.img").read_bytes() == before["ck/ckpt-0002.cow"]
    assert snapshot(work)["ck/ckpt-0003.cow"] == before["ck/ckpt-0003.cow"]
    assert snapshot(work)["ckpt-0003"] == before["ckpt-0003"]


def test_an_overlay_written_after_its_commit_is_committed_again(pristine, tmp_path):
    """'nothing to do' only when it is true: an overlay that took more writes after
    it was committed is merged again."""
    folder, _ = pristine
    work = copy(folder, tmp_path / "w")
    assert commit(work, "ck/ckpt-0003.cow")[0] == 0
    top = open_disk(str(work / "ck" / "ckpt-0003.cow"), writable=True)
    try:
        top.write_blocks(50, b"\x77" * BLOCK)
    finally:
        close_chain(top)
    status, err = commit(work, "ck/ckpt-0003.cow")
    assert status == 0 and "already" not in err, err
    assert read_file_blocks(str(work / "ck" / "ckpt-0002.cow"))[50 * BLOCK:51 * BLOCK] == \
        b"\x77" * BLOCK


def test_a_fingerprint_does_not_cover_committed_as(pristine, tmp_path):
    """What a commit writes into the overlay (its committed_as) leaves the overlay's
    fingerprint as it was; any other change to the file does not."""
    folder, _ = pristine
    work = copy(folder, tmp_path / "w")
    path = str(work / "ck" / "ckpt-0001.cow")
    before = fingerprint_file(path)
    raw_before = Path(path).read_bytes()
    assert commit(work, "ck/ckpt-0001.cow")[0] == 0
    assert Path(path).read_bytes() != raw_before          # the header did change ...
    assert fingerprint_file(path) == before               # ... but not its fingerprint
    data = bytearray(Path(path).read_bytes())
    data[-1] ^= 1
    Path(path).write_bytes(bytes(data))
    assert fingerprint_file(path) != before


# --- killed at every point, failing at every point ---------------------------------------------

#: Runs in a child ``python -c``: wraps every call that changes a file; with
#: MINIVM_TRACE it writes their names to that file, with MINIVM_KILL_AT="N:when"
#: it SIGKILLs itself just before or just after the N-th such call; then runs
#: minivm's command line.
HOOKS = r'''
import os, shutil, signal, sys
MUTATORS = [(os, "pwrite"), (os, "write"), (os, "fsync"), (os, "replace"), (os, "rename"),
            (os, "unlink"), (os, "ftruncate"), (os, "truncate"), (shutil, "copyfile")]
trace = os.environ.get("MINIVM_TRACE")
kill_at = os.environ.get("MINIVM_KILL_AT")
target, when = (int(kill_at.split(":")[0]), kill_at.split(":")[1]) if kill_at else (None, None)
count = [0]
def wrap(module, name, real):
    def call(*args, **kwargs):
        count[0] += 1
        n = count[0]
        if trace:
            with open(trace, "a") as f:
                f.write(f"{n} {name}\n")
        if n == target and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if n == target and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return call
for module, name in MUTATORS:
    setattr(module, name, wrap(module, name, getattr(module, name)))
from minivm.cli import main
sys.exit(main(sys.argv[1:]))
'''


def child(args: list[str], **extra_env) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **extra_env)
    return subprocess.run([sys.executable, "-c", HOOKS, *args], capture_output=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


def traced_calls(folder: Path, overlay: str, tmp_path: Path) -> list[str]:
    work = copy(folder, tmp_path / "trace")
    log = tmp_path / "trace.log"
    proc = child(["disk", "commit", str(work / overlay)], MINIVM_TRACE=str(log))
    assert proc.returncode == 0, proc.stderr.decode()
    shutil.rmtree(work)
    return [line.split()[1] for line in log.read_text().splitlines()]


@pytest.mark.parametrize("overlay,parent", [("ck/ckpt-0001.cow", "disk.img"),
                                            ("ck/ckpt-0002.cow", "ck/ckpt-0001.cow")])
def test_kill_at_every_point_of_a_commit(pristine, tmp_path, overlay, parent):
    """SIGKILL before and after every call of the commit that changes a file: every
    checkpoint and file reads as before the commit, or (once the rename is done) as
    after a finished one; running the commit again always ends in the finished state.
    Found: killed at the second fsync or at the rename, the parent was untouched yet
    ckpt-0002.mvc no longer resumed ('ckpt-0001.cow has changed since the checkpoint
    was taken')."""
    folder, outputs = pristine
    calls = traced_calls(folder, overlay, tmp_path)
    assert "replace" in calls and calls.count("fsync") >= 2, calls
    before = snapshot(folder)
    after = expected_after(before, overlay, parent)
    finished = copy(folder, tmp_path / "finished")
    assert commit(finished, overlay)[0] == 0
    finished_parent = (finished / parent).read_bytes()
    states = {"before": 0, "after": 0}
    for n in range(1, len(calls) + 1):
        for when in ("before", "after"):
            context = f"killed {when} call {n} ({calls[n - 1]}) of {calls}"
            work = copy(folder, tmp_path / f"k{n}{when}")
            proc = child(["disk", "commit", str(work / overlay)], MINIVM_KILL_AT=f"{n}:{when}")
            assert proc.returncode == -9, (context, proc.returncode, proc.stderr.decode())
            parent_bytes = (work / parent).read_bytes()
            state = snapshot(work)
            if parent_bytes == (folder / parent).read_bytes():
                assert not same(state, before), (context, same(state, before))
                states["before"] += 1
            else:
                assert parent_bytes == finished_parent, f"{context}: the parent is a mix"
                assert not same(state, after), (context, same(state, after))
                states["after"] += 1
            status, err = commit(work, overlay)
            assert status == 0, (context, err)
            assert not same(snapshot(work), after), (context, same(snapshot(work), after))
            assert (work / parent).read_bytes() == finished_parent, context
            shutil.rmtree(work)
    assert states["before"] and states["after"], states
    for name in CHECKPOINTS:          # and the survivors of the last kill point resume exactly
        if DISK_OF[name] != parent:
            assert resumed(finished, name, tmp_path / f"r-{name}") == outputs[name], name


def _failing(monkeypatch, n: int, calls: list):
    """Make the n-th call that changes a file fail with EIO (in this process)."""
    count = [0]
    for module, name in ((os, "pwrite"), (os, "write"), (os, "fsync"), (os, "replace"),
                         (os, "rename"), (os, "unlink"), (os, "ftruncate"), (os, "truncate"),
                         (shutil, "copyfile")):
        real = getattr(module, name)

        def call(*args, _real=real, _name=name, **kwargs):
            count[0] += 1
            calls.append(_name)
            if count[0] == n:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, call)


def test_commit_failing_with_eio_at_its_rename_changes_nothing(pristine, tmp_path, monkeypatch):
    """The rename fails with EIO: the command says the disk is unchanged, and it is:
    every file is byte for byte as before (the overlay's header is put back), the
    temp file is gone, every checkpoint resumes. Found: the overlay kept its new
    committed_as, and ckpt-0002.mvc no longer resumed."""
    folder, outputs = pristine
    work = copy(folder, tmp_path / "w")
    files = file_bytes(work)
    with monkeypatch.context() as m:
        m.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(
            OSError(errno.EIO, os.strerror(errno.EIO))))
        status, err = commit(work, "ck/ckpt-0001.cow")
    assert status == 2 and "Input/output error" in err and "unchanged" in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert file_bytes(work) == files
    for name in CHECKPOINTS:
        assert resumed(work, name, tmp_path / f"r-{name}") == outputs[name], name


@pytest.mark.parametrize("overlay,parent", [("ck/ckpt-0001.cow", "disk.img"),
                                            ("ck/ckpt-0002.cow", "ck/ckpt-0001.cow")])
def test_commit_failing_at_every_point(pristine, tmp_path, monkeypatch, overlay, parent):
    """EIO at every call of the commit that changes a file: a message that says
    'unchanged' is true (every file as before, byte for byte), and one that does not
    comes only after the rename (the finished state); never a traceback."""
    folder, _ = pristine
    work = copy(folder, tmp_path / "count")
    calls: list = []
    with monkeypatch.context() as m:
        _failing(m, 0, calls)
        assert commit(work, overlay)[0] == 0
    before = snapshot(folder)
    after = expected_after(before, overlay, parent)
    outcomes = []
    for n in range(1, len(calls) + 1):
        work = copy(folder, tmp_path / f"f{n}")
        files = file_bytes(work)
        with monkeypatch.context() as m:
            _failing(m, n, [])
            status, err = commit(work, overlay)
        context = f"EIO at call {n} ({calls[n - 1]}) of {calls}: {err}"
        assert "Traceback" not in err and err.count("\n") == 1, context
        if status == 0:               # a failure the commit does not depend on
            assert not same(snapshot(work), after), context
        elif "unchanged" in err:
            assert file_bytes(work) == files, context
        else:
            assert status == 2 and "run it again" in err, context
            assert not same(snapshot(work), after), context
        outcomes.append((calls[n - 1], status, "unchanged" in err))
        shutil.rmtree(work)
    assert ("replace", 2, True) in outcomes, outcomes


def test_inspect_and_resume_agree_after_a_commit(pristine, tmp_path):
    """inspect says what resume does: after committing ckpt-0001.cow, ckpt-0002's
    disk.img is the committed parent (it reads the same), ckpt-0001's is CHANGED."""
    folder, _ = pristine
    work = copy(folder, tmp_path / "w")
    assert commit(work, "ck/ckpt-0001.cow")[0] == 0
    two = describe_checkpoint(read_checkpoint(str(work / "ck" / "ckpt-0002.mvc")))
    assert "committed into from ckpt-0001.cow; the chain reads the same" in two, two
    assert "CHANGED" not in two, two
    one = describe_checkpoint(read_checkpoint(str(work / "ck" / "ckpt-0001.mvc")))
    assert "CHANGED since the checkpoint" in one, one
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli.main(["resume", str(work / "ck" / "ckpt-0002.mvc"), "--checkpoint-dir",
                         str(tmp_path / "r")]) == 0
    assert "(committed into from ckpt-0001.cow; the chain reads the same; opened read-only)" \
        in err.getvalue(), err.getvalue()
