"""Many checkpoints, big checkpoints (issue 12): what the writer writes, the reader reads.

* open files: a run with hundreds of checkpoints under a low ``ulimit -n``
  completes every one (sealed overlays are parked, a saving checkpoint's temp
  file is closed between batches), and a layer that cannot be fingerprinted
  fails the checkpoints that need it, reported, while the guest goes on;
* scheduling: checkpoints 100 ticks apart all finish saving while the guest runs;
* layout: however slowly the save is paced, a (version-2) checkpoint is one
  area of page data (each page and its CRC-32) and one index (a bitmap),
  with nothing per batch; a version-1
  file may have up to ckptfile.MAX_PAGES_SECTIONS ``pages`` sections;
* size: a version-2 file is never read whole, so its page data (bounded by
  the memory, 4 GiB) has no cap; its records together are capped
  (ckptfile.MAX_RECORD_BYTES), and no checkpoint minivm writes can exceed
  that; a version-1 file is read whole and capped at container.MAX_FILE_BYTES;
* chains: a checkpoint never names a disk chain longer than the loader takes;
* --checkpoint-at ticks that one ``wait`` jumps over: one checkpoint, and a note.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import minivm.checkpoint as checkpoint_module
import minivm.ckptfile as ckptfile
from ckpt_files import join, split
from minivm import devices, disks, image as image_module
from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.ckptfile import (MAX_END_BYTES, MAX_PAGES_SECTIONS, MAX_RECORD_BYTES, FileSource,
                             pack_end, read_end)
from minivm.container import (MAX_PROGRAM_BYTES, pack, read_file_capped,
                              write_atomically)
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import close_chain, open_disk
from minivm.engine import ENGINES
from minivm.errors import FormatError
from minivm.machine import Machine
from minivm.memory import PAGE_SIZE
from minivm.resume import read_checkpoint, resume
from minivm.store import FileStore, MemoryStore

from support import ROOT, run_cli


def machine_for(source: str, tmp_path: Path | None = None, **options) -> Machine:
    disk = None
    if tmp_path is not None:
        path = tmp_path / "d.img"
        path.write_bytes(bytes(64 * 512))
        disk = open_disk(str(path))
    return Machine(assemble(source, "t.asm"), disk=disk, console_sink=BufferSink(),
                   console_input=ConsoleInput(b""), **options)


# A guest that writes a disk block every ~100 ticks and counts to N.
DISK_LOOP = """
        mov r1, 0x41414141
        st r1, [0x2000]
        mov r5, 0
again:  and r6, r5, 63
        out 0x20, r6
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2
        mov r2, 0
spin:   add r2, r2, 1
        blt r2, 60, spin
        add r5, r5, 1
        blt r5, {n}, again
drain:  in r7, 0x24
        bne r7, 0, drain
        mov r0, 9
        halt
