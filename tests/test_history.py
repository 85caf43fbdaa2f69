"""Time travel (minivm/history.py): a jump to any tick of a recorded run gives
exactly the machine a fresh forward run stopped at that tick has: registers,
pc, tick, memory, every device (timer phase, pending interrupts, DMA in
flight, console counters) and the disk. On both engines, with checkpoints
(``ckpt``) in the run, and with recording invisible to the run itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckpt_strategies import (Config, ckpt_programs, close_disks, disk_pattern, final_state,
                             gen_config, new_machine, write_disk, assemble_text)
from minivm.checkpoint import Checkpointer
from minivm.history import History
from minivm.store import FileStore

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 400_000


class Run:
    """A machine with a checkpointer (FileStore) and, if asked, a history."""

    def __init__(self, image, config: Config, folder: Path, name: str, *, history=True,
                 interval=500, budget=None):
        folder.mkdir(parents=True, exist_ok=True)
        disk = None
        if config.disk_content is not None:
            disk = write_disk(folder / f"{name}.img", config.disk_content)
        self.machine = new_machine(image, config, disk)
        self.cp = Checkpointer(self.machine, FileStore(str(folder / f"{name}-ckpt")),
                               pages_per_slice=4)
        self.history = (History(self.machine, self.cp, interval=interval, adaptive=False,
                                budget=budget) if history else None)

    def state(self):
        f = final_state(self.machine, type("S", (), {"reason": "-"})())
        f.output = b""
        return f

    def close(self):
        if self.history is not None:
            self.history.close()
        self.cp.finish_all()
        close_disks(self.machine)


def fresh_state_at(image, config, folder, tick):
    run = Run(image, config, folder, f"fresh{tick}", history=False)
    run.machine.run(max_ticks=tick)
    state = run.state()
    run.close()
    return state


def _differences(a, b):
    return a.differences(b, skip=("output", "stop"))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=ckpt_programs(max_ops=14), data=st.data())
def test_goto_equals_a_fresh_run_stopped_there(tmp_path_factory, engine, source, data):
    image = assemble_text(source)
    config = gen_config(disk_pattern(), engine)
    folder = tmp_path_factory.mktemp("goto")
    run = Run(image, config, folder, "rec")
    try:
        run.machine.run(max_ticks=LIMIT)
        end = run.machine.tick
        final = run.state()
        ticks = data.draw(st.lists(st.integers(0, end), min_size=1, max_size=4), label="ticks")
        for k in ticks + [end]:
            run.history.goto(k)
            expected = fresh_state_at(image, config, folder, k)
            assert not _differences(run.state(), expected), (k, _differences(run.state(), expected))
        assert not _differences(run.state(), final)
    finally:
        run.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=ckpt_programs(max_ops=14))
def test_recording_is_invisible(tmp_path_factory, engine, source):
    image = assemble_text(source)
    config = gen_config(disk_pattern(), engine)
    folder = tmp_path_factory.mktemp("invisible")
    plain = Run(image, config, folder, "plain", history=False)
    recorded = Run(image, config, folder, "rec", interval=97)
    try:
        plain.machine.run(max_ticks=LIMIT)
        recorded.machine.run(max_ticks=LIMIT)
        a, b = plain.state(), recorded.state()
        assert not _differences(a, b)
        assert plain.machine.console.sink.data == recorded.machine.console.sink.data
    finally:
        plain.close()
        recorded.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=ckpt_programs(max_ops=14), data=st.data())
def test_reverse_step_from_k_plus_n_is_k(tmp_path_factory, engine, source, data):
    image = assemble_text(source)
    config = gen_config(disk_pattern(), engine)
    folder = tmp_path_factory.mktemp("rstep")
    run = Run(image, config, folder, "rec", interval=300)
    try:
        run.machine.run(max_ticks=LIMIT)
        end = run.machine.tick
        k = data.draw(st.integers(0, max(end - 1, 0)), label="k")
        n = data.draw(st.integers(1, 50), label="n")
        # k as a boundary, and the boundary n instructions after it
        run.history.goto(k)
        k = run.machine.tick
        at_k = run.state()
        for _ in range(n):
            if run.machine.halted or run.machine.fault is not None:
                break
            run.machine.run(max_ticks=1)
            n_done = _ + 1
        else:
            n_done = n
        back = run.history.instruction_back(run.machine.tick, n_done)
        run.history.goto(back)
        assert run.machine.tick == k
        assert not _differences(run.state(), at_k)
    finally:
        run.close()


def test_a_budget_for_one_snapshot_only_is_still_exact(tmp_path, engine):
    source = (ROOT / "programs" / "timer_clock.asm").read_text()
    image = assemble_text(source, "timer_clock.asm")
    config = Config(engine=engine)
    run = Run(image, config, tmp_path, "tiny", interval=50, budget=1)
    try:
        run.machine.run(max_ticks=LIMIT)
        assert len(run.history.snapshots) <= 2
        for k in (0, 7, run.machine.tick // 2, run.machine.tick - 1):
            run.history.goto(k)
            assert not _differences(run.state(), fresh_state_at(image, config, tmp_path, k))
    finally:
        run.close()


def test_goto_before_the_start_is_refused(tmp_path, engine):
    image = assemble_text("mov r1, 5\nhalt\n")
    run = Run(image, Config(engine=engine), tmp_path, "x")
    try:
        run.machine.run()
        from minivm.history import HistoryError
        with pytest.raises(HistoryError):
            run.history.goto(-1)
    finally:
        run.close()


WAITER = """
        out 0x11, tick_handler
        out 0x10, 50
        ei
        mov r2, 0
