"""Harness and Hypothesis strategies for the checkpoint-protocol tests.

The harness runs a program three ways and compares the results:

* the *reference* run: no checkpointer at all and every ``ckpt`` replaced by
  ``nop`` (docs/contract.md, invisibility); a second, single-stepped reference
  run records, for every tick at which an instruction starts, how many console
  bytes had been written before it, and every disk write with the tick it was
  issued at (to know what the checkpointed disk must hold);
* the *original* run: the same program with a :class:`Checkpointer`
  attached, taking checkpoints at host ticks and at ``ckpt`` instructions;
* a *resumed* run for each checkpoint, in a fresh machine.

The strategy :func:`ckpt_programs` generates terminating guest programs that
mix ALU and memory operations, timer interrupts, several disk DMA requests
in flight, ``wait``, ``di``/``ei`` and ``ckpt``. They follow the one rule of
docs/contract.md for guests: nothing touches the bytes of a read request while
it is in flight. Reads land in the first half of a data page (the "DMA
half"); the CPU's loads and stores and the disk writes' sources use the other
half, so P7's "other bytes of the same page" case is frequent. The DMA half
is touched (loaded, stored, written to disk) only right after a ``sync``
that waits until no request is in flight. (Reading those bytes early is a
race too: a resumed machine already holds an in-flight read's data, which
P5 put in the checkpointed memory, before the read completes again.)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import strategies as st

from minivm import isa
from minivm.assembler import assemble
from minivm.checkpoint import MODES, Checkpointer
from minivm.resume import read_checkpoint, resume
from minivm.devices import BLOCK_SIZE, BufferSink, ConsoleInput
from minivm.disks import close_chain, open_disk
from minivm.engine import DEFAULT_ENGINE, ENGINES
from minivm.image import Image
from minivm.machine import Machine
from minivm.store import FileStore

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "programs"
DISK_PORTS = range(0x20, 0x27)
DISK_SIZE = 64 * 1024
MAX_TICKS = 5_000_000
#: The engine of every reference run: the per-instruction reference loop.
REFERENCE_ENGINE = ENGINES[0]


# --- programs ----------------------------------------------------------------------------

def uses_disk(image: Image) -> bool:
    """True if the program talks to the disk (ports 0x20-0x26)."""
    for op, a, b, _ in image.code:
        if op in (isa.OUT_R, isa.OUT_I) and a in DISK_PORTS:
            return True
        if op == isa.IN and b in DISK_PORTS:
            return True
    return False


def with_nops(image: Image) -> Image:
    """The same program with ``nop`` in place of every ``ckpt``."""
    code = [(isa.NOP, 0, 0, 0) if ins[0] == isa.CKPT else ins for ins in image.code]
    return Image(code, image.data, image.entry, image.source_file, list(image.lines),
                 list(image.texts), dict(image.symbols))


def write_disk(path, content: bytes | None = None, size: int = DISK_SIZE) -> str:
    """A raw disk image file holding ``content`` (zeros if None)."""
    data = bytes(size) if content is None else content
    assert len(data) % BLOCK_SIZE == 0
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def disk_pattern(size: int = DISK_SIZE) -> bytes:
    """A disk whose every block is different: byte i of block b = (b * 7 + i * 3 + 1) & 0xFF,
    with the block number written in the block's first two bytes."""
    out = bytearray()
    for b in range(size // BLOCK_SIZE):
        block = bytearray((b * 7 + i * 3 + 1) & 0xFF for i in range(BLOCK_SIZE))
        block[0], block[1] = b & 0xFF, (b >> 8) & 0xFF
        out += block
    return bytes(out)


# --- machines and their final state ---------------------------------------------------------

@dataclass
class Config:
    memory_size: int = 1 << 20
    disk_content: bytes | None = None       # None: no disk attached
    latency: int = 100
    per_block: int = 10
    #: the engine of the original and resumed runs (the tests pass the
    #: ``engine`` fixture); the reference run is always the reference engine
    engine: str = DEFAULT_ENGINE


def engine_of_mode(mode: str, salt: int = 0) -> str:
    """The engine for a costly test's runs in checkpoint ``mode``: each mode on
    one engine, which one rotating with ``salt`` (e.g. a program's index), so
    such a test covers both engines at the cost of one, and its comparison of
    the cow and stop-copy runs compares the engines too."""
    return ENGINES[(MODES.index(mode) + salt) % len(ENGINES)]


def new_machine(image: Image, config: Config, disk_path: str | None) -> Machine:
    disk = open_disk(disk_path) if disk_path is not None else None
    return Machine(image, memory_size=config.memory_size, disk=disk,
                   console_sink=BufferSink(), console_input=ConsoleInput(b""),
                   disk_latency=config.latency, disk_per_block=config.per_block,
                   engine=config.engine)


@dataclass
class Final:
    """Everything the guest can observe at the end of a run (and a bit more)."""

    stop: str
    output: bytes
    regs: list
    pc: int
    tick: int
    halted: bool
    memory: dict
    disk: bytes | None
    devices: dict

    def differences(self, other: "Final", skip=("output",)) -> list[str]:
        diffs = []
        for name in ("stop", "output", "regs", "pc", "tick", "halted", "memory", "disk",
                     "devices"):
            if name in skip:
                continue
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):
                    pages = sorted(i for i in set(a) | set(b) if a.get(i) != b.get(i))
                    diffs.append(f"{name} differs in page(s) {pages[:10]}")
                elif isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b):
                    first = next(i for i in range(len(a)) if a[i] != b[i])
                    diffs.append(f"{name} differs first at byte 0x{first:x} "
                                 f"({a[first:first + 8].hex()} vs {b[first:first + 8].hex()})")
                else:
                    diffs.append(f"{name}: {str(a)[:300]} != {str(b)[:300]}")
        return diffs


