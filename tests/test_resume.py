"""The guarantees of docs/contract.md, section 5, as tests.

* Resume equivalence: resuming a checkpoint taken at tick k gives exactly the
  console output the original run produced after k, and the same final
  registers, pc, tick, memory (every byte), disk contents and device state.
  Checked for every program in programs/ (with a fresh 64 KiB disk for the
  programs that use ports 0x20-0x26), at every k for short runs and at a
  spread of k otherwise, in both checkpoint modes, which must also agree.
* Invisibility: the original run, checkpoints and all, ends exactly like the
  reference run of the same program with ``nop`` for ``ckpt`` and no
  checkpointer (except P8, shown in test_p8_is_the_documented_exception).
* The checkpointed disk: after the original run, the disk file in use when
  the checkpoint was taken holds the writes issued before it, including those
  still in flight (P5), and none issued after it.
* The same properties for generated programs (ckpt_strategies.ckpt_programs).
* programs/checkpoint_demo.asm through the CLI, with its exact output.

Expected values come from the contract: a reference run without checkpoints is
the specification of what the guest sees (invisibility), so every
comparison is against it or against bytes written out by hand.
"""

from __future__ import annotations

import math
from dataclasses import replace
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckpt_strategies import (DISK_SIZE, Config, assemble_text, check_checkpointed_disk,
                             check_resumed, ckpt_programs, disk_pattern, gen_config,
                             list_programs, program_image, read_checkpoint, run_original,
                             run_reference, uses_disk, engine_of_mode)
from minivm.checkpoint import COW, MODES, PRECOPY, STOP_COPY
from minivm.engine import ENGINES
from support import run_cli

CORPUS = list_programs()
# Runs shorter than EVERY_K_BELOW ticks get a checkpoint at every tick; runs
# shorter than STRIDED_BELOW at every few ticks (about 400 in all) plus every
# tick around each disk request's issue and completion; longer runs a spread of
# SPREAD ticks. MINIVM_EXHAUSTIVE=1 checks every tick below 3000 (slow).
EXHAUSTIVE = bool(os.environ.get("MINIVM_EXHAUSTIVE"))
EVERY_K_BELOW = 3000 if EXHAUSTIVE else 1000
STRIDED_BELOW = 3000
STRIDED_COUNT = 400
SPREAD = 50                 # otherwise this many k, including 0 and just before halt
BATCH = 25                  # checkpoints taken in one original run (disk chains stay short)
SINGLE = 6                  # k values also checked with a single checkpoint per run


def _uses_disk(path: Path) -> bool:
    try:
        return uses_disk(program_image(path))
    except Exception:       # a program that does not assemble fails in its own test
        return False


DISK_CORPUS = [p for p in CORPUS if _uses_disk(p)]


