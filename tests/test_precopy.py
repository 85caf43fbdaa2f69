"""Pre-copy checkpoints (minivm/precopy.py, docs/protocol.md "Three strategies").

Small guests whose pre-copy rounds span many slices, with disk DMA in flight
during the rounds and at the final stop: each checkpoint resumes (eagerly and
lazily) to the uninterrupted run's final state bit for bit, on both engines;
taking it changes nothing the guest sees; the checkpointed disk holds exactly
the writes issued before the final stop; a DMA read landing during a round
dirties its page; the rounds converge, or stop at the round limit, as the
dirty rate says. Everything here is counted in ticks and pages.
"""

from __future__ import annotations

import pytest

from ckpt_strategies import (Config, assemble_text, check_checkpointed_disk, check_resumed,
                             disk_pattern, read_checkpoint, resume_run, run_original,
                             run_reference)
from minivm.checkpoint import MODES, Checkpointer
from minivm.devices import BufferSink, ConsoleInput
from minivm.resume import resume
from minivm.labguest import lab_source
from minivm.store import FileStore

MEMORY = 256 * 1024
SLOW = {"pages_per_slice": 2, "slice_ticks": 50, "threshold": 1, "max_rounds": 5}


def lab_config(engine: str) -> Config:
    return Config(memory_size=MEMORY, disk_content=disk_pattern(), engine=engine)


# 45: a rate whose first final stop comes with a disk read in flight (asserted below)
@pytest.mark.parametrize("rate", [45, 200])
def test_precopy_rounds_with_dma_in_flight_resume_bit_identical(rate, tmp_path, engine):
    image = assemble_text(lab_source(MEMORY, rate=rate, steps=300, working_set=8))
    config = lab_config(engine)
    ref = run_reference(image, config, tmp_path / "ref")
    assert ref.final.stop == "halt"
    # 2000 comes during the rounds of 1500, so it joins them (their final stop
    # takes both); 3500 starts rounds of its own where the run is long enough
    original = run_original(image, config, tmp_path / "pc", mode="precopy",
                            schedule=[1500, 2000, 3500], precopy_options=SLOW)
    assert not original.final.differences(ref.final, skip=()), "precopy changed the run"
    assert len(original.jobs) >= 2, "no pre-copy checkpoint stopped before the halt"
    lead, joined = original.jobs[0].precopy, original.jobs[1].precopy
    assert joined.leader is lead and lead.joined == [joined] and joined.tick == 2000
    assert original.jobs[1].tick == original.jobs[0].tick
    if rate == 45:
        assert len(original.jobs) == 3 and original.jobs[2].precopy.leader is None
    for job in original.jobs:
        run = job.precopy
        assert job.mode == "precopy" and job.tick > run.tick
        assert len(run.rounds) > 1 and run.written_twice > 0
        check_resumed(ref, original, job, tmp_path / "resumed")
        check_checkpointed_disk(ref, config, job)
        for eager in (False, True):         # both ways, whatever check_resumed chose
            _, final = resume_run(job.location, tmp_path / "again", eager=eager, engine=engine)
            assert not final.differences(original.final), f"{job.name}, eager={eager}"
    # the first checkpoint's final stop came with a read in flight: it landed in
    # the staging copy too (P5), or the resumed runs above would differ
    first = original.jobs[0]
    assert any(" read " in line for line in first.inflight_at_stop), first.inflight_at_stop
    assert read_checkpoint(first.location).meta["mode"] == "precopy"


def test_every_mode_resumes_to_the_same_state(tmp_path, engine):
    """The same run, a checkpoint asked for at the same tick in each mode: every
    checkpoint, resumed eagerly and lazily, ends bit-identical to the run."""
    image = assemble_text(lab_source(MEMORY, rate=100, steps=800, working_set=6))
    config = lab_config(engine)
    ref = run_reference(image, config, tmp_path / "ref")
    at = next(issued for issued, _, _ in ref.requests if issued > 1000) + 2   # DMA in flight
    for mode in MODES:
        original = run_original(image, config, tmp_path / mode, mode=mode, schedule=[at],
                                precopy_options=SLOW if mode == "precopy" else None)
        assert not original.final.differences(ref.final, skip=()), mode
        assert len(original.jobs) == 1, mode
        job = original.jobs[0]
        if mode != "precopy":           # (its stop comes later: test above)
            assert job.inflight_at_stop, f"{mode}: no DMA in flight at the stop"
        for eager in (False, True):
            _, final = resume_run(job.location, tmp_path / f"{mode}-r", eager=eager,
                                  engine=engine)
            assert not final.differences(ref.final, skip=("output",)), (mode, eager)


