"""Resource limits and failures of the host, each with a clear message (issue 6).

* ``--max-steps`` on a resumed run; memory sizes (1 byte .. 4 GiB);
  ``--max-inflight``;
* the loader's file-size caps (version-1 checkpoints: container.MAX_FILE_BYTES,
  programs 64 MiB), refused from the size alone, without reading the file;
  a version-2 checkpoint is never read whole: one bigger than that cap
  loads, inspects and resumes in memory for its records and index only;
* a checkpoint folder that cannot be created or written, and a store whose
  disk is full: the checkpoint fails with a clear report and the guest keeps
  running to the same final state and output as without it;
* a read-only disk image: a clear error at start (``run``), and no problem
  at all for ``resume``, which never writes the checkpointed disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
import subprocess
from pathlib import Path

import pytest

from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.resume import read_checkpoint, resume
from ckpt_files import split
from ckpt_raw import CRC, FOOTER, FOOTER_MAGIC, MAGIC, STRIDE, bitmap_of, index_payload, packb
from minivm.ckptfile import PageError
from minivm.container import MAX_FILE_BYTES, AtomicFile
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import close_chain, open_disk
from minivm.errors import FormatError, MinivmError
from minivm.machine import Machine
from minivm.program import load_program
from minivm.store import FileStore, PendingCheckpoint

from minivm.engine import ENGINES
from support import bounded, make_machine, run_cli


def no_traceback(proc) -> str:
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    return err


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# Counts to 2000, printing every 500; takes a checkpoint (ckpt) at tick 1.
COUNTER = """
        ckpt
        mov r1, 0
loop:   add r1, r1, 1
        mod r2, r1, 500
        bne r2, 0, skip
        out 0x01, r1
        out 0x00, 10
skip:   blt r1, 2000, loop
        mov r0, 7
        halt
"""
COUNTER_OUTPUT = b"500\n1000\n1500\n2000\n"


# --- --max-steps, memory size, --max-inflight ------------------------------------------------------

def test_max_steps_counts_from_the_resumed_tick(tmp_path):
    prog = write(tmp_path / "count.asm", COUNTER)
    proc = run_cli("run", prog, "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    assert proc.returncode == 7 and proc.stdout == COUNTER_OUTPUT, no_traceback(proc)
    ckpt = tmp_path / "ck" / "ckpt-0001.mvc"
    proc = run_cli("resume", str(ckpt), "--max-steps", "50",
                   "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    err = no_traceback(proc)
    assert proc.returncode == 4, err
    assert "--max-steps 50" in err and "at tick 51" in err and "count.asm:" in err, err
    proc = run_cli("resume", str(ckpt), "--max-steps", "100000",
                   "--checkpoint-dir", str(tmp_path / "ck3"), input=b"")
    assert proc.returncode == 7 and proc.stdout == COUNTER_OUTPUT, no_traceback(proc)


@pytest.mark.parametrize("mem", ["5G", "4294967297", "8G", "0", "0K"])
def test_memory_size_out_of_range(tmp_path, mem):
    prog = write(tmp_path / "p.asm", "halt\n")
    proc = run_cli("run", prog, "--mem", mem, input=b"")
    err = no_traceback(proc)
    assert proc.returncode == 2, err
    assert "memory size" in err and "4G" in err, err


TOP_OF_4G = "mov r1, 0xFFFFFFFC\nmov r2, 42\nst r2, [r1]\nckpt\nld r0, [r1]\nhalt\n"


def test_4g_memory_checkpoint_and_resume(tmp_path):
    """4 GiB is accepted; a checkpoint of it holds only the touched pages (and
    its index, one bit for each of the 2^20 pages: 128 KiB)."""
    prog = write(tmp_path / "top.asm", TOP_OF_4G)
    proc = run_cli("run", prog, "--mem", "4G", "--checkpoint-dir", str(tmp_path / "ck"),
                   input=b"")
    assert proc.returncode == 42, no_traceback(proc)
    ckpt = tmp_path / "ck" / "ckpt-0001.mvc"
    assert ckpt.stat().st_size < (1 << 20) // 8 + 64 * 1024
    proc = run_cli("resume", str(ckpt), "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    assert proc.returncode == 42, no_traceback(proc)


def test_4g_memory_costs_page_tables_not_pages(tmp_path):
    """Running, checkpointing and resuming a 4 GiB machine that touches one page
    allocates that page and the page tables (8 bytes an entry, a million
    entries a table), never memory in proportion to its 4 GiB."""
    image = assemble(TOP_OF_4G, "top.asm")
    with bounded("a 4 GiB machine: run, checkpoint, resume", megabytes=128):
        machine = Machine(image, memory_size=1 << 32, console_sink=BufferSink(),
                          console_input=ConsoleInput(b""))
        cp = Checkpointer(machine, FileStore(str(tmp_path / "ck")))
        assert machine.run(1000).reason == "halt" and machine.regs[0] == 42
        cp.finish_all()
        (job,) = cp.jobs
        assert job.status == "complete", job.progress()
        assert machine.memory.allocated == 1
        ckpt = read_checkpoint(job.location)
        assert sorted(ckpt.pages) == [(1 << 20) - 1]
        resumed, _ = resume(ckpt, FileStore(str(tmp_path / "ck2")), console_sink=BufferSink(),
                            console_input=ConsoleInput(b""))
        assert resumed.run(1000).reason == "halt" and resumed.regs[0] == 42
        assert resumed.memory.allocated == 1


DISK_WRITES = """
        out 0x21, 0
        out 0x22, 1
        mov r1, 0
