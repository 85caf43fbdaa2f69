"""Containment (issue 6): the guest reaches only its memory, its ports and the
disk it was given; a checkpoint makes minivm open no file but the disk chain
it names, read-only, and writes nothing outside the checkpoint folder.

File accesses are observed with a Python audit hook (``sys.addaudithook``):
every ``open`` event (``open()``, ``os.open``) while a test records is kept.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpt_files
from ckpt_strategies import close_disks
from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.repl import Session
from minivm.report import describe_checkpoint, describe_disk
from minivm.resume import export_checkpoint, read_checkpoint, resolve_disk_chain, resume
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import Overlay, describe_chain, open_disk
from minivm.errors import FormatError, DiskError, MinivmError
from minivm.machine import Machine
from minivm.store import FileStore

from support import bounded, run_cli, time_limit

ROOT = Path(__file__).resolve().parent.parent
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# --- observing file opens -----------------------------------------------------------------------

_recording: list | None = None


def _audit(event, args):
    if _recording is not None and event == "open":
        _recording.append(args)


sys.addaudithook(_audit)


@contextmanager
def opened_files():
    """Collects (path, writes) for every file opened in the body, except Python's own."""
    global _recording
    events: list = []
    found: list = []
    _recording = events
    try:
        yield found
    finally:
        _recording = None
        for path, mode, flags in events:
            if isinstance(path, int):
                continue
            path = os.fsdecode(path)
            if path.endswith((".py", ".pyc", ".lark")) or "site-packages" in path:
                continue
            writes = (bool(flags & WRITE_FLAGS) if isinstance(flags, int)
                      else any(c in (mode or "") for c in "wax+"))
            found.append((os.path.abspath(path), writes))



def tree_state(folder: Path, skip: Path | None = None) -> dict:
    """Name -> (size, mtime_ns) of every file under ``folder`` (except under ``skip``)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if skip is not None and Path(dirpath).resolve().is_relative_to(skip.resolve()):
            continue
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            info = p.lstat()
            out[str(p)] = (info.st_size, info.st_mtime_ns)
    return out


# --- 1. the guest: memory, ports, its own disk -------------------------------------------------------

KNOWN_OUT = {0x00, 0x01, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x26}
KNOWN_IN = {0x02, 0x12, 0x24, 0x25}


def test_every_port_touches_no_host_file(tmp_path):
    """`in`/`out` on every port 0..255 (and a few huge ones): the known ones work,
    the others fault with 'unknown port'; none opens a host file."""
    disk_path = tmp_path / "disk.img"
    disk_path.write_bytes(bytes(16 * 512))
    before = tree_state(tmp_path)
    faults = 0
    with opened_files() as files:
        for port in list(range(256)) + [0x1000, 0xFFFFFFFF]:
            for text in (f"out {port}, 1\nhalt\n", f"in r1, {port}\nhalt\n"):
                disk = open_disk(str(disk_path))
                machine = Machine(assemble(text, "port.asm"), disk=disk,
                                  console_sink=BufferSink(), console_input=ConsoleInput(b"a"))
                files.clear()                       # opening the disk is not the guest's doing
                stop = machine.run(100)
                known = port in (KNOWN_OUT if text.startswith("out") else KNOWN_IN)
                if known:
                    assert stop.reason == "halt", (hex(port), text, stop)
                else:
                    assert stop.reason == "fault" and "unknown port" in str(stop.detail)
                    faults += 1
                assert not files, f"port 0x{port:x} opened {files}"
                disk.close()
    assert faults == 2 * 258 - len(KNOWN_OUT) - len(KNOWN_IN)
    assert tree_state(tmp_path) == before


dma_requests = st.lists(st.tuples(
    st.sampled_from([1, 2, 3]),                                        # command
    st.one_of(st.integers(0, 40), st.sampled_from([0xFFFFFFFF, 1 << 31])),   # block
    st.one_of(st.integers(0, 70_000), st.sampled_from([0xFFFFFFFF, 0xFFFFFE00])),  # addr
    st.one_of(st.integers(0, 40), st.sampled_from([0xFFFFFFFF, 1 << 23]))),      # count
    min_size=1, max_size=6)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(requests=dma_requests, memory=st.sampled_from([4096, 65536]))
def test_dma_reaches_only_memory_and_its_disk(tmp_path, requests, memory):
    """Random DMA requests: each is served within the disk and memory, or faults;
    the disk file keeps its size, the files beside it are untouched, nothing is opened."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        folder = Path(folder)
        disk_path = folder / "disk.img"
        disk_path.write_bytes(bytes(32 * 512))
        (folder / "before.img").write_bytes(b"canary" * 100)
        (folder / "after.img").write_bytes(b"canary" * 100)
        lines = []
        for command, block, addr, count in requests:
            lines += [f"out 0x20, {block}", f"out 0x21, {addr}", f"out 0x22, {count}",
                      f"out 0x23, {command}"]
        lines += ["poll: in r1, 0x24", "bne r1, 0, poll", "halt"]
        image = assemble("\n".join(lines) + "\n", "dma.asm")
        before = tree_state(folder)
        disk = open_disk(str(disk_path))
        machine = Machine(image, memory_size=memory, disk=disk, console_sink=BufferSink(),
                          disk_latency=5, disk_per_block=1)
        with opened_files() as files:
            stop = machine.run(1_000_000)
        disk.close()
        assert not files, files
        assert stop.reason in ("halt", "fault"), stop
        if stop.reason == "fault":
            text = str(stop.detail)
            assert "outside" in text or "negative" in text or "unknown disk command" in text, text
        after = tree_state(folder)
        assert after.keys() == before.keys()
        assert (folder / "before.img").read_bytes() == b"canary" * 100
        assert (folder / "after.img").read_bytes() == b"canary" * 100
        assert disk_path.stat().st_size == 32 * 512


