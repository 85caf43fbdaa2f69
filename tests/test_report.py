"""What ``minivm inspect`` and ``minivm disk info`` print (minivm/report.py).

A checkpoint, the program in it and the disk files it names can come from
anyone (a classmate's tarball): every string they hold is printed through
errors.show, so a name with a terminal escape or a line break shows as
``\\x1b[2J`` and ``\\n`` instead of clearing the screen or faking a line.
"""

from __future__ import annotations

import os

from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import Overlay, close_chain, create_raw_disk, open_disk
from minivm.errors import show
from minivm.machine import Machine
from minivm.report import describe_checkpoint, describe_disk
from minivm.resume import read_checkpoint
from minivm.store import FileStore

from support import run_cli

HOSTILE = "\x1b[2J\nevil"          # clears the screen, then starts a line of its own
COMMENT = "; \x1b[2J\x07"          # a source line cannot hold a line break

SOURCE = f"""
        mov r1, 1       {COMMENT}
        halt
"""


def assert_escaped(text: str, *strings: str) -> None:
    """No raw escape or line break from ``strings`` in ``text``; each shown escaped."""
    assert "\x1b" not in text and "\x07" not in text, text
    for line in text.splitlines():
        assert not line.startswith("evil"), f"a name started a line of its own: {text}"
    for s in strings:
        assert show(s) in text, (show(s), text)


def hostile_checkpoint(tmp_path):
    """A checkpoint whose name, origin, program file, source line and disk
    folder all hold HOSTILE; returns (checkpoint path, disk path)."""
    folder = tmp_path / f"dir{HOSTILE}"
    folder.mkdir()
    disk_path = folder / f"disk{HOSTILE}.img"
    create_raw_disk(str(disk_path), 8 * 512)
    image = assemble(SOURCE, str(folder / f"prog{HOSTILE}.asm"))
    machine = Machine(image, memory_size=64 * 1024, disk=open_disk(str(disk_path)),
                      console_sink=BufferSink(), console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")))
    job = cp.take(f"origin{HOSTILE}", f"name{HOSTILE}")
    machine.run(100)
    cp.finish_all()
    assert job.status == "complete", job.progress()
    close_chain(machine.disk.backing)
    return job.location, disk_path


def test_inspect_shows_strings_from_the_file_escaped(tmp_path):
    location, disk_path = hostile_checkpoint(tmp_path)
    ckpt = read_checkpoint(location)
    text = describe_checkpoint(ckpt)
    assert_escaped(text, f"name{HOSTILE}", f"origin{HOSTILE}", ckpt.image.source_file,
                   COMMENT, location, str(disk_path))
    proc = run_cli("inspect", location, input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    assert_escaped(proc.stdout.decode(), f"name{HOSTILE}", str(disk_path))


def test_inspect_shows_a_missing_disk_escaped(tmp_path):
    location, disk_path = hostile_checkpoint(tmp_path)
    os.unlink(disk_path)
    text = describe_checkpoint(read_checkpoint(location))
    assert "(MISSING)" in text
    assert_escaped(text, str(disk_path))


def test_disk_info_shows_paths_escaped(tmp_path):
    folder = tmp_path / f"dir{HOSTILE}"
    folder.mkdir()
    base = folder / f"base{HOSTILE}.img"
    create_raw_disk(str(base), 8 * 512)
    raw = open_disk(str(base))
    Overlay.create(str(folder / f"top{HOSTILE}.cow"), raw, 8).close()
    raw.close()
    top = str(folder / f"top{HOSTILE}.cow")
    text = describe_disk(top)
    assert "overlay" in text and "raw disk image" in text
    assert_escaped(text, top, str(base))
    proc = run_cli("disk", "info", top, input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    assert_escaped(proc.stdout.decode(), top, str(base))
