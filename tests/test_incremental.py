"""Incremental checkpoint files (issue 15): ``minivm run --incremental`` and the
REPL's ``checkpoint --incremental``.

* after the first checkpoint of a run, each file stores only the pages written
  since the previous one (zeros included) and names its parent, with an
  identity check (size and the SHA-256 of its end record);
* resuming any file of a chain (lazily or eagerly, both engines, both
  checkpoint modes) ends exactly as the original run: output, registers,
  memory, tick, disk;
* a missing, changed, truncated or hostile parent, a loop and a chain that is
  too long each give one clean error naming the file;
* ``inspect --json`` shows ``parent``; ``export`` writes a standalone file or,
  with ``--chain``, the whole chain, and both resume in another folder;
* the file stays a few KiB after one page changed, whatever the memory size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minivm.assembler import assemble
from minivm.checkpoint import STOP_COPY, Checkpointer
from minivm.ckptfile import CHECKPOINT_VERSION, STRIDE
from minivm.container import pack
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import close_chain, open_disk
from minivm.errors import FormatError
from minivm.machine import Machine
from minivm.resume import (_replace_records, export_checkpoint, read_checkpoint, resume)
from minivm.store import FileStore
from support import run_cli

GOLDEN = Path(__file__).resolve().parent / "data" / "checkpoints"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_golden", make_golden)
_spec.loader.exec_module(make_golden)

# Stores into 12 pages, then a checkpoint; changes one page; checkpoints; zeroes
# a page the first checkpoint saved non-zero (the child must store it: it
# overrides the parent); checkpoints twice more (once with nothing written);
# then sums every page and prints the sum.
PAGES = f"""
        mov r1, 0x4000
        mov r2, 1
fill:   st r2, [r1]
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, 13, fill
        ckpt
        mov r3, 0x6000
        mov r4, 1000
        st r4, [r3 + 8]
        ckpt
        mov r4, 0
        st r4, [r3]
        st r4, [r3 + 8]
        ckpt
        ckpt
        mov r1, 0x4000
        mov r2, 0
        mov r5, 0
sum:    ld r6, [r1]
        add r5, r5, r6
        ld r6, [r1 + 8]
        add r5, r5, r6
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, 12, sum
        out 0x01, r5
        mov r0, r5
        halt