@pytest.mark.parametrize("text", ["ld r1, [0x10000]", "st r1, [0xFFFF]", "ldb r1, [0xFFFFFFFF]",
                                  "mov sp, 2\npush 1", "mov r2, 0x10000\nstb r1, [r2 - 0]"])
def test_memory_outside_faults(text):
    machine = Machine(assemble(text + "\nhalt\n", "mem.asm"), memory_size=65536,
                      console_sink=BufferSink())
    stop = machine.run(100)
    assert stop.reason == "fault" and "out of range" in str(stop.detail), stop


# --- 2. checkpoints that name other files --------------------------------------------------------------

@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """checkpoint_demo with a disk: ckpt-0001 (at its ckpt) and ckpt-0002 (tick 900),
    whose chain is ckpt-0001.cow over disk.img."""
    folder = tmp_path_factory.mktemp("contain")
    disk_path = folder / "disk.img"
    disk_path.write_bytes(bytes(64 * 1024))
    image = assemble((ROOT / "programs" / "checkpoint_demo.asm").read_text(),
                     str(ROOT / "programs" / "checkpoint_demo.asm"))
    machine = Machine(image, disk=open_disk(str(disk_path)), console_sink=BufferSink(),
                      console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")), schedule=[900])
    machine.run(5_000_000)
    cp.finish_all()
    close_disks(machine)
    assert [job.status for job in cp.jobs] == ["complete", "complete"]
    return folder, bytes(machine.console.sink.data)


def craft(seed_path: Path, out: Path, path: str, relpath: str | None = None,
          version: int = 2) -> Path:
    """A copy of ``seed_path`` whose disk chain's top entry names ``path``,
    written as a checkpoint file of format ``version``."""
    def edit(name, tree):
        if name == "disk":
            tree["chain"][0]["path"] = path
            tree["chain"][0]["relpath"] = path if relpath is None else relpath
    out.write_bytes(ckpt_files.edit(seed_path.read_bytes(), edit, version))
    return out


#: Both checkpoint formats load, so both must refuse the same files.
VERSIONS = pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])


