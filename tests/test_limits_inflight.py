"""The disk's in-flight limits (issue 12): what a run may write, resume must read.

* ``--max-inflight`` and ``--max-inflight-bytes`` are part of the run: they
  are saved in the checkpoint (the disk state's ``max_inflight`` and
  ``max_inflight_bytes``) and a resumed run faults where the original would;
  a checkpoint holding more requests than the default can be inspected and
  resumed. Files written before the fields existed load with the defaults;
* the bytes in flight are bounded, not only the requests: a guest cannot
  make the host hold 1,024 writes of 16 MiB each;
* both limits are bounded by what a checkpoint can save and load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from minivm.checkpoint import Checkpointer
from minivm.devices import (BLOCK_SIZE, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT_BYTES,
                            MAX_INFLIGHT, MAX_INFLIGHT_BYTES, BufferSink, ConsoleInput)
from minivm.disks import close_chain, open_disk
from minivm.errors import MinivmError
from minivm.machine import MACHINE_STATE, Machine
from minivm.resume import read_checkpoint, resume
from minivm.state import MAX_LIST, StateError
from minivm.container import MAX_FILE_BYTES
from minivm.assembler import assemble
from minivm.store import FileStore

from support import bounded, run_cli

# Issues N requests of COUNT blocks each (command CMD), all in flight at once
# with a long latency, then exits with the number in flight.
ISSUE = """
        out 0x21, buf
        out 0x22, {count}
        mov r1, 0
issue:  out 0x20, 0
        out 0x23, {cmd}
        add r1, r1, 1
        blt r1, {n}, issue
        in r0, 0x24
        halt
.data
buf:    .space 512
"""


def program(tmp_path: Path, n: int, count: int = 1, cmd: int = 1) -> str:
    path = tmp_path / "issue.asm"
    path.write_text(ISSUE.format(n=n, count=count, cmd=cmd))
    return str(path)


def disk(tmp_path: Path, blocks: int = 64) -> str:
    path = tmp_path / "d.img"
    with open(path, "wb") as f:
        f.truncate(blocks * BLOCK_SIZE)
    return str(path)


def err_of(proc) -> str:
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    return err


def fault_line(err: str) -> str:
    (line,) = [x for x in err.splitlines() if "fault:" in x]
    return line


# --- --max-inflight is part of the checkpoint ----------------------------------------------------

def test_resume_faults_where_the_run_faulted(tmp_path):
    """A run with --max-inflight 3 faults at the 4th request; its resume must too
    (it used to run on with the default 1024 and exit 5). The run is on interp,
    the resume on blocks: the fault is the same on both."""
    prog, img = program(tmp_path, 5), disk(tmp_path)
    proc = run_cli("run", "--engine", "interp", prog, "--disk", img, "--max-inflight", "3",
                   "--disk-latency", "100000", "--checkpoint-at", "3", "--checkpoint-dir",
                   str(tmp_path / "ck"), input=b"")
    err = err_of(proc)
    assert proc.returncode == 3, err
    fault = fault_line(err)
    assert "too many disk requests in flight (the limit is 3)" in fault, err
    ckpt = str(tmp_path / "ck" / "ckpt-0001.mvc")
    assert read_checkpoint(ckpt).state["disk"]["max_inflight"] == 3
    proc = run_cli("resume", "--engine", "blocks", ckpt, "--checkpoint-dir", str(tmp_path / "ck2"),
                   input=b"")
    err = err_of(proc)
    assert proc.returncode == 3, err
    assert fault_line(err) == fault


def test_a_checkpoint_with_2000_in_flight_resumes_and_inspects(tmp_path):
    """--max-inflight 2000 with 1,419 reads in flight: the checkpoint used to be
    refused by resume and inspect ("more than the limit of 1024")."""
    prog, img = program(tmp_path, 1419), disk(tmp_path)
    proc = run_cli("run", "--engine", "interp", prog, "--disk", img, "--max-inflight", "2000",
                   "--disk-latency", "10000000", "--checkpoint-at", str(2 + 4 * 1419), "--checkpoint-dir",
                   str(tmp_path / "ck"), input=b"")
    err = err_of(proc)
    assert proc.returncode == 1419 & 0xFF, err
    ckpt = str(tmp_path / "ck" / "ckpt-0001.mvc")
    assert len(read_checkpoint(ckpt).state["disk"]["queue"]) == 1419
    proc = run_cli("inspect", ckpt, input=b"")
    assert proc.returncode == 0, err_of(proc)
    proc = run_cli("resume", "--engine", "blocks", ckpt, "--checkpoint-dir", str(tmp_path / "ck2"),
                   input=b"")
    assert proc.returncode == 1419 & 0xFF, err_of(proc)


def _machine(tmp_path, source, **options):
    return Machine(assemble(source, "issue.asm"), disk=open_disk(disk(tmp_path)),
                   console_sink=BufferSink(), console_input=ConsoleInput(b""), **options)


def test_a_checkpoint_without_the_fields_loads_with_the_defaults(tmp_path):
    """Files written before the limits were saved keep working, with the
    defaults of their time (1024 requests) and the new bytes bound's default."""
    m = _machine(tmp_path, ISSUE.format(n=3, count=1, cmd=1), max_inflight=5,
                 disk_latency=1000)
    assert m.run(2 + 4 * 3).reason == "limit"
    saved = m.save_state()
    assert saved["disk"]["max_inflight"] == 5
    assert saved["disk"]["max_inflight_bytes"] == DEFAULT_MAX_INFLIGHT_BYTES
    del saved["disk"]["max_inflight"], saved["disk"]["max_inflight_bytes"]
    fresh = _machine(tmp_path / "..", ISSUE.format(n=3, count=1, cmd=1), max_inflight=7)
    fresh.restore_state(saved)
    assert fresh.disk.max_inflight == DEFAULT_MAX_INFLIGHT
    assert fresh.disk.max_inflight_bytes == DEFAULT_MAX_INFLIGHT_BYTES
    assert fresh.disk.inflight_bytes == 3 * BLOCK_SIZE
    close_chain(m.disk.backing, fresh.disk.backing)


