"""Many checkpoints, big checkpoints (issue 12): what the writer writes, the reader reads.

* open files: a run with hundreds of checkpoints under a low ``ulimit -n``
  completes every one (sealed overlays are parked, a saving checkpoint's temp
  file is closed between batches), and a layer that cannot be fingerprinted
  fails the checkpoints that need it, reported, while the guest goes on;
* scheduling: checkpoints 100 ticks apart all finish saving while the guest runs;
* sections: however slowly the save is paced, a checkpoint has few ``pages``
  sections (ckptfile.PAGES_PER_SECTION), and the loader takes
  ckptfile.MAX_PAGES_SECTIONS of them;
* size: a checkpoint that would be over container.MAX_FILE_BYTES fails
  clearly instead of being written and then refused;
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
from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.ckptfile import MAX_PAGES_SECTIONS, PAGES_PER_SECTION
from minivm.container import (MAX_FILE_BYTES, pack, read_container, read_file_capped,
                              write_atomically)
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import close_chain, open_disk
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
def test_checkpoints_closer_than_the_first_batch_all_save(gap):
    """take() used to put the next batch FIRST_SLICE_TICKS (128) ticks ahead,
    so checkpoints 100 ticks apart never saved at all while the guest ran."""
    m = machine_for(SPIN.format(n=20_000))
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


def test_a_slow_save_writes_few_sections(tmp_path):
    """One page per batch, 4,200 pages: the writer used to write one `pages`
    section per batch, 4,200 of them, and the reader called the file corrupt
    (more than 4,096). The same happened with 336 MiB at the host's own pace."""
    pages = 4200
    m = machine_for(TOUCH.format(end=hex(pages * 4096), n=pages * 40 + 10_000),
                    memory_size=32 << 20)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), pages_per_slice=1, slice_ticks=32)
    assert m.run(10_000_000).reason == "halt"
    (job,) = cp.jobs
    assert job.status == "complete", job.progress()      # saved while the guest ran
    ckpt = read_checkpoint(job.location)
    assert len(ckpt.pages) == pages - 1                  # the first page holds zeros
    container = read_container(read_file_capped(job.location, "x"), "checkpoint", 1, "x")
    assert len(container.all("pages")) == -(-(pages - 1) // PAGES_PER_SECTION) == 17


def test_the_reader_takes_every_section_count_the_writer_may_write(tmp_path):
    """MAX_PAGES_SECTIONS pages sections (one page each) load; one more is refused
    with a clear message."""
    good = read_checkpoint(_small_checkpoint(tmp_path))
    data = read_file_capped(good.path, "x")
    container = read_container(data, "checkpoint", 1, "x")
    for count, ok in ((MAX_PAGES_SECTIONS, True), (MAX_PAGES_SECTIONS + 1, False)):
        sections = [(n, p) for n, p in container.sections if n != "pages" and n != "disk"]
        sections += [("pages", pack([[i, bytes([1]) * PAGE_SIZE]])) for i in range(count)]
        sections += [("disk", pack(None))]
        path = tmp_path / f"s{count}.mvc"
        write_atomically(str(path), "checkpoint", container.header, sections)
        if ok:
            assert len(read_checkpoint(str(path)).pages) == count
        else:
            with pytest.raises(FormatError, match="corrupt|sections"):
                read_checkpoint(str(path))


def _small_checkpoint(tmp_path) -> str:
    m = machine_for(TOUCH.format(end=hex(2 * 4096), n=10), memory_size=32 << 20)
    cp = Checkpointer(m, FileStore(str(tmp_path / "small")))
    m.run(100_000)
    cp.finish_all()
    return cp.jobs[0].location


def test_the_section_constants_agree():
    assert MAX_FILE_BYTES // (PAGES_PER_SECTION * PAGE_SIZE) + 1 <= MAX_PAGES_SECTIONS


# --- size ----------------------------------------------------------------------------------------------

def test_a_checkpoint_over_the_load_limit_fails_instead_of_being_written(tmp_path,
                                                                         monkeypatch):
    """With the load limit at 1 MiB (the same constant the loader uses), a guest
    with 2 MiB of non-zero pages: the checkpoint fails with a clear message, no
    file is left, and the guest goes on. (With --mem 2G and 1,040 MiB of pages,
    a checkpoint used to be written and announced, then refused by resume.)"""
    assert checkpoint_module.MAX_FILE_BYTES == MAX_FILE_BYTES
    assert read_file_capped.__defaults__[0] == MAX_FILE_BYTES
    monkeypatch.setattr(checkpoint_module, "MAX_FILE_BYTES", 1 << 20)
    m = machine_for(TOUCH.format(end=hex(512 * 4096), n=1000), memory_size=4 << 20)
    reports: list[str] = []
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), report=reports.append)
    assert m.run(10_000_000).reason == "halt"
    cp.finish_all()
    (job,) = cp.jobs
    assert job.status == "failed"
    assert "larger than 1048576 bytes, the most minivm loads" in job.error, job.error
    assert any("ckpt-0001 failed" in r and "keeps running" in r for r in reports), reports
    assert os.listdir(tmp_path / "ck") == []


