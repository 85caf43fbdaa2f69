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

import msgpack
import pytest

import minivm.container as container
from minivm.errors import FormatError, OutOfMemory
from minivm.memory import Memory
from minivm.repl import Session
from minivm.resume import read_checkpoint, resume
from minivm.image import load_image
from minivm.assembler import assemble_file
from minivm.store import FileStore
from tests.support import PROGRAMS, ROOT
from tests.test_hostile_numbers import make_seed


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return make_seed(tmp_path_factory.mktemp("hostile-memory"))


class StarvedUnpacker(msgpack.Unpacker):
    def unpack(self):
        raise MemoryError


def test_loading_a_checkpoint_out_of_memory_is_not_corrupt(seed, monkeypatch):
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    with pytest.raises(OutOfMemory) as info:
        read_checkpoint(str(seed))
    text = str(info.value)
    assert not isinstance(info.value, FormatError)
    assert "out of memory" in text and "corrupt" not in text and "MemoryError" not in text


def test_loading_an_image_out_of_memory_is_not_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "fib.mvb"
    assemble_file(str(PROGRAMS / "fib.asm")).save(str(path))
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    with pytest.raises(OutOfMemory, match="out of memory"):
        load_image(str(path))


def test_resuming_out_of_memory_is_not_corrupt_and_leaves_no_overlay(seed, tmp_path,
                                                                   monkeypatch):
    ckpt = read_checkpoint(str(seed))

    def starved(self, index, data):
        raise MemoryError
    monkeypatch.setattr(Memory, "load_page", starved)
    store = tmp_path / "store"
    with pytest.raises(OutOfMemory) as info:
        resume(ckpt, FileStore(str(store)))
    assert "corrupt" not in str(info.value) and "not a valid" not in str(info.value)
    assert not list(store.glob("*.cow")), "the fresh overlay is removed"


def test_repl_restore_out_of_memory(seed, tmp_path, monkeypatch):
    monkeypatch.setattr(container.msgpack, "Unpacker", StarvedUnpacker)
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "ck"), out=out, handle_sigint=False)
    session.execute(f"restore {seed}")
    text = out.getvalue()
    assert "error: out of memory while loading checkpoint" in text, text
    assert "internal error" not in text and "corrupt" not in text, text


def test_cli_resume_under_an_address_space_limit(seed, tmp_path):
    """A real limit: the child caps its address space just above what it has
    mapped, then resumes a valid checkpoint with 16 MiB of pages."""
    import subprocess
    from tests.test_hostile_numbers import patched, in_state
    big = tmp_path / "big.mvc"

    def edit(name, tree):
        if name == "state":
            tree["memory_size"] = 64 << 20
        if name == "pages":
            tree.extend([i, bytes([1]) * 4096] for i in range(300, 300 + 4096))
    patched(seed, big, edit)
    read_checkpoint(str(big))                          # valid
    child = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        import minivm.cli, minivm.resume, minivm.report, minivm.repl
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * resource.getpagesize()
        limit = mapped + (24 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.exit(minivm.cli.main(["resume", {str(big)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120,
                          cwd=tmp_path)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert "out of memory" in err and "corrupt" not in err and "Traceback" not in err, err