def corpus_config(image, engine: str) -> Config:
    return Config(memory_size=1 << 20,
                  disk_content=bytes(DISK_SIZE) if uses_disk(image) else None, engine=engine)


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    """These tests take thousands of checkpoints; fsync makes files durable
    against a host crash, which nothing here looks at, and costs most of the
    time. Contents, names and renames are untouched."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    cache = {}

    def get(key, image, config):
        if key not in cache:
            cache[key] = run_reference(image, config, tmp_path_factory.mktemp("ref"))
        return cache[key]

    return get


def spread(last: int, n: int) -> list[int]:
    """n ticks from 0 to ``last`` inclusive, evenly spaced."""
    if last <= 0:
        return [0]
    return sorted({round(i * last / (n - 1)) for i in range(n)})


def choose_ks(ref) -> list[int]:
    """Every tick before the halt for short runs; else a stride or a spread (0 and
    T-1 included), plus the ticks around disk requests (DMA in flight)."""
    total = ref.final.tick
    last = total - 1
    if total < EVERY_K_BELOW:
        return list(range(total))
    if total < STRIDED_BELOW:
        ks = set(range(0, total, math.ceil(total / STRIDED_COUNT))) | {last}
        for issued, done, _ in ref.requests[:12]:
            ks |= set(range(issued - 2, issued + 3)) | set(range(done - 2, done + 3))
    else:
        ks = set(spread(last, SPREAD))
        for issued, done, _ in ref.requests[:8]:
            ks |= {issued, issued + 1, (issued + done) // 2, done}
    return sorted(k for k in ks if 0 <= k <= last)


def batches(ks: list[int], size: int = BATCH) -> list[list[int]]:
    """Split ks into interleaved batches, so the checkpoints of one run are spread out."""
    n = max(1, math.ceil(len(ks) / size))
    return [ks[i::n] for i in range(n)]


def check_invisible(ref, original, what: str) -> None:
    if original.p8:
        return                      # the documented exception (docs/contract.md, P8)
    diffs = original.final.differences(ref.final, skip=())
    assert not diffs, f"{what}: taking checkpoints changed the run: {diffs}"


def check_distinct_files(original) -> None:
    """Every checkpoint of a run is its own file (one taken while an earlier one
    is still being saved must not replace it)."""
    locations = [job.location for job in original.jobs]
    clashes = sorted({loc for loc in locations if locations.count(loc) > 1})
    assert not clashes, (
        f"{len(locations)} checkpoints were saved to {len(set(locations))} file(s): "
        f"{[(j.name, j.tick) for j in original.jobs if j.location in clashes][:6]} share "
        f"{[os.path.basename(c) for c in clashes][:3]}, so all but one of them are lost")


def check_program(image, config, ref, workdir: Path, ks, single, *, check_disk=False,
                  salt: int = 0):
    """Equivalence (and invisibility) at the given ks, in both modes, batched and
    one checkpoint per run, each mode on one engine (engine_of_mode(mode, salt));
    returns {mode: {(origin, tick): resumed Final}}."""
    results = {}
    for mode in MODES:
        config = replace(config, engine=engine_of_mode(mode, salt))
        found = results[mode] = {}
        store = workdir / f"{mode}-resumed"
        runs = [(f"{mode}-single{k}", [k]) for k in single]
        runs += [(f"{mode}-batch{i}", batch) for i, batch in enumerate(batches(ks))]
        for tag, schedule in runs:
            original = run_original(image, config, workdir / tag, mode=mode, schedule=schedule)
            check_invisible(ref, original, f"{mode}, checkpoints at {schedule[:5]}...")
            host = [job.tick for job in original.jobs if job.origin == "host"]
            assert original.p8 or host == sorted({ref.boundary(k) for k in schedule}), (
                f"{mode}: host checkpoints asked for at {schedule[:8]}... were taken at "
                f"{host[:8]}..., not at the first boundary at or after each")
            check_distinct_files(original)
            for job in original.jobs:
                found[(job.origin, job.tick)] = check_resumed(ref, original, job, store)
                # (the checkpointed disk in stop-copy mode: test_checkpointed_disk_programs)
                if check_disk and mode == "cow" and config.disk_content is not None \
                        and not original.p8:
                    check_checkpointed_disk(ref, config, job)
    cow, stop_copy = results[COW], results[STOP_COPY]
    assert cow.keys() == stop_copy.keys()
    for key in cow:
        diffs = cow[key].differences(stop_copy[key], skip=())
        assert not diffs, f"checkpoint {key}: cow and stop-copy resumes differ: {diffs}"
    for key in results[PRECOPY].keys() & cow.keys():    # (pre-copy may stop later)
        diffs = cow[key].differences(results[PRECOPY][key], skip=())
        assert not diffs, f"checkpoint {key}: cow and precopy resumes differ: {diffs}"
    return results


# --- every program in programs/ -------------------------------------------------------------

@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_resume_equivalence_programs(path, references, tmp_path):
    image = program_image(path)
    config = corpus_config(image, ENGINES[0])
    ref = references(path.name, image, config)
    assert ref.final.stop in ("halt", "fault"), f"{path.name} did not end: {ref.final.stop}"
    assert ref.final.tick > 0
    ks = choose_ks(ref)
    assert ks[0] == 0 and ks[-1] == ref.final.tick - 1
    results = check_program(image, config, ref, tmp_path, ks, spread(ref.final.tick - 1, SINGLE),
                            salt=CORPUS.index(path))
    assert len(results["cow"]) >= min(len(ks), 2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", DISK_CORPUS, ids=lambda p: p.name)
def test_checkpointed_disk_programs(path, mode, references, tmp_path):
    """After the original run, the parent disk file holds exactly the writes
    issued before the checkpoint (in flight ones included), none issued after."""
    image = program_image(path)
    config = corpus_config(image, engine_of_mode(mode, DISK_CORPUS.index(path)))
    ref = references(path.name, image, config)
    last = ref.final.tick - 1
    ks = set(spread(last, 8))
    for issued, done, _, _ in ref.writes[:4]:
        ks |= {issued, issued + 1, (issued + done) // 2, done}
    ks = sorted(k for k in ks if k <= last)
    in_flight_seen = False
    for k in ks:
        original = run_original(image, config, tmp_path / f"k{k}", mode=mode, schedule=[k])
        job = next(j for j in original.jobs if j.origin == "host")
        with open(original.disk_path, "rb") as f:
            parent = f.read()
        expected = ref.disk_at(job.tick, config.disk_content)
        assert parent == expected, (
            f"{path.name}, {mode}, checkpoint at tick {job.tick}: the parent disk file does "
            f"not hold exactly the writes issued before it (blocks differing: "
            f"{sorted({i // 512 for i in range(len(parent)) if parent[i] != expected[i]})[:10]}; "
            f"writes in flight at the checkpoint: "
            f"{[(w[0], w[1], w[2]) for w in ref.writes_in_flight_at(job.tick)]})")
        in_flight_seen |= bool(ref.writes_in_flight_at(job.tick))
    if ref.writes:
        assert in_flight_seen, "no checkpoint was taken with a write in flight"


# --- timer interrupts pending, DMA in flight ---------------------------------------------------

PENDING_PROGRAM = """
; timer and disk interrupts pend while interrupts are disabled and DMA is in flight
        out 0x11, on_timer
        out 0x26, on_disk
        out 0x10, 23            ; timer every 23 ticks
        ei
        mov r1, 0