def test_a_checkpoint_just_under_the_limit_is_written(tmp_path, monkeypatch):
    m = machine_for(TOUCH.format(end=hex(100 * 4096), n=1000), memory_size=4 << 20)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")))
    m.run(10_000_000)
    cp.finish_all()
    size = os.path.getsize(cp.jobs[0].location)
    monkeypatch.setattr(checkpoint_module, "MAX_FILE_BYTES", size)
    m = machine_for(TOUCH.format(end=hex(100 * 4096), n=1000), memory_size=4 << 20)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck2")))
    m.run(10_000_000)
    cp.finish_all()
    assert cp.jobs[0].status == "complete"
    read_file_capped(cp.jobs[0].location, "x", limit=size)


# --- chains ---------------------------------------------------------------------------------------------

def test_no_checkpoint_names_a_chain_the_loader_refuses(tmp_path, monkeypatch):
    """With the chain limit at 5 (reader and writer alike), 8 checkpoints: the
    ones whose chain would be too long are not taken (reported); every file
    written loads and resumes."""
    monkeypatch.setattr(checkpoint_module, "MAX_CHAIN", 5)
    monkeypatch.setattr(ckptfile, "MAX_CHAIN", 5)
    m = machine_for(DISK_LOOP.format(n=20), tmp_path)
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
                            console_sink=BufferSink(), console_input=ConsoleInput(b""))
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


def test_checkpoint_at_ticks_a_wait_jumps_over_are_reported(tmp_path):
    prog = tmp_path / "wait.asm"
    prog.write_text(WAIT)
    proc = run_cli("run", str(prog), "--checkpoint-at", "200,300,1500,2001",
                   "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert "--checkpoint-at 200, 300: the clock jumped past these 2 ticks in one step " \
           "(a 'wait' runs until the next device event), so one checkpoint is taken at " \
           "tick 1001 for them" in err, err
    assert "--checkpoint-at 1500: the clock jumped past it in one step" in err, err
    assert "tick 2001 for it" in err and "2001," not in err, err     # 2001 itself was met
    assert len([n for n in os.listdir(tmp_path / "ck") if n.endswith(".mvc")]) == 2


def test_checkpoint_at_before_the_resumed_tick_is_reported(tmp_path):
    prog = tmp_path / "wait.asm"
    prog.write_text(WAIT)
    proc = run_cli("run", str(prog), "--checkpoint-at", "1001",
                   "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    assert proc.returncode == 5 and "jumped" not in proc.stderr.decode(), proc.stderr
    proc = run_cli("resume", str(tmp_path / "ck" / "ckpt-0001.mvc"), "--checkpoint-at", "10",
                   "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert "--checkpoint-at 10: the run starts at tick 1001, after it, so one checkpoint " \
           "is taken at tick 1001 for it" in err, err