def disk_contents(machine: Machine) -> bytes | None:
    backing = machine.disk.backing
    if backing is None:
        return None
    return backing.read_blocks(0, backing.block_count)


def final_state(machine: Machine, stop) -> Final:
    devices = machine.save_state()
    devices["cpu"] = {k: v for k, v in devices["cpu"].items() if k != "interrupts_taken"}
    return Final(stop.reason, bytes(machine.console.sink.data), list(machine.regs[:16]),
                 machine.pc, machine.tick, machine.halted, memory_contents(machine),
                 disk_contents(machine), devices)


def memory_contents(machine: Machine) -> dict[int, bytes]:
    """Every byte of memory, as {page index: contents} for the pages that are
    not all zero (an exact and cheap picture of a mostly empty memory)."""
    memory = machine.memory
    return {index: memory.page_bytes(index) for index in memory.nonzero_page_indexes()}


def close_disks(machine: Machine) -> None:
    """Close every disk file a machine has open (runs are many; descriptors are few)."""
    close_chain(machine.disk.backing, *(request.target for request in machine.disk.queue))


def read_file_blocks(path: str, verify: bool = True) -> bytes:
    """The contents of a disk file or overlay chain, as the guest would see it."""
    disk = open_disk(path, verify=verify, writable=False)
    try:
        return disk.read_blocks(0, disk.block_count)
    finally:
        close_chain(disk)


# --- the reference run ---------------------------------------------------------------------

TRACE_LIMIT = 200_000       # single-step the reference only for runs up to this many ticks


@dataclass
class Reference:
    image: Image                          # the program with nop for ckpt
    config: Config
    workdir: Path
    final: Final
    writes: list[tuple[int, int, int, bytes]]  # completed writes: (issued, done, block, data)
    requests: list[tuple[int, int, bool]] = field(default_factory=list)  # (issued, done, read?)
    starts: list[int] | None = None       # ticks at which an instruction started (traced)
    out_before: dict[int, int] = field(default_factory=dict)  # tick -> console bytes before
    _partial: dict[int, tuple[int, int]] = field(default_factory=dict)

    def _run_to(self, k: int) -> tuple[int, int]:
        """Run a fresh reference machine until the first boundary at or after k."""
        if k not in self._partial:
            disk_path = None
            if self.config.disk_content is not None:
                disk_path = write_disk(self.workdir / "partial.img", self.config.disk_content)
            machine = new_machine(self.image, self.config, disk_path)
            machine.run(k)
            self._partial[k] = (machine.tick, len(machine.console.sink.data))
            close_disks(machine)
        return self._partial[k]

    def boundary(self, k: int) -> int:
        """The tick at which a host checkpoint asked for at tick k is taken: the
        first instruction boundary at or after k (docs/isa.md, section 1: 'or, if
        the clock jumped past T, at the first boundary after it')."""
        if self.starts is not None:
            i = bisect.bisect_left(self.starts, k)
            assert i < len(self.starts), f"no boundary at or after tick {k}"
            return self.starts[i]
        return self._run_to(k)[0]

    def output_before(self, tick: int) -> int:
        """Console bytes written by the instructions that ran before ``tick``."""
        if self.starts is not None:
            return self.out_before[tick]
        reached, length = self._run_to(tick)
        assert reached == tick, f"tick {tick} is not an instruction boundary"
        return length

    def disk_at(self, tick: int, initial: bytes) -> bytes:
        """The disk holding exactly the writes issued before ``tick`` (those that
        complete in the run)."""
        disk = bytearray(initial)
        for issued, _, block, data in self.writes:
            if issued < tick:
                disk[block * BLOCK_SIZE:block * BLOCK_SIZE + len(data)] = data
        return bytes(disk)

    def writes_in_flight_at(self, tick: int) -> list:
        return [w for w in self.writes if w[0] < tick < w[1]]