fill:   mul r2, r1, 2654435761
        add r2, r2, r1
        st r2, [r1 + 0x1000]
        add r1, r1, 12
        blt r1, 1536, fill
        di
        out 0x20, 2             ; W1: blocks 2..4 <- 0x1000
        out 0x21, 0x1000
        out 0x22, 3
        out 0x23, 2
        out 0x20, 9             ; W2: block 9 (part of group 1) <- 0x1200
        out 0x21, 0x1200
        out 0x22, 1
        out 0x23, 2
        out 0x20, 2             ; R1: blocks 2..3 -> 0x3000 (after W1: reads its data)
        out 0x21, 0x3000
        out 0x22, 2
        out 0x23, 1
        out 0x20, 30            ; R2: block 30 -> 0x4400
        out 0x21, 0x4400
        out 0x22, 1
        out 0x23, 1
        mov r3, 60              ; interrupts stay disabled: timer and disk events pend
spin:   st r3, [0x3800]         ; other bytes of R1's page (P7)
        st r3, [0x4000]         ; other bytes of R2's page
        sub r3, r3, 1
        bgt r3, 0, spin
        ei                      ; now they are delivered, in time order
        out 0x20, 40            ; W3: blocks 40..41 <- 0x3800 (R1, still in flight,
        out 0x21, 0x3800        ; lands in 0x3000..0x33ff: not touched until drained)
        out 0x22, 2
        out 0x23, 2
        out 0x20, 12            ; R3: block 12 -> 0x5000
        out 0x21, 0x5000
        out 0x22, 1
        out 0x23, 1
drain:  in r4, 0x24             ; the timer runs: `wait` always has an event to wait for
        beq r4, 0, done
        wait
        jmp drain
done:   out 0x10, 0
        di
        ld r6, [0x3004]         ; what R1 brought
        out 0x01, r6
        out 0x00, 10
        ld r5, [0]
        out 0x01, r5
        out 0x00, 10
        ld r5, [4]
        out 0x01, r5
        out 0x00, 10
        ld r5, [0x5008]
        out 0x01, r5
        out 0x00, 10
        halt
on_timer:
        push r9
        ld r9, [0]
        add r9, r9, 1
        st r9, [0]
        out 0x00, 't'
        pop r9
        iret
on_disk:
        push r9
        ld r9, [4]
        add r9, r9, 1
        st r9, [4]
        in r9, 0x25
        out 0x01, r9
        out 0x00, 32
        pop r9
        iret
