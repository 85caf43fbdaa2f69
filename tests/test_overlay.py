"""Disk overlays and chains (docs/protocol.md: P1, P3, P10).

* P3: a partial write to a block group not yet in the overlay copies the
  group from the parent first (a disk COW fault); a whole-group write does not.
* A second checkpoint while the first overlay is live makes a chain; resuming
  the second checkpoint reads through the chain.
* ``minivm disk commit`` merges an overlay into its parent; an overlay whose
  parent changed is refused with a clear message; ``minivm disk info``
  describes a chain.
* P10: ``Checkpointer.commit_disk()`` while the guest keeps running gives the
  same final disk, puts exactly the writes issued before the commit into the
  parent, and leaves the guest's run unchanged.
"""

from __future__ import annotations

import os
import struct

import pytest

from ckpt_strategies import (Config, assemble_text, close_disks, disk_pattern, final_state,
                             new_machine, read_checkpoint, read_file_blocks, run_reference,
                             write_disk)
from minivm.checkpoint import Checkpointer
from minivm.resume import resume
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import describe_chain, open_disk
from minivm.errors import DiskError, MinivmError
from minivm.store import FileStore

from support import run_cli

BLOCK = 512
MEMORY = 64 * 1024
PATTERN = disk_pattern()


def block(b: int, n: int = 1) -> bytes:
    return PATTERN[b * BLOCK:(b + n) * BLOCK]


def disk_with(*pieces) -> bytes:
    disk = bytearray(PATTERN)
    for b, data in pieces:
        disk[b * BLOCK:b * BLOCK + len(data)] = data
    return bytes(disk)


def run_machine(source: str, tmp_path, engine: str, **checkpointer_options):
    image = assemble_text(source, "overlay.asm")
    disk_path = write_disk(tmp_path / "disk.img", PATTERN)
    machine = new_machine(image, Config(memory_size=MEMORY, disk_content=PATTERN, engine=engine),
                          disk_path)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck")), **checkpointer_options)
    return image, machine, cp, disk_path


def overlay_records(path: str, group_blocks: int) -> list[tuple[int, bytes]]:
    """The overlay file's records, read with the layout of disks.py's docstring:
    a 4096-byte header, then b"MVGR", group (u32), CRC-32 (u32), group data."""
    with open(path, "rb") as f:
        data = f.read()
    stride = 12 + group_blocks * BLOCK
    body = data[4096:]
    assert len(body) % stride == 0
    out = []
    for i in range(0, len(body), stride):
        magic, group, _ = struct.unpack_from("<4sII", body, i)
        assert magic == b"MVGR"
        out.append((group, body[i + 12:i + stride]))
    return out


# --- P3: disk COW faults ------------------------------------------------------------------

P3_PROGRAM = """
        mov r1, 0x5a5a5a5a
        mov r2, 0x2000
fill:   st r1, [r2]             ; 0x2000..0x2fff = 5a 5a ... (8 blocks)
        add r2, r2, 4
        blt r2, 0x3000, fill
        ckpt                    ; the overlay is created; nothing in flight
        out 0x20, 3             ; a partial write into group 0 (block 3)
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2
        out 0x20, 8             ; a whole group: blocks 8..15
        out 0x21, 0x2000
        out 0x22, 8
        out 0x23, 2
        out 0x20, 22            ; blocks 22..25: the end of one group, the start of the next
        out 0x21, 0x2000
        out 0x22, 4
        out 0x23, 2
drain:  in r7, 0x24
        beq r7, 0, done
        wait
        jmp drain
done:   halt
"""