HOSTILE = ["/etc/passwd", "../../../../../../../../etc/passwd", "fifo", "directory",
           "/dev/zero", "/dev/stdin", "/proc/self/pagemap", "symlink-to-passwd", "missing",
           "/etc", "nul\x00byte"]


def hostile_target(folder: Path, name: str) -> str:
    if name == "fifo":
        path = folder / "a.fifo"
        if not path.exists():
            os.mkfifo(path)
        return str(path)
    if name == "directory":
        (folder / "adir").mkdir(exist_ok=True)
        return str(folder / "adir")
    if name == "symlink-to-passwd":
        link = folder / "passwd.img"
        if not link.is_symlink():
            link.symlink_to("/etc/passwd")
        return str(link)
    if name == "missing":
        return str(folder / "no-such-disk.img")
    return name


@VERSIONS
@pytest.mark.parametrize("name", HOSTILE)
def test_resume_refuses_disk_chain_naming_other_files(seed, tmp_path, name, version):
    """resume() refuses a chain naming a system file, a FIFO, a directory, a device,
    a /proc file...: a clean DiskError, without blocking or reading the file, opening
    nothing else and writing nothing."""
    folder, _ = seed
    target = hostile_target(tmp_path, name)
    evil = craft(folder / "ck" / "ckpt-0001.mvc", tmp_path / "evil.mvc", target,
                 version=version)
    store = tmp_path / "store"
    watched = {p: os.stat(p) for p in ("/etc/passwd",) if os.path.exists(p)}
    before = tree_state(tmp_path)
    # a FIFO must not block (the hang guard) and /dev/zero must not be read (the memory bound)
    with opened_files() as files, \
            bounded(f"resuming a checkpoint naming {name!r}", megabytes=16):
        # Refused either by the loader (a path that cannot name a file at all,
        # e.g. one with a NUL byte) or by resume (a file that is not the disk).
        with pytest.raises((DiskError, FormatError)) as info:
            ckpt = read_checkpoint(str(evil))
            machine, _ = resume(ckpt, FileStore(str(store)))
            close_disks(machine)
    message = str(info.value)
    assert message and "Traceback" not in message
    allowed_reads = {str(evil), os.path.abspath(target) if "\x00" not in target else None,
                     os.path.realpath(target) if "\x00" not in target else None,
                     os.path.normpath(os.path.join(str(tmp_path), target))
                     if "\x00" not in target else None}
    for path, writes in files:
        assert not writes, f"opened {path} for writing"
        assert path in allowed_reads, f"opened {path}, which the checkpoint does not name"
    assert not store.exists() or not list(store.iterdir())
    assert tree_state(tmp_path) == before, "files changed"
    for p, info_before in watched.items():
        assert os.stat(p).st_mtime_ns == info_before.st_mtime_ns


@pytest.mark.parametrize("name", ["/etc/passwd", "fifo", "directory", "/dev/zero",
                                  "/proc/self/pagemap"])
@VERSIONS
def test_cli_resume_refuses_disk_chain_naming_other_files(seed, tmp_path, name, version):
    folder, _ = seed
    target = hostile_target(tmp_path, name)
    evil = craft(folder / "ck" / "ckpt-0001.mvc", tmp_path / "evil.mvc", target,
                 version=version)
    before = tree_state(tmp_path)
    for command in (["resume", str(evil), "--checkpoint-dir", str(tmp_path / "store")],
                    ["inspect", str(evil)]):
        proc = run_cli(*command, input=b"", timeout=60)
        err = proc.stderr.decode(errors="replace")
        assert "Traceback" not in err, err
        if command[0] == "resume":
            assert proc.returncode == 2 and proc.stdout == b"", err
            assert "minivm: error:" in err and "disk" in err, err
    assert tree_state(tmp_path) == before


