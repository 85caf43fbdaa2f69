"""Memory's write trackers (incremental checkpoints, time travel): a tracker
sees every page written after its owner protected it, by either engine."""

from minivm.assembler import assemble
from minivm.machine import Machine
from minivm.memory import PAGE_SIZE, Memory

WRITER = """
.data
buf: .space 40960
.text
    mov r1, buf
    mov r2, 0
loop:
    st  r2, [r1]
    add r1, r1, 4096
    add r2, r2, 1
    blt r2, 10, loop
    halt
"""


def test_tracker_sees_first_writes_and_protect_rearms():
    mem = Memory(8 * PAGE_SIZE)
    seen = mem.track_writes()
    mem.store_word(0, 1)
    mem.store_word(PAGE_SIZE * 3, 2)
    mem.store_word(4, 3)                  # same page again: already writable
    assert seen == {0, 3}
    seen.clear()
    mem.store_word(8, 4)                  # still writable in place: not seen
    assert seen == set()
    mem.protect([0])
    mem.store_word(8, 5)
    assert seen == {0}
    mem.untrack(seen)
    mem.protect([3])
    mem.store_word(PAGE_SIZE * 3, 6)
    assert seen == {0}


def test_keep_versions_copies_instead_of_writing_in_place():
    mem = Memory(2 * PAGE_SIZE)
    mem.store_word(0, 7)
    version = mem.pages[0]
    mem.keep_versions = True
    mem.protect([0])
    mem.store_word(0, 8)
    assert mem.pages[0] is not version and version[:4] == (7).to_bytes(4, "little")


def test_install_pages_keeps_allocated_count_and_is_seen():
    mem = Memory(4 * PAGE_SIZE)
    mem.store_word(0, 1)
    old = mem.pages[0]
    mem.keep_versions = True
    mem.protect([0])
    mem.store_word(0, 2)
    seen = mem.track_writes()
    mem.install_pages({0: old, 1: mem.pages[1]})    # page 1: unchanged
    assert mem.load_word(0) == 1 and mem.allocated == 1 and seen == {0}
    assert mem.writable[0] is None


def test_both_engines_report_the_same_written_pages(engine):
    image = assemble(WRITER, "writer.asm")
    m = Machine(image, engine=engine)
    seen = m.memory.track_writes()
    m.memory.protect(range(m.memory.page_count))
    m.run()
    assert m.halted
    assert seen == set(range(10))         # buf starts at address 0: pages 0..9


# --- a page the background save has written needs no copy (P3, P4) -------------------------------

SAVED_THEN_WRITTEN = """
        mov r1, 0x1000
        mov r2, 1
fill:   st r2, [r1]             ; pages 1..40 hold data before the checkpoint
        add r1, r1, 0x1000
        blt r1, 0x29000, fill
        ckpt
        mov r3, {spin}
spin:   sub r3, r3, 1           ; the background save runs meanwhile
        bgt r3, 0, spin
        mov r1, 0x1000
        mov r2, 7
again:  st r2, [r1]             ; pages 1..8 again, after (or before) they are saved
        add r1, r1, 0x1000
        blt r1, 0x9000, again
        halt
"""


def test_a_store_to_a_page_already_saved_copies_nothing(tmp_path, engine):
    """Once the saver has written a page to the checkpoint's file, the
    checkpoint needs it no more: the guest's next store writes it in place
    (no COW copy), while the save goes on with the other pages; before the
    saver gets there, each store copies, as always. The file holds the pages
    as they were at the checkpoint either way."""
    from minivm.checkpoint import Checkpointer
    from minivm.devices import BufferSink, ConsoleInput
    from minivm.resume import read_checkpoint
    from minivm.store import FileStore
    # batches of 8 pages: the first 128 ticks after the checkpoint
    # (FIRST_SLICE_TICKS), the next 256 later; the stores come at about 200
    # ticks (spin 100), after pages 1..8 are saved, or at about 20 (spin 10)
    for spin, copies in ((100, 0), (10, 8)):
        image = assemble(SAVED_THEN_WRITTEN.format(spin=spin))
        m = Machine(image, memory_size=64 * PAGE_SIZE, console_sink=BufferSink(),
                    console_input=ConsoleInput(), engine=engine)
        store = FileStore(str(tmp_path / f"s{spin}"))
        cp = Checkpointer(m, store, pages_per_slice=8, slice_ticks=100_000)
        assert m.run(10 ** 6).reason == "halt"
        (job,) = cp.jobs
        assert job.status == "saving" and job.pages_done == 8 * (copies == 0)
        assert m.memory.cow_copies == copies, (spin, m.memory.cow_copies)
        assert len(job.frozen.originals) == copies        # only the ones not yet saved
        cp.finish_all()
        ckpt = read_checkpoint(job.location)
        assert [ckpt.pages[i][:4] for i in range(1, 41)] == [b"\1\0\0\0"] * 40
        assert all(m.memory.load_word(i * PAGE_SIZE) == 7 for i in range(1, 9))
