"""The real-sized guests of benchmarks/guests/ on both engines.

Each guest (a quicksort, a Brainf*** interpreter, a CRC-32 over disk blocks
read by DMA) runs at a small size on every engine in minivm.engine.ENGINES.
Its output must be what benchmarks/guests/guests.py computes in plain Python
(sorted(), a Python BF interpreter, zlib.crc32), and every engine must leave
bit-identical state: stop, output, tick, pc, registers, every byte of
memory, the devices and the disk. The blocks engine runs with its default
compile threshold and with THRESHOLD = 1 (almost everything compiled).
Then a checkpoint taken in the middle of an interp run is resumed on each
engine, to the same end. benchmarks/programs.py measures their speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "guests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from guests import GUESTS, Guest  # noqa: E402

from minivm.assembler import assemble  # noqa: E402
from minivm.checkpoint import Checkpointer  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.disks import open_disk  # noqa: E402
from minivm.engine import ENGINES, blocks  # noqa: E402
from minivm.machine import Machine  # noqa: E402
from minivm.resume import read_checkpoint, resume  # noqa: E402
from minivm.store import FileStore  # noqa: E402
from support import threshold  # noqa: E402

MAX_TICKS = 2_000_000


def new_machine(guest: Guest, engine: str, folder: Path, size: int | None = None) -> Machine:
    size = guest.small if size is None else size
    disk = None
    if guest.disk is not None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "disk.img"
        path.write_bytes(guest.disk(size))
        disk = open_disk(str(path))
    blocks.clear_code_cache()
    return Machine(assemble(guest.source(size), str(guest.path)), disk=disk,
                   console_sink=BufferSink(), console_input=ConsoleInput(), engine=engine)


def observe(m: Machine, stop) -> dict:
    memory = m.memory
    backing = m.disk.backing
    return {
        "stop": str(stop),
        "output": bytes(m.console.sink.data),
        "tick": m.tick,
        "pc": m.pc,
        "regs": list(m.regs),
        "halted": m.halted,
        "memory": {i: memory.page_bytes(i) for i in memory.nonzero_page_indexes()},
        "devices": m.save_state(),
        "disk": None if backing is None else backing.read_blocks(0, backing.block_count),
    }


def close(m: Machine) -> None:
    if m.disk.backing is not None:
        for layer in m.disk.backing.chain():
            layer.close()


def assert_same(runs: dict, what: str) -> None:
    first, reference = ENGINES[0], runs[ENGINES[0]]
    for engine in ENGINES[1:]:
        for key, value in reference.items():
            assert runs[engine][key] == value, f"{what}: {key} differs, {first} vs {engine}"


def test_each_guest_is_real_sized():
    assert [g.name for g in GUESTS] == ["sort", "bf", "checksum"]
    for g in GUESTS:
        assert g.lines() >= 100, g.file
        assert g.small < g.quick < g.full


def test_size_line_is_required(tmp_path):
    g = Guest("x", "x.asm", 3, 2, 1, lambda n: b"")
    object.__setattr__(g, "file", "../../programs/hello.asm")
    with pytest.raises(ValueError, match="no single '.equ SIZE, N' line"):
        g.source(5)


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "default"])
@pytest.mark.parametrize("guest", GUESTS, ids=lambda g: g.name)
def test_guest_same_on_every_engine(guest, eager, tmp_path):
    runs = {}
    with threshold(1 if eager else blocks.THRESHOLD):
        for engine in ENGINES:
            m = new_machine(guest, engine, tmp_path / engine)
            runs[engine] = observe(m, m.run(MAX_TICKS))
            if engine == "blocks" and eager:
                assert blocks.state_of(m).regions      # compiled code did run
            close(m)
    assert_same(runs, guest.file)
    final = runs[ENGINES[0]]
    assert final["stop"] == "halt" and final["regs"][0] == 0
    assert final["output"] == guest.expected(guest.small)


@pytest.mark.parametrize("guest", GUESTS, ids=lambda g: g.name)
def test_guest_checkpoint_in_the_middle(guest, tmp_path):
    """A checkpoint half-way through an interp run, resumed on every engine."""
    m = new_machine(guest, "interp", tmp_path / "full")
    total = m.run(MAX_TICKS) and m.tick
    close(m)
    m = new_machine(guest, "interp", tmp_path / "ck")
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck" / "store")), schedule=[total // 2])
    original = observe(m, m.run(MAX_TICKS))
    cp.finish_all()
    close(m)
    [job] = cp.jobs
    assert job.status == "complete", job.progress()
    assert 0 < job.tick < total
    written = read_checkpoint(job.location).state["console"]["bytes_written"]
    runs = {}
    with threshold(1):
        for engine in ENGINES:
            blocks.clear_code_cache()
            r, _ = resume(read_checkpoint(job.location),
                          FileStore(str(tmp_path / f"resume-{engine}")),
                          console_sink=BufferSink(), console_input=ConsoleInput(),
                          engine=engine)
            runs[engine] = observe(r, r.run(MAX_TICKS))
            close(r)
    assert_same(runs, f"resume of {guest.file}")
    resumed = runs[ENGINES[-1]]
    for key in ("stop", "regs", "pc", "tick", "halted", "memory", "disk"):
        assert resumed[key] == original[key], key
    assert resumed["output"] == original["output"][written:]
    assert original["output"] == guest.expected(guest.small)


def test_benchmark_script_runs(capsys):
    import programs
    assert programs.main(["--quick", "--repeat", "1", "--only", "bf"]) == 0
    out = capsys.readouterr().out
    assert "bf.asm" in out and "identical ticks" in out
    with pytest.raises(SystemExit) as exit:
        programs.main(["--repeat", "0"])
    assert exit.value.code == 2
