"""The background save rate: fixed (tests, --save-rate, MINIVM_SAVE_RATE) or adaptive."""

import pytest

from minivm.checkpoint import Checkpointer, default_save_rate
from minivm.errors import MinivmError
from minivm.store import MemoryStore
from support import PROGRAMS, make_machine, run_cli

TOUCHES = """
        mov r1, 0
loop:   st r1, [r1 + 0x10000]
        add r1, r1, 4096
        blt r1, 0x40000, loop
        ckpt
        mov r2, 0
spin:   add r2, r2, 1
        blt r2, 20000, spin
        halt
"""


def test_the_suite_runs_at_a_fixed_rate():
    assert default_save_rate() == 16


@pytest.mark.parametrize("text", ["0", "-3", "fast", "1.5"])
def test_a_bad_rate_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv("MINIVM_SAVE_RATE", text)
    with pytest.raises(MinivmError, match="MINIVM_SAVE_RATE"):
        default_save_rate()


def _pages_done_per_sample(rate_env, monkeypatch, **options):
    if rate_env is None:
        monkeypatch.delenv("MINIVM_SAVE_RATE", raising=False)
    else:
        monkeypatch.setenv("MINIVM_SAVE_RATE", rate_env)
    m = make_machine(TOUCHES, memory_size=1 << 20)
    cp = Checkpointer(m, MemoryStore(), **options)
    stop = m.run(1_000_000)
    assert stop.reason == "halt"
    cp.finish_all()
    assert [job.status for job in cp.jobs] == ["complete"]
    return [(s.tick, dict(s.pages_done)) for s in cp.samples]


def test_a_fixed_rate_saves_the_same_at_the_same_ticks(monkeypatch):
    first = _pages_done_per_sample("2", monkeypatch)
    again = _pages_done_per_sample("2", monkeypatch)
    assert first == again
    explicit = _pages_done_per_sample(None, monkeypatch, pages_per_slice=2)
    assert explicit == first


def test_the_adaptive_rate_still_completes(monkeypatch):
    """Without a fixed rate the batch size follows host time: only what does
    not depend on it (the checkpoint completes) is asserted."""
    _pages_done_per_sample(None, monkeypatch)


def test_cli_save_rate_is_checked():
    proc = run_cli("run", str(PROGRAMS / "hello.asm"), "--save-rate", "0")
    assert proc.returncode != 0
    assert b"--save-rate" in proc.stderr and b"Traceback" not in proc.stderr
