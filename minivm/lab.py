"""The checkpoint-strategy lab: ``minivm compare`` (docs/protocol.md,
"Three strategies side by side").

One program, run the same way once without a checkpoint and once per mode
(stop-copy, cow, precopy) with a checkpoint asked for at the same tick; each
checkpoint is then resumed eagerly and lazily, and every run's final state
(registers, pc, tick, memory, disk, devices, console output) is compared
with the uninterrupted run's. The machine is deterministic, so all of them
must be identical; only the host's costs differ, and those are what the
table shows. ``--sweep`` runs the built-in guest (labguest.py) at a range
of dirty rates instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

from .checkpoint import Checkpointer
from .devices import BufferSink, ConsoleInput
from .disks import close_chain, open_disk
from .errors import MinivmError
from .machine import Machine
from .modes import COW, PRECOPY, STOP_COPY
from .resume import read_checkpoint, resume
from .resumestats import ResumeStats
from .store import FileStore

#: The order of the table: the baseline, the patent's method, live migration's.
LAB_MODES = (STOP_COPY, COW, PRECOPY)
#: The longest run compare accepts (``--max-steps``): a program must end.
MAX_TICKS = 100_000_000


def default_at(ticks: int) -> int:
    """Where the checkpoint is asked for unless --at says: a quarter of the
    way through the uninterrupted run."""
    return ticks // 4


@dataclass
class Final:
    """What a run ended with, as digests (memory and disk can be large)."""

    stop: str
    tick: int
    pc: int
    regs: list
    output: bytes
    memory: str
    disk: str
    devices: str

    def differences(self, other: "Final") -> list[str]:
        return [name for name in ("stop", "tick", "pc", "regs", "output", "memory", "disk",
                                  "devices") if getattr(self, name) != getattr(other, name)]


def final_of(machine: Machine, stop, output: bytes) -> Final:
    memory = hashlib.sha256()
    for index in machine.memory.nonzero_page_indexes():
        memory.update(index.to_bytes(4, "little") + machine.memory.page_bytes(index))
    disk = hashlib.sha256()
    backing = machine.disk.backing
    if backing is not None:
        for block in range(0, backing.block_count, 256):
            disk.update(backing.read_blocks(block, min(256, backing.block_count - block)))
    state = machine.save_state()
    state["cpu"] = {k: v for k, v in state["cpu"].items() if k != "interrupts_taken"}
    return Final(stop.reason, machine.tick, machine.pc, list(machine.regs[:16]), output,
                 memory.hexdigest(), disk.hexdigest(), hashlib.sha256(repr(state).encode())
                 .hexdigest())


@dataclass
class Resumed:
    stats: ResumeStats
    identical: bool
    differs: list[str] = field(default_factory=list)


@dataclass
class ModeResult:
    mode: str
    asked_tick: int
    tick: int = 0                   # where the checkpoint was taken (precopy: its final stop)
    stop_us: float = 0.0
    rounds: int | None = None
    written_twice: int | None = None
    final_pages: int | None = None
    complete_s: float = 0.0         # host time from the request until the file was complete
    speed: float = 0.0              # guest ticks per host second meanwhile
    bytes_written: int = 0
    identical_run: bool = True      # the run with the checkpoint ended as the uninterrupted one
    resumed: dict = field(default_factory=dict)     # "eager"/"lazy" -> Resumed
    note: str = ""

    @property
    def identical(self) -> bool:
        return self.identical_run and bool(self.resumed) and all(
            r.identical for r in self.resumed.values())


@dataclass
class Comparison:
    program: str
    memory_size: int
    engine: str
    at: int
    ticks: int
    seconds: float                  # the uninterrupted run's host time
    modes: list[ModeResult]
    ended: str = ""                 # how the uninterrupted run ended, when not by a halt

    @property
    def speed(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    @property
    def identical(self) -> bool:
        return all(m.identical for m in self.modes)


class Lab:
    """Runs one comparison in a scratch folder (removed afterwards)."""

    def __init__(self, image, memory_size: int, disk: str | None, engine: str,
                 progress=None, precopy_options: dict | None = None,
                 max_ticks: int = MAX_TICKS):
        self.image, self.memory_size, self.disk, self.engine = image, memory_size, disk, engine
        self.max_ticks = max_ticks
        self.progress = progress or (lambda text: None)
        self.precopy_options = precopy_options
        self.folder = tempfile.mkdtemp(prefix="minivm-compare-")
        self.ended = ""                         # how the uninterrupted run ended, if no halt

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _machine(self, tag: str) -> tuple[Machine, BufferSink]:
        disk = None
        if self.disk is not None:               # every run starts from the same disk
            copy = os.path.join(self.folder, f"{tag}.img")
            shutil.copyfile(self.disk, copy)
            disk = open_disk(copy)
        sink = BufferSink()
        return Machine(self.image, memory_size=self.memory_size, disk=disk, console_sink=sink,
                       console_input=ConsoleInput(b""), engine=self.engine), sink

    def uninterrupted(self) -> tuple[Final, float]:
        self.progress("the uninterrupted run")
        machine, sink = self._machine("plain")
        started = time.perf_counter()
        stop = machine.run(self.max_ticks)
        seconds = time.perf_counter() - started
        if stop.reason == "limit":
            close_chain(machine.disk.backing)
            raise MinivmError(f"the program did not end within {self.max_ticks:,} ticks: compare "
                              "runs it to its end several times (give a larger --max-steps, "
                              "or a program that halts)")
        final = final_of(machine, stop, bytes(sink.data))
        close_chain(machine.disk.backing)
        self.ended = "" if stop.reason == "halt" else \
            f"{stop.reason}: {getattr(stop.detail, 'reason', stop.detail)}"
        return final, seconds

    def with_checkpoint(self, mode: str, at: int, plain: Final) -> ModeResult:
        self.progress(f"{mode}: the run with a checkpoint asked for at tick {at}")
        result = ModeResult(mode, at)
        machine, sink = self._machine(mode)
        store = FileStore(os.path.join(self.folder, mode))
        cp = Checkpointer(machine, store, mode=mode, schedule=[at],
                          precopy_options=self.precopy_options if mode == PRECOPY else None,
                          report=lambda text: setattr(result, "note", text))
        output_at = _output_at_stop(cp, sink)
        stop = machine.run(self.max_ticks)
        cp.finish_all()
        final = final_of(machine, stop, bytes(sink.data))
        close_chain(machine.disk.backing, *(r.target for r in machine.disk.queue))
        result.identical_run = not final.differences(plain)
        # the checkpoint --at asked for (the program may take others with 'ckpt')
        taken = [(job, origin, length) for job, (origin, length) in zip(cp.jobs, output_at)
                 if job.status == "complete"]
        chosen = [t for t in taken if t[1] == "host"] or taken
        if not chosen:
            result.note = result.note or "no checkpoint was taken (the run ended first)"
            return result
        job, _, output_before = chosen[0]
        self._measure(result, job)
        for eager in (True, False):
            how = "eager" if eager else "lazy"
            self.progress(f"{mode}: resuming {job.name} {'eagerly' if eager else 'lazily'}")
            result.resumed[how] = self._resume(job, eager, plain, output_before, mode)
        return result

    def saving_only(self, mode: str, at: int) -> ModeResult:
        """The run with a checkpoint, measured, without resuming it (the sweep)."""
        self.progress(f"{mode}: a checkpoint asked for at tick {at}")
        result = ModeResult(mode, at)
        machine, _ = self._machine(mode)
        cp = Checkpointer(machine, FileStore(os.path.join(self.folder, mode)), mode=mode,
                          schedule=[at], report=lambda text: setattr(result, "note", text),
                          precopy_options=self.precopy_options if mode == PRECOPY else None)
        machine.run(self.max_ticks)
        cp.finish_all()
        close_chain(machine.disk.backing, *(r.target for r in machine.disk.queue))
        jobs = [job for job in cp.jobs if job.status == "complete"]
        if jobs:
            self._measure(result, jobs[0])
        return result

    @staticmethod
    def _measure(result: ModeResult, job) -> None:
        run = job.precopy
        result.tick, result.stop_us = job.tick, job.pause_seconds * 1e6
        started, asked = job.started, job.tick
        if run is not None:
            result.rounds, result.written_twice = len(run.rounds), run.written_twice
            result.final_pages = run.final_pages
            started, asked = run.started, run.tick
        result.complete_s = max(job.finished - started, 1e-9)
        result.speed = (job.finished_tick - asked) / result.complete_s
        result.bytes_written = job.bytes_written

    def _resume(self, job, eager: bool, plain: Final, output_before: int, mode: str) -> Resumed:
        store = FileStore(os.path.join(self.folder, f"{mode}-resumed"))
        sink = BufferSink()
        started = time.perf_counter()
        ckpt = read_checkpoint(job.location)
        machine, _ = resume(ckpt, store, console_sink=sink, console_input=ConsoleInput(b""),
                            engine=self.engine, eager=eager)
        stats = ResumeStats.of(machine, eager, time.perf_counter() - started, len(ckpt.pages))
        stop = machine.run(self.max_ticks)
        stats.finish(machine)
        final = final_of(machine, stop, plain.output[:output_before] + bytes(sink.data))
        close_chain(machine.disk.backing, *(r.target for r in machine.disk.queue))
        differs = final.differences(plain)
        return Resumed(stats, not differs, differs)


def _output_at_stop(cp: Checkpointer, sink: BufferSink) -> list[tuple[str, int]]:
    """For each checkpoint taken, in order: what asked for it (``host``: --at;
    ``ckpt``: the program) and the console output's length then (in precopy
    mode at its final stop, the ``take`` with ``staged``)."""
    lengths: list[tuple[str, int]] = []
    take = cp.take

    def take_and_note(origin="repl", *args, **kwargs):
        if cp.precopy is None or kwargs.get("staged") is not None:
            lengths.append((origin, len(sink.data)))
        return take(origin, *args, **kwargs)

    cp.take = take_and_note
    return lengths


def compare(image, *, memory_size: int, disk: str | None = None, engine: str,
            at: int | None = None, progress=None, precopy_options: dict | None = None,
            modes=LAB_MODES, max_ticks: int = MAX_TICKS) -> Comparison:
    lab = Lab(image, memory_size, disk, engine, progress, precopy_options, max_ticks)
    try:
        plain, seconds = lab.uninterrupted()
        if at is None:
            at = default_at(plain.tick)
        if at >= plain.tick:
            if lab.ended:
                raise MinivmError(f"tick {at}: the program (uninterrupted) ends at tick "
                                  f"{plain.tick}, before the checkpoint, with a {lab.ended}; "
                                  "fix that, or give an earlier tick")
            raise MinivmError(f"tick {at}: the program ends at tick {plain.tick} "
                              "(uninterrupted), before the checkpoint; give an earlier tick")
        results = [lab.with_checkpoint(mode, at, plain) for mode in modes]
    finally:
        lab.close()
    return Comparison(image.source_file or "<program>", memory_size, engine, at, plain.tick,
                      seconds, results, lab.ended)


# --- the table and the JSON ---------------------------------------------------------------------

#: The table's rows, one per measure (the modes are its columns, so that it
#: fits an 80-column terminal, and a projector, with three modes).
ROWS = ("checkpoint at tick", "stop window (guest stopped)", "pre-copy rounds",
        "pages in the final stop", "pages written twice", "complete after",
        "guest speed while saving", "bytes written", "eager resume: 1st instr",
        "lazy resume: 1st instr", "pages loaded, eager/lazy",
        "identical to the plain run")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _us(us: float) -> str:
    return f"{us:,.0f} us" if us >= 10 else f"{us:.1f} us"


def _dash(value) -> str:
    return "-" if value is None else f"{value:,}"


def table_columns(c: Comparison) -> list[list[str]]:
    """One column per mode: its name, then a value for each of ROWS."""
    columns = []
    for m in c.modes:
        eager, lazy = m.resumed.get("eager"), m.resumed.get("lazy")
        if eager is None:
            columns.append([m.mode] + ["-"] * (len(ROWS) - 1) + ["no ckpt"])
            continue
        columns.append([m.mode, f"{m.tick:,}", _us(m.stop_us), _dash(m.rounds),
                        _dash(m.final_pages), _dash(m.written_twice), _ms(m.complete_s),
                        f"{m.speed / 1e6:.2f} M/s", f"{m.bytes_written:,}",
                        _ms(eager.stats.first_instruction_s),
                        _ms(lazy.stats.first_instruction_s),
                        f"{eager.stats.pages_loaded:,}/{lazy.stats.pages_loaded:,}",
                        "yes" if m.identical else "NO"])
    return columns


def format_table(header, rows) -> str:
    """Rows under a header, the first column left-aligned, the others right."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
                     for r in [header] + rows)