def test_the_saved_queue_must_fit_the_saved_limits(tmp_path):
    m = _machine(tmp_path, ISSUE.format(n=3, count=2, cmd=1), max_inflight=5,
                 disk_latency=1000)
    m.run(2 + 4 * 3)
    saved = m.save_state()
    saved["disk"]["max_inflight"] = 2
    with pytest.raises(StateError, match=r"^disk\.queue: 3 requests in flight, more than "
                                         r"the run's limit of 2"):
        MACHINE_STATE.validate(saved)
    saved = m.save_state()
    saved["disk"]["max_inflight_bytes"] = 3 * 2 * BLOCK_SIZE - 1
    with pytest.raises(StateError, match=r"^disk\.queue: the requests in flight move 3072 "
                                         r"bytes, more than the run's limit of 3071"):
        MACHINE_STATE.validate(saved)
    close_chain(m.disk.backing)


# --- the bytes in flight ----------------------------------------------------------------------------

def test_bytes_in_flight_are_bounded_in_host_memory(tmp_path):
    """1,024 writes of 256 KiB each under a 1 MiB bound: the 5th is a guest
    fault, and the host never holds more than the bound in write data (it
    used to hold all of them: 1,024 x 16 MiB = 16 GiB, MemoryError at 2 GB)."""
    source = ISSUE.format(n=1024, count=512, cmd=2)
    m = Machine(assemble(source, "issue.asm"), memory_size=1 << 20,
                disk=open_disk(disk(tmp_path, 1024)), console_sink=BufferSink(),
                console_input=ConsoleInput(b""), disk_latency=10_000_000,
                max_inflight_bytes=1 << 20)
    with bounded("1,024 writes of 256 KiB each", megabytes=4):
        stop = m.run(100_000)
    assert stop.reason == "fault", stop
    assert "too many bytes in flight: this request moves 262144 bytes (512 blocks), and " \
           "1048576 bytes are in flight already; the limit is 1048576 bytes " \
           "(--max-inflight-bytes)" in str(stop.detail)
    assert len(m.disk.queue) == 4 and m.disk.inflight_bytes == 1 << 20
    close_chain(m.disk.backing)


def test_bytes_in_flight_fall_as_requests_complete(tmp_path):
    """The count follows the queue: completed requests give their bytes back."""
    source = ISSUE.format(n=40, count=512, cmd=2)
    m = Machine(assemble(source, "issue.asm"), memory_size=1 << 20,
                disk=open_disk(disk(tmp_path, 1024)), console_sink=BufferSink(),
                console_input=ConsoleInput(b""), disk_latency=0, disk_per_block=0,
                max_inflight_bytes=512 * BLOCK_SIZE)
    assert m.run(100_000).reason == "halt"
    assert m.disk.inflight_bytes == 0 and not m.disk.queue
    close_chain(m.disk.backing)