"""


def _machine(source: str, engine: str, mem: int = 1 << 20, disk=None, name="prog.asm"):
    return Machine(assemble(source, name), memory_size=mem, disk=disk,
                   console_sink=BufferSink(), console_input=ConsoleInput(b""), engine=engine)


def run_incremental(source, folder: Path, engine, *, mem=1 << 20, disk_path=None,
                    schedule=(), mode="cow"):
    """Run ``source`` to the end with an incremental Checkpointer; returns
    (the final state as make_golden.final_of sees it, the jobs)."""
    disk = open_disk(str(disk_path)) if disk_path else None
    machine = _machine(source, engine, mem, disk)
    cp = Checkpointer(machine, FileStore(str(folder)), mode=mode, schedule=schedule,
                      incremental=True)
    stop = machine.run(10_000_000)
    cp.finish_all()
    final = make_golden.final_of(machine, stop)
    close_chain(machine.disk.backing)
    return final, cp.jobs


def resumed_final(path, store: Path, engine, eager=False) -> dict:
    ckpt = read_checkpoint(str(path))
    machine, _ = resume(ckpt, FileStore(str(store)), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""), engine=engine, eager=eager)
    try:
        return make_golden.final_of(machine, machine.run(10_000_000))
    finally:
        close_chain(machine.disk.backing)


def assert_resumes_as_run(path, final: dict, written: int, store: Path, engine, eager=False):
    seen = resumed_final(path, store, engine, eager)
    for key in ("stop", "exit_status", "tick", "pc", "regs", "memory_sha256", "disk_sha256"):
        assert seen[key] == final[key], (path, key)
    assert seen["output_latin1"] == final["output_latin1"][written:], path


def _written(path) -> int:
    return read_checkpoint(str(path), follow=False).state["console"]["bytes_written"]


# --- a chain resumes, file by file ------------------------------------------------------

@pytest.mark.parametrize("mode", ["cow", STOP_COPY])
def test_every_file_of_a_chain_resumes_to_the_run(tmp_path, engine, mode):
    final, jobs = run_incremental(PAGES, tmp_path / "ck", engine, mode=mode)
    assert [j.status for j in jobs] == ["complete"] * 4
    assert [j.incremental for j in jobs] == [False, True, True, True]
    assert [j.parent.name if j.parent else None for j in jobs] == \
        [None, "ckpt-0001", "ckpt-0002", "ckpt-0003"]
    assert [j.pages_saved for j in jobs] == [12, 1, 1, 0]
    for job in jobs:
        for eager in (False, True):
            assert_resumes_as_run(job.location, final, _written(job.location),
                                  tmp_path / f"r-{job.name}-{eager}", engine, eager)
    # the zeroed page is stored in the third file (it overrides the parent)
    third = read_checkpoint(jobs[2].location, follow=False)
    assert list(third.own_pages) == [6] and third.own_pages[6] == bytes(4096)
    chain = read_checkpoint(jobs[2].location)
    assert chain.pages[6] == bytes(4096) and len(chain.parents) == 2
    assert final["exit_status"] == sum(range(1, 13)) - 3     # page 6 (value 3) zeroed


def dma_disk(tmp_path) -> Path:
    path = tmp_path / "dma-disk.img"
    path.write_bytes(make_golden.dma_disk())
    return path


DMA = (GOLDEN / "src" / "dma.asm").read_text()
TIMER = (GOLDEN / "src" / "timer.asm").read_text()


@pytest.mark.parametrize("mode", ["cow", STOP_COPY])
def test_chain_with_disk_dma_in_flight_and_host_checkpoints(tmp_path, engine, mode):
    """Disk requests in flight at checkpoints (P5), a disk chain, --checkpoint-at
    ticks between the guest's own checkpoints."""
    disk = dma_disk(tmp_path)
    reference = tmp_path / "ref.img"
    shutil.copyfile(disk, reference)
    ref = _machine(DMA, engine, 64 << 10, open_disk(str(reference)))
    expected = make_golden.final_of(ref, ref.run(10_000_000))
    close_chain(ref.disk.backing)
    final, jobs = run_incremental(DMA, tmp_path / "ck", engine, mem=64 << 10, disk_path=disk,
                                  schedule=[50, 300, 1000, 3000], mode=mode)
    for key in ("tick", "regs", "memory_sha256", "disk_sha256", "output_latin1"):
        assert final[key] == expected[key], key                  # invisible to the guest
    assert len(jobs) >= 5 and all(j.status == "complete" for j in jobs)
    assert all(j.incremental for j in jobs[1:])
    for job in jobs:
        assert_resumes_as_run(job.location, final, _written(job.location),
                              tmp_path / f"r-{job.name}", engine)


def test_timer_program_chain(tmp_path, engine):
    final, jobs = run_incremental(TIMER, tmp_path / "ck", engine, mem=64 << 10,
                                  schedule=[100, 900, 2000, 3500, 5000])
    assert len(jobs) == 5 and all(j.incremental for j in jobs[1:])
    for job in jobs:
        assert_resumes_as_run(job.location, final, _written(job.location),
                              tmp_path / f"r-{job.name}", engine)


# A random straight-line program: stores of random values (zeros too) into
# random pages, with ckpt between them, then a checksum of every page.
OPS = st.lists(st.one_of(st.tuples(st.integers(0, 15), st.integers(0, 1023),
                                   st.sampled_from([0, 0, 1, 7, 0xFFFFFFFF])),
                         st.just("ckpt")), min_size=1, max_size=25)