def _record_writes(machine: Machine, writes: list, requests: list) -> None:
    complete = machine.disk.complete

    def complete_and_record(request):
        complete(request)
        requests.append((request.issued, request.done, request.is_read))
        if not request.is_read:
            writes.append((request.issued, request.done, request.block, request.data))

    machine.disk.complete = complete_and_record


def run_reference(image: Image, config: Config, workdir: Path) -> Reference:
    config = replace(config, engine=REFERENCE_ENGINE)
    plain = with_nops(image)
    workdir.mkdir(parents=True, exist_ok=True)
    disk_path = None
    if config.disk_content is not None:
        disk_path = write_disk(workdir / "ref-disk.img", config.disk_content)
    machine = new_machine(plain, config, disk_path)
    writes: list = []
    requests: list = []
    _record_writes(machine, writes, requests)
    final = final_state(machine, machine.run(MAX_TICKS))
    close_disks(machine)
    ref = Reference(plain, config, workdir, final, writes, requests)
    if final.tick > TRACE_LIMIT:
        return ref

    # the single-stepped twin: where the output stood at each tick
    if config.disk_content is not None:
        disk_path = write_disk(workdir / "ref-disk-traced.img", config.disk_content)
    traced = new_machine(plain, config, disk_path)
    starts, out_before = [], {}
    sink = traced.console.sink

    def record(_line):
        starts.append(traced.tick)
        out_before[traced.tick] = len(sink.data)

    traced.trace = record
    traced_final = final_state(traced, traced.run(MAX_TICKS))
    close_disks(traced)
    assert not traced_final.differences(final, skip=()), \
        "the single-stepped reference run differs from the plain one"
    ref.starts, ref.out_before = starts, out_before
    return ref


# --- original and resumed runs ---------------------------------------------------------------

@dataclass
class Original:
    machine: Machine
    checkpointer: Checkpointer
    final: Final
    disk_path: str | None
    folder: Path
    jobs: list = field(default_factory=list)
    output_at: list = field(default_factory=list)   # console bytes when each job was taken
    engine: str = DEFAULT_ENGINE                     # what it ran on; its resumes run on it too
    precopy_options: dict | None = None              # precopy mode: its rounds' parameters

    def output_after(self, job) -> bytes:
        """What the original run printed after it took ``job``."""
        return self.final.output[self.output_at[self.jobs.index(job)]:]

    @property
    def p8(self) -> bool:
        return any(job.p8_drained for job in self.jobs)


def record_output_at_take(machine: Machine, cp: Checkpointer, lengths: list) -> None:
    """Note how much console output there was when each checkpoint was taken
    (in precopy mode: at its final stop)."""
    take = cp.take

    def take_and_record(*args, **kwargs):
        if cp.precopy is not None and kwargs.get("staged") is None:
            return take(*args, **kwargs)    # precopy: a request; its final stop comes here
        before = len(machine.console.sink.data)
        job = take(*args, **kwargs)
        lengths.append(before)
        return job

    cp.take = take_and_record