@pytest.mark.parametrize("group_blocks,touched", [(8, [0, 1, 2, 3]), (4, [0, 2, 3, 5, 6])])
def test_p3_partial_write_copies_the_group_from_the_parent(group_blocks, touched, tmp_path, engine):
    """Writes: block 3; blocks 8..15; blocks 22..25. With 8-block groups that is
    group 0 (partial), 1 (whole), 2 and 3 (partial); with 4-block groups 0
    (partial), 2 and 3 (whole), 5 and 6 (partial). Three COW faults either way."""
    _, machine, cp, disk_path = run_machine(P3_PROGRAM, tmp_path, engine, group_blocks=group_blocks)
    assert machine.run(1_000_000).reason == "halt"
    cp.finish_all()
    overlay = machine.disk.backing
    assert overlay.kind == "overlay" and os.path.basename(overlay.path) == "ckpt-0001.cow"
    assert overlay.cow_faults == 3
    close_disks(machine)
    g = group_blocks
    data = b"\x5a" * (8 * BLOCK)
    written = disk_with((3, data[:BLOCK]), (8, data), (22, data[:4 * BLOCK]))
    records = overlay_records(overlay.path, g)
    assert sorted(group for group, _ in records) == touched
    for group, content in records:
        assert content == written[group * g * BLOCK:(group + 1) * g * BLOCK], \
            f"overlay group {group}: the parent's blocks with the write laid over them"
    assert read_file_blocks(overlay.path) == written
    with open(disk_path, "rb") as f:
        assert f.read() == PATTERN, "the checkpointed disk must not change"


# --- chains -----------------------------------------------------------------------------------

def _write(block_no: int, char: str) -> str:
    return f"""
        mov r1, {ord(char) * 0x01010101}
        mov r2, 0x2000
f{block_no}{char}: st r1, [r2]
        add r2, r2, 4
        blt r2, 0x2200, f{block_no}{char}
        out 0x20, {block_no}
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2
d{block_no}{char}: in r7, 0x24
        beq r7, 0, e{block_no}{char}
        wait
        jmp d{block_no}{char}
e{block_no}{char}: nop
"""


CHAIN_PROGRAM = (_write(1, "A") + "        ckpt\n" + _write(9, "B") + "        ckpt\n"
                 + _write(17, "C") + _write(1, "D") + "        halt\n")
AFTER_A = disk_with((1, b"A" * BLOCK))
AFTER_B = disk_with((1, b"A" * BLOCK), (9, b"B" * BLOCK))
FINAL = disk_with((1, b"D" * BLOCK), (9, b"B" * BLOCK), (17, b"C" * BLOCK))


@pytest.fixture
def chain_run(tmp_path, engine):
    image, machine, cp, disk_path = run_machine(CHAIN_PROGRAM, tmp_path, engine)
    stop = machine.run(1_000_000)
    assert stop.reason == "halt"
    cp.finish_all()
    final = final_state(machine, stop)
    close_disks(machine)
    first, second = cp.jobs
    return tmp_path, disk_path, first, second, final


def test_second_checkpoint_makes_a_chain(chain_run):
    tmp_path, disk_path, first, second, final = chain_run
    ck = tmp_path / "ck"
    assert final.disk == FINAL
    ckpt1, ckpt2 = read_checkpoint(first.location), read_checkpoint(second.location)
    assert [(e["kind"], os.path.basename(e["path"])) for e in ckpt1.disk["chain"]] == \
        [("raw", "disk.img")]
    assert [(e["kind"], os.path.basename(e["path"])) for e in ckpt2.disk["chain"]] == \
        [("overlay", "ckpt-0001.cow"), ("raw", "disk.img")]
    # each file holds its own part
    with open(disk_path, "rb") as f:
        assert f.read() == AFTER_A
    one = overlay_records(str(ck / "ckpt-0001.cow"), 8)
    assert [g for g, _ in one] == [1]
    assert one[0][1] == disk_with((9, b"B" * BLOCK))[8 * BLOCK:16 * BLOCK]
    two = overlay_records(str(ck / "ckpt-0002.cow"), 8)
    assert sorted(g for g, _ in two) == [0, 2]
    assert read_file_blocks(str(ck / "ckpt-0001.cow")) == AFTER_B
    assert read_file_blocks(str(ck / "ckpt-0002.cow")) == FINAL
    assert [os.path.basename(e["path"]) for e in describe_chain(str(ck / "ckpt-0002.cow"))] == \
        ["ckpt-0002.cow", "ckpt-0001.cow", "disk.img"]


