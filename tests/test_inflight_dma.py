"""One test per in-flight DMA rule of docs/protocol.md (P3, P5-P9).

Each test runs a small guest that puts requests in flight around a ``ckpt``,
then loads the checkpoint file and compares the checkpointed memory (its
saved pages), the checkpointed disk (the parent file), the running memory and
the ongoing disk byte for byte with what docs/protocol.md says they must hold. The
disk starts with a pattern in which every block is different
(ckpt_strategies.disk_pattern), so a block landing in the wrong place, or
not at all, shows.
"""

from __future__ import annotations

import os

import pytest

from ckpt_strategies import (Config, assemble_text, close_disks, disk_pattern, new_machine,
                             read_checkpoint, write_disk)
from minivm.checkpoint import MODES, Checkpointer
from minivm.disks import close_chain, open_disk
from minivm.store import FileStore

PAGE = 4096
BLOCK = 512
MEMORY = 64 * 1024
PATTERN = disk_pattern()
LATENCY, PER_BLOCK = 100, 10


def block(b: int, n: int = 1) -> bytes:
    """Blocks b .. b+n-1 of the initial disk."""
    return PATTERN[b * BLOCK:(b + n) * BLOCK]


def page_with(*pieces) -> bytes:
    """A 4096-byte page: zeros, with (offset, bytes) pieces laid over it."""
    page = bytearray(PAGE)
    for offset, data in pieces:
        page[offset:offset + len(data)] = data
    return bytes(page)


def disk_with(*pieces) -> bytes:
    """The initial disk with (block, bytes) pieces laid over it."""
    disk = bytearray(PATTERN)
    for b, data in pieces:
        disk[b * BLOCK:b * BLOCK + len(data)] = data
    return bytes(disk)


