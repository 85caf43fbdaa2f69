"""A valid file the host has no memory for is "out of memory", never "corrupt"
(issue 12: a valid 65 MiB checkpoint resumed under a memory limit was
reported as "corrupt: MemoryError").

The host's memory runs out at a place the test chooses (a patched allocation
raises MemoryError), so the test does not depend on the host's memory or on
an rlimit; one test does it under a real address-space limit in a child.
"""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

import minivm.container as container
from minivm.errors import FormatError, OutOfMemory
from minivm.memory import Memory
from minivm.repl import Session
from minivm.resume import read_checkpoint, resume
from minivm.image import load_image
from minivm.assembler import assemble, assemble_file
from minivm.store import FileStore
from minivm.checkpoint import Checkpointer
from minivm.ckptfile import SavedPages
from minivm.devices import BufferSink, ConsoleInput
from minivm.machine import Machine
from tests import ckpt_files
from tests.ckpt_strategies import close_disks
from tests.support import PROGRAMS, ROOT
from tests.test_hostile_numbers import make_seed


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return make_seed(tmp_path_factory.mktemp("hostile-memory"))


class StarvedUnpacker(msgpack.Unpacker):
    def unpack(self):
        raise MemoryError


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
def test_loading_a_checkpoint_out_of_memory_is_not_corrupt(seed, tmp_path, monkeypatch,
                                                           version):
    path = tmp_path / f"seed-v{version}.mvc"
    path.write_bytes(ckpt_files.edit(seed.read_bytes(), lambda name, tree: None, version))
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    with pytest.raises(OutOfMemory) as info:
        read_checkpoint(str(path))
    text = str(info.value)
    assert not isinstance(info.value, FormatError)
    assert "out of memory" in text and "corrupt" not in text and "MemoryError" not in text


def test_loading_an_image_out_of_memory_is_not_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "fib.mvb"
    assemble_file(str(PROGRAMS / "fib.asm")).save(str(path))
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    with pytest.raises(OutOfMemory, match="out of memory"):
        load_image(str(path))


@pytest.mark.parametrize("version, eager", [(2, True), (1, False)], ids=["v2-eager", "v1"])
def test_resuming_out_of_memory_is_not_corrupt_and_leaves_no_overlay(seed, tmp_path,
                                                                   monkeypatch, version, eager):
    """A resume that reads every page first (an eager one, or any of a
    version-1 file) and finds no memory for one: out of memory, and the fresh
    overlay it made is removed."""
    path = tmp_path / f"seed-v{version}.mvc"
    path.write_bytes(ckpt_files.edit(seed.read_bytes(), lambda name, tree: None, version))
    ckpt = read_checkpoint(str(path))
    assert ckpt.format_version == version

    def starved(self, index, data):
        raise MemoryError
    monkeypatch.setattr(Memory, "load_page", starved)
    store = tmp_path / "store"
    with pytest.raises(OutOfMemory) as info:
        resume(ckpt, FileStore(str(store)), eager=eager)
    assert "corrupt" not in str(info.value) and "not a valid" not in str(info.value)
    assert not list(store.glob("*.cow")), "the fresh overlay is removed"


def test_first_access_to_a_lazy_page_out_of_memory_is_out_of_memory(seed, tmp_path,
                                                                     monkeypatch):
    """A lazy resume reads no page: it succeeds, and the guest's first access
    to a saved page, which finds no memory for it, is a clean OutOfMemory."""
    ckpt = read_checkpoint(str(seed))
    assert isinstance(ckpt.pages, SavedPages) and len(ckpt.pages)

    def starved(self, index):
        raise MemoryError
    monkeypatch.setattr(SavedPages, "__getitem__", starved)
    monkeypatch.setattr(SavedPages, "chunks", starved)
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "store")), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""))
    try:
        with pytest.raises(OutOfMemory) as info:
            machine.run(5_000_000)
    finally:
        close_disks(machine)
    assert machine.memory.pages_loaded == 0
    assert "corrupt" not in str(info.value) and "not a valid" not in str(info.value)


def test_repl_restore_out_of_memory(seed, tmp_path, monkeypatch, engine):
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "ck"), out=out, handle_sigint=False,
                      engine=engine)
    session.execute(f"restore {seed}")
    text = out.getvalue()
    assert "error: out of memory while loading checkpoint" in text, text
    assert "internal error" not in text and "corrupt" not in text, text


#: Fills TOUCH_PAGES pages (a word in each, so each is saved whole), takes a
#: checkpoint, then reads each page once and halts.
TOUCHER = """
.equ PAGES, {pages}
        mov r1, 0x100000
        mov r3, PAGES
fill:   st r3, [r1 + 0]
        add r1, r1, 4096
        sub r3, r3, 1
        bgt r3, 0, fill
        ckpt
        mov r1, 0x100000
        mov r3, PAGES
touch:  ld r2, [r1 + 0]
        add r1, r1, 4096
        sub r3, r3, 1
        bgt r3, 0, touch
        mov r0, 0
        halt
"""
#: 32 MiB of saved pages, above the child's 24 MiB of headroom.
TOUCH_PAGES = 8192


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A valid checkpoint of a 64 MiB machine with TOUCH_PAGES saved pages,
    which the guest reads once resumed."""
    folder = tmp_path_factory.mktemp("hostile-memory-big")
    image = assemble(TOUCHER.format(pages=TOUCH_PAGES), "toucher.asm")
    machine = Machine(image, memory_size=64 << 20, console_sink=BufferSink(),
                      console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")))
    assert machine.run(5_000_000).reason == "halt"
    cp.finish_all()
    assert [job.status for job in cp.jobs] == ["complete"]
    path = Path(cp.jobs[0].location)
    assert len(read_checkpoint(str(path)).pages) == TOUCH_PAGES
    return path


@pytest.mark.parametrize("version, options", [
    pytest.param(1, [], id="v1"),
    pytest.param(2, [], id="v2-lazy"),
    pytest.param(2, ["--eager"], id="v2-eager"),
])
def test_cli_resume_under_an_address_space_limit(big, tmp_path, version, options):
    """A real limit: the child caps its address space just above what it has
    mapped, then resumes a valid checkpoint with 32 MiB of saved pages: a
    version-1 file is read whole, an eager resume reads every page first, a
    lazy one reads each when the guest reads it. Each is out of memory, never
    a corrupt file or a traceback."""
    import subprocess
    path = tmp_path / f"big-v{version}.mvc"
    path.write_bytes(ckpt_files.edit(big.read_bytes(), lambda name, tree: None, version))
    ckpt = read_checkpoint(str(path))                          # valid
    assert ckpt.format_version == version and len(ckpt.pages) == TOUCH_PAGES
    del ckpt
    child = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        import minivm.cli, minivm.resume, minivm.report, minivm.repl
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        limit = mapped + (24 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.exit(minivm.cli.main(["resume", {str(path)!r}, *{options!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120,
                          cwd=tmp_path)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert "out of memory" in err and "corrupt" not in err and "Traceback" not in err, err