@pytest.mark.parametrize("which", [1, 2])
def test_resuming_reads_through_the_chain(which, chain_run, engine):
    tmp_path, disk_path, first, second, final = chain_run
    job = first if which == 1 else second
    ckpt = read_checkpoint(job.location)
    machine, overlay = resume(ckpt, FileStore(str(tmp_path / "resumed")),
                              console_sink=BufferSink(), console_input=ConsoleInput(b""),
                              engine=engine)
    chain = [os.path.basename(layer.path) for layer in machine.disk.backing.chain()]
    assert chain[1:] == (["disk.img"] if which == 1 else ["ckpt-0001.cow", "disk.img"])
    backing = machine.disk.backing
    assert backing.read_blocks(0, backing.block_count) == (AFTER_A if which == 1 else AFTER_B)
    resumed = final_state(machine, machine.run(1_000_000))
    close_disks(machine)
    assert resumed.differences(final) == []
    # the checkpointed files did not change
    with open(disk_path, "rb") as f:
        assert f.read() == AFTER_A
    assert read_file_blocks(str(tmp_path / "ck" / "ckpt-0001.cow")) == AFTER_B


@pytest.mark.parametrize("which", [1, 2])
def test_checkpoint_taken_in_a_resumed_run(which, chain_run, engine):
    """A resumed run takes checkpoints like any run (``minivm resume`` attaches a
    checkpointer): here one a few ticks after resuming, on top of the
    checkpointed chain, which stays unchanged; the new checkpoint resumes too."""
    tmp_path, disk_path, first, second, final = chain_run
    job = first if which == 1 else second
    ckpt = read_checkpoint(job.location)
    store = FileStore(str(tmp_path / "resumed"))
    machine, _ = resume(ckpt, store, console_sink=BufferSink(), console_input=ConsoleInput(b""),
                        engine=engine)
    cp = Checkpointer(machine, store, schedule=[ckpt.tick + 5])
    stop = machine.run(1_000_000)
    cp.finish_all()
    resumed = final_state(machine, stop)
    close_disks(machine)
    assert resumed.differences(final) == []
    (again,) = [j for j in cp.jobs if j.origin == "host"]
    assert again.status == "complete" and again.tick == ckpt.tick + 5
    with open(disk_path, "rb") as f:
        assert f.read() == AFTER_A
    assert read_file_blocks(str(tmp_path / "ck" / "ckpt-0001.cow")) == AFTER_B
    machine, _ = resume(read_checkpoint(again.location), FileStore(str(tmp_path / "again")),
                        console_sink=BufferSink(), console_input=ConsoleInput(b""), engine=engine)
    assert final_state(machine, machine.run(1_000_000)).differences(final) == []
    close_disks(machine)