def _program(ops) -> str:
    lines = []
    for op in ops:
        if op == "ckpt":
            lines.append("        ckpt")
        else:
            page, word, value = op
            lines += [f"        mov r1, {value}", f"        st r1, [{page * 4096 + word * 4}]"]
    lines += ["        mov r1, 0", "        mov r5, 0",
              "sum:    ld r6, [r1]", "        mul r5, r5, 31", "        add r5, r5, r6",
              "        add r1, r1, 4", "        blt r1, 65536, sum",
              "        out 0x01, r5", "        halt"]
    return "\n".join(lines) + "\n"


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(ops=OPS)
def test_random_programs_resume_from_every_file(engine, ops):
    source = _program(ops + ["ckpt"])
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        final, jobs = run_incremental(source, tmp / "ck", engine, mem=64 << 10)
        for job in jobs:
            assert job.status == "complete"
            assert_resumes_as_run(job.location, final, 0, tmp / f"r-{job.name}", engine)


# --- size ---------------------------------------------------------------------------------

TOUCH_THEN_ONE = """
        mov r1, 0x100000
        mov r2, 0
fill:   st r2, [r1]
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, 2000, fill
        ckpt
        mov r3, 0x180000
        st r2, [r3 + 100]
        ckpt
        halt
"""


@pytest.mark.parametrize("mem", [64 << 20, 1 << 32])
def test_one_page_changed_is_a_few_kib_whatever_the_memory(tmp_path, mem):
    _, jobs = run_incremental(TOUCH_THEN_ONE, tmp_path / "ck", "blocks", mem=mem)
    full, child = (os.path.getsize(j.location) for j in jobs)
    assert full > 2000 * 4096
    assert child < 4096 + 2 * 1024 + 1024, child      # one page, its records and index
    ckpt = read_checkpoint(jobs[1].location)
    assert len(ckpt.own_pages) == 1 and len(ckpt.pages) == 1999   # page 0x100 holds 0


# --- bad parents ----------------------------------------------------------------------------

@pytest.fixture
def chain(tmp_path):
    """A chain of four files in tmp_path/ck (no disk), made with the interp engine."""
    final, jobs = run_incremental(PAGES, tmp_path / "ck", "interp")
    return tmp_path / "ck", final, jobs


def _resume_error(path, cwd) -> str:
    done = run_cli("resume", str(path), "--checkpoint-dir", str(cwd / "again"), cwd=cwd)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err and done.stdout == b"", err
    assert err.startswith("minivm: error: ") and err.count("\n") == 1, err
    return err


def test_missing_parent(chain, tmp_path):
    folder, _, jobs = chain
    os.unlink(jobs[1].location)
    err = _resume_error(jobs[3].location, tmp_path)
    assert "ckpt-0002.mvc" in err and "missing" in err and "ckpt-0003.mvc" in err
    err = _resume_error(jobs[2].location, tmp_path)
    assert "ckpt-0002.mvc" in err and "missing" in err
    # the files before the gap still resume
    assert run_cli("resume", jobs[0].location, "--checkpoint-dir", str(tmp_path / "x"),
                   cwd=tmp_path).returncode == 75


def test_replaced_parent(chain, tmp_path):
    """Another run's file of the same name: the identity check refuses it."""
    folder, _, jobs = chain
    _, other = run_incremental(PAGES.replace("mov r4, 1000", "mov r4, 2000"),
                               tmp_path / "other", "interp")
    shutil.copyfile(other[0].location, jobs[0].location)
    err = _resume_error(jobs[1].location, tmp_path)
    assert "ckpt-0001.mvc" in err and "changed or been replaced" in err
    err = _resume_error(jobs[3].location, tmp_path)          # further up the chain too
    assert "ckpt-0001.mvc" in err and "changed or been replaced" in err


def test_changed_in_place_and_truncated_parent(chain, tmp_path):
    folder, _, jobs = chain
    path = Path(jobs[1].location)
    data = path.read_bytes()
    path.write_bytes(data[:-1])                               # truncated
    err = _resume_error(jobs[2].location, tmp_path)
    assert "ckpt-0002.mvc" in err and "size differs" in err
    changed = bytearray(data)
    changed[-40] ^= 1                                         # inside its end record
    path.write_bytes(bytes(changed))
    err = _resume_error(jobs[2].location, tmp_path)
    assert "ckpt-0002.mvc" in err and "changed or been replaced" in err