def test_overlay_header_with_nul_byte_in_parent_path(tmp_path):
    """An overlay file (sent along with a checkpoint) whose header names a parent
    path with a NUL byte: `disk info`, `disk commit`, `run --disk` and resume must
    refuse it cleanly. Found: os.stat raises ValueError ('embedded null byte')."""
    base = tmp_path / "base.img"
    base.write_bytes(bytes(8192))
    raw = open_disk(str(base))
    overlay = Overlay.create(str(tmp_path / "evil.cow"), raw, 8)
    overlay.header["parent_path"] = "/tmp/x\x00y"
    overlay.header["parent_relpath"] = "nope\x00"
    overlay._write_header()
    overlay.close()
    raw.close()
    for fn in (describe_chain, open_disk):
        with pytest.raises(MinivmError):
            fn(str(tmp_path / "evil.cow"))
    prog = tmp_path / "p.asm"
    prog.write_text("halt\n")
    for command in (["disk", "info", str(tmp_path / "evil.cow")],
                    ["disk", "commit", str(tmp_path / "evil.cow")],
                    ["run", str(prog), "--disk", str(tmp_path / "evil.cow")]):
        proc = run_cli(*command, input=b"")
        err = proc.stderr.decode(errors="replace")
        assert "Traceback" not in err and proc.returncode == 2, (command, err)


def test_overlay_chain_loop_is_refused(tmp_path):
    base = tmp_path / "base.img"
    base.write_bytes(bytes(8192))
    raw = open_disk(str(base))
    overlay = Overlay.create(str(tmp_path / "loop.cow"), raw, 8)
    overlay.header["parent_path"] = str(tmp_path / "loop.cow")
    overlay.header["parent_relpath"] = "loop.cow"
    overlay._write_header()
    overlay.close()
    raw.close()
    with time_limit(60, "a looping overlay chain"):
        for fn in (describe_chain, open_disk):
            with pytest.raises(DiskError, match="longer than"):
                fn(str(tmp_path / "loop.cow"))


def test_resume_opens_only_its_chain_and_never_writes_it(seed, tmp_path):
    """A genuine checkpoint: resume opens the checkpoint, the files of its chain
    (read-only) and its fresh overlay in the store; nothing else."""
    folder, output = seed
    ckpt_path = folder / "ck" / "ckpt-0002.mvc"
    store = tmp_path / "store"
    chain_files = {str(folder / "ck" / "ckpt-0001.cow"), str(folder / "disk.img")}
    before = {p: Path(p).read_bytes() for p in chain_files}
    with opened_files() as files:
        ckpt = read_checkpoint(str(ckpt_path))
        machine, overlay = resume(ckpt, FileStore(str(store)), console_sink=BufferSink(),
                                  console_input=ConsoleInput(b""))
        stop = machine.run(5_000_000)
        close_disks(machine)
    assert stop.reason == "halt"
    assert output.endswith(bytes(machine.console.sink.data))
    opened = {}
    for path, writes in files:
        opened[path] = opened.get(path, False) or writes
    assert set(opened) <= {str(ckpt_path), overlay, *chain_files}, opened
    assert chain_files <= set(opened)
    assert not any(opened[p] for p in chain_files), f"a checkpointed disk was opened for writing: {opened}"
    assert opened[overlay]
    assert Path(overlay).parent == store
    assert {p: Path(p).read_bytes() for p in chain_files} == before