"""


# --- open files ------------------------------------------------------------------------------------

LOW_FILES = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
from minivm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_with_file_limit(limit: int, *args: str, cwd: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", LOW_FILES.format(limit=limit), *args],
                          capture_output=True, cwd=cwd, env=env, timeout=600, input=b"")


#: MINIVM_LIMIT_CHECKPOINTS=600 runs the long version (docs/reliability.md, Limits).
MANY = int(os.environ.get("MINIVM_LIMIT_CHECKPOINTS", "300"))


def test_hundreds_of_checkpoints_under_a_low_open_file_limit(tmp_path):
    """300 checkpoints, one per 100 ticks, with a disk, under `ulimit -n 64`:
    every one completes and the last one resumes under the same limit. (Each
    overlay used to stay open for ever and each saving checkpoint held its
    temp file: "Too many open files" escaped from seal_layers at about the
    60th, the guest died and most files stayed .tmp.)"""
    prog = tmp_path / "loop.asm"
    prog.write_text(DISK_LOOP.format(n=MANY + 10))
    (tmp_path / "d.img").write_bytes(bytes(64 * 512))
    ticks = ",".join(str(100 * k) for k in range(1, MANY + 1))
    proc = run_with_file_limit(64, "run", str(prog), "--disk", "d.img", "--checkpoint-at",
                               ticks, "--checkpoint-dir", "ck", cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 9, err[-3000:]
    assert "Traceback" not in err and "could not" not in err and "failed" not in err, err[-3000:]
    names = sorted(os.listdir(tmp_path / "ck"))
    assert not [n for n in names if n.endswith(".tmp")], names
    assert len([n for n in names if n.endswith(".mvc")]) == MANY
    proc = run_with_file_limit(64, "resume", f"ck/ckpt-{MANY:04d}.mvc", "--checkpoint-dir",
                               "ck2", cwd=tmp_path)
    assert proc.returncode == 9, proc.stderr.decode()[-3000:]


def test_a_layer_that_cannot_be_fingerprinted_fails_its_checkpoints_only(tmp_path,
                                                                          monkeypatch):
    """An OSError while sealing a disk layer (EMFILE, EIO) fails the checkpoints
    that name the layer, reported; it used to escape Machine.run and kill the guest."""
    reference = machine_for(DISK_LOOP.format(n=40), tmp_path / "..")
    assert reference.run(1_000_000).reason == "halt"
    m = machine_for(DISK_LOOP.format(n=40), tmp_path)
    reports: list[str] = []
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), schedule=[500, 1500],
                      pages_per_slice=4, report=reports.append)
    raw = type(m.disk.backing)

    def failing(layer):
        raise OSError(24, "Too many open files")
    with monkeypatch.context() as patch:
        patch.setattr(raw, "fingerprint", failing)
        assert m.run(1_000).reason == "limit"
    stop = m.run(1_000_000)
    cp.finish_all()
    assert stop.reason == "halt" and m.regs == reference.regs
    assert [job.status for job in cp.jobs] == ["failed", "complete"], reports
    assert any("ckpt-0001 failed: Too many open files; the guest keeps running" in r
               for r in reports), reports
    assert not [n for n in os.listdir(tmp_path / "ck") if n.endswith(".tmp")]
    read_checkpoint(cp.jobs[1].location)
    close_chain(m.disk.backing, reference.disk.backing)


def test_parked_layers_keep_few_files_open(tmp_path):
    """A chain of 120 overlays, read through from the top: at most
    disks.MAX_OPEN_PARKED of the layers below the top hold a descriptor."""
    import minivm.disks as disks
    m = machine_for(DISK_LOOP.format(n=130), tmp_path)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")),
                      schedule=[100 * k for k in range(1, 121)], pages_per_slice=8)
    assert m.run(1_000_000).reason == "halt"
    cp.finish_all()
    assert all(job.status == "complete" for job in cp.jobs)
    chain = m.disk.backing.chain()
    assert len(chain) == 121                        # 120 overlays and the raw disk
    m.disk.backing.read_blocks(0, 64)               # touches every layer with data
    open_below = [layer for layer in chain[1:] if layer._fd_value is not None]
    assert len(open_below) <= disks.MAX_OPEN_PARKED
    close_chain(m.disk.backing)
    assert not disks._open_parked


# --- scheduling ----------------------------------------------------------------------------------------

SPIN = """
        mov r1, 0
fill:   st r1, [r1 + 0x10000]
        add r1, r1, 4096
        blt r1, 0x8000, fill
        mov r2, 0
spin:   add r2, r2, 1
        blt r2, {n}, spin
        halt
"""


@pytest.mark.parametrize("gap", [100, 50, 127])
def test_checkpoints_closer_than_the_first_batch_all_save(gap, engine):
    """take() used to put the next batch FIRST_SLICE_TICKS (128) ticks ahead,
    so checkpoints 100 ticks apart never saved at all while the guest ran."""
    m = machine_for(SPIN.format(n=20_000), engine=engine)
    ticks = list(range(200, 40_000, gap))
    cp = Checkpointer(m, MemoryStore(), schedule=ticks, pages_per_slice=64)
    assert m.run(1_000_000).reason == "halt"
    end = m.tick
    assert len(cp.jobs) == len(ticks)
    lags = [job.finished_tick - job.tick for job in cp.jobs if job.status == "complete"]
    assert len(lags) >= len(ticks) - 2, f"{len(ticks) - len(lags)} never saved while the guest ran"
    assert max(lags) <= 4 * 128, max(lags)         # each within a few batches
    assert end > ticks[-1]


# --- pages sections -------------------------------------------------------------------------------------

TOUCH = """
        mov r1, 0