"""


def test_resume_with_interrupts_pending_and_dma_in_flight(references, tmp_path, engine):
    image = assemble_text(PENDING_PROGRAM, "pending.asm")
    config = Config(memory_size=64 * 1024, disk_content=disk_pattern(), engine=engine)
    ref = references("pending", image, config)
    assert ref.final.stop == "halt"
    # every 9th tick, and every tick from just before the first request is issued
    # until well into the stretch with interrupts disabled
    first = ref.writes[0][0]
    ks = sorted(set(range(0, ref.final.tick, 9)) | set(range(first - 3, first + 40)))
    check_program(image, config, ref, tmp_path, ks, [0, first + 1, first + 40, ref.final.tick - 1],
                  salt=ENGINES.index(engine),
                  check_disk=True)
    # the case the test is about really happened: a checkpoint with interrupts
    # disabled, timer interrupts pending and requests in flight
    original = run_original(image, config, tmp_path / "probe", mode="cow",
                            schedule=list(range(first - 3, first + 40)))
    both = []
    for job in original.jobs:
        state = read_checkpoint(job.location).state
        pending = [p[3] for p in state["interrupts"]["pending"]]
        if not state["interrupts"]["enabled"] and "timer" in pending and state["disk"]["queue"]:
            both.append(job.tick)
    assert both, "no checkpoint had a timer interrupt pending and DMA in flight"


# --- memory sizes: a short last page, and 4 GiB --------------------------------------------

STACK_PROGRAM = """
        mov r1, 0xcafebabe
        st r1, [0x10]
        push r1                 ; the top of memory (sp starts at the memory size)
        push 77
        ckpt
        pop r2
        pop r3
        add r4, r2, r3
        st r4, [0x14]
        out 0x01, r4
        out 0x00, 10
        halt
"""


def test_resume_with_a_short_last_page(references, tmp_path, engine):
    """5000 bytes of memory: the last page has 904 bytes, and holds the stack."""
    image = assemble_text(STACK_PROGRAM, "stack.asm")
    config = Config(memory_size=5000, engine=engine)
    ref = references("stack-5000", image, config)
    # 0xcafebabe + 77 = 0xcafebb0b, printed signed: 3405691659 - 2^32
    assert ref.final.stop == "halt" and ref.final.output == b"-889275637\n"
    check_program(image, config, ref, tmp_path, list(range(ref.final.tick)), [0],
                  salt=ENGINES.index(engine))
    original = run_original(image, config, tmp_path / "pages", mode="cow")
    ckpt = read_checkpoint(original.jobs[0].location)
    assert sorted(ckpt.pages) == [0, 1] and len(ckpt.pages[1]) == 5000 - 4096
    assert ckpt.pages[1][-8:] == (77).to_bytes(4, "little") + (0xcafebabe).to_bytes(4, "little")


def test_resume_with_4_gib_of_memory(tmp_path):
    """4 GiB must be accepted as a size (docs/isa.md, section 1); sp starts at 2^32 mod 2^32 = 0,
    so the pushes go to the last bytes of the last page."""
    image = assemble_text(STACK_PROGRAM, "stack.asm")
    config = Config(memory_size=1 << 32)
    ref = run_reference(image, config, tmp_path / "ref")
    assert ref.final.stop == "halt"
    assert sorted(ref.final.memory) == [0, (1 << 20) - 1]
    finals = []
    for mode in MODES:
        config = replace(config, engine=engine_of_mode(mode))
        # pre-copy scans the page table 4,096 entries per page of its budget: with
        # 256 pages per slice its round 1 over 2^20 entries ends in the first slice,
        # before this short program does
        original = run_original(image, config, tmp_path / mode, mode=mode,
                                precopy_options={"pages_per_slice": 256}
                                if mode == "precopy" else None)
        assert not original.final.differences(ref.final, skip=())
        (job,) = original.jobs
        finals.append(check_resumed(ref, original, job, tmp_path / f"{mode}-resumed"))
        ckpt = read_checkpoint(job.location)
        assert sorted(ckpt.pages) == [0, (1 << 20) - 1]
    assert not finals[0].differences(finals[1], skip=())


REPEATED_PROGRAM = """
; three checkpoints a few background batches apart, in a memory of more than
; 65536 pages; page 5 is written between and after them
        mov r1, 111
        st r1, [0x5000]
        ckpt
        mov r1, 222
        st r1, [0x5000]         ; a COW fault for checkpoint 1
        mov r3, 1500