def run_original(image: Image, config: Config, folder: Path, *, mode: str, schedule=(),
                 pages_per_slice=None, store=None, keep_open: bool = False,
                 **checkpointer_options) -> Original:
    folder.mkdir(parents=True, exist_ok=True)
    disk_path = None
    if config.disk_content is not None:
        disk_path = write_disk(folder / "disk.img", config.disk_content)
    machine = new_machine(image, config, disk_path)
    cp = Checkpointer(machine, store or FileStore(str(folder / "ck")), mode=mode,
                      schedule=list(schedule), pages_per_slice=pages_per_slice,
                      **checkpointer_options)
    lengths: list = []
    record_output_at_take(machine, cp, lengths)
    stop = machine.run(MAX_TICKS)
    cp.finish_all()
    for job in cp.jobs:
        assert job.status == "complete", f"checkpoint {job.name} is {job.progress()}"
    final = final_state(machine, stop)
    if not keep_open:
        close_disks(machine)
    return Original(machine, cp, final, disk_path, folder, list(cp.jobs), lengths, config.engine,
                    checkpointer_options.get("precopy_options"))


def resume_run(location: str, store_folder: Path, *, checkpointer: bool = False,
               schedule=(), eager: bool = False, engine: str = DEFAULT_ENGINE,
               precopy_options: dict | None = None):
    """Load a checkpoint file, resume it in a fresh machine and run it to the end.

    With ``checkpointer``, one is attached as ``minivm resume`` does, so that a
    ``ckpt`` in the rest of the program takes a checkpoint again. Taking one is
    invisible except for P8, so the harness attaches it when the original run
    had a P8 drain (test_overlay checks checkpoints in resumed runs directly),
    with ``schedule``: the host checkpoints the original took later on."""
    ckpt = read_checkpoint(location)
    store = FileStore(str(store_folder))
    machine, _ = resume(ckpt, store, console_sink=BufferSink(), console_input=ConsoleInput(b""),
                        eager=eager, engine=engine)
    cp = None
    if checkpointer:
        mode = ckpt.meta.get("mode", "cow")
        cp = Checkpointer(machine, store, mode=mode, schedule=list(schedule),
                          precopy_options=precopy_options if mode == "precopy" else None)
    final = final_state(machine, machine.run(MAX_TICKS))
    if cp is not None:
        cp.finish_all()
    close_disks(machine)
    return ckpt, final


def asked_at(job) -> int:
    """The tick a checkpoint was asked for: its own, or in precopy mode the
    start of its rounds (its final stop comes later)."""
    return job.precopy.tick if job.precopy is not None else job.tick


def same_stop(a, b) -> bool:
    """Two pre-copy checkpoints taken at one final stop (one was asked for
    during the other's rounds and joined them, precopy.py)."""
    if a.precopy is None or b.precopy is None:
        return False
    return (a.precopy.leader or a.precopy) is (b.precopy.leader or b.precopy)


def check_resumed(ref: Reference, original: Original, job, store_folder: Path) -> Final:
    """Resume equivalence for one checkpoint of an original run; every other
    checkpoint of a run is resumed eagerly, the others lazily (pages on first
    access), so both ways are checked at every kind of point."""
    number = original.jobs.index(job)
    later = original.jobs[number + 1:]
    _, resumed = resume_run(job.location, store_folder, checkpointer=original.p8,
                            # a host request served by this very stop is in the past
                            schedule=[asked_at(j) for j in later
                                      if j.origin == "host" and not same_stop(j, job)],
                            eager=number % 2 == 1, engine=original.engine,
                            precopy_options=original.precopy_options)
    after = original.output_after(job)
    if not original.p8:     # then the original ran exactly like the reference
        assert len(original.final.output) - len(after) == ref.output_before(job.tick), \
            f"{job.name} (tick {job.tick}) was not taken where the reference run stood"
    assert resumed.output == after, (
        f"{job.name} (tick {job.tick}): resumed output {resumed.output[:200]!r} is not the "
        f"original's output after the checkpoint {after[:200]!r}")
    diffs = resumed.differences(original.final)
    assert not diffs, f"{job.name} (tick {job.tick}): resumed run differs: {diffs}"
    return resumed