def test_cli_max_inflight_bytes_is_saved_and_resumed(tmp_path):
    prog, img = program(tmp_path, 6, count=4, cmd=2), disk(tmp_path)
    proc = run_cli("run", prog, "--disk", img, "--max-inflight-bytes", "10K",
                   "--disk-latency", "100000", "--checkpoint-at", "3",
                   "--checkpoint-dir", str(tmp_path / "ck"), input=b"")
    err = err_of(proc)
    assert proc.returncode == 3 and "the limit is 10240 bytes" in err, err
    proc = run_cli("resume", str(tmp_path / "ck" / "ckpt-0001.mvc"),
                   "--checkpoint-dir", str(tmp_path / "ck2"), input=b"")
    assert fault_line(err_of(proc)) == fault_line(err)


def test_the_default_bounds_16_mib_writes(tmp_path):
    """The attack of issue 12 under the default bound: writes of 16 MiB each
    fault at the 5th (64 MiB in flight), with a clear message."""
    prog, img = program(tmp_path, 1024, count=32768, cmd=2), disk(tmp_path, 32768)
    proc = run_cli("run", prog, "--disk", img, "--mem", "17M", "--disk-latency", "16000000",
                   input=b"")
    err = err_of(proc)
    assert proc.returncode == 3, err
    assert "too many bytes in flight: this request moves 16777216 bytes (32768 blocks), " \
           "and 67108864 bytes are in flight already" in err, err


# --- the limits themselves ---------------------------------------------------------------------------

def test_the_limits_fit_what_a_checkpoint_saves_and_loads():
    assert MAX_INFLIGHT <= MAX_LIST                 # the saved queue is a list
    assert MAX_INFLIGHT_BYTES < MAX_FILE_BYTES      # its writes' data fits in a loadable file
    assert DEFAULT_MAX_INFLIGHT <= MAX_INFLIGHT
    assert DEFAULT_MAX_INFLIGHT_BYTES <= MAX_INFLIGHT_BYTES


@pytest.mark.parametrize("option, value, message", [
    ("--max-inflight", "65537", "--max-inflight 65537 is out of range: 1 .. 65536"),
    ("--max-inflight-bytes", "257M", "--max-inflight-bytes 269484032 is out of range"),
    ("--max-inflight-bytes", "lots", "bad --max-inflight-bytes size 'lots'"),
])
def test_cli_refuses_limits_a_checkpoint_could_not_hold(tmp_path, option, value, message):
    proc = run_cli("run", program(tmp_path, 1), option, value, input=b"")
    err = err_of(proc)
    assert proc.returncode == 2 and message in err, err


def test_machine_refuses_limits_a_checkpoint_could_not_hold():
    image = assemble("halt\n", "h.asm")
    with pytest.raises(MinivmError, match="out of range"):
        Machine(image, max_inflight=MAX_INFLIGHT + 1)
    with pytest.raises(MinivmError, match="out of range"):
        Machine(image, max_inflight_bytes=MAX_INFLIGHT_BYTES + 1)


def test_a_checkpoint_with_the_most_requests_in_flight_resumes(tmp_path):
    """MAX_INFLIGHT requests (of 0 blocks) in flight: saved, loaded, resumed."""
    source = ISSUE.format(n=MAX_INFLIGHT, count=0, cmd=1)
    m = Machine(assemble(source, "issue.asm"), disk=open_disk(disk(tmp_path)),
                console_sink=BufferSink(), console_input=ConsoleInput(b""),
                disk_latency=10_000_000, max_inflight=MAX_INFLIGHT)
    cp = Checkpointer(m, FileStore(str(tmp_path / "ck")), schedule=[2 + 4 * MAX_INFLIGHT])
    assert m.run(10_000_000).reason == "halt" and m.regs[0] == MAX_INFLIGHT
    cp.finish_all()
    (job,) = cp.jobs
    assert job.status == "complete", job.progress()
    ckpt = read_checkpoint(job.location)
    assert len(ckpt.state["disk"]["queue"]) == MAX_INFLIGHT
    resumed, _ = resume(ckpt, FileStore(str(tmp_path / "ck2")), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""))
    assert resumed.run(10_000_000).reason == "halt"
    assert resumed.regs[0] == MAX_INFLIGHT
    close_chain(m.disk.backing, resumed.disk.backing)


def test_the_repl_takes_the_limits_too(tmp_path, engine):
    """`minivm repl` accepts the machine options of `run`; it used to ignore
    --max-inflight (the run faulted, the REPL did not)."""
    prog, img = program(tmp_path, 5), disk(tmp_path)
    batch = tmp_path / "cmds.txt"
    batch.write_text(f"load {prog}\nrun\n")
    proc = run_cli("repl", "--engine", engine, "--disk", img, "--max-inflight", "3",
                   "--disk-latency", "100000", "--batch", str(batch), input=b"", cwd=tmp_path)
    out = proc.stdout.decode() + err_of(proc)
    assert "too many disk requests in flight (the limit is 3)" in out, out