s1:     sub r3, r3, 1
        bgt r3, 0, s1
        ckpt
        st r1, [0x5004]         ; a COW fault for checkpoint 2
        mov r3, 6000
s2:     sub r3, r3, 1
        bgt r3, 0, s2
        ckpt
        ld r4, [0x5000]
        out 0x01, r4            ; 222
        out 0x00, 10
        mov r1, 333
        st r1, [0x5000]         ; must be a COW fault for checkpoint 3
        ld r4, [0x5000]
        out 0x01, r4            ; 333
        out 0x00, 10
        halt
"""


@pytest.mark.parametrize("mode", MODES)
def test_repeated_checkpoints_with_large_memory(mode, tmp_path):
    """1 GiB of memory (262144 pages): the memory's page tables are big enough
    that housekeeping between checkpoints spans several background batches.
    Every store after a checkpoint must still be a COW fault (P3): the guest
    sees its own writes, and each checkpoint holds page 5 as it was."""
    image = assemble_text(REPEATED_PROGRAM, "repeated.asm")
    config = Config(memory_size=1 << 30, engine=engine_of_mode(mode))
    ref = run_reference(image, config, tmp_path / "ref")
    assert ref.final.output == b"222\n333\n"
    original = run_original(image, config, tmp_path / mode, mode=mode)
    diffs = original.final.differences(ref.final, skip=())
    assert not diffs, f"the checkpoints changed the run: {diffs}"
    expected_word = [111, 222, 222]
    for job, word in zip(original.jobs, expected_word):
        ckpt = read_checkpoint(job.location)
        assert int.from_bytes(ckpt.pages[5][:4], "little") == word, \
            f"{job.name} (tick {job.tick}) holds a write made after it in page 5"
        check_resumed(ref, original, job, tmp_path / f"{mode}-resumed")


# --- invisibility of the ckpt instruction --------------------------------------------------------

CKPT_PROGRAM = """
; ckpt between every kind of activity; prints what the guest can observe
        out 0x11, on_timer
        out 0x10, 31
        ei
        mov r1, 7
        st r1, [0x1800]
        ckpt                    ; nothing in flight
        in r2, 0x12             ; the clock: a ckpt costs exactly one tick, like nop
        out 0x01, r2
        out 0x00, 10
        out 0x20, 3
        out 0x21, 0x1000
        out 0x22, 2
        out 0x23, 2             ; a write in flight
        out 0x20, 20
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 1             ; and a read
        ckpt
        in r2, 0x24
        out 0x01, r2            ; 2 in flight, checkpoint or not
        out 0x00, 10
        in r2, 0x25
        out 0x01, r2
        out 0x00, 10
        st r2, [0x2800]         ; other bytes of the read's page
        di
        ckpt                    ; interrupts disabled
        wait
        ckpt                    ; an event pending
        ei
loop:   in r2, 0x24
        beq r2, 0, done
        wait
        jmp loop
done:   ld r3, [0x2004]
        out 0x01, r3
        out 0x00, 10
        ld r3, [0]
        out 0x01, r3
        out 0x00, 10
        in r2, 0x12
        out 0x01, r2
        out 0x00, 10
        halt
on_timer:
        push r9
        ld r9, [0]
        add r9, r9, 1
        st r9, [0]
        pop r9
        iret
