"""Lazy resume (format 2): pages come from the checkpoint file on first access.

* a resumed machine reads only the pages the guest touches, read or write;
* it ends exactly as an eager resume and as the uninterrupted run, on both
  engines, including when it is checkpointed again before it has read its
  pages (the new checkpoint's saver reads them from the first file);
* the stop window is recorded in the file (``pause_us``), and taking a
  checkpoint allocates no page table inside the stop, whatever the memory size;
* the REPL's page map shows pages still in the file.

Hostile and changing files under lazy resume: tests/test_ckptfile.py.
"""

from __future__ import annotations

import tracemalloc

import pytest

from minivm.checkpoint import Checkpointer, STOP_COPY
from minivm.devices import BufferSink, ConsoleInput
from minivm.engine import ENGINES
from minivm.machine import Machine
from minivm.assembler import assemble
from minivm.resume import read_checkpoint, resume
from minivm.store import FileStore

PAGES = 40
# Write a word into each of PAGES pages, checkpoint, then read back pages 3
# and 7 only, print their sum, and halt.
TOUCH = f"""
        mov r1, 0
touch:  shl r2, r1, 12
        add r3, r1, 100
        st r3, [r2 + 0x40]
        add r1, r1, 1
        blt r1, {PAGES}, touch
        ckpt
        ld r4, [0x3040]
        ld r5, [0x7040]
        add r4, r4, r5
        out 0x01, r4
        halt
"""


def _checkpoint(tmp_path, engine, source=TOUCH, mode="cow"):
    machine = Machine(assemble(source, "touch.asm"), memory_size=1 << 20,
                      console_sink=BufferSink(), console_input=ConsoleInput(b""), engine=engine)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck")), mode=mode)
    machine.run(10_000_000)
    cp.finish_all()
    return machine, cp.jobs[0]


def _resume(path, tmp_path, engine, eager=False, **kw):
    return resume(read_checkpoint(path), FileStore(str(tmp_path / "again")),
                  console_sink=BufferSink(), console_input=ConsoleInput(b""), engine=engine,
                  eager=eager, **kw)[0]


def _memory(machine):
    mem = machine.memory
    return {i: mem.page_bytes(i) for i in mem.nonzero_page_indexes()}


@pytest.mark.parametrize("engine", ENGINES)
def test_lazy_resume_reads_only_the_pages_the_guest_touches(tmp_path, engine):
    original, job = _checkpoint(tmp_path, engine)
    assert job.pages_saved == PAGES
    machine = _resume(job.location, tmp_path, engine)
    assert machine.memory.pages_loaded == 0             # nothing read before the first instruction
    machine.run(1_000_000)
    assert bytes(machine.console.sink.data) == bytes(original.console.sink.data)[-len(
        bytes(machine.console.sink.data)):]
    assert machine.memory.pages_loaded == 2             # pages 3 and 7: the guest read no other
    assert machine.memory.page_kind(5) == "on-file"
    assert machine.memory.page_kind(3) != "on-file"


@pytest.mark.parametrize("engine", ENGINES)
def test_lazy_and_eager_resume_end_like_the_original(tmp_path, engine):
    original, job = _checkpoint(tmp_path, engine)
    ends = []
    for eager in (False, True):
        machine = _resume(job.location, tmp_path, engine, eager=eager)
        if eager:
            assert machine.memory.pages_loaded == PAGES
        machine.run(1_000_000)
        ends.append((bytes(machine.console.sink.data), machine.tick, list(machine.regs),
                     _memory(machine)))
    assert ends[0] == ends[1]
    assert ends[0][1:] == (original.tick, list(original.regs), _memory(original))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["cow", STOP_COPY])
def test_checkpoint_of_a_lazily_resumed_machine_holds_every_page(tmp_path, engine, mode):
    """Checkpointed again at once, before it read a page: the second file holds
    the pages still in the first (read from it by the saver), and resumes to
    the same end; meanwhile the guest's own writes are copies (P3)."""
    original, job = _checkpoint(tmp_path, engine)
    machine = _resume(job.location, tmp_path, engine)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "second")), mode=mode)
    second = cp.take("host")
    assert machine.memory.pages_loaded == 0
    machine.run(1_000_000)
    cp.finish_all()
    assert second.status == "complete" and second.pages_saved == PAGES
    again = _resume(second.location, tmp_path, engine)
    again.run(1_000_000)
    assert (again.tick, list(again.regs), _memory(again)) == \
        (original.tick, list(original.regs), _memory(original))


@pytest.mark.parametrize("mode", ["cow", STOP_COPY])
def test_the_file_records_the_stop_window(tmp_path, mode):
    _, job = _checkpoint(tmp_path, "interp", mode=mode)
    ckpt = read_checkpoint(job.location)
    assert ckpt.format_version == 2
    assert ckpt.meta["pause_us"] == round(job.pause_seconds * 1e6, 1) > 0


def test_taking_a_checkpoint_allocates_no_page_table_in_the_stop(tmp_path, monkeypatch):
    """4 GiB of memory: a page table is 1 Mi entries (8 MiB); the stop (P2,
    Checkpointer._stop) allocates none: the spare write table is made with
    the memory, not in the stop."""
    machine = Machine(assemble("ckpt\nhalt\n", "t.asm"), memory_size=4 << 30,
                      console_sink=BufferSink(), console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck")))
    peaks = []
    stop = Checkpointer._stop

    def measured(self, *args):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        job = stop(self, *args)
        peaks.append(tracemalloc.get_traced_memory()[1] - before)
        return job
    monkeypatch.setattr(Checkpointer, "_stop", measured)
    tracemalloc.start()
    try:
        machine.run(1)
    finally:
        tracemalloc.stop()
    # (msgpack's packer takes a 256 KiB buffer for the header: far below 8 MiB)
    assert len(peaks) == 1 and peaks[0] < 1 << 20, f"the stop allocated {peaks} bytes"
    cp.finish_all()


def test_repl_page_map_shows_pages_still_in_the_file(tmp_path):
    from minivm.repl import render
    _, job = _checkpoint(tmp_path, "interp")
    machine = _resume(job.location, tmp_path, "interp")
    machine.run(1_000_000)
    chars = render.page_states(machine.memory, [])
    assert sum(ch == "f" for ch in chars.values()) == PAGES - 2
    lines = render.page_map(machine.memory, chars, [])
    assert "38 still in the checkpoint file (lazily resumed)" in lines[1]
    assert any(line.strip().startswith("f in the checkpoint file") for line in lines)


def test_repl_restore_is_lazy_and_diff_reads_pages_without_installing_them(tmp_path, engine):
    import io
    from minivm.repl.core import Session
    _, job = _checkpoint(tmp_path, "interp")
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "repl"), out=out, handle_sigint=False,
                      engine=engine)
    session.execute(f"restore {job.location}")
    assert session.machine.memory.pages_loaded == 0
    session.execute(f"diff now {job.location}")
    assert session.machine.memory.pages_loaded == 0          # compared, not installed
    session.execute("continue")
    session.execute(f"diff {job.location} now")
    text = out.getvalue()
    assert "error" not in text, text
    assert "memory: same" in text and "registers: r4" in text, text
    assert session.machine.memory.pages_loaded == 2