issue:  out 0x20, r1
        out 0x23, 2
        add r1, r1, 1
        blt r1, {n}, issue
        in r0, 0x24                 ; all of them still in flight: exit status n & 0xFF
        halt
"""


@pytest.mark.parametrize("cap, requests, status", [(4, 4, 4), (4, 5, 3), (1, 1, 1), (1, 2, 3),
                                                    (None, 1024, 0), (None, 1025, 3)])
def test_max_inflight(tmp_path, cap, requests, status):
    """One more request in flight than --max-inflight (default 1024) is a guest fault."""
    prog = write(tmp_path / "dma.asm", DISK_WRITES.format(n=requests))
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(2048 * 512))
    args = (["run", prog, "--disk", str(disk), "--disk-latency", "100000"]
            + (["--max-inflight", str(cap)] if cap else []))
    proc = run_cli(*args, input=b"")
    err = no_traceback(proc)
    assert proc.returncode == status, err
    if requests > (cap or 1024):
        limit = cap or 1024
        assert f"too many disk requests in flight (the limit is {limit})" in err, err
        assert "dma.asm:6" in err and "pc 4" in err, err        # the `out 0x23, 2`
    else:
        assert "too many" not in err, err


# --- file-size caps ---------------------------------------------------------------------------------

def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_checkpoint_over_the_size_cap_is_refused_unread(tmp_path):
    """A version-1 checkpoint (read whole) over container.MAX_FILE_BYTES: its
    magic and header, then a hole."""
    big = sparse(tmp_path / "big.mvc", MAX_FILE_BYTES + 1)
    with open(big, "r+b") as f:
        f.write(packb("minivm-checkpoint") + packb({"version": 1, "name": "ckpt-0001"}))
    with bounded("refusing a checkpoint over the size cap", megabytes=16), \
            pytest.raises(FormatError) as info:
        read_checkpoint(str(big))
    assert f"{MAX_FILE_BYTES + 1} bytes, more than the {MAX_FILE_BYTES}-byte limit" \
        in str(info.value)
    for command in ("inspect", "resume"):
        proc = run_cli(command, str(big), input=b"")
        err = no_traceback(proc)
        assert proc.returncode == 2 and f"{MAX_FILE_BYTES}-byte limit" in err, err


BIG_MEMORY = "mov r1, 0x7FFFF000\nmov r2, 42\nst r2, [r1]\nckpt\nld r0, [r1]\nhalt\n"


def test_version_2_checkpoint_over_the_v1_cap_is_read_by_its_index(tmp_path):
    """A version-2 checkpoint of 2^18 + 1 saved pages (1 GiB and 1 MiB of page
    data, more than container.MAX_FILE_BYTES; a sparse file) is never read
    whole: it loads, inspects and resumes (lazily: the guest reads one page)
    in memory for its records and its index (a bit a page of memory).

    Only the first and the last saved page are written, each with its
    CRC-32; the pages between are a hole, whose CRC-32s (zeros) are wrong:
    written, every one of them would be 4 bytes in each 4,100, which no
    file system keeps sparse (1 GiB on disk). Nothing reads them: reading
    one is a PageError, which shows that neither loading nor resuming did."""
    prog = write(tmp_path / "big.asm", BIG_MEMORY)
    proc = run_cli("run", prog, "--mem", "2G", "--checkpoint-dir", str(tmp_path / "ck"),
                   input=b"")
    assert proc.returncode == 42, no_traceback(proc)
    header, sections = split((tmp_path / "ck" / "ckpt-0001.mvc").read_bytes())
    records = dict(sections)
    count = (1 << 18) + 1
    numbers = list(range((1 << 19) - count, 1 << 19))      # the top of 2 GiB, page 0x7FFFF last
    last = bytearray(4096)
    last[:4] = (43).to_bytes(4, "little")          # the guest saved 42: this file says 43
    path = tmp_path / "big.mvc"
    with open(path, "wb") as f:                 # the layout of ckptfile.py, written by hand
        head = MAGIC + packb({"version": 2, **header})
        f.write(head)
        entries = []

        def record(name, payload):
            entries.append([name, f.tell(), len(packb([name, payload])),
                            hashlib.sha256(payload).digest()])
            f.write(packb([name, payload]))
        record("image", records["image"])
        record("state", records["state"])
        pages_at = f.tell()
        f.write(bytes(4096) + CRC.pack(zlib.crc32(bytes(4096))))   # rank 0: zeros
        f.seek(pages_at + (count - 1) * STRIDE)                     # a hole: ranks 1 ..
        f.write(last + CRC.pack(zlib.crc32(last)))                  # the last rank
        record("disk", records["disk"])
        record("meta", records["meta"])
        record("index", index_payload(bitmap_of(numbers, 1 << 31)))
        end_at = f.tell()
        f.write(packb(["end", {"sections": entries, "pages": [pages_at, count * STRIDE, count],
                               "header": hashlib.sha256(head).digest()}]))
        f.write(FOOTER.pack(FOOTER_MAGIC, end_at))
    assert path.stat().st_size > MAX_FILE_BYTES
    with bounded("loading a 1 GiB version-2 checkpoint", megabytes=32):
        ckpt = read_checkpoint(str(path))
        assert ckpt.format_version == 2 and len(ckpt.pages) == count
        assert ckpt.pages[0x7FFFF] == bytes(last) and ckpt.pages[numbers[0]] == bytes(4096)
        with pytest.raises(PageError, match=f"saved page {numbers[1]} fails its checksum"):
            ckpt.pages[numbers[1]]
    for engine in ("interp", "blocks"):
        with bounded("resuming a 1 GiB version-2 checkpoint", megabytes=64):
            machine, _ = resume(read_checkpoint(str(path)),
                                FileStore(str(tmp_path / f"r-{engine}")),
                                console_sink=BufferSink(), console_input=ConsoleInput(b""),
                                engine=engine)
            assert machine.run(1000).reason == "halt"
        assert machine.regs[0] == 43 and machine.memory.pages_loaded == 1
    proc = run_cli("inspect", str(path), input=b"")
    assert proc.returncode == 0 and str(count).encode() in proc.stdout, no_traceback(proc)
    proc = run_cli("resume", str(path), "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    assert proc.returncode == 43, no_traceback(proc)


@pytest.mark.parametrize("name", ["big.mvb", "big.asm"])
def test_program_over_the_size_cap_is_refused_unread(tmp_path, name):
    big = sparse(tmp_path / name, (64 << 20) + 1)
    with bounded("refusing a program over the size cap", megabytes=16), \
            pytest.raises(MinivmError) as info:
        load_program(str(big))
    assert "67108864-byte limit" in str(info.value)
    proc = run_cli("run", str(big), input=b"")
    err = no_traceback(proc)
    assert proc.returncode == 2 and "67108864-byte limit" in err, err


def test_loading_a_small_checkpoint_allocates_little(tmp_path):
    """Memory for loading a checkpoint follows its size, not the 1 GiB cap.

    read_file_capped reads with f.read(limit + 1), which allocates a 1 GiB
    buffer for any file; under `ulimit -v 1000000` `minivm inspect` of a
    14 KB checkpoint dies with a MemoryError traceback."""
    prog = write(tmp_path / "count.asm", COUNTER)
    proc = run_cli("run", prog, "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    assert proc.returncode == 7, no_traceback(proc)
    path = tmp_path / "ck" / "ckpt-0001.mvc"
    with bounded(f"loading a {path.stat().st_size}-byte checkpoint", megabytes=64):
        read_checkpoint(str(path))


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "/proc/self/pagemap"])
def test_checkpoint_path_that_is_not_a_regular_file(tmp_path, kind):
    """`minivm resume PATH` / `inspect PATH` where PATH is a device, a FIFO (say,
    inside a tarball from a classmate) or a /proc file: refused at once, without
    blocking on the FIFO and without reading 1 GiB first."""
    path = kind
    if kind == "fifo":
        path = str(tmp_path / "ckpt-0001.mvc")
        os.mkfifo(path)
    # a blocked open of the FIFO is the hang; reading /dev/zero shows as memory
    with bounded(f"refusing {kind} as a checkpoint", megabytes=16), \
            pytest.raises(FormatError) as info:
        read_checkpoint(path)
    assert str(info.value)


# --- checkpoint folders that cannot be written ---------------------------------------------------------

@pytest.mark.parametrize("how", ["ckpt", "checkpoint-at"])
def test_checkpoint_folder_under_a_regular_file(tmp_path, how):
    """The folder cannot be created: the checkpoint fails with a clear message and
    the guest keeps running to the same output and exit status as without it."""
    prog = write(tmp_path / "count.asm", COUNTER)
    (tmp_path / "afile").write_text("not a folder")
    folder = str(tmp_path / "afile" / "ck")
    extra = ["--checkpoint-at", "100"] if how == "checkpoint-at" else []
    proc = run_cli("run", prog, "--checkpoint-dir", folder, *extra, input=b"")
    err = no_traceback(proc)
    assert "cannot create the checkpoint folder" in err and "Not a directory" in err, err
    assert proc.stdout == COUNTER_OUTPUT, (proc.stdout, err)
    assert proc.returncode == 7, err
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_read_only_checkpoint_folder(tmp_path):
    prog = write(tmp_path / "count.asm", COUNTER)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = run_cli("run", prog, "--checkpoint-dir", str(folder), input=b"")
        err = no_traceback(proc)
        assert proc.stdout == COUNTER_OUTPUT and proc.returncode == 7, err
        if os.access(folder, os.W_OK):          # root: the folder is still writable
            assert (folder / "ckpt-0001.mvc").exists(), err
        else:
            assert "is not writable" in err, err
            assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


# --- a store whose disk is full -------------------------------------------------------------------------

GUEST_WITH_DISK = """
        mov r10, 0