"""


@pytest.mark.parametrize("mode", MODES)
def test_ckpt_instruction_is_invisible(mode, references, tmp_path, engine):
    image = assemble_text(CKPT_PROGRAM, "ckpt.asm")
    config = Config(memory_size=64 * 1024, disk_content=disk_pattern(), engine=engine)
    ref = references("ckpt-program", image, config)
    assert ref.final.stop == "halt"
    original = run_original(image, config, tmp_path / "orig", mode=mode)
    assert [job.origin for job in original.jobs] == ["ckpt"] * 4
    assert not original.p8
    diffs = original.final.differences(ref.final, skip=())
    assert not diffs, f"ckpt is not invisible: {diffs}"
    # and with host checkpoints on top, at every tick, batched
    for i, batch in enumerate(batches(list(range(ref.final.tick)), 30)):
        original = run_original(image, config, tmp_path / f"b{i}", mode=mode, schedule=batch)
        diffs = original.final.differences(ref.final, skip=())
        assert not diffs, f"checkpoints at {batch[:6]}... are not invisible: {diffs}"


@pytest.mark.parametrize("path", [p for p in CORPUS if p.name in
                                  ("hello.asm", "fib.asm", "bubble_sort.asm", "timer_clock.asm",
                                   "checkpoint_demo.asm")], ids=lambda p: p.name)
def test_host_checkpoints_are_invisible(path, references, tmp_path):
    """Output, ticks and the whole final state of a run with checkpoints taken
    are those of the run without them."""
    image = program_image(path)
    config = corpus_config(image, ENGINES[0])
    ref = references(path.name, image, config)
    for mode in MODES:
        config = replace(config, engine=engine_of_mode(mode, len(path.name)))
        original = run_original(image, config, tmp_path / mode, mode=mode,
                                schedule=spread(ref.final.tick - 1, 12))
        assert len(original.jobs) >= min(ref.final.tick, 2)
        if not original.p8:
            diffs = original.final.differences(ref.final, skip=())
            assert not diffs, f"{mode}: host checkpoints are visible: {diffs}"


P8_PROGRAM = """
; a pending read followed by a pending write to the same block (P8)
        out 0x26, on_disk
        mov r1, 0x5a5a5a5a
        st r1, [0x2000]
        out 0x20, 40
        out 0x21, 0x1000
        out 0x22, 2
        out 0x23, 1             ; #1 read blocks 40..41
        out 0x20, 41
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2             ; #2 write block 41
        ckpt
        in r2, 0x24             ; requests in flight
        out 0x01, r2
        out 0x00, 32
        in r2, 0x25             ; last completed request
        out 0x01, r2
        out 0x00, 10
loop:   in r2, 0x24
        beq r2, 0, done
        wait
        jmp loop
done:   ei                      ; the completion interrupts, pending until now
        nop
        ld r3, [0]
        out 0x01, r3
        out 0x00, 10
        halt
on_disk:
        push r9
        ld r9, [0]
        add r9, r9, 1
        st r9, [0]
        pop r9
        iret