def test_hostile_parent_with_a_matching_identity(chain, tmp_path):
    """A parent whose identity matches but whose record is damaged (a hostile
    file, or a child that records a hostile file's identity) is validated as
    any checkpoint: the error names the parent."""
    folder, _, jobs = chain
    path = Path(jobs[0].location)
    data = bytearray(path.read_bytes())
    at = data.index(b"state") + 20                           # inside the state record
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    err = _resume_error(jobs[1].location, tmp_path)
    assert "ckpt-0001.mvc" in err and "parent of" in err and "corrupt" in err


def _point_parent(child: str, parent: str, identity: dict | None = None) -> None:
    """Rewrite ``child``'s parent record to name ``parent`` (with its real
    identity unless one is given)."""
    from minivm.ckptfile import FileSource, file_identity, parent_record
    if identity is None:
        source = FileSource(parent, "p")
        identity = file_identity(source, "p")
        source.close()
    _replace_records(child, {"parent": pack(parent_record(parent, identity, "x", 0, child))})


def test_parent_of_another_memory_size(chain, tmp_path):
    folder, _, jobs = chain
    _, other = run_incremental(PAGES, tmp_path / "other", "interp", mem=2 << 20)
    _point_parent(jobs[1].location, other[0].location)
    err = _resume_error(jobs[1].location, tmp_path)
    assert "memory of 2097152 bytes" in err and "cannot be its parent" in err


def test_loop_in_the_chain(chain, tmp_path):
    """ckpt-0002 names ckpt-0003 as its parent, and ckpt-0003 names ckpt-0002
    (with its identity): the loop is found before any identity is compared."""
    folder, _, jobs = chain
    _point_parent(jobs[1].location, jobs[2].location,
                  {"size": 1000, "end_sha256": "0" * 64})
    _point_parent(jobs[2].location, jobs[1].location)
    err = _resume_error(jobs[2].location, tmp_path)
    assert "loops" in err and "ckpt-0003.mvc" in err
    _point_parent(jobs[3].location, jobs[3].location, {"size": 1000, "end_sha256": "0" * 64})
    err = _resume_error(jobs[3].location, tmp_path)
    assert "loops" in err


def test_chain_length_is_bounded(tmp_path, monkeypatch):
    """The writer starts a new full checkpoint before a chain gets too long; a
    reader refuses a longer one."""
    import minivm.checkpoint as checkpoint_module
    import minivm.resume as resume_module
    monkeypatch.setattr(checkpoint_module, "MAX_PARENTS", 3)
    _, jobs = run_incremental(PAGES, tmp_path / "ck", "interp")
    assert [j.depth for j in jobs] == [0, 1, 2, 0]
    monkeypatch.setattr(checkpoint_module, "MAX_PARENTS", 64)
    _, jobs = run_incremental(PAGES, tmp_path / "ck2", "interp")
    monkeypatch.setattr(resume_module, "MAX_PARENTS", 3)
    with pytest.raises(FormatError, match="a chain of more than 3 files"):
        read_checkpoint(jobs[3].location)
    read_checkpoint(jobs[2].location)


def test_bad_parent_records_are_refused(chain):
    folder, _, jobs = chain
    for bad in ({"path": "", "relpath": "x", "size": 1, "end_sha256": "0" * 64, "name": "",
                 "tick": 0},
                {"path": "/x", "relpath": "x", "size": -1, "end_sha256": "0" * 64, "name": "",
                 "tick": 0},
                {"path": "/x", "relpath": "x", "size": 1, "end_sha256": "zz", "name": "",
                 "tick": 0},
                {"path": "/x", "relpath": "x", "size": 1, "end_sha256": "0" * 64, "name": "",
                 "tick": -1},
                [1, 2]):
        _replace_records(jobs[1].location, {"parent": pack(bad)})
        with pytest.raises(FormatError, match="parent"):
            read_checkpoint(jobs[1].location, follow=False)