def format_columns(labels, columns) -> str:
    """``labels`` down the left, each column right-aligned under its head."""
    rows = [[label] + [col[i + 1] for col in columns] for i, label in enumerate(labels)]
    return format_table([""] + [col[0] for col in columns], rows)


def format_comparison(c: Comparison) -> str:
    from .memory import format_size
    head = (f"{c.program}: {format_size(c.memory_size)} of memory, engine {c.engine}\n"
            f"checkpoint asked for at tick {c.at:,} of {c.ticks:,}\n"
            f"the uninterrupted run took {_ms(c.seconds)} ({c.speed / 1e6:.2f} M ticks/s)")
    out = [head, "", format_columns(ROWS, table_columns(c)), ""]
    for m in c.modes:
        if m.note:
            out.append(f"{m.mode}: {m.note}")
        for how, r in m.resumed.items():
            if not r.identical:
                out.append(f"{m.mode}, resumed {how}: differs from the uninterrupted run in "
                           + ", ".join(r.differs))
        if not m.identical_run:
            out.append(f"{m.mode}: the run with the checkpoint differs from the uninterrupted one")
    if c.ended:                     # not a halt: a fault, e.g. a disk request without --disk
        import textwrap
        out.append(textwrap.fill(f"the program did not halt: it ended at tick {c.ticks:,} "
                                 f"with a {c.ended}", 80, break_on_hyphens=False))
    missing = [m.mode for m in c.modes if not m.resumed]
    if missing:
        out.append(f"no checkpoint was taken in {', '.join(missing)} mode, so there is no "
                   "resumed state to compare there")
    elif c.identical:
        out.append("every resumed final state is identical to the uninterrupted run")
    else:
        out.append("NOT every resumed final state is identical to the uninterrupted run")
    return "\n".join(out)