phase:  mov r1, 0x10000
        mov r2, 0
touch:  add r3, r2, r10
        mul r3, r3, 2654435761
        st r3, [r1]
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, 64, touch
        st r3, [buf]
        out 0x20, r10
        out 0x21, buf
        out 0x22, 1
        out 0x23, 2
        mov r5, 0
spin:   add r5, r5, 1
        blt r5, 3000, spin
        out 0x01, r3
        out 0x00, 10
        add r10, r10, 1
        blt r10, 6, phase
        ckpt
poll:   in r4, 0x24
        bne r4, 0, poll
        mov r0, 1
        halt
.data
buf:    .space 512
"""


class FullDiskStore(FileStore):
    """A FileStore on a full disk: the checkpoint's temp file is real (made by
    AtomicFile, as FileStore.begin does), but every write to it fails with ENOSPC."""

    def begin(self, name):
        os.makedirs(self.folder, exist_ok=True)
        out = AtomicFile(self.location(name))
        out.file.close()
        out.file = open("/dev/full", "wb")
        return PendingCheckpoint(out.file, out.commit, out.abort)


class FullSinkStore(FileStore):
    """The same, with an abort that tolerates the failing close (no temp file)."""

    def begin(self, name):
        os.makedirs(self.folder, exist_ok=True)
        sink = open("/dev/full", "wb")

        def abort():
            try:
                sink.close()
            except OSError:
                pass
        return PendingCheckpoint(sink, lambda: None, abort)


def _run_guest(tmp_path: Path, tag: str, store_class=None, schedule=()):
    image = assemble(GUEST_WITH_DISK, "full.asm")
    disk_path = tmp_path / f"{tag}.img"
    disk_path.write_bytes(bytes(32 * 512))
    machine = Machine(image, memory_size=1 << 20, disk=open_disk(str(disk_path)),
                      console_sink=BufferSink(), console_input=ConsoleInput(b""))
    reports: list[str] = []
    cp = None
    if store_class is not None:
        cp = Checkpointer(machine, store_class(str(tmp_path / f"{tag}-ck")),
                          schedule=list(schedule), report=reports.append,
                          pages_per_slice=2, slice_ticks=64)
    stop = machine.run(10_000_000)
    if cp is not None:
        cp.finish_all()
    disk = machine.disk.backing.read_blocks(0, 32)      # through the overlay chain
    final = (stop.reason, bytes(machine.console.sink.data), list(machine.regs),
             machine.tick, machine.memory.read_bytes(0, 1 << 20), disk)
    close_chain(machine.disk.backing)
    return final, cp, reports


@pytest.mark.parametrize("store_class", [FullSinkStore, FullDiskStore],
                         ids=["abort-tolerates-close", "real-atomic-file"])
def test_disk_full_store(tmp_path, store_class):
    reference, _, _ = _run_guest(tmp_path, "ref")
    assert reference[0] == "halt"
    final, cp, reports = _run_guest(tmp_path, "full", store_class, schedule=[500, 20_000])
    assert cp.jobs and all(job.status == "failed" for job in cp.jobs), \
        [job.progress() for job in cp.jobs]
    assert reports and all("No space left on device" in r and "keeps running" in r
                           for r in reports), reports
    assert len(reports) >= len(cp.jobs)
    assert final == reference, "a failed checkpoint changed what the guest did"
    leftovers = [p.name for p in (tmp_path / "full-ck").iterdir() if p.suffix != ".cow"]
    assert not leftovers, f"a failed checkpoint left {leftovers} behind"


# --- read-only disk images ------------------------------------------------------------------------------

def make_read_only(path: Path) -> bool:
    """chmod 444, and as root also chattr +i (root ignores file modes). True if
    the file is now really read-only for this process."""
    path.chmod(0o444)
    if os.access(path, os.W_OK):
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    try:
        with open(path, "r+b"):
            return False
    except OSError:
        return True


def undo_read_only(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_read_only_disk_image(tmp_path):
    """`minivm run --disk` on a read-only image: a clear error before the guest
    starts. `minivm resume` of a checkpoint whose disk is read-only: works, since
    the checkpointed disk is only ever read."""
    prog = write(tmp_path / "count.asm", "out 0x01, 1\n" + COUNTER)
    disk = tmp_path / "ro.img"
    disk.write_bytes(bytes(64 * 512))
    proc = run_cli("run", prog, "--disk", str(disk), "--checkpoint-dir", str(tmp_path / "ck"),
                   input=b"")
    assert proc.returncode == 7, no_traceback(proc)
    ckpt = tmp_path / "ck" / "ckpt-0001.mvc"
    try:
        really = make_read_only(disk)
        proc = run_cli("run", prog, "--disk", str(disk), input=b"")
        err = no_traceback(proc)
        if really:
            assert proc.returncode == 2 and proc.stdout == b"", err
            assert "ro.img" in err and "writable" in err, err
        else:
            assert proc.returncode == 7, err
        proc = run_cli("resume", str(ckpt), "--checkpoint-dir", str(tmp_path / "ck2"),
                       input=b"")
        err = no_traceback(proc)
        assert proc.returncode == 7 and proc.stdout == COUNTER_OUTPUT, err
        assert "opened read-only" in err
    finally:
        undo_read_only(disk)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("limit", [100.0, "100", 1.5])
def test_a_tick_limit_that_is_not_an_int_is_refused(engine, limit):
    """A float limit never meets the whole-tick clock: it hung interp and
    broke a region on blocks (found by a review). Refused, nothing run."""
    from minivm.api import assemble as api_assemble, boot
    m = make_machine("loop: add r1, r1, 1\n      jmp loop\n", engine=engine)
    with pytest.raises(TypeError, match="max_ticks must be a whole number of ticks"):
        m.run(limit)
    assert m.tick == 0
    assert m.run(10).reason == "limit" and m.tick == 10
    vm = boot(api_assemble("loop: jmp loop\n"), engine=engine)
    with pytest.raises(TypeError, match="whole number of ticks"):
        vm.run(limit)
    with pytest.raises(TypeError, match="max_output must be a whole number of bytes"):
        vm.run(10, max_output=limit)
    assert vm.run(10).stop == "limit"
    vm.close()