DMA_DIRTIES = """
        mov r1, 0x10000
touch:  bge r1, 0x20000, go        ; pages 16-31: round 1 takes 16 slices
        st r1, [r1]
        add r1, r1, 4096
        jmp touch
go:     st r1, [0x8000]            ; page 8 holds data: round 1 copies it first
        ckpt                       ; pre-copy starts here
        out 0x20, 3
        out 0x21, 0x8000
        out 0x22, 1
        out 0x23, 1                ; a read into page 8, landing after ~110 ticks
        mov r2, 400
spin:   sub r2, r2, 1
        bne r2, 0, spin
        halt
"""


def test_a_dma_read_landing_during_a_round_dirties_its_page(tmp_path, engine):
    config = lab_config(engine)
    image = assemble_text(DMA_DIRTIES)
    original = run_original(image, config, tmp_path / "pc", mode="precopy",
                            precopy_options={"pages_per_slice": 1, "slice_ticks": 10,
                                             "threshold": 0, "max_rounds": 4})
    job, = original.jobs
    run = job.precopy
    assert run.rounds[0].copied == 17              # page 8 and pages 16-31
    assert run.rounds[0].dirty == 1                # page 8, by the read (no store ran)
    assert run.rounds[1].copied == 1 and run.written_twice == 1
    ckpt = read_checkpoint(job.location)
    assert bytes(ckpt.pages[8][:512]) == disk_pattern()[3 * 512:4 * 512]


@pytest.mark.parametrize("rate, converges", [(10, True), (400, False)])
def test_rounds_converge_or_hit_the_limit(rate, converges, tmp_path, engine):
    image = assemble_text(lab_source(MEMORY, rate=rate, steps=120 if rate < 100 else 1200,
                                     working_set=24, dma=False))
    options = {"pages_per_slice": 4, "slice_ticks": 100, "threshold": 2, "max_rounds": 6}
    config = Config(memory_size=MEMORY, engine=engine)
    original = run_original(image, config, tmp_path / "pc", mode="precopy", schedule=[500],
                            precopy_options=options)
    run = original.jobs[0].precopy
    if converges:
        assert len(run.rounds) < options["max_rounds"] and run.final_pages <= 2
    else:
        assert len(run.rounds) == options["max_rounds"] and run.final_pages > 2


def test_a_run_that_halts_during_the_rounds_takes_no_checkpoint(tmp_path, engine):
    image = assemble_text(lab_source(MEMORY, rate=50, steps=40, working_set=4, dma=False))
    config = Config(memory_size=MEMORY, engine=engine)
    notes = []
    original = run_original(image, config, tmp_path / "pc", mode="precopy", schedule=[300],
                            precopy_options={"pages_per_slice": 1, "slice_ticks": 100},
                            report=notes.append)
    assert original.jobs == [] and original.final.stop == "halt"
    assert any("was not taken" in n and "halted at tick" in n for n in notes), notes


def test_precopy_refuses_incremental(tmp_path):
    from minivm.errors import MinivmError
    from ckpt_strategies import new_machine
    machine = new_machine(assemble_text("halt"), Config(), None)
    with pytest.raises(MinivmError, match="not precopy"):
        Checkpointer(machine, FileStore(str(tmp_path)), mode="precopy", incremental=True)


def test_the_api_takes_precopy_checkpoints(tmp_path):
    import minivm
    big = 4 << 20                         # 992 pages: round 1 takes 16 slices
    source = lab_source(big, rate=50, steps=300, working_set=8, dma=False)
    image = minivm.assemble(source)
    plain = minivm.run(image, mem=big)
    with minivm.boot(image, mem=big, checkpoint_mode="precopy",
                     checkpoint_dir=str(tmp_path)) as vm:
        vm.run(max_ticks=5000)
        path = vm.checkpoint()            # rounds cut short: the final stop copies the rest
        job = vm.checkpointer.jobs[0]
        assert job.tick == 5000 and job.precopy.final_pages > 900
        assert len(read_checkpoint(path).pages) == 992    # every page it touched
        rest = vm.run()
    assert (rest.ticks, rest.regs, rest.output) == (plain.ticks, plain.regs, plain.output)
    with minivm.restore(path, checkpoint_dir=str(tmp_path / "r")) as again:
        resumed = again.run()
    assert (resumed.ticks, resumed.regs) == (plain.ticks, plain.regs)
    assert plain.output == b"300\n"


# --- what decides a final stop is in the checkpoint (found by test_resume's generator) -------

ZERO_PAGE_THEN_SPIN = """
        mov r1, 0
        st r1, [{zero}]           ; allocated by the store, and all zeros
        mov r1, 7
        st r1, [12288]          ; pages 3 to 5: data
        st r1, [16384]
        st r1, [20480]
        ckpt                    ; A: a checkpoint stores only non-zero pages
        mov r2, 300
spin:   sub r2, r2, 1
        bgt r2, 0, spin
        halt
"""
ONE_ROUND = {"pages_per_slice": 1, "slice_ticks": 8, "threshold": 0, "max_rounds": 1}