# --- inspect --------------------------------------------------------------------------------

def _inspect(path, cwd) -> dict:
    done = run_cli("inspect", str(path), "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_inspect_json_parent(chain, tmp_path):
    folder, _, jobs = chain
    assert _inspect(jobs[0].location, tmp_path)["parent"] is None
    doc = _inspect(jobs[2].location, tmp_path)
    parent = doc["parent"]
    assert parent["name"] == "ckpt-0002" and parent["relpath"] == "ckpt-0002.mvc"
    assert parent["path"] == os.path.abspath(jobs[1].location)
    assert parent["size"] == os.path.getsize(jobs[1].location)
    assert len(parent["end_sha256"]) == 64 and parent["status"] == "unchanged"
    assert parent["chain_files"] == 3 and parent["chain_pages"] == 12
    assert parent["chain_error"] is None and doc["pages"] == 1
    text = run_cli("inspect", jobs[2].location, cwd=tmp_path).stdout.decode()
    assert "incremental: holds only the pages written since its parent ckpt-0002" in text
    assert "chain: 3 file(s), 12 page(s) in all" in text
    os.unlink(jobs[0].location)                               # further up: chain_error
    doc = _inspect(jobs[2].location, tmp_path)
    assert doc["parent"]["status"] == "unchanged" and "missing" in doc["parent"]["chain_error"]
    os.unlink(jobs[1].location)
    doc = _inspect(jobs[2].location, tmp_path)
    assert doc["parent"]["status"] == "MISSING" and doc["parent"]["resolved"] is None
    text = run_cli("inspect", jobs[2].location, cwd=tmp_path).stdout.decode()
    assert "(MISSING" in text and "resume would refuse it" in text


# --- export ---------------------------------------------------------------------------------

def _move_away(folder: Path, tmp_path: Path) -> Path:
    """Move the original folder, so an exported copy can only use its own files."""
    away = tmp_path / "moved-away"
    folder.rename(away)
    return away


def test_export_standalone_and_chain(chain, tmp_path, engine):
    folder, final, jobs = chain
    child = jobs[2].location
    written = _written(child)
    done = run_cli("export", child, str(tmp_path / "alone"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    done = run_cli("export", child, str(tmp_path / "whole"), "--chain", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    _move_away(folder, tmp_path)
    alone = tmp_path / "alone" / "ckpt-0003.mvc"
    assert sorted(os.listdir(tmp_path / "alone")) == ["ckpt-0003.mvc"]
    ckpt = read_checkpoint(str(alone))
    assert ckpt.parent is None and len(ckpt.pages) == 11     # zero pages are not kept
    assert ckpt.meta["merged_from"] == ["ckpt-0003.mvc", "ckpt-0002.mvc", "ckpt-0001.mvc"]
    assert _inspect(alone, tmp_path)["parent"] is None
    assert sorted(os.listdir(tmp_path / "whole")) == \
        ["ckpt-0001.mvc", "ckpt-0002.mvc", "ckpt-0003.mvc"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "whole", elsewhere)
    doc = _inspect(elsewhere / "ckpt-0003.mvc", tmp_path)
    assert doc["parent"]["status"] == "unchanged" and doc["parent"]["chain_files"] == 3
    for path in (alone, elsewhere / "ckpt-0003.mvc", elsewhere / "ckpt-0002.mvc"):
        expected_written = _written(path)
        assert_resumes_as_run(path, final, expected_written, tmp_path / f"r{path.parent.name}"
                              f"{path.name}", engine)
    assert written == _written(alone)


def test_export_with_disk_chain(tmp_path, engine):
    disk = dma_disk(tmp_path)
    final, jobs = run_incremental(DMA, tmp_path / "ck", engine, mem=64 << 10, disk_path=disk,
                                  schedule=[1000])
    last = jobs[-1]
    assert last.incremental
    for option in ([], ["--chain"]):
        target = tmp_path / ("out" + "".join(option))
        done = run_cli("export", last.location, str(target), *option, cwd=tmp_path)
        assert done.returncode == 0, done.stderr.decode()
    _move_away(tmp_path / "ck", tmp_path)
    disk.rename(tmp_path / "gone.img")
    names = sorted(os.listdir(tmp_path / "out--chain"))
    assert [n for n in names if n.endswith(".mvc")] == [f"ckpt-{i:04d}.mvc"
                                                        for i in range(1, len(jobs) + 1)]
    assert "dma-disk.img" in names
    for folder in ("out", "out--chain"):
        copy = tmp_path / f"{folder}-copy"
        shutil.copytree(tmp_path / folder, copy)               # new mtimes: verified in full
        path = copy / os.path.basename(last.location)
        done = run_cli("resume", str(path), "--engine", engine, "--checkpoint-dir",
                       str(tmp_path / f"store-{folder}"), cwd=tmp_path)
        assert done.returncode == final["exit_status"], done.stderr.decode()
        assert done.stdout.decode("latin-1") == final["output_latin1"][_written(path):]
        if folder == "out--chain":                          # each parent resumes there too
            first = copy / "ckpt-0001.mvc"
            done = run_cli("resume", str(first), "--engine", engine, "--checkpoint-dir",
                           str(tmp_path / "store-first"), cwd=tmp_path)
            assert done.returncode == final["exit_status"], done.stderr.decode()


# --- the command line and the REPL -------------------------------------------------------

def test_cli_run_incremental(tmp_path, engine):
    (tmp_path / "p.asm").write_text(PAGES)
    done = run_cli("run", "p.asm", "--incremental", "--engine", engine, cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 75, err
    assert "ckpt-0002.mvc (incremental: 1 page(s) written since ckpt-0001" in err
    plain = run_cli("run", "p.asm", "--engine", engine, "--checkpoint-dir", "plain",
                    cwd=tmp_path)
    assert plain.stdout == done.stdout and plain.returncode == 75
    assert read_checkpoint(str(tmp_path / "plain" / "ckpt-0002.mvc")).parent is None
    for n in range(1, 5):
        path = tmp_path / "checkpoints" / f"ckpt-{n:04d}.mvc"
        assert (read_checkpoint(str(path)).parent is None) == (n == 1)
        again = run_cli("resume", str(path), "--engine", engine, "--checkpoint-dir",
                        f"again{n}", cwd=tmp_path)
        assert again.returncode == 75 and again.stdout == done.stdout[_written(path):]
    assert "--chain" in run_cli("export", "--help").stdout.decode()
    assert "--incremental" in run_cli("run", "--help").stdout.decode()


def test_repl_checkpoint_incremental(tmp_path, engine):
    (tmp_path / "p.asm").write_text(PAGES.replace("ckpt", "nop"))
    (tmp_path / "cmds").write_text("load p.asm\nstep 50\ncheckpoint --incremental\nstep 4\n"
                                   "checkpoint -i two\nstep 4\ncheckpoint three\nsync\n"
                                   "restore two\ncontinue\n")
    done = run_cli("repl", "--batch", "cmds", "--engine", engine, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "a full checkpoint: the first of this machine" in out
    assert "incremental: 1 page(s) written since its parent ckpt-0001" in out
    assert "exit status 75" in out
    assert read_checkpoint(str(tmp_path / "checkpoints" / "two.mvc")).parent["name"] == \
        "ckpt-0001"
    assert read_checkpoint(str(tmp_path / "checkpoints" / "three.mvc")).parent is None


def test_checkpoint_format_is_still_2():
    """Full files are laid out and versioned as before (older minivm read them);
    an incremental file is a format-2 file with one more record."""
    assert CHECKPOINT_VERSION == 2 and STRIDE == 4100


class FailingStore(FileStore):
    """A file store whose checkpoint ``fail`` cannot be committed (a full disk)."""

    def __init__(self, folder, fail):
        super().__init__(folder)
        self.fail = fail

    def begin(self, name):
        pending = super().begin(name)
        if name == self.fail:
            def commit():
                raise OSError(28, "No space left on device")
            pending._commit = commit
        return pending


def test_a_failed_parent_fails_its_child_and_the_next_skips_both(tmp_path, engine):
    """ckpt-0002 fails; ckpt-0003, taken while it was still saving, names it and
    fails too; ckpt-0004, taken after, names ckpt-0001 and stores every page
    written since then: it resumes to the run."""
    source = PAGES.replace("ckpt", "nop")
    machine = _machine(source, engine)
    reports = []
    cp = Checkpointer(machine, FailingStore(str(tmp_path / "ck"), "ckpt-0002"),
                      report=reports.append, incremental=True)
    machine.run(50)
    first = cp.take("repl", incremental=True)
    cp.sync()
    machine.run(4)                                   # one page written
    second = cp.take("repl", incremental=True)
    machine.run(4)                                   # the same page, cleared
    third = cp.take("repl", incremental=True)
    cp.sync()
    assert (first.status, second.status, third.status) == ("complete", "failed", "failed")
    assert "its parent checkpoint ckpt-0002 failed" in third.error
    fourth = cp.take("repl", incremental=True)
    assert fourth.parent is first and fourth.pages_total == 1
    final = make_golden.final_of(machine, machine.run(10_000_000))
    cp.finish_all()
    assert fourth.status == "complete"
    assert_resumes_as_run(fourth.location, final, 0, tmp_path / "again", engine)
    assert any("ckpt-0003 failed" in r for r in reports)


@pytest.mark.parametrize("eager", [False, True], ids=["lazy", "eager"])
def test_a_resumed_chain_checkpoints_again(tmp_path, engine, eager):
    """A machine resumed from the middle of a chain (its pages still in the
    chain's files, when lazy) takes a new incremental chain of its own: the
    first full (its saver reads the old chain's pages), the next incremental;
    each resumes to the run."""
    final, jobs = run_incremental(PAGES, tmp_path / "ck", engine)
    machine, _ = resume(read_checkpoint(jobs[1].location), FileStore(str(tmp_path / "r")),
                        console_sink=BufferSink(), console_input=ConsoleInput(b""),
                        engine=engine, eager=eager)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck2")), incremental=True)
    again = make_golden.final_of(machine, machine.run(10_000_000))
    cp.finish_all()
    assert [j.incremental for j in cp.jobs] == [False, True]
    assert cp.jobs[0].pages_saved == 11 and cp.jobs[1].pages_saved == 0
    for key in ("tick", "regs", "memory_sha256"):
        assert again[key] == final[key]
    for job in cp.jobs:
        assert_resumes_as_run(job.location, final, 0, tmp_path / f"x-{job.name}", engine)


def test_checkpoints_in_memory_are_never_parents(engine):
    """A file cannot name a checkpoint held in memory: in a memory store every
    checkpoint is full (and the run is unchanged)."""
    from minivm.store import MemoryStore
    machine = _machine(PAGES, engine)
    cp = Checkpointer(machine, MemoryStore(), incremental=True)
    machine.run(10_000_000)
    cp.finish_all()
    assert [j.status for j in cp.jobs] == ["complete"] * 4
    assert not any(j.incremental for j in cp.jobs)
    assert machine.regs[0] == 75


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
@given(ticks=st.lists(st.integers(0, 6000), min_size=1, max_size=5),
       mode=st.sampled_from(["cow", STOP_COPY]))
def test_dma_chains_at_random_ticks(engine, ticks, mode):
    """The DMA program (requests in flight, P5-P8) checkpointed at random ticks
    on top of its own two ckpt: every file of the chain resumes to the run."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        disk = dma_disk(tmp)
        final, jobs = run_incremental(DMA, tmp / "ck", engine, mem=64 << 10, disk_path=disk,
                                      schedule=ticks, mode=mode)
        assert all(j.status == "complete" for j in jobs)
        assert all(j.incremental for j in jobs[1:])
        for job in jobs:
            assert_resumes_as_run(job.location, final, _written(job.location),
                                  tmp / f"r-{job.name}", engine)