def test_cli_resume_lists_the_disk_chain_first(seed, tmp_path):
    """`minivm resume` names every disk file it will open before the guest runs."""
    folder, output = seed
    proc = run_cli("resume", str(folder / "ck" / "ckpt-0002.mvc"),
                   "--checkpoint-dir", str(tmp_path / "store"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    chain_lines = [line for line in err.splitlines() if line.startswith("minivm: disk chain:")]
    assert len(chain_lines) == 2, err
    assert str(folder / "ck" / "ckpt-0001.cow") in chain_lines[0]
    assert str(folder / "disk.img") in chain_lines[1]
    assert all("unchanged; opened read-only" in line for line in chain_lines)
    assert err.index("minivm: disk chain:") < err.index("minivm: resuming")
    assert output.endswith(proc.stdout) and proc.stdout


def test_changed_disk_refused_unless_allowed(seed, tmp_path):
    folder, output = seed
    work = tmp_path / "copy"
    shutil.copytree(folder, work)
    ckpt1, ckpt2 = work / "ck" / "ckpt-0001.mvc", work / "ck" / "ckpt-0002.mvc"
    # Change the middle of the chain (the overlay ckpt-0002 sits on).
    cow = work / "ck" / "ckpt-0001.cow"
    with open(cow, "ab") as f:                  # a changed size: a different file
        f.write(b"changed")
    proc = run_cli("resume", str(ckpt2), "--checkpoint-dir", str(tmp_path / "s1"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b"", err
    assert "has changed since the checkpoint was taken" in err and "ckpt-0001.cow" in err, err
    assert "--allow-changed-disk" in err
    proc = run_cli("resume", str(ckpt1), "--checkpoint-dir", str(tmp_path / "s2"), input=b"")
    assert proc.returncode == 0, proc.stderr.decode()       # its chain is only disk.img
    # Change the raw disk: both are refused; --allow-changed-disk resumes, marked CHANGED.
    disk = work / "disk.img"
    raw = bytearray(disk.read_bytes())
    raw[100 * 512] ^= 1
    disk.write_bytes(bytes(raw))
    for ckpt in (ckpt1, ckpt2):
        proc = run_cli("resume", str(ckpt), "--checkpoint-dir", str(tmp_path / "s3"), input=b"")
        assert proc.returncode == 2 and b"has changed" in proc.stderr, proc.stderr.decode()
    proc = run_cli("resume", str(ckpt1), "--allow-changed-disk",
                   "--checkpoint-dir", str(tmp_path / "s4"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "minivm: disk chain: raw" in err and "CHANGED" in err, err
    assert disk.read_bytes() == bytes(raw), "the changed disk was written"


def test_resolve_disk_chain_checks_fingerprints_before_opening(seed, tmp_path):
    """The chain is resolved read-only and its entries carry their status."""
    folder, _ = seed
    ckpt = read_checkpoint(str(folder / "ck" / "ckpt-0002.mvc"))
    with opened_files() as files:
        chain = resolve_disk_chain(ckpt)
    assert [e["status"] for e in chain] == ["unchanged", "unchanged"]
    assert all(not writes for _, writes in files), files


@VERSIONS
def test_disk_path_from_a_checkpoint_is_shown_escaped(seed, tmp_path, version):
    """A checkpoint names a missing disk whose path holds terminal escapes: the
    message shows them escaped (errors.show), in resume() and in the CLI."""
    folder, _ = seed
    target = str(tmp_path / "gone\x1b[2J\n.img")
    evil = craft(folder / "ck" / "ckpt-0001.mvc", tmp_path / "evil.mvc", target,
                 version=version)
    with pytest.raises(DiskError) as info:
        resolve_disk_chain(read_checkpoint(str(evil)))
    message = str(info.value)
    assert "gone\\x1b[2J\\n.img" in message and "\x1b" not in message and "\n" not in message
    proc = run_cli("resume", str(evil), "--checkpoint-dir", str(tmp_path / "store"),
                   input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "gone\\x1b[2J\\n.img" in err and "\x1b" not in err, err


# --- 3. every path that reads a checkpoint opens its disk chain read-only ---------------------------

#: Run inside a child ``python -m minivm``: an audit hook appends every file opened
#: for writing to the file named by MINIVM_TEST_WRITES, then minivm runs as usual.
_WRITES_HOOK = """
import os, sys
log = os.environ["MINIVM_TEST_WRITES"]
W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def hook(event, args):
    if event == "open" and not isinstance(args[0], int):
        path, mode, flags = args
        writes = (bool(flags & W) if isinstance(flags, int)
                  else any(c in (mode or "") for c in "wax+"))
        if writes and os.fsdecode(path) != log:
            with open(log, "a") as f:
                f.write(os.path.abspath(os.fsdecode(path)) + "\\n")
sys.addaudithook(hook)
from minivm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _read_only_seed(seed, tmp_path) -> tuple[Path, set]:
    """A copy of the seed whose disk chain files are mode 0o444."""
    folder, _ = seed
    work = tmp_path / "ro"
    shutil.copytree(folder, work)
    chain = {str(work / "disk.img"), str(work / "ck" / "ckpt-0001.cow")}
    for path in chain:
        os.chmod(path, 0o444)
    return work, chain


def test_every_path_opens_the_checkpointed_disk_read_only(seed, tmp_path):
    """resume, the REPL's restore and diff (file against now, file against file),
    inspect, disk info, export: with the chain files made read-only (0o444), each
    works, and none opens a file of the chain for writing (seen by the audit hook,
    which also catches what root's permissions would let through). Found: diff
    opened the checkpointed disk with O_RDWR."""
    work, chain = _read_only_seed(seed, tmp_path)
    ck = work / "ck"
    before = {p: Path(p).read_bytes() for p in chain}
    out = io.StringIO()
    with opened_files() as files:
        ckpt = read_checkpoint(str(ck / "ckpt-0002.mvc"))
        machine, _ = resume(ckpt, FileStore(str(tmp_path / "s1")), console_sink=BufferSink(),
                            console_input=ConsoleInput(b""))
        assert machine.run(5_000_000).reason == "halt"
        close_disks(machine)
        session = Session(out=out, checkpoint_dir=str(tmp_path / "s2"))
        for line in (f"restore {ck / 'ckpt-0002.mvc'}", f"diff {ck / 'ckpt-0001.mvc'} now",
                     f"diff {ck / 'ckpt-0001.mvc'} {ck / 'ckpt-0002.mvc'}", "continue",
                     f"restore {ck / 'ckpt-0001.mvc'}", "continue"):
            assert session.execute(line), (line, out.getvalue())
        session.execute("quit")
        describe_checkpoint(read_checkpoint(str(ck / "ckpt-0002.mvc")))
        describe_disk(str(ck / "ckpt-0002.cow"))
        export_checkpoint(read_checkpoint(str(ck / "ckpt-0002.mvc")), str(tmp_path / "exp"))
    text = out.getvalue()
    assert "disk: same" in text or "disk:" in text, text
    assert "error" not in text.lower(), text
    writes = sorted({p for p, w in files if w and p in chain})
    assert not writes, f"a checkpointed disk file was opened for writing: {writes}"
    assert {p: Path(p).read_bytes() for p in chain} == before
    # The same through the command line, in a child process with the audit hook.
    log = tmp_path / "writes.log"
    environment = dict(os.environ, MINIVM_TEST_WRITES=str(log),
                       PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    batch = tmp_path / "batch.txt"
    batch.write_text(f"restore {ck / 'ckpt-0002.mvc'}\ndiff {ck / 'ckpt-0001.mvc'} now\n"
                     "continue\n")
    for args in (["resume", str(ck / "ckpt-0002.mvc"), "--checkpoint-dir", str(tmp_path / "c1")],
                 ["repl", "--batch", str(batch)],
                 ["inspect", str(ck / "ckpt-0002.mvc")],
                 ["disk", "info", str(ck / "ckpt-0002.cow")],
                 ["export", str(ck / "ckpt-0002.mvc"), str(tmp_path / "exp2")]):
        proc = subprocess.run([sys.executable, "-c", _WRITES_HOOK, *args], input=b"",
                              capture_output=True, env=environment, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr.decode())
        written = set(log.read_text().split()) if log.exists() else set()
        assert not written & chain, f"minivm {args[0]} opened {written & chain} for writing"
    assert {p: Path(p).read_bytes() for p in chain} == before