"""


def test_p8_is_the_documented_exception(tmp_path, engine):
    """docs/contract.md: P8 is the one exception to invisibility (the pending
    requests complete before the guest resumes). It shows like this:
    right after the ckpt the guest sees 0 requests in flight (2 with nop) and
    request #2 as the last completed (0 with nop); both completion interrupts
    are pending from the checkpoint's tick on. Nothing else changes: the read
    still ran before the write, so memory and disk end the same."""
    image = assemble_text(P8_PROGRAM, "p8.asm")
    config = Config(memory_size=64 * 1024, disk_content=disk_pattern(), engine=engine)
    ref = run_reference(image, config, tmp_path / "ref")
    assert ref.final.output == b"2 0\n2\n"
    for mode in MODES:
        original = run_original(image, config, tmp_path / mode, mode=mode)
        (job,) = original.jobs
        assert job.p8_drained == 2
        assert original.final.output == b"0 2\n2\n"
        assert original.final.memory == ref.final.memory
        assert original.final.disk == ref.final.disk
        # and the checkpoint still resumes to the original's end
        check_resumed(ref, original, job, tmp_path / f"{mode}-resumed")


# --- generated programs (Hypothesis) -------------------------------------------------------------

@given(source=ckpt_programs(), data=st.data())
def test_property_equivalence_and_invisibility(source, data, tmp_path_factory):
    image = assemble_text(source)
    # one engine per example (both are covered, at the cost of one)
    config = gen_config(disk_pattern(), data.draw(st.sampled_from(ENGINES), label="engine"))
    workdir = tmp_path_factory.mktemp("prop")
    try:
        ref = run_reference(image, config, workdir / "ref")
        assert ref.final.stop == "halt", f"generated program did not halt: {ref.final.stop}"
        k = data.draw(st.integers(0, ref.final.tick - 1), label="k")
        # how the host saves must not matter either: batch spacing, batch size, groups
        saving = {"slice_ticks": data.draw(st.sampled_from([8, 64, 2048]), label="slice_ticks"),
                "pages_per_slice": data.draw(st.sampled_from([1, 3, None]), label="pages"),
                "group_blocks": data.draw(st.sampled_from([1, 4, 8]), label="group_blocks")}
        # pre-copy's rounds: slow enough to span DMA requests, or to hit the round
        # limit, or to be cut short by the halt (then no checkpoint is taken)
        precopy = {"pages_per_slice": data.draw(st.sampled_from([1, 2, 64]), label="pc pages"),
                   "slice_ticks": data.draw(st.sampled_from([8, 50, 300]), label="pc ticks"),
                   "threshold": data.draw(st.sampled_from([0, 2, 32]), label="pc threshold"),
                   "max_rounds": data.draw(st.sampled_from([1, 3, 8]), label="pc rounds")}
        resumed = {}
        for mode in MODES:
            options = dict(saving, precopy_options=precopy) if mode == PRECOPY else saving
            original = run_original(image, config, workdir / mode, mode=mode, schedule=[k],
                                    **options)
            check_invisible(ref, original, f"{mode}, checkpoint at {k}")
            host = [job for job in original.jobs if job.origin == "host"]
            if not original.p8 and mode == PRECOPY:     # taken at its final stop, if at all
                assert len(host) <= 1 and all(job.tick >= ref.boundary(k) for job in host)
            elif not original.p8:
                assert [job.tick for job in host] == [ref.boundary(k)]
            for job in original.jobs:
                resumed[(mode, job.origin, job.tick)] = check_resumed(
                    ref, original, job, workdir / f"{mode}-resumed")
                if mode in ("cow", PRECOPY) and not any(
                        j.p8_drained for j in original.jobs[:original.jobs.index(job)]):
                    check_checkpointed_disk(ref, config, job)   # the run is still the ref's
        for (mode, origin, tick), final in resumed.items():
            if mode == "cow":
                other = resumed[("stop-copy", origin, tick)]
                assert not final.differences(other, skip=()), "cow and stop-copy differ"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- programs/checkpoint_demo.asm through the CLI ---------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "programs" / "checkpoint_demo.asm"
DEMO_BEFORE = ("checkpoint demo: timer period 100\n"
               "issuing 2 disk requests, then ckpt\n")
DEMO_AFTER = ("in flight before ckpt: 2, after ckpt: 2\n"
              "disk completions: 2\n"
              "read back: saved before the checkpoint\n"
              "timer: 10 interrupts, the 10th handled at tick 1003\n")


def test_checkpoint_demo_cli(tmp_path, engine):
    disk = tmp_path / "demo.img"
    created = run_cli("disk", "create", str(disk), "64K", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    run = run_cli("run", "--engine", engine, str(DEMO), "--disk", str(disk),
                  "--checkpoint-dir", "ck",
                  input=b"", cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode() == DEMO_BEFORE + DEMO_AFTER
    ckpt = tmp_path / "ck" / "ckpt-0001.mvc"
    assert ckpt.exists()
    assert b"Traceback" not in run.stderr
    # the disk holds the payload in block 5: the write was in flight at the checkpoint
    payload = b"saved before the checkpoint\0"
    with open(disk, "rb") as f:
        data = f.read()
    assert data[5 * 512:5 * 512 + len(payload)] == payload
    assert data[:5 * 512] == bytes(5 * 512) and data[6 * 512:] == bytes(len(data) - 6 * 512)

    resumed = run_cli("resume", "--engine", engine, str(ckpt), input=b"", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert resumed.stdout.decode() == DEMO_AFTER
    # resuming twice gives the same again (the checkpointed disk is never written)
    again = run_cli("resume", "--engine", engine, str(ckpt), input=b"", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.decode() == DEMO_AFTER


def test_checkpoint_demo_with_nop_prints_the_same(tmp_path):
    """Invisibility, through the CLI: the demo with nop for ckpt prints the same."""
    source = DEMO.read_text()
    lines = source.splitlines()
    replaced = [line.replace("ckpt  ", "nop   ", 1) if line.strip().startswith("ckpt ")
                else line for line in lines]
    assert sum(1 for line in replaced if line.strip().startswith("nop ")) == 1
    nop_program = tmp_path / "demo_nop.asm"
    nop_program.write_text("\n".join(replaced) + "\n")
    disk = tmp_path / "demo.img"
    assert run_cli("disk", "create", str(disk), "64K", cwd=tmp_path).returncode == 0
    run = run_cli("run", str(nop_program), "--disk", str(disk), "--checkpoint-dir", "ck",
                  input=b"", cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode() == DEMO_BEFORE + DEMO_AFTER
    assert not (tmp_path / "ck" / "ckpt-0001.mvc").exists()
