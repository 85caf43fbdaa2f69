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
