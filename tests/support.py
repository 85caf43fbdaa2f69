"""Helpers shared by the tests: run programs in-process or through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minivm.assembler import assemble
from minivm.devices import BufferSink, ConsoleInput
from minivm.machine import Machine, Stop

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "programs"


@dataclass
class Result:
    machine: Machine
    stop: Stop

    @property
    def output(self) -> bytes:
        return bytes(self.machine.console.sink.data)

    @property
    def text(self) -> str:
        return self.output.decode()


def make_machine(source: str, *, filename: str = "test.asm", input: bytes = b"",
                 **machine_options) -> Machine:
    image = assemble(source, filename)
    return Machine(image, console_sink=BufferSink(), console_input=ConsoleInput(input),
                   **machine_options)


def run_source(source: str, *, max_ticks: int = 10_000_000, **options) -> Result:
    machine = make_machine(source, **options)
    return Result(machine, machine.run(max_ticks))


def run_program(name: str, **options) -> Result:
    path = PROGRAMS / name
    return run_source(path.read_text(), filename=str(path), **options)


def run_cli(*args: str, input: bytes | None = None, cwd=None, timeout: float = 120):
    """Run ``python -m minivm ARGS``; returns the CompletedProcess (bytes)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "minivm", *args], input=input,
                          capture_output=True, cwd=cwd, timeout=timeout, env=env)


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in minivm hides it."""


@contextmanager
def threshold(value: int):
    """The blocks engine compiles a region at the ``value``-th visit of a
    block start (1: almost everything runs compiled, even a short program)."""
    from minivm.engine import blocks
    saved = blocks.THRESHOLD
    blocks.THRESHOLD = value
    try:
        yield
    finally:
        blocks.THRESHOLD = saved


@contextmanager
def time_limit(seconds: float, what: str):
    """Fail (instead of hanging the test run) if the body takes longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise Hang(f"{what} did not finish within {seconds} s: a hang")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def bounded(what: str, *, megabytes: float, hang_after: float = 60):
    """The body allocates at most ``megabytes`` MiB at its peak (counted by
    tracemalloc, so the same on every host) and does not hang: ``hang_after``
    seconds is a generous hang guard, not a speed requirement."""
    tracemalloc.start()
    try:
        with time_limit(hang_after, what):
            yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < megabytes * (1 << 20), \
        f"{what} allocated {peak / (1 << 20):.1f} MiB at its peak (the bound is {megabytes} MiB)"


def sliced_trail(m: Machine, slices) -> list:
    """Run ``m`` in slices of the given sizes (each a deadline) until a stop
    other than the limit: (reason, the stop as text, pc, tick, registers)
    after each, then the console's output. What the differential tests
    compare between the engines."""
    trail = []
    for size in slices:
        stop = m.run(size)
        trail.append((stop.reason, str(stop), m.pc, m.tick, tuple(m.regs)))
        if stop.reason != "limit":
            break
    trail.append(bytes(m.console.sink.data))
    return trail


def ran_sieve(rounds: int = 2) -> tuple:
    """(image, machine) of ``minivm bench``'s sieve run to its halt on the
    blocks engine, its hot regions compiled (it counts the 1028 primes)."""
    from minivm import bench
    image = assemble(bench.SIEVE_LOOP.format(n=rounds), "sieve.asm")
    m = Machine(image, console_sink=BufferSink(), console_input=ConsoleInput(b""),
                engine="blocks")
    m.run()
    assert bytes(m.console.sink.data) == b"1028"
    return image, m