fill:   st r1, [r1 + 0x10000]
        add r1, r1, 4096
        blt r1, {end}, fill
        ckpt
        mov r2, 0
spin:   add r2, r2, 1
        blt r2, {n}, spin
        halt
"""


def layout_of(path) -> tuple[int, dict, list, bytes]:
    """A version-2 file's (end record offset, records, [pages offset, length, count],
    the SHA-256 of its magic and header)."""
    source = FileSource(str(path), "x")
    try:
        return read_end(source, "x")
    finally:
        source.close()


def test_a_slow_save_writes_one_page_area(tmp_path, engine):
    """One page per batch, 4,200 pages: the file is one area of page data
    (4,199 pages back to back, each followed by its CRC-32; the first page
    holds zeros) and one index, a bitmap of the 8,192 pages of memory, with
    nothing written per batch. (Version 1 wrote a ``pages`` section per
    batch, 4,200 of them, and the reader called the file corrupt.)"""
    pages = 4200
    m = machine_for(TOUCH.format(end=hex(pages * 4096), n=pages * 40 + 10_000),
                    memory_size=32 << 20, engine=engine)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), pages_per_slice=1, slice_ticks=32)
    assert m.run(10_000_000).reason == "halt"
    (job,) = cp.jobs
    assert job.status == "complete", job.progress()      # saved while the guest ran
    ckpt = read_checkpoint(job.location)
    assert ckpt.format_version == 2
    assert len(ckpt.pages) == pages - 1 and list(ckpt.pages) == list(range(17, 16 + pages))
    end_at, records, (pages_at, pages_bytes, count), _ = layout_of(job.location)
    assert sorted(records) == sorted(ckptfile.RECORDS)
    assert count == pages - 1 and pages_bytes == (pages - 1) * (PAGE_SIZE + 4)
    index_bytes = records["index"][1]
    assert index_bytes < (32 << 20) // PAGE_SIZE // 8 + 64    # a bit a page of memory
    size = os.path.getsize(job.location)
    assert size - pages_bytes - index_bytes < 8192, "more than the records around the pages"
    assert ckpt.pages[16 + pages - 1][:4] == ((pages - 1) * 4096).to_bytes(4, "little")


def test_the_reader_takes_every_section_count_the_writer_may_write(tmp_path):
    """Version 1 (minivm 0.2 wrote up to MAX_PAGES_SECTIONS pages sections):
    MAX_PAGES_SECTIONS pages sections (one page each) load; one more is
    refused with a clear message."""
    header, sections = split(read_file_capped(_small_checkpoint(tmp_path), "x"))
    for count, ok in ((MAX_PAGES_SECTIONS, True), (MAX_PAGES_SECTIONS + 1, False)):
        kept = [(n, p) for n, p in sections if n != "pages" and n != "disk"]
        kept += [("pages", pack([[i, bytes([1]) * PAGE_SIZE]])) for i in range(count)]
        kept += [("disk", pack(None))]
        path = tmp_path / f"s{count}.mvc"
        write_atomically(str(path), "checkpoint", {**header, "version": 1}, kept)
        if ok:
            ckpt = read_checkpoint(str(path))
            assert ckpt.format_version == 1 and len(ckpt.pages) == count
        else:
            with pytest.raises(FormatError, match="corrupt|sections"):
                read_checkpoint(str(path))


def _small_checkpoint(tmp_path) -> str:
    m = machine_for(TOUCH.format(end=hex(2 * 4096), n=10), memory_size=32 << 20)
    cp = Checkpointer(m, FileStore(str(tmp_path / "small")))
    m.run(100_000)
    cp.finish_all()
    return cp.jobs[0].location


def test_the_record_limits_agree():
    """No checkpoint minivm writes has records the reader refuses: each record
    is bounded by what minivm takes elsewhere, and all of them together fit in
    ckptfile.MAX_RECORD_BYTES (so the writer needs no cap of its own, and the
    page data, which is not counted, needs none: it is bounded by the memory).
    The end record of any file fits in ckptfile.MAX_END_BYTES."""
    text = image_module.MAX_TEXT
    image = (image_module.MAX_DATA                          # the initial data
             + MAX_PROGRAM_BYTES                            # texts, symbols: from the source
             + image_module.MAX_CODE * 4 * 9)               # code: 4 ints of <= 9 bytes
    state = devices.MAX_INFLIGHT_BYTES + (1 << 20) * 8      # in-flight data, lists of 2^16
    disk = disks.MAX_CHAIN * (3 * text + 1024)              # path, relpath, kind, fingerprint
    index = (1 << 20) // 8 + 64                             # 4 GiB: a bit for each page
    meta = 64 << 10
    assert image + state + disk + index + meta <= MAX_RECORD_BYTES
    huge = (1 << 64) - 1
    end = pack_end([[name, huge, huge, bytes(32)] for name in ckptfile.RECORDS],
                   [huge, huge, huge], bytes(32))
    assert len(end) <= MAX_END_BYTES


# --- size ----------------------------------------------------------------------------------------------

def _big_pages_checkpoint(tmp_path, monkeypatch, cap: int):
    """With the caps at ``cap`` (the v1 file cap and the v2 records cap), a
    guest with 2 MiB of non-zero pages takes a checkpoint."""
    monkeypatch.setattr(ckptfile, "MAX_RECORD_BYTES", cap)
    monkeypatch.setattr(ckptfile, "MAX_FILE_BYTES", cap)
    m = machine_for(TOUCH.format(end=hex(512 * 4096), n=1000), memory_size=4 << 20)
    reports: list[str] = []
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), report=reports.append)
    assert m.run(10_000_000).reason == "halt"
    cp.finish_all()
    (job,) = cp.jobs
    return m, job, reports


def test_page_data_over_the_caps_is_written_and_loads(tmp_path, monkeypatch):
    """With the caps at 1 MiB, 2 MiB of non-zero pages: the version-2
    checkpoint is written and announced, and loads and resumes (lazily and
    eagerly, on both engines) to the original's end: its page data is never
    read whole and counts against no cap. The same checkpoint as a version-1
    file (read whole) is refused by its size, with a clear message."""
    m, job, reports = _big_pages_checkpoint(tmp_path, monkeypatch, 1 << 20)
    assert job.status == "complete", (job.error, reports)
    size = os.path.getsize(job.location)
    assert size > 511 * (PAGE_SIZE + 4) > 2 * (1 << 20) - 4096   # pages and CRC-32s: 2 MiB
    ckpt = read_checkpoint(job.location)
    assert len(ckpt.pages) == 511
    for engine in ENGINES:
        for eager in (False, True):
            resumed, _ = resume(read_checkpoint(job.location),
                                FileStore(str(tmp_path / f"r-{engine}-{eager}")),
                                console_sink=BufferSink(), console_input=ConsoleInput(b""),
                                engine=engine, eager=eager)
            assert resumed.run(10_000_000).reason == "halt"
            assert resumed.regs == m.regs
            assert all(resumed.memory.page_bytes(i) == m.memory.page_bytes(i)
                       for i in range(16, 16 + 512))
    v1 = tmp_path / "v1.mvc"
    with open(job.location, "rb") as f:
        v1.write_bytes(join(*split(f.read()), version=1))
    with pytest.raises(FormatError) as info:
        read_checkpoint(str(v1))
    assert f"{v1.stat().st_size} bytes, more than the 1048576-byte limit" in str(info.value)


def test_records_at_and_over_the_record_cap(tmp_path, monkeypatch):
    """The records together at exactly ckptfile.MAX_RECORD_BYTES load; one
    byte more is refused with a clear message, before any record is read.
    A version-1 file of exactly container.MAX_FILE_BYTES loads; one byte
    more is refused."""
    path = _small_checkpoint(tmp_path)
    _, records, _, _ = layout_of(path)
    total = sum(length for _, length, _ in records.values())
    v1 = tmp_path / "v1.mvc"
    with open(path, "rb") as f:
        v1.write_bytes(join(*split(f.read()), version=1))
    monkeypatch.setattr(ckptfile, "MAX_RECORD_BYTES", total)
    assert len(read_checkpoint(path).pages) == 1
    monkeypatch.setattr(ckptfile, "MAX_RECORD_BYTES", total - 1)
    with pytest.raises(FormatError) as info:
        read_checkpoint(path)
    assert f"records of more than {total - 1} bytes in all" in str(info.value)
    size = v1.stat().st_size
    monkeypatch.setattr(ckptfile, "MAX_FILE_BYTES", size)
    assert read_checkpoint(str(v1)).format_version == 1
    monkeypatch.setattr(ckptfile, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(FormatError, match=f"{size} bytes, more than the {size - 1}-byte limit"):
        read_checkpoint(str(v1))


# --- chains ---------------------------------------------------------------------------------------------

def test_no_checkpoint_names_a_chain_the_loader_refuses(tmp_path, monkeypatch, engine):
    """With the chain limit at 5 (reader and writer alike), 8 checkpoints: the
    ones whose chain would be too long are not taken (reported); every file
    written loads and resumes."""
    monkeypatch.setattr(checkpoint_module, "MAX_CHAIN", 5)
    monkeypatch.setattr(ckptfile, "MAX_CHAIN", 5)
    m = machine_for(DISK_LOOP.format(n=20), tmp_path, engine=engine)
    reports: list[str] = []
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")),
                      schedule=[100 * k for k in range(1, 9)], report=reports.append)
    assert m.run(1_000_000).reason == "halt"
    cp.finish_all()
    assert len(cp.jobs) == 5 and all(job.status == "complete" for job in cp.jobs)
    assert sum("more than the 5 a checkpoint may name" in r for r in reports) == 3, reports
    for job in cp.jobs:
        ckpt = read_checkpoint(job.location)
        resumed, _ = resume(ckpt, FileStore(str(tmp_path / f"r{job.seq}")),
                            console_sink=BufferSink(), console_input=ConsoleInput(b""),
                            engine=engine)
        assert resumed.run(1_000_000).reason == "halt" and resumed.regs[0] == 9
        close_chain(resumed.disk.backing)
    close_chain(m.disk.backing)


# --- --checkpoint-at and wait -------------------------------------------------------------------------------

WAIT = """
        out 0x11, tick          ; timer handler
        out 0x10, 1000          ; fires every 1000 ticks
        mov r1, 0
        ei