def check_checkpointed_disk(ref: Reference, config: Config, job) -> None:
    """The checkpointed disk holds the writes issued before the checkpoint, no others."""
    ckpt = read_checkpoint(job.location)
    top = ckpt.disk["chain"][0]["path"]
    actual = read_file_blocks(top, verify=False)    # (fingerprints: test_ckptfile)
    expected = ref.disk_at(job.tick, config.disk_content)
    if actual != expected:
        first = next(i for i in range(len(actual)) if actual[i] != expected[i])
        raise AssertionError(
            f"{job.name} (tick {job.tick}): checkpointed disk {top} differs from 'writes "
            f"issued before the checkpoint' first in block {first // BLOCK_SIZE} "
            f"(byte 0x{first:x}: {actual[first:first + 8].hex()} vs expected "
            f"{expected[first:first + 8].hex()})")


# --- program generator -------------------------------------------------------------------------

MEMORY = 64 * 1024          # generated programs run with 64 KiB: 16 pages
DATA_PAGES = range(1, 10)   # pages 1..9 hold data; page 0 variables; 15 the stack
GEN_LATENCY = 30
GEN_PER_BLOCK = 5
COUNTERS = 0x0              # word 0: timer interrupts; word 4: last disk id seen
VALUE_REGS = tuple(f"r{i}" for i in range(1, 9))


def _reg():
    return st.sampled_from(VALUE_REGS)


@st.composite
def _alu(draw):
    op = draw(st.sampled_from(["add", "sub", "mul", "and", "or", "xor", "shl", "shr",
                               "sar", "div", "mod", "mov", "not", "neg"]))
    rd, rs = draw(_reg()), draw(_reg())
    if op == "mov":
        src = draw(st.one_of(_reg(), st.integers(-(1 << 31), (1 << 32) - 1).map(str)))
        return [f"mov {rd}, {src}"]
    if op in ("not", "neg"):
        return [f"{op} {rd}, {rs}"]
    if op in ("div", "mod"):               # never by zero
        return [f"{op} {rd}, {rs}, {draw(st.integers(1, 1000))}"]
    src = draw(st.one_of(_reg(), st.integers(0, 70000).map(str)))
    return [f"{op} {rd}, {rs}, {src}"]


def _cpu_store_addr(draw, width):
    page = draw(st.sampled_from(DATA_PAGES))
    return page * 4096 + 2048 + draw(st.integers(0, 2048 - width))


@st.composite
def _store(draw):
    if draw(st.booleans()):
        return [f"st {draw(_reg())}, [{_cpu_store_addr(draw, 4)}]"]
    return [f"stb {draw(_reg())}, [{_cpu_store_addr(draw, 1)}]"]


def _cpu_load_addr(draw):
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(0, 4092))          # page 0: the counters
    return _cpu_store_addr(draw, 4)


@st.composite
def _load(draw):
    op = draw(st.sampled_from(["ld", "ldb"]))
    return [f"{op} {draw(_reg())}, [{_cpu_load_addr(draw)}]"]


@st.composite
def _sync(draw, label: str):
    """Wait until no request is in flight; then the DMA halves may be touched."""
    # polling, not `wait`: a request may complete between the test and a `wait`,
    # which would then have nothing to wait for (a fault)
    lines = [f"{label}:", "in r12, 0x24", f"bne r12, 0, {label}"]
    for _ in range(draw(st.integers(0, 3))):
        page = draw(st.sampled_from(DATA_PAGES))
        addr = page * 4096 + draw(st.integers(0, 2044))
        kind = draw(st.sampled_from(["ld", "st", "write"]))
        reg = draw(_reg())
        if kind == "ld":
            lines += [f"ld {reg}, [{addr}]", f"out 0x01, {reg}", "out 0x00, 32"]
        elif kind == "st":
            lines += [f"st {reg}, [{addr}]"]
        else:                                  # a disk write from a DMA half
            first = draw(st.integers(0, 3))
            count = draw(st.integers(1, 4 - first))
            lines += [f"out 0x20, {draw(st.integers(0, 40))}",
                      f"out 0x21, {page * 4096 + first * 512}", f"out 0x22, {count}",
                      "out 0x23, 2"]
    return lines


@st.composite
def _print(draw):
    return [f"out 0x01, {draw(_reg())}", "out 0x00, 32"]


@st.composite
def _status(draw):
    port = draw(st.sampled_from([0x24, 0x25, 0x12]))
    reg = draw(_reg())
    return [f"in {reg}, {port:#x}", f"out 0x01, {reg}", "out 0x00, 47"]