def comparison_dict(c: Comparison) -> dict:
    def mode(m: ModeResult) -> dict:
        return {"mode": m.mode, "asked_tick": m.asked_tick,
                "checkpoint_tick": m.tick if m.resumed else None,
                "stop_us": round(m.stop_us, 1), "rounds": m.rounds,
                "final_stop_pages": m.final_pages, "pages_written_twice": m.written_twice,
                "complete_ms": round(m.complete_s * 1e3, 3),
                "guest_ticks_per_s": round(m.speed),
                "bytes_written": m.bytes_written, "identical_run": m.identical_run,
                "resume": {how: {**r.stats.to_dict(), "identical": r.identical,
                                 "differs": r.differs} for how, r in m.resumed.items()},
                "identical": m.identical, "note": m.note}
    return {"program": c.program, "memory": c.memory_size, "engine": c.engine, "at": c.at,
            "ticks": c.ticks, "uninterrupted_ms": round(c.seconds * 1e3, 3),
            "uninterrupted_ticks_per_s": round(c.speed),
            "uninterrupted_end": c.ended or "halt",
            "modes": [mode(m) for m in c.modes], "identical": c.identical}


# --- the sweep: pre-copy against the dirty rate -----------------------------------------------

DEFAULT_SWEEP = "8,16,32,48,64,90"
SWEEP_WORKING_SET = 256         # pages the guest keeps rewriting (1 MiB)
SWEEP_DISK = 64 * 1024