loop:   wait
        add r1, r1, 1
        blt r1, 3, loop
        mov r0, 5
        halt
tick:   iret
"""


def test_checkpoint_at_ticks_a_wait_jumps_over_are_reported(tmp_path, engine):
    prog = tmp_path / "wait.asm"
    prog.write_text(WAIT)
    proc = run_cli("run", "--engine", engine, str(prog), "--checkpoint-at", "200,300,1500,2001",
                   "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert "--checkpoint-at 200, 300: the clock jumped past these 2 ticks in one step " \
           "(a 'wait' runs until the next device event), so one checkpoint is taken at " \
           "tick 1001 for them" in err, err
    assert "--checkpoint-at 1500: the clock jumped past it in one step" in err, err
    assert "tick 2001 for it" in err and "2001," not in err, err     # 2001 itself was met
    assert len([n for n in os.listdir(tmp_path / "ck") if n.endswith(".mvc")]) == 2


def test_checkpoint_at_before_the_resumed_tick_is_reported(tmp_path, engine):
    prog = tmp_path / "wait.asm"
    prog.write_text(WAIT)
    proc = run_cli("run", "--engine", engine, str(prog), "--checkpoint-at", "1001",
                   "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    assert proc.returncode == 5 and "jumped" not in proc.stderr.decode(), proc.stderr
    proc = run_cli("resume", "--engine", engine, str(tmp_path / "ck" / "ckpt-0001.mvc"),
                   "--checkpoint-at", "10",
                   "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert "--checkpoint-at 10: the run starts at tick 1001, after it, so one checkpoint " \
           "is taken at tick 1001 for it" in err, err