@st.composite
def _disk_request(draw, timer: bool):
    read = draw(st.booleans())
    page = draw(st.sampled_from(DATA_PAGES))
    if read:                                  # into the DMA half of a page
        first = draw(st.integers(0, 3))
    else:                                     # from the CPU half of a page
        first = draw(st.integers(4, 7))
    count = draw(st.integers(0, 8 - first if not read else 4 - first))
    block = draw(st.integers(0, 40))
    lines = [f"out 0x20, {block}", f"out 0x21, {page * 4096 + first * 512}",
             f"out 0x22, {count}", f"out 0x23, {1 if read else 2}"]
    if draw(st.integers(0, 4)) == 0:
        lines.append("wait")                  # the request just issued is scheduled
    return lines


def _body_op(timer: bool, *, allow_ckpt: bool):
    choices = [_alu(), _alu(), _store(), _store(), _load(), _print(), _status(),
               _disk_request(timer), _disk_request(timer),
               st.just(["ei"]), st.just(["di"])]
    if timer:
        choices.append(st.just(["wait"]))     # the timer is running: something comes
    if allow_ckpt:
        choices.append(st.just(["ckpt"]))
    return st.one_of(*choices)


@st.composite
def _loop(draw, timer: bool, label: str):
    n = draw(st.integers(1, 5))
    body = draw(st.lists(_body_op(timer, allow_ckpt=False), min_size=1, max_size=5))
    lines = [f"mov r11, {n}", f"{label}:"]
    for op in body:
        lines += op
    lines += ["sub r11, r11, 1", f"bgt r11, 0, {label}"]
    return lines


@st.composite
def ckpt_programs(draw, max_ops: int = 30):
    """A terminating program source mixing computation, timer interrupts, DMA
    with several requests in flight, wait, di/ei and ckpt (see module doc)."""
    timer = draw(st.booleans())
    disk_irq = draw(st.booleans())
    lines = []
    if timer:
        lines += ["out 0x11, on_timer", f"out 0x10, {draw(st.integers(40, 250))}"]
    if disk_irq:
        lines += ["out 0x26, on_disk"]
    if draw(st.booleans()):
        lines.append("ei")
    # give the data pages some non-zero contents first (both halves)
    for page in draw(st.sets(st.sampled_from(DATA_PAGES), max_size=4)):
        lines += [f"mov r1, {draw(st.integers(1, 255))}",
                  f"stb r1, [{page * 4096 + draw(st.integers(0, 4095))}]"]
    n_ops = draw(st.integers(3, max_ops))
    for i in range(n_ops):
        choice = draw(st.integers(0, 11))
        if choice == 0:
            lines += draw(_loop(timer, f"loop{i}"))
        elif choice == 1:
            lines += draw(_sync(f"sync{i}"))
        else:
            lines += draw(_body_op(timer, allow_ckpt=True))
    # epilogue: let every request complete, stop the timer, print the counters
    lines += ["drain:", "in r12, 0x24", "bne r12, 0, drain", "out 0x10, 0", "di"]
    for page in DATA_PAGES:                   # show what the reads brought
        lines += [f"ld r1, [{page * 4096 + 4}]", "out 0x01, r1", "out 0x00, 32"]
    lines += [
              f"ld r1, [{COUNTERS}]", "out 0x01, r1", "out 0x00, 10",
              f"ld r1, [{COUNTERS + 4}]", "out 0x01, r1", "out 0x00, 10",
              "halt",
              "on_timer:", "push r9", f"ld r9, [{COUNTERS}]", "add r9, r9, 1",
              f"st r9, [{COUNTERS}]", "out 0x00, 116", "pop r9", "iret",
              "on_disk:", "push r10", "in r10, 0x25", f"st r10, [{COUNTERS + 4}]",
              "out 0x01, r10", "out 0x00, 44", "pop r10", "iret"]
    return "\n".join("        " + line if not line.endswith(":") else line
                     for line in lines) + "\n"


def gen_config(disk_content: bytes, engine: str = DEFAULT_ENGINE) -> Config:
    return Config(memory_size=MEMORY, disk_content=disk_content, latency=GEN_LATENCY,
                  per_block=GEN_PER_BLOCK, engine=engine)


def assemble_text(source: str, name: str = "generated.asm") -> Image:
    return assemble(source, name)


def program_image(path: Path) -> Image:
    return assemble(path.read_text(), str(path))


def list_programs() -> list[Path]:
    return sorted(PROGRAMS.glob("*.asm"))