def parse_rates(text: str) -> list[int]:
    """'8,16,32' or '8-88' (step 8) or '8-88:16' -> pages per 1,000 ticks."""
    from .labguest import LOOP_TICKS, MAX_RATE

    def number(part: str) -> int:
        try:
            value = int(part, 0)
        except ValueError:
            raise MinivmError(f"--sweep {text!r}: {part.strip()!r} is not a whole number; "
                              "give e.g. 8,16,32 or 8-88:8") from None
        if not 1 <= value <= MAX_RATE:
            raise MinivmError(f"--sweep {text!r}: a rate is 1 to {MAX_RATE} pages per 1,000 "
                              f"ticks (the lab guest writes one page per iteration of "
                              f"{LOOP_TICKS} ticks or more)")
        return value
    text = text.strip()
    if "-" in text and "," not in text:
        span, _, step = text.partition(":")
        low, _, high = span.partition("-")
        lo, hi, by = number(low), number(high), number(step) if step else 8
        if hi < lo:
            raise MinivmError(f"--sweep {text!r}: the range ends below its start")
        rates = list(range(lo, hi + 1, by))
    else:
        rates = [number(p) for p in text.split(",") if p.strip()]
    if not rates or len(rates) > 64:
        raise MinivmError(f"--sweep {text!r}: give 1 to 64 rates")
    return rates


@dataclass
class SweepRow:
    rate: int
    at: int
    precopy: ModeResult
    cow: ModeResult
    threshold: int
    max_rounds: int
    per_slice: int = 64             # pre-copy's copy rate: pages per slice_ticks ticks
    slice_ticks: int = 1000

    @property
    def converged(self) -> bool:
        return (self.precopy.rounds is not None and self.precopy.rounds < self.max_rounds
                and self.precopy.final_pages <= self.threshold)