def test_checkpoint_in_a_resumed_run_cli(chain_run, engine):
    tmp_path, _, _, second, final = chain_run
    tick = read_checkpoint(second.location).tick
    result = run_cli("resume", "--engine", engine, second.location, "--checkpoint-dir", "ck2",
                     "--checkpoint-at", str(tick + 5), cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert (tmp_path / "ck2").is_dir()
    assert [f for f in os.listdir(tmp_path / "ck2") if f.endswith(".mvc")]


MANY_CHECKPOINTS = """
        mov r1, 0x41414141
        st r1, [0x2000]
        mov r5, 0
again:  out 0x20, r5            ; write block r5, then take a checkpoint
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2
        ckpt
        add r5, r5, 1
        blt r5, 70, again
drain:  in r7, 0x24
        bne r7, 0, drain
        halt
"""


def test_every_checkpoint_of_a_long_chain_resumes(tmp_path, engine):
    """70 checkpoints in one run with a disk: each one's disk is a chain of all
    the overlays before it. Every checkpoint taken must load and resume (docs/contract.md:
    'for every program and every point k at which a checkpoint is taken')."""
    _, machine, cp, _ = run_machine(MANY_CHECKPOINTS, tmp_path, engine)
    stop = machine.run(1_000_000)
    cp.finish_all()
    final = final_state(machine, stop)
    close_disks(machine)
    assert len(cp.jobs) == 70 and all(job.status == "complete" for job in cp.jobs)
    for job in (cp.jobs[0], cp.jobs[62], cp.jobs[63], cp.jobs[64], cp.jobs[69]):
        ckpt = read_checkpoint(job.location)
        assert len(ckpt.disk["chain"]) == job.seq
        machine, _ = resume(ckpt, FileStore(str(tmp_path / f"r{job.seq}")),
                            console_sink=BufferSink(), console_input=ConsoleInput(b""),
                            engine=engine)
        assert final_state(machine, machine.run(1_000_000)).differences(final) == []
        close_disks(machine)


def test_disk_info_describes_a_chain(chain_run):
    tmp_path = chain_run[0]
    result = run_cli("disk", "info", "ck/ckpt-0002.cow", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3, lines
    assert "ckpt-0002.cow" in lines[0] and "overlay" in lines[0] and "2 block group" in lines[0]
    assert "ckpt-0001.cow" in lines[1] and "overlay" in lines[1] and "1 block group" in lines[1]
    assert "disk.img" in lines[2] and "raw" in lines[2] and "65536 bytes" in lines[2]
    # the indentation shows who is on top of whom
    indents = [len(line) - len(line.lstrip()) for line in lines]
    assert indents[0] < indents[1] < indents[2]
    raw = run_cli("disk", "info", "disk.img", cwd=tmp_path)
    assert raw.returncode == 0 and raw.stdout.decode().count("\n") == 1


def test_disk_commit_merges_into_the_parent(chain_run, engine):
    tmp_path, disk_path, first, second, final = chain_run
    top = "ck/ckpt-0002.cow"
    result = run_cli("disk", "commit", top, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # ckpt-0001.cow now holds the merged contents; the raw file is unchanged
    assert read_file_blocks(str(tmp_path / "ck" / "ckpt-0001.cow")) == FINAL
    with open(disk_path, "rb") as f:
        assert f.read() == AFTER_A
    # the second checkpoint used ckpt-0001.cow as its disk: it no longer matches
    with pytest.raises(DiskError):
        resume(read_checkpoint(second.location), FileStore(str(tmp_path / "r")), engine=engine)
    # committing ckpt-0002.cow again: refused (its parent changed) or recognised as
    # done already; either way with a clear message and nothing written
    again = run_cli("disk", "commit", top, cwd=tmp_path)
    assert b"Traceback" not in again.stderr
    assert (again.returncode == 2 and b"changed" in again.stderr) or \
        (again.returncode == 0 and b"already" in again.stderr), again.stderr
    assert read_file_blocks(str(tmp_path / "ck" / "ckpt-0001.cow")) == FINAL
    # commit the next one down: the raw file gets everything
    result = run_cli("disk", "commit", "ck/ckpt-0001.cow", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(disk_path, "rb") as f:
        assert f.read() == FINAL
    with pytest.raises(DiskError):
        resume(read_checkpoint(first.location), FileStore(str(tmp_path / "r2")), engine=engine)


def test_overlay_whose_parent_changed_is_refused(chain_run):
    tmp_path, disk_path, first, second, final = chain_run
    with open(disk_path, "r+b") as f:
        f.seek(40 * BLOCK)
        f.write(b"changed behind minivm's back")
    result = run_cli("disk", "commit", "ck/ckpt-0001.cow", cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "changed" in message and "disk.img" in message and "Traceback" not in message
    with pytest.raises(DiskError):
        open_disk(str(tmp_path / "ck" / "ckpt-0001.cow"))
    # the raw file was not touched by the refused commit
    with open(disk_path, "rb") as f:
        data = f.read()
    assert data[:40 * BLOCK] == AFTER_A[:40 * BLOCK]
    not_overlay = run_cli("disk", "commit", "disk.img", cwd=tmp_path)
    assert not_overlay.returncode == 2 and b"not an overlay" in not_overlay.stderr


# --- P10: committing while the guest runs ------------------------------------------------------

P10_PROGRAM = """
        mov r5, 0               ; phase 0..7: fill a buffer, write it to blocks 3p, 3p+1
phase:  mul r1, r5, 0x01010101
        add r1, r1, 0x10101010
        mov r2, 0x2000
fill:   st r1, [r2]
        add r2, r2, 4
        blt r2, 0x2400, fill
        mul r3, r5, 3
        out 0x20, r3
        out 0x21, 0x2000
        out 0x22, 2
        out 0x23, 2
        bne r5, 1, next
        ckpt                    ; after the second write: it is in flight
next:   add r5, r5, 1
        blt r5, 8, phase
drain:  in r7, 0x24
        beq r7, 0, done
        wait
        jmp drain
done:   halt
"""


@pytest.mark.parametrize("pending", [False, True], ids=["idle", "write-pending"])
def test_commit_disk_while_the_guest_runs(pending, tmp_path, engine):
    image = assemble_text(P10_PROGRAM, "p10.asm")
    config = Config(memory_size=MEMORY, disk_content=PATTERN)
    ref = run_reference(image, config, tmp_path / "ref")
    assert len(ref.writes) == 8
    issued = ref.writes[4][0]                   # phase 4's write
    at = issued + 5 if pending else issued + 300
    assert (ref.writes[4][1] > at) == pending
    _, machine, cp, disk_path = run_machine(P10_PROGRAM, tmp_path, engine, slice_ticks=16)
    machine.run(at)
    assert machine.tick == at
    assert cp.jobs and cp.jobs[0].status == "complete", "the checkpoint saves quickly"
    old_top = machine.disk.backing
    message = cp.commit_disk()
    assert message
    assert machine.disk.backing is not old_top, "the VM switches to a fresh overlay (claim 5)"
    stop = machine.run(1_000_000)
    cp.finish_all()
    assert stop.reason == "halt"
    assert cp.last_commit, "the commit ran"
    final = final_state(machine, stop)
    close_disks(machine)
    # the guest saw nothing
    assert final.differences(ref.final, skip=()) == []
    # the parent holds exactly the writes issued before the commit
    with open(disk_path, "rb") as f:
        parent = f.read()
    assert parent == ref.disk_at(at, PATTERN)
    assert parent != ref.final.disk
    # the checkpoint made on the old parent contents can no longer be resumed
    with pytest.raises(DiskError):
        resume(read_checkpoint(cp.jobs[0].location), FileStore(str(tmp_path / "r")), engine=engine)


def test_checkpoint_while_a_commit_is_pending(tmp_path, engine):
    """commit_disk() with a write still pending to the overlay defers the merge;
    a checkpoint taken meanwhile must either be refused with a clear message
    or be a checkpoint that resumes to the original's end."""
    image = assemble_text(P10_PROGRAM, "p10.asm")
    ref = run_reference(image, Config(memory_size=MEMORY, disk_content=PATTERN),
                        tmp_path / "ref")
    _, machine, cp, _ = run_machine(P10_PROGRAM, tmp_path, engine, slice_ticks=16)
    machine.run(ref.writes[4][0] + 5)           # phase 4's write is pending
    cp.commit_disk()
    try:
        job = cp.take("host")
    except MinivmError as exc:
        assert "commit" in str(exc)
        job = None
    stop = machine.run(1_000_000)
    cp.finish_all()
    final = final_state(machine, stop)
    close_disks(machine)
    assert final.differences(ref.final, skip=()) == []
    if job is not None:
        assert job.status == "complete"
        resumed, _ = resume(read_checkpoint(job.location), FileStore(str(tmp_path / "r")),
                            console_sink=BufferSink(), console_input=ConsoleInput(b""),
                            engine=engine)
        assert final_state(resumed, resumed.run(1_000_000)).differences(final) == []
        close_disks(resumed)


def test_commit_disk_needs_an_overlay(tmp_path, engine):
    _, machine, cp, _ = run_machine("        nop\n        halt\n", tmp_path, engine)
    with pytest.raises(MinivmError) as info:
        cp.commit_disk()
    assert "no overlay" in str(info.value)
    close_disks(machine)