def words(value: int, nbytes: int) -> bytes:
    return value.to_bytes(4, "little") * (nbytes // 4)


class Run:
    """A guest run with a checkpointer, which the test can advance tick by tick,
    on ``engine`` (the tests pass the ``engine`` fixture: each runs on both)."""

    def __init__(self, source: str, tmp_path, mode: str = "cow", *, engine: str,
                 **checkpointer_options):
        self.image = assemble_text(source, "dma.asm")
        self.disk_path = write_disk(tmp_path / "disk.img", PATTERN)
        config = Config(memory_size=MEMORY, disk_content=PATTERN, latency=LATENCY,
                        per_block=PER_BLOCK, engine=engine)
        self.machine = new_machine(self.image, config, self.disk_path)
        self.cp = Checkpointer(self.machine, FileStore(str(tmp_path / "ck")), mode=mode,
                               **checkpointer_options)

    def run_to_end(self):
        stop = self.machine.run(1_000_000)
        assert stop.reason == "halt", stop
        self.cp.finish_all()
        return self

    def run_until(self, tick: int):
        self.machine.run(tick - self.machine.tick)
        return self

    @property
    def job(self):
        (job,) = self.cp.jobs
        return job

    def checkpoint(self):
        assert self.job.status == "complete", self.job.progress()
        return read_checkpoint(self.job.location)

    def live_page(self, index: int) -> bytes:
        return self.machine.memory.read_bytes(index * PAGE, PAGE)

    def ongoing_disk(self) -> bytes:
        backing = self.machine.disk.backing
        return backing.read_blocks(0, backing.block_count)

    def parent_file(self) -> bytes:
        with open(self.disk_path, "rb") as f:
            return f.read()

    def close(self):
        close_disks(self.machine)


def queue_of(ckpt) -> list:
    """The saved disk queue: [id, command, block, addr, count, issued, done, data]."""
    return ckpt.state["disk"]["queue"]


def first_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"lengths {len(a)} and {len(b)}"
    i = next(i for i in range(len(a)) if a[i] != b[i])
    return f"first at byte 0x{i:x} (block {i // BLOCK}, page {i // PAGE}): {a[i:i + 8].hex()} vs {b[i:i + 8].hex()}"


def assert_bytes(actual: bytes, expected: bytes, what: str) -> None:
    assert actual == expected, f"{what} is wrong, {first_difference(actual, expected)}"


DRAIN = """
drain:  in r7, 0x24
        beq r7, 0, done
        wait
        jmp drain
done:   halt
"""

# --- P5 -------------------------------------------------------------------------------------

P5_PROGRAM = """
        mov r1, 0x11111111
        mov r2, 0x2000
fill:   st r1, [r2]             ; 0x2000..0x23ff = 11 11 11 ...
        add r2, r2, 4
        blt r2, 0x2400, fill
        out 0x20, 4             ; #1 write blocks 4..5 <- 0x2000
        out 0x21, 0x2000
        out 0x22, 2
        out 0x23, 2
        out 0x20, 10            ; #2 read blocks 10..11 -> 0x3000
        out 0x21, 0x3000
        out 0x22, 2
        out 0x23, 1
        ckpt                    ; both are in flight
        mov r1, 0x22222222
        mov r2, 0x2000
fill2:  st r1, [r2]             ; new contents for the write buffer
        add r2, r2, 4
        blt r2, 0x2400, fill2
        out 0x20, 20            ; #3 write blocks 20..21 <- 0x2000 (22 22 ...)
        out 0x21, 0x2000
        out 0x22, 2
        out 0x23, 2
        out 0x20, 30            ; #4 read block 30 -> 0x5000
        out 0x21, 0x5000
        out 0x22, 1
        out 0x23, 1
""" + DRAIN


@pytest.mark.parametrize("mode", MODES)
def test_p5_inflight_requests_belong_to_the_checkpoint(mode, tmp_path, engine):
    run = Run(P5_PROGRAM, tmp_path, mode, engine=engine).run_to_end()
    ckpt = run.checkpoint()
    # both requests were in flight when the checkpoint was taken (timing: docs/isa.md, Block disk)
    queue = queue_of(ckpt)
    assert [(r[0], r[1], r[2], r[4]) for r in queue] == [(1, 2, 4, 2), (2, 1, 10, 2)]
    (w1, r1) = queue
    assert w1[6] == w1[5] + LATENCY + 2 * PER_BLOCK
    assert r1[6] == max(r1[5], w1[6]) + LATENCY + 2 * PER_BLOCK
    assert w1[5] < ckpt.tick < w1[6]

    # checkpointed memory: the write buffer as it was, and the in-flight read's data
    assert sorted(ckpt.pages) == [2, 3], "only the non-zero pages 2 and 3 are saved"
    assert_bytes(ckpt.pages[2], page_with((0, words(0x11111111, 1024))),
                 "checkpointed page 2")
    assert_bytes(ckpt.pages[3], page_with((0, block(10, 2))),
                 "checkpointed page 3 (P5: the in-flight read lands in checkpointed memory)")
    # ongoing memory: the read too, the new buffer, and the later read (#4)
    assert_bytes(run.live_page(3), page_with((0, block(10, 2))), "running page 3")
    assert_bytes(run.live_page(2), page_with((0, words(0x22222222, 1024))), "running page 2")
    assert_bytes(run.live_page(5), page_with((0, block(30))), "running page 5")

    # checkpointed disk (the parent file): the in-flight write, not the later one
    assert_bytes(run.parent_file(), disk_with((4, b"\x11" * 1024)),
                 "checkpointed disk (P5: the in-flight write reaches the parent, #3 does not)")
    # ongoing disk: both writes
    assert_bytes(run.ongoing_disk(), disk_with((4, b"\x11" * 1024), (20, b"\x22" * 1024)),
                 "ongoing disk")
    run.close()


def test_p5_saving_memory_waits_for_inflight_reads(tmp_path, engine):
    """The checkpoint is not complete (no file under its name) until the read
    in flight at the checkpoint has landed, although saving is given every
    chance to finish earlier (a batch at every tick, no page limit)."""
    run = Run(P5_PROGRAM, tmp_path, "cow", slice_ticks=1, pages_per_slice=100_000, engine=engine)
    while not run.cp.jobs:
        run.run_until(run.machine.tick + 1)
    job = run.job
    read_done = job.state["disk"]["queue"][1][6]
    assert read_done > job.tick + 100
    while run.machine.tick < read_done:
        assert job.status == "saving", f"saved at tick {run.machine.tick}, before the read " \
                                       f"in flight landed (tick {read_done})"
        assert not os.path.exists(job.location)
        run.run_until(run.machine.tick + 1)
    run.run_until(read_done + 3)
    assert job.status == "complete", job.progress()
    assert read_checkpoint(job.location).pages[3][:1024] == block(10, 2)
    run.close()


TWO_CHECKPOINTS_PROGRAM = """
        mov r1, 0x66666666
        st r1, [0x7800]
        out 0x20, 70            ; read block 70 -> 0x7000
        out 0x21, 0x7000
        out 0x22, 1
        out 0x23, 1
        ckpt                    ; #1: the read is in flight
        mov r1, 0x77777777
        st r1, [0x7804]         ; page 7 is copied for checkpoint 1
        ckpt                    ; #2: the read is still in flight
        st r1, [0x7808]         ; and copied again for checkpoint 2
""" + DRAIN


def test_p5_read_in_flight_across_two_checkpoints(tmp_path, engine):
    """A read in flight at two checkpoints lands in both checkpointed memories
    (each with its own version of the rest of the page) and the running one."""
    run = Run(TWO_CHECKPOINTS_PROGRAM, tmp_path, "cow", engine=engine).run_to_end()
    first, second = (read_checkpoint(job.location) for job in run.cp.jobs)
    assert len(queue_of(first)) == len(queue_of(second)) == 1
    assert second.tick == first.tick + 3
    assert_bytes(first.pages[7], page_with((0, block(70)), (0x800, words(0x66666666, 4))),
                 "page 7 of the first checkpoint")
    assert_bytes(second.pages[7], page_with((0, block(70)), (0x800, words(0x66666666, 4)),
                                            (0x804, words(0x77777777, 4))),
                 "page 7 of the second checkpoint")
    assert_bytes(run.live_page(7), page_with((0, block(70)), (0x800, words(0x66666666, 4)),
                                             (0x804, words(0x77777777, 8))), "running page 7")
    run.close()


# --- P6 -------------------------------------------------------------------------------------

P6_PROGRAM = """
        mov r1, 0xabababab
        mov r2, 0x6c00
fill:   st r1, [r2]             ; 0x6c00..0x6fff = ab ab ...
        add r2, r2, 4
        blt r2, 0x7000, fill
        mov r1, 0x01020304
        st r1, [0x6000]
        ckpt                    ; page 6 is now shared with the checkpoint
        out 0x20, 50            ; a new read: blocks 50..51 -> 0x6e00..0x71ff
        out 0x21, 0x6e00        ; (end of shared page 6, start of untouched page 7)
        out 0x22, 2
        out 0x23, 1
""" + DRAIN


def test_p6_new_read_never_reaches_checkpointed_memory(tmp_path, engine):
    run = Run(P6_PROGRAM, tmp_path, "cow", engine=engine).run_to_end()
    ckpt = run.checkpoint()
    original_page6 = page_with((0, bytes([4, 3, 2, 1])), (0xC00, b"\xab" * 1024))
    assert sorted(ckpt.pages) == [6]
    assert_bytes(ckpt.pages[6], original_page6,
                 "checkpointed page 6 (P6: a read issued after the checkpoint must not reach it)")
    assert_bytes(run.live_page(6), page_with((0, bytes([4, 3, 2, 1])), (0xC00, b"\xab" * 512),
                                             (0xE00, block(50))), "running page 6")
    assert_bytes(run.live_page(7), page_with((0, block(51))), "running page 7")
    # the shared page was COW-faulted before the read was issued; the untouched one was not
    assert run.machine.memory.copied == {6}
    assert run.cp.p6_faults == 1
    run.close()


# --- P7 -------------------------------------------------------------------------------------

P7_PROGRAM = """
        mov r1, 0x55555555
        mov r2, 0x7200
fill:   st r1, [r2]             ; 0x7200..0x72ff = 55 55 ...
        add r2, r2, 4
        blt r2, 0x7300, fill
        st r1, [0x7800]
        out 0x20, 60            ; read block 60 -> 0x7000..0x71ff
        out 0x21, 0x7000
        out 0x22, 1
        out 0x23, 1
        ckpt                    ; the read is in flight
        mov r1, 0xdeadbeef
        st r1, [0x7800]         ; other bytes of the read's page: a COW fault
        stb r1, [0x7300]
""" + DRAIN


def test_p7_inflight_read_lands_in_original_and_copy(tmp_path, engine):
    run = Run(P7_PROGRAM, tmp_path, "cow", engine=engine).run_to_end()
    ckpt = run.checkpoint()
    (read,) = queue_of(ckpt)
    assert read[6] > ckpt.tick + 2, "the guest's stores must come before the read lands"
    assert_bytes(ckpt.pages[7],
                 page_with((0, block(60)), (0x200, b"\x55" * 256), (0x800, b"\x55" * 4)),
                 "checkpointed page 7 (P7: read data plus the original other bytes)")
    assert_bytes(run.live_page(7),
                 page_with((0, block(60)), (0x200, b"\x55" * 256), (0x300, b"\xef"),
                           (0x800, bytes.fromhex("efbeadde"))),
                 "running page 7 (P7: read data plus the guest's new bytes)")
    assert run.machine.memory.copied == {7}
    run.close()


# --- P8 -------------------------------------------------------------------------------------

P8_PROGRAM = """
        out 0x26, on_disk       ; completion interrupts (interrupts stay disabled)
        mov r1, 0x77777777
        mov r2, 0x9000
fill:   st r1, [r2]
        add r2, r2, 4
        blt r2, 0x9200, fill
        out 0x20, 40            ; #1 read blocks 40..41 -> 0x8000
        out 0x21, 0x8000
        out 0x22, 2
        out 0x23, 1
        out 0x20, 41            ; #2 write block 41 <- 0x9000: same block as #1
        out 0x21, 0x9000
        out 0x22, 1
        out 0x23, 2
        ckpt
        in r2, 0x24             ; in flight right after the checkpoint
        st r2, [0xa000]
        in r3, 0x25             ; last completed request
        st r3, [0xa004]
        halt
on_disk:
        iret
"""


@pytest.mark.parametrize("mode", MODES)
def test_p8_pending_read_then_write_completes_before_resumption(mode, tmp_path, engine):
    """P8 shows to the guest like this (the documented exception to
    invisibility): right after ``ckpt`` port 0x24 reads 0 (it would read 2 with
    nop) and port 0x25 reads 2, the write's id (0 with nop); both completion
    interrupts are pending from the checkpoint's tick, not from their
    scheduled completion ticks."""
    run = Run(P8_PROGRAM, tmp_path, mode, engine=engine).run_to_end()
    ckpt = run.checkpoint()
    assert run.job.p8_drained == 2
    assert queue_of(ckpt) == [], "P8: no request may still be pending in the checkpoint"
    pending = ckpt.state["interrupts"]["pending"]
    assert [(p[0], p[3]) for p in pending] == [(ckpt.tick, "disk"), (ckpt.tick, "disk")]
    assert ckpt.state["disk"]["last_completed"] == 2
    # the read ran first (issue order), so it holds the blocks as they were
    assert_bytes(ckpt.pages[8], page_with((0, block(40, 2))), "checkpointed page 8")
    assert_bytes(run.live_page(8), page_with((0, block(40, 2))), "running page 8")
    # and the write is on the checkpointed disk
    assert_bytes(run.parent_file(), disk_with((41, b"\x77" * 512)), "checkpointed disk")
    assert_bytes(run.ongoing_disk(), disk_with((41, b"\x77" * 512)), "ongoing disk")
    # what the guest saw
    seen = run.machine.memory.read_bytes(0xA000, 8)
    assert (int.from_bytes(seen[:4], "little"), int.from_bytes(seen[4:], "little")) == (0, 2)
    run.close()


# --- P9 -------------------------------------------------------------------------------------

P9_PROGRAM = """
        mov r1, 0x33333333
        mov r2, 0x2000
fill:   st r1, [r2]             ; 0x2000..0x23ff = 33 ...
        add r2, r2, 4
        blt r2, 0x2400, fill
        mov r1, 0x44444444
fill2:  st r1, [r2]             ; 0x2400..0x25ff = 44 ...
        add r2, r2, 4
        blt r2, 0x2600, fill2
        out 0x20, 16            ; #1 write blocks 16..17 (group 2 = blocks 16..23)
        out 0x21, 0x2000
        out 0x22, 2
        out 0x23, 2
        ckpt                    ; #1 is in flight
        out 0x20, 19            ; #2 partial write of group 2, block 19: a disk
        out 0x21, 0x2400        ;    COW fault on a group with a pending write
        out 0x22, 1
        out 0x23, 2
""" + DRAIN


def test_p9_cow_fault_waits_for_pending_write_to_the_group(tmp_path, engine):
    run = Run(P9_PROGRAM, tmp_path, "cow", engine=engine).run_to_end()
    ckpt = run.checkpoint()
    (w1,) = queue_of(ckpt)
    assert w1[6] > ckpt.tick + 4, "the second write is issued while the first is pending"
    overlay_path = run.machine.disk.backing.path
    assert os.path.basename(overlay_path) == "ckpt-0001.cow"
    assert run.machine.disk.backing.cow_faults == 1
    run.close()
    expected_group = b"\x33" * 1024 + block(18) + b"\x44" * 512 + block(20, 4)
    overlay = open_disk(overlay_path)
    try:
        assert overlay.groups() == [2]
        assert_bytes(overlay.group_data(2), expected_group,
                     "the overlay's copy of group 2 (P9: the earlier in-flight write, then "
                     "the partial write)")
        assert_bytes(overlay.read_blocks(0, overlay.block_count),
                     disk_with((16, expected_group)), "ongoing disk")
    finally:
        close_chain(overlay)
    assert_bytes(run.parent_file(), disk_with((16, b"\x33" * 1024)),
                 "checkpointed disk (the earlier write, not the partial one)")


# --- P3 / P6 counters ---------------------------------------------------------------------------

COUNTERS_PROGRAM = """
        mov r1, 1
        mov r2, 0x1000
touch:  st r1, [r2 + 0x10]      ; pages 1..8 get a word each
        add r1, r1, 1
        add r2, r2, 0x1000
        blt r2, 0x9000, touch
        ckpt
        ld r3, [0x1010]         ; reads never copy a page
        ld r3, [0x3010]
        ld r3, [0x8010]
        nop
        mov r4, 99
        st r4, [0x2020]         ; first write to page 2: a COW fault
        st r4, [0x2024]         ; second write to page 2: none
        stb r4, [0x5fff]        ; page 5
        st r4, [0x2028]
        out 0x20, 3             ; a new read into untouched page 10: no copy
        out 0x21, 0xa000
        out 0x22, 1
        out 0x23, 1
        out 0x20, 4             ; a new read into shared page 6: a P6 fault
        out 0x21, 0x6200
        out 0x22, 1
        out 0x23, 1
""" + DRAIN


def test_memory_cow_faults_only_for_pages_written_after_the_checkpoint(tmp_path, engine):
    run = Run(COUNTERS_PROGRAM, tmp_path, "cow", engine=engine)
    while not run.cp.jobs:
        run.run_until(run.machine.tick + 1)
    memory = run.machine.memory
    assert memory.copied == set()
    run.run_until(run.machine.tick + 4)         # the loads and the nop
    assert memory.copied == set(), "loads must not copy pages"
    run.run_until(run.machine.tick + 2)         # mov, first store to page 2
    assert memory.copied == {2}
    run.run_until(run.machine.tick + 3)         # page 2 again, page 5, page 2 again
    assert memory.copied == {2, 5}
    assert memory.cow_copies == 2
    run.run_to_end()
    assert memory.copied == {2, 5, 6}           # page 6 by P6; page 10 was untouched
    assert run.cp.p6_faults == 1
    ckpt = run.checkpoint()
    assert sorted(ckpt.pages) == list(range(1, 9))
    for index in range(1, 9):
        assert_bytes(ckpt.pages[index], page_with((0x10, index.to_bytes(4, "little"))),
                     f"checkpointed page {index}")
    assert_bytes(run.live_page(2), page_with((0x10, (2).to_bytes(4, "little")),
                                             (0x20, words(99, 12))), "running page 2")
    assert_bytes(run.live_page(6), page_with((0x10, (6).to_bytes(4, "little")),
                                             (0x200, block(4))), "running page 6")
    assert_bytes(run.live_page(10), page_with((0, block(3))), "running page 10")
    run.close()