again:
        wait
        add r2, r2, 1
        blt r2, 5, again
        out 0x10, 0
        halt
tick_handler:
        add r3, r3, 1
        iret
"""


def test_reverse_step_over_a_wait_lands_on_the_wait(tmp_path, engine):
    image = assemble_text(WAITER, "waiter.asm")
    run = Run(image, Config(engine=engine), tmp_path, "w", interval=7)
    m = run.machine
    try:
        boundaries = [m.tick]
        while not m.halted:
            m.run(max_ticks=1)
            boundaries.append(m.tick)
        assert any(b - a > 1 for a, b in zip(boundaries, boundaries[1:]))   # waits jumped
        states = {}
        for t in boundaries:
            run.history.goto(t)
            assert m.tick == t
            states[t] = run.state()
        for i in range(len(boundaries) - 1, 0, -1):
            for n in (1, 2, 3):
                if i - n < 0:
                    continue
                assert run.history.instruction_back(boundaries[i], n) == boundaries[i - n]
        run.history.goto(boundaries[3])
        assert not _differences(run.state(), states[boundaries[3]])
    finally:
        run.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=ckpt_programs(max_ops=12), data=st.data())
def test_search_back_finds_the_forward_hits_in_reverse(tmp_path_factory, engine, source, data):
    from minivm.history import Stops
    image = assemble_text(source)
    config = gen_config(disk_pattern(), engine)
    folder = tmp_path_factory.mktemp("rc")
    run = Run(image, config, folder, "rec", interval=data.draw(st.integers(50, 900)))
    m = run.machine
    try:
        pcs = data.draw(st.sets(st.integers(0, len(image.code) - 1), min_size=1, max_size=3))
        for pc in pcs:
            m.set_breakpoint(pc)
        # a breakpoint on the first instruction: the forward run starts on it
        hits = [(m.tick, m.pc, tuple(m.regs))] if m.pc in pcs else []
        for _ in range(300):
            stop = m.run(max_ticks=LIMIT)
            if stop.reason != "breakpoint":
                break
            hits.append((m.tick, m.pc, tuple(m.regs)))
        back = []
        while True:
            found = run.history.search_back(Stops())
            if found is None:
                break
            back.append((m.tick, m.pc, tuple(m.regs)))
        assert back == list(reversed(hits))
    finally:
        run.close()