def sweep_guest(rate: int, memory_size: int, options: dict):
    from .assembler import assemble
    from .labguest import LOOP_TICKS, lab_source, touched_pages
    from .precopy import MAX_ROUNDS, PAGES_PER_SLICE, SLICE_TICKS
    pages = touched_pages(memory_size)
    per, slice_ticks = options.get("pages_per_slice", PAGES_PER_SLICE), \
        options.get("slice_ticks", SLICE_TICKS)
    rounds = options.get("max_rounds", MAX_ROUNDS)
    at = 4 * pages + 2000                       # just after the guest has touched its pages
    needed = (slice_ticks * (pages // per + 2)
              + rounds * slice_ticks * (SWEEP_WORKING_SET // per + 2) + 20_000)
    period = max(1000 // rate, LOOP_TICKS)
    source = lab_source(memory_size, rate, needed // period + 1, SWEEP_WORKING_SET)
    return assemble(source, f"<lab guest, {rate} pages per 1,000 ticks>"), at


def sweep(rates: list[int], *, memory_size: int, engine: str, progress=None,
          precopy_options: dict | None = None) -> list[SweepRow]:
    from .precopy import MAX_ROUNDS, PAGES_PER_SLICE, SLICE_TICKS, THRESHOLD
    options = dict(precopy_options or {})
    progress = progress or (lambda text: None)
    rows = []
    for n, rate in enumerate(rates, 1):
        image, at = sweep_guest(rate, memory_size, options)
        folder = tempfile.mkdtemp(prefix="minivm-sweep-")
        try:
            disk = os.path.join(folder, "disk.img")
            with open(disk, "wb") as f:
                f.write(bytes(SWEEP_DISK))
            lab = Lab(image, memory_size, disk, engine,
                      lambda text, rate=rate, n=n: progress(f"[{n}/{len(rates)}] rate {rate}: "
                                                            f"{text}"), options)
            try:
                found = {mode: lab.saving_only(mode, at) for mode in (PRECOPY, COW)}
            finally:
                lab.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(SweepRow(rate, at, found[PRECOPY], found[COW],
                             options.get("threshold", THRESHOLD),
                             options.get("max_rounds", MAX_ROUNDS),
                             options.get("pages_per_slice", PAGES_PER_SLICE),
                             options.get("slice_ticks", SLICE_TICKS)))
    return rows


SWEEP_COLUMNS = ("rate", "written", "rounds", "final pages", "twice", "precopy stop",
                 "cow stop", "converged")
#: What the sweep's short column names mean (printed under its table: 80 columns)
SWEEP_LEGEND = ("rate: pages per 1,000 ticks asked of the guest; written: what it wrote; "
                "rounds, final pages, twice: pre-copy's rounds, the pages its final stop "
                "copied, the pages it copied more than once; converged: 'no: limit' when "
                "the rounds hit their limit")


def format_sweep(rows: list[SweepRow], memory_size: int) -> str:
    from .labguest import actual_rate
    from .memory import format_size
    table = []
    for r in rows:
        p = r.precopy
        taken = p.rounds is not None
        table.append([str(r.rate), f"{actual_rate(r.rate):.1f}", _dash(p.rounds), _dash(p.final_pages),
                      _dash(p.written_twice), _us(p.stop_us) if taken else "-",
                      _us(r.cow.stop_us) if r.cow.tick else "-",
                      ("yes" if r.converged else "no: limit") if taken else "not taken"])
    first = rows[0] if rows else None
    from .labguest import touched_pages
    working = min(SWEEP_WORKING_SET, touched_pages(memory_size))
    head = (f"the lab guest: {format_size(memory_size)} of memory, a working set of "
            f"{working} pages rewritten at each rate; checkpoint asked for at tick "
            f"{first.at:,} (after it has touched its memory); pre-copy copies "
            f"{first.per_slice} pages per {first.slice_ticks:,} ticks and stops at "
            f"{first.threshold} dirty pages or {first.max_rounds} rounds" if first else "")
    return "\n".join([textwrap.fill(head, 80, break_on_hyphens=False), "",
                      format_table(SWEEP_COLUMNS, table), "",
                      textwrap.fill(SWEEP_LEGEND, 80, break_on_hyphens=False)])


def sweep_dict(rows: list[SweepRow], memory_size: int) -> dict:
    from .labguest import actual_rate, touched_pages
    return {"memory": memory_size,
            "working_set": min(SWEEP_WORKING_SET, touched_pages(memory_size)),
            "precopy_pages_per_1000_ticks": (rows[0].per_slice * 1000 // rows[0].slice_ticks
                                             if rows else None),
            "rows": [{"rate": r.rate, "written_per_1000_ticks": round(actual_rate(r.rate), 1),
                      "at": r.at, "precopy_rounds": r.precopy.rounds,
                      "final_stop_pages": r.precopy.final_pages,
                      "pages_written_twice": r.precopy.written_twice,
                      "precopy_stop_us": round(r.precopy.stop_us, 1),
                      "cow_stop_us": round(r.cow.stop_us, 1), "converged": r.converged}
                     for r in rows]}