def test_a_page_of_zeros_does_not_move_a_later_final_stop(tmp_path, engine):
    """Round 1 copies the pages that hold data, not every allocated page: the
    running machine has page 2 (zeros), a machine resumed from A does not, and
    the later checkpoint B must still stop at the same tick in both."""
    # page 2; the short last page of a memory of 64 KiB + 100 bytes
    for size, zero in ((64 * 1024, 8192), (64 * 1024 + 100, 65536)):
        _zeros_then(tmp_path / str(size), engine, size, zero)


def _zeros_then(tmp_path, engine, size: int, zero: int) -> None:
    image = assemble_text(ZERO_PAGE_THEN_SPIN.format(zero=zero))
    config = Config(memory_size=size, engine=engine)
    original = run_original(image, config, tmp_path / "o", mode="precopy", schedule=[100],
                            precopy_options=ONE_ROUND)
    a, b = original.jobs
    assert (a.origin, b.origin) == ("ckpt", "host") and b.precopy.tick == 100
    for eager, jobs in _later_checkpoints(tmp_path, a, 100, engine):
        assert [job.tick for job in jobs] == [b.tick], f"eager={eager}"
        assert jobs[0].precopy.rounds[0].copied == b.precopy.rounds[0].copied


def _later_checkpoints(tmp_path, a, tick: int, engine: str):
    """(eager, the pre-copy checkpoints taken) of runs resumed from ``a``,
    lazily and eagerly, asked for a checkpoint at ``tick`` as the original was."""
    for eager in (False, True):
        store = FileStore(str(tmp_path / f"r{eager}"))
        machine, _ = resume(read_checkpoint(a.location), store, console_sink=BufferSink(),
                            console_input=ConsoleInput(b""), eager=eager, engine=engine)
        cp = Checkpointer(machine, store, mode="precopy", schedule=[tick],
                          precopy_options=ONE_ROUND)
        machine.run(10 ** 6)
        cp.finish_all()
        yield eager, cp.jobs


def test_a_request_during_the_rounds_is_taken_at_their_final_stop(tmp_path, engine):
    """A guest ckpt during the rounds of a host request joins them: nothing is
    left waiting at the final stop for a resumed run to lose."""
    image = assemble_text(ZERO_PAGE_THEN_SPIN.format(zero=8192).replace("ckpt ",
                                                                       "nop\n        ckpt "))
    config = Config(memory_size=64 * 1024, engine=engine)
    original = run_original(image, config, tmp_path / "o", mode="precopy", schedule=[6],
                            precopy_options=dict(ONE_ROUND, slice_ticks=40))
    host, guest = original.jobs
    assert (host.origin, guest.origin) == ("host", "ckpt")
    assert host.tick == guest.tick > guest.precopy.tick > host.precopy.tick == 6
    assert guest.precopy.leader is host.precopy and "during the rounds of" in \
        guest.precopy.describe()
    for job in original.jobs:
        _, final = resume_run(job.location, tmp_path / job.name, engine=engine)
        assert not final.differences(original.final), job.name


READ_IN_FLIGHT = """
        mov r1, 7
        st r1, [4096]           ; page 1: data
        out 0x20, 0             ; read block 0 ...
        out 0x21, 12288         ; ... into page 3, zeros until it lands
        out 0x22, 1
        out 0x23, 1
        ckpt                    ; A, with the read in flight
        mov r3, 300
spin:   sub r3, r3, 1
        bgt r3, 0, spin
drain:  in r12, 0x24
        bne r12, 0, drain
        halt
"""


def test_a_read_in_flight_at_a_checkpoint_does_not_move_a_later_final_stop(tmp_path, engine):
    """The page a read in flight at A will write holds zeros in the original
    run until the read lands, but the read's data at once in a run resumed
    from A (A's memory has it, P5). Round 1 of B, asked for meanwhile, counts
    that page either way, so B stops at the same tick in both runs (found by
    test_resume's generator, 2026-12-07)."""
    image = assemble_text(READ_IN_FLIGHT)
    config = Config(memory_size=64 * 1024, disk_content=disk_pattern(), engine=engine)
    original = run_original(image, config, tmp_path / "o", mode="precopy", schedule=[60],
                            precopy_options=ONE_ROUND)
    a, b = original.jobs
    assert (a.origin, b.origin) == ("ckpt", "host") and b.precopy.tick == 60
    assert any(" read " in line for line in a.inflight_at_stop)
    landed = next(r[5] for r in original.checkpointer.completed_requests)   # its done tick
    assert b.tick < landed, "B's round 1 must run while the read is in flight"
    for eager, jobs in _later_checkpoints(tmp_path, a, 60, engine):
        assert [job.tick for job in jobs] == [b.tick], f"eager={eager}"
