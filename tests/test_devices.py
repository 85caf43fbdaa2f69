"""Devices (docs/isa.md, sections 4 and 5): bad inputs, save/restore, and timing.

Expected ticks are worked out by hand from docs/isa.md: an instruction runs at
tick t and leaves the clock at t+1; an event due at T is delivered at the
boundary where the clock reads T, so a handler's first instruction runs at T
(when interrupts are enabled); taking an interrupt costs no tick.
"""

from __future__ import annotations

import os
import stat

import pytest

from minivm.devices import (BufferSink, Console, ConsoleInput, Disk, InterruptController,
                            Timer)
from minivm.disks import create_raw_disk, open_disk
from minivm.errors import DiskError
from minivm.machine import Machine, MemoryDma
from minivm.memory import Memory

from support import PROGRAMS, make_machine, run_cli, run_source

DISK_SIZE = 65536           # 128 blocks
LOG = 0x100                 # where the test programs' handlers log


@pytest.fixture
def disk_path(tmp_path):
    path = tmp_path / "disk.img"
    create_raw_disk(str(path), DISK_SIZE)
    return path


@pytest.fixture
def disk(disk_path):
    d = open_disk(str(disk_path))
    yield d
    d.close()


def words(machine, addr, n):
    return [machine.memory.load_word(addr + 4 * i) for i in range(n)]


def fault_text(result) -> str:
    assert result.stop.reason == "fault", str(result.stop)
    return str(result.stop.detail)


# --- disk files ---------------------------------------------------------------------------

def test_disk_file_missing(tmp_path):
    with pytest.raises(DiskError, match="does not exist"):
        open_disk(str(tmp_path / "nope.img"))


def test_disk_size_not_multiple_of_512(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(1000))
    with pytest.raises(DiskError, match="multiple of 512"):
        open_disk(str(path))


def test_disk_read_only(tmp_path, disk_path):
    os.chmod(disk_path, 0o444)
    try:
        if os.access(disk_path, os.W_OK):
            # running as root: the file is still writable, so it must open and work
            d = open_disk(str(disk_path))
            try:
                result = run_source("out 0x21, 0\nout 0x22, 1\nout 0x23, 2\nwait\nhalt\n",
                                    disk=d)
                assert result.stop.reason == "halt"
            finally:
                d.close()
        else:
            with pytest.raises(DiskError, match="permission denied") as info:
                open_disk(str(disk_path))
            assert "writable" in str(info.value)
    finally:
        os.chmod(disk_path, stat.S_IRUSR | stat.S_IWUSR)


def test_cli_disk_errors(tmp_path):
    prog = tmp_path / "p.asm"
    prog.write_text("halt\n")
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(513))
    for disk_arg, words_expected in ((tmp_path / "missing.img",
                                      ["does not exist", "create one with 'minivm disk create "]),
                                     (odd, ["513", "multiple of 512"])):
        proc = run_cli("run", str(prog), "--disk", str(disk_arg), input=b"")
        assert b"Traceback" not in proc.stderr
        assert proc.returncode == 2
        err = proc.stderr.decode()
        for word in words_expected:
            assert word in err, err


def test_cli_disk_create(tmp_path):
    img = tmp_path / "d.img"
    proc = run_cli("disk", "create", str(img), "2K")
    assert proc.returncode == 0, proc.stderr.decode()
    assert img.read_bytes() == bytes(2048)
    again = run_cli("disk", "create", str(img), "4K")        # never overwrites
    assert again.returncode == 2 and b"exists" in again.stderr
    assert img.stat().st_size == 2048
    bad = run_cli("disk", "create", str(tmp_path / "e.img"), "1000")
    assert bad.returncode == 2 and b"512" in bad.stderr
    assert b"Traceback" not in again.stderr + bad.stderr
    assert not (tmp_path / "e.img").exists()


# --- disk request faults -----------------------------------------------------------------

def _request(block, addr, count, command):
    return (f"out 0x20, {block}\nout 0x21, {addr}\nout 0x22, {count}\n"
            f"out 0x23, {command}\nhalt\n")


def test_dma_beyond_memory(disk):
    # 64 KiB of memory: one block at 0xFE00 fits exactly, two do not
    ok = run_source(_request(0, 0xFE00, 1, 1), disk=disk, memory_size=65536)
    assert ok.stop.reason == "halt"
    for command in (1, 2):
        result = run_source(_request(0, 0xFE00, 2, command), disk=disk, memory_size=65536)
        text = fault_text(result)
        assert "outside memory" in text and "DMA" in text
        assert "test.asm:4" in text and "pc 3" in text


def test_dma_address_beyond_memory(disk):
    result = run_source(_request(0, 0x10000, 1, 2), disk=disk, memory_size=65536)
    assert "outside memory" in fault_text(result)


def test_negative_count(disk):
    result = run_source(_request(0, 0, -1, 1), disk=disk)
    text = fault_text(result)
    assert "count" in text and "negative" in text


def test_block_outside_disk(disk):
    result = run_source(_request(127, 0, 2, 1), disk=disk)       # blocks 127..128 of 0..127
    text = fault_text(result)
    assert "outside the disk" in text and "128 blocks" in text
    ok = run_source(_request(127, 0, 1, 1), disk=disk)
    assert ok.stop.reason == "halt"


@pytest.mark.parametrize("command", [0, 3, -1, 0x102])
def test_unknown_disk_command(disk, command):
    result = run_source(_request(0, 0, 1, command), disk=disk)
    text = fault_text(result)
    assert "unknown disk command" in text


def test_disk_request_without_disk():
    for command in (1, 2):
        result = run_source(_request(0, 0, 1, command))
        text = fault_text(result)
        assert "no disk attached" in text and "pc 3" in text


@pytest.mark.parametrize("port, device", [(0x11, "timer"), (0x26, "disk")])
@pytest.mark.parametrize("address", ["3", "1000", "0x7FFFFFFF"])
def test_handler_outside_code(port, device, address):
    # the code has 3 instructions (0..2): 3 is one past the end
    result = run_source(f"out {port:#x}, {address}\nnop\nhalt\n")
    text = fault_text(result)
    assert "bad handler address" in text and device in text
    assert "pc 0" in text


@pytest.mark.parametrize("port", [0x11, 0x26])
def test_handler_last_instruction_and_clear_are_fine(port):
    result = run_source(f"out {port:#x}, 2\nout {port:#x}, -1\nhalt\n")
    assert result.stop.reason == "halt"


def test_iret_with_empty_stack():
    text = fault_text(run_source("iret\nhalt\n"))
    assert "iret" in text and "empty stack" in text and "pc 0" in text


def test_ret_with_empty_stack():
    text = fault_text(run_source("nop\nret\n"))
    assert "ret" in text and "empty stack" in text and "pc 1" in text


# --- save / restore of each device ---------------------------------------------------------

def test_console_save_round_trip():
    console = Console(BufferSink(), ConsoleInput(b"abc"))
    assert console.get_byte() == ord("a")
    assert console.get_byte() == ord("b")
    console.put_number((-1234) & 0xFFFFFFFF)
    console.put_byte(0x10A)
    assert bytes(console.sink.data) == b"-1234\n"
    state = console.save()
    fresh = Console(BufferSink(), ConsoleInput(b""))
    fresh.restore(state)
    assert fresh.save() == state
    assert state["input_consumed"] == 2 and state["bytes_written"] == 6


def test_timer_save_round_trip():
    timer = Timer(code_size=10)
    timer.set_handler(7)
    timer.set_period(25, 3)
    assert timer.next_event() == 28
    assert timer.fire() == (28, True)
    state = timer.save()
    fresh = Timer(code_size=10)
    fresh.restore(state)
    assert fresh.save() == state
    assert fresh.next_event() == 53 and fresh.handler == 7


def test_disk_save_round_trip_with_requests_in_flight(disk):
    memory = Memory(65536)
    memory.write_bytes(0x1000, bytes(range(256)) * 4)
    device = Disk(disk, MemoryDma(memory), code_size=20, latency=30, per_block=4)
    device.set_handler(5)
    for block, addr, count, command, tick in ((1, 0x1000, 2, 2, 10), (4, 0x2000, 1, 1, 11),
                                              (9, 0x3000, 0, 1, 12), (0, 0x1200, 1, 2, 13)):
        device.set_block(block)
        device.set_addr(addr)
        device.set_count(count)
        device.command(command, tick)
    assert device.in_flight() == 4
    state = device.save()
    fresh = Disk(disk, MemoryDma(Memory(65536)), code_size=20)
    fresh.restore(state)
    assert fresh.save() == state
    assert [r.done for r in fresh.queue] == [48, 82, 112, 146]
    assert fresh.queue[0].data == (bytes(range(256)) * 4)[:1024]
    assert fresh.latency == 30 and fresh.per_block == 4 and fresh.handler == 5


def test_interrupt_controller_save_round_trip():
    irq = InterruptController()
    irq.raise_irq(50, 1, "disk")
    irq.raise_irq(50, 0, "timer")
    irq.raise_irq(20, 1, "disk")
    assert irq.pop() == (20, "disk")
    irq.raise_irq(70, 0, "timer")
    irq.enabled = True
    state = irq.save()
    fresh = InterruptController()
    fresh.restore(state)
    assert fresh.save() == state
    assert fresh.enabled
    assert fresh.pending() == [(50, "timer"), (50, "disk"), (70, "timer")]


# --- machine-level save / restore ---------------------------------------------------------

MIXED = """
; the timer and the disk together, with interrupts pending for a while
        out 0x11, th
        out 0x26, dh
        out 0x10, 37
        mov r14, 0x4000         ; log pointer
        mov r5, 0               ; requests issued
issue:  out 0x20, r5
        mul r6, r5, 512
        out 0x21, r6
        out 0x22, 1
        out 0x23, 2             ; write block r5 from memory r5 * 512
        add r5, r5, 1
        blt r5, 6, issue
        mov r1, 0
spin:   add r1, r1, 1           ; interrupts disabled: events stay pending
        blt r1, 100, spin
        ei
loop:   in r2, 0x24         ; until every write has completed (and its
        bne r2, 0, loop     ; handler has run: it runs at the completion tick)
        di
        out 0x10, 0
        halt
th:     push r1
        in r1, 0x12
        st r1, [r14]
        mov r1, 1
        st r1, [r14 + 4]
        add r14, r14, 8
        add r13, r13, 1
        pop r1
        iret
dh:     push r1
        in r1, 0x25
        st r1, [r14]
        mov r1, 2
        st r1, [r14 + 4]
        add r14, r14, 8
        add r13, r13, 1
        out 0x00, 'd'
        pop r1
        iret
.data
        .ascii "some data to write to the disk"
"""


def _full_state(machine, disk_file):
    pages = {i: machine.memory.page_bytes(i) for i in machine.memory.nonzero_page_indexes()}
    return (machine.save_state(), list(machine.regs), pages,
            open(disk_file, "rb").read())


@pytest.mark.parametrize("split", [30, 150, 230, 400])
def test_machine_save_restore(tmp_path, split):
    paths = []
    for name in ("ref.img", "split.img"):
        paths.append(tmp_path / name)
        create_raw_disk(str(paths[-1]), DISK_SIZE)
    ref_disk, split_disk = open_disk(str(paths[0])), open_disk(str(paths[1]))
    try:
        reference = make_machine(MIXED, disk=ref_disk)
        assert reference.run(100_000).reason == "halt"

        first = make_machine(MIXED, disk=split_disk)
        assert first.run(split).reason == "limit"
        assert first.tick == split
        state = first.save_state()

        second = make_machine(MIXED, disk=split_disk)
        second.restore_state(state)
        assert second.save_state() == state
        # give it the memory too, then it must finish exactly like the reference
        second_memory = Machine(second.image, disk=split_disk, load_data=False,
                                console_sink=BufferSink(), console_input=ConsoleInput(b""))
        for i in first.memory.nonzero_page_indexes():
            second_memory.memory.load_page(i, first.memory.page_bytes(i))
        second_memory.restore_state(state)
        assert second_memory.save_state() == state
        assert second_memory.run(100_000).reason == "halt"
        output = bytes(first.console.sink.data) + bytes(second_memory.console.sink.data)
        assert output == bytes(reference.console.sink.data) == b"d" * 6
        assert _full_state(second_memory, paths[1]) == _full_state(reference, paths[0])
    finally:
        ref_disk.close()
        split_disk.close()


def test_machine_save_has_in_flight_and_pending(disk):
    machine = make_machine(MIXED, disk=disk)
    machine.run(100)          # 6 writes issued, timer fired twice, interrupts disabled
    state = machine.save_state()
    assert len(state["disk"]["queue"]) == 6
    assert state["interrupts"]["pending"] and not state["interrupts"]["enabled"]
    assert state["timer"]["period"] == 37
    fresh = make_machine(MIXED, disk=disk)
    fresh.restore_state(state)
    assert fresh.save_state() == state


# --- timing (docs/isa.md, section 4) ---------------------------------------------------------

HANDLER_LOG_TICK = """
handler:
        in r1, 0x12         ; runs at the tick the event was delivered
        st r1, [r14]
        add r14, r14, 4
        add r13, r13, 1
        iret
"""


def test_timer_fires_at_t_plus_n():
    src = f"""
        out 0x11, handler   ; 0
        mov r14, {LOG}      ; 1
        ei                  ; 2
        nop                 ; 3
        out 0x10, 7         ; 4: fires at 11, 18, 25
loop:   blt r13, 3, loop
        out 0x10, 0
        halt
""" + HANDLER_LOG_TICK
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert words(result.machine, LOG, 3) == [11, 18, 25]
    assert result.machine.timer.fired == 3


def test_new_period_restarts_phase():
    src = f"""
        out 0x11, handler   ; 0
        mov r14, {LOG}      ; 1
        ei                  ; 2
        out 0x10, 10        ; 3: would fire at 13
        nop                 ; 4
        nop                 ; 5
        nop                 ; 6
        nop                 ; 7
        nop                 ; 8
        out 0x10, 6         ; 9: fires at 15, 21, 27 instead
loop:   blt r13, 3, loop
        out 0x10, 0
        halt
""" + HANDLER_LOG_TICK
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert words(result.machine, LOG, 3) == [15, 21, 27]


def test_timer_read_tick_port():
    result = run_source("nop\nnop\nin r1, 0x12\nin r2, 0x12\nhalt\n")
    assert result.machine.regs[1:3] == [2, 3]
    assert result.machine.tick == 5


def test_timer_without_handler_drops_events():
    src = """
        out 0x10, 5         ; 0: fires at 5, 10, ..., 30
        ei
        mov r1, 0
spin:   add r1, r1, 1
        blt r1, 15, spin    ; until tick 33
        out 0x11, -1        ; clearing again is fine
        halt
"""
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert result.machine.interrupts_taken == 0
    assert result.machine.timer.fired == 6
    assert not result.machine.interrupts.has_pending()


def test_code_address_zero_is_a_valid_handler():
    src = """
h:      add r13, r13, 1     ; the handler, at code address 0
        iret
start:  out 0x11, 0
        out 0x10, 10
        ei
loop:   blt r13, 2, loop
        out 0x10, 0
        halt
.entry start
"""
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert result.machine.regs[13] == 2


def test_disk_timing_order_and_status_ports(disk):
    src = f"""
        out 0x26, handler   ; 0
        mov r14, {LOG}      ; 1
        out 0x21, 0x1000    ; 2
        out 0x22, 2         ; 3
        out 0x23, 1         ; 4: read #1, 2 blocks: start 4, done 4 + 50 + 14 = 68
        out 0x22, 0         ; 5
        out 0x23, 2         ; 6: write #2, 0 blocks: starts when #1 is done, 68 + 50 = 118
        out 0x22, 5         ; 7
        out 0x23, 1         ; 8: read #3, 5 blocks: 118 + 50 + 35 = 203
        in r5, 0x24         ; 9: 3 in flight
        in r6, 0x25         ; 10: 0, none completed yet
        ei                  ; 11
loop:   blt r13, 3, loop
        in r7, 0x24         ; 0 in flight
        in r8, 0x25         ; last completed: 3
        halt
handler:
        in r1, 0x12         ; the completion tick
        st r1, [r14]
        in r1, 0x25         ; the id of the request that completed
        st r1, [r14 + 4]
        in r1, 0x24         ; requests still in flight
        st r1, [r14 + 8]
        add r14, r14, 12
        add r13, r13, 1
        iret
"""
    machine = make_machine(src, disk=disk, disk_latency=50, disk_per_block=7)
    assert machine.run(10).reason == "limit"
    assert [(r.id, r.done) for r in machine.disk.queue] == [(1, 68), (2, 118), (3, 203)]
    assert machine.run(10_000).reason == "halt"
    m = machine
    assert words(m, LOG, 9) == [68, 1, 2, 118, 2, 1, 203, 3, 0]
    assert (m.regs[5], m.regs[6], m.regs[7], m.regs[8]) == (3, 0, 0, 3)


def test_disk_default_timing(disk):
    # defaults: latency 100, per block 10
    src = f"""
        out 0x26, handler   ; 0
        mov r14, {LOG}      ; 1
        out 0x22, 3         ; 2
        out 0x23, 1         ; 3: done 3 + 100 + 30 = 133
        ei                  ; 4
        wait                ; 5
        halt
""" + HANDLER_LOG_TICK
    result = run_source(src, disk=disk)
    assert result.stop.reason == "halt"
    assert words(result.machine, LOG, 1) == [133]


def test_write_data_taken_at_issue_reaches_disk_at_completion(disk, disk_path):
    src = """
        mov r1, 0x11223344  ; 0
        st r1, [0x1000]     ; 1
        out 0x20, 3         ; 2
        out 0x21, 0x1000    ; 3
        out 0x22, 1         ; 4
        out 0x23, 2         ; 5: write block 3, done at 115
        mov r1, 0x55667788  ; 6
        st r1, [0x1000]     ; 7: changing memory now must not change the write
poll:   in r2, 0x24
        bne r2, 0, poll
        halt
"""
    machine = make_machine(src, disk=disk)
    machine.run(114)
    assert disk_path.read_bytes()[1536:2048] == bytes(512)      # not there yet
    machine.run(1)                                               # clock reads 115
    assert machine.tick == 115
    assert disk_path.read_bytes()[1536:2048] == bytes.fromhex("44332211") + bytes(508)
    assert machine.run(1000).reason == "halt"
    assert machine.memory.load_word(0x1000) == 0x55667788


def test_read_lands_when_it_completes(disk, disk_path):
    with open(disk_path, "r+b") as f:
        f.seek(2 * 512)
        f.write(b"block two!" * 51 + b"..")
    src = """
        out 0x20, 2         ; 0
        out 0x21, 0x2000    ; 1
        out 0x22, 1         ; 2
        out 0x23, 1         ; 3: read, done at 3 + 110 = 113
poll:   in r2, 0x24
        bne r2, 0, poll
        halt
"""
    machine = make_machine(src, disk=disk)
    machine.run(112)
    assert machine.memory.read_bytes(0x2000, 512) == bytes(512)
    machine.run(1)
    assert machine.tick == 113
    assert machine.memory.read_bytes(0x2000, 512) == b"block two!" * 51 + b".."
    assert machine.run(1000).reason == "halt"


def test_count_zero_is_allowed(disk):
    src = """
        out 0x22, 0
        out 0x23, 1         ; 1: done at 1 + 100
        out 0x23, 2         ; 2: done at 101 + 100
        wait                ; 3 -> 101
        in r1, 0x12         ; 101
        in r2, 0x25         ; 1
        wait                ; 103 -> 201
        in r3, 0x12         ; 201
        in r4, 0x25         ; 2
        halt
"""
    result = run_source(src, disk=disk)
    assert result.stop.reason == "halt"
    assert result.machine.regs[1:5] == [101, 1, 201, 2]


def test_event_while_disabled_stays_pending():
    src = f"""
        out 0x11, handler   ; 0
        mov r14, {LOG}      ; 1
        out 0x10, 6         ; 2: fires at 8, 14, ...
        mov r1, 0           ; 3
spin:   add r1, r1, 1       ; 4 6 8 10
        blt r1, 4, spin     ; 5 7 9 11
        out 0x10, 0         ; 12: stop; only the event at 8 happened
        ei                  ; 13: delivered at the next boundary, tick 14
        halt                ; runs after the handler: 19
""" + HANDLER_LOG_TICK
    machine = make_machine(src)
    machine.run(12)
    assert machine.interrupts.pending() == [(8, "timer")]
    assert machine.interrupts_taken == 0
    assert machine.run(100).reason == "halt"
    assert words(machine, LOG, 1) == [14]
    assert machine.interrupts_taken == 1
    assert machine.tick == 20


TWO_HANDLERS = """
th:     in r1, 0x12
        st r1, [r14]
        mov r1, 1           ; 1 = timer
        st r1, [r14 + 4]
        add r14, r14, 8
        add r13, r13, 1
        iret
dh:     in r1, 0x12
        st r1, [r14]
        mov r1, 2           ; 2 = disk
        st r1, [r14 + 4]
        add r14, r14, 8
        add r13, r13, 1
        iret
"""


def test_tie_timer_goes_first(disk):
    src = f"""
        out 0x11, th        ; 0
        out 0x26, dh        ; 1
        mov r14, {LOG}      ; 2
        out 0x21, 0x1000    ; 3
        out 0x22, 1         ; 4
        out 0x23, 1         ; 5: done at 5 + 110 = 115
        out 0x10, 109       ; 6: fires at 115 too
        ei                  ; 7
loop:   blt r13, 2, loop
        out 0x10, 0
        halt
""" + TWO_HANDLERS
    result = run_source(src, disk=disk)
    assert result.stop.reason == "halt"
    # the timer handler runs 115..121, then the disk's is delivered at 122
    assert words(result.machine, LOG, 4) == [115, 1, 122, 2]


@pytest.mark.parametrize("timer_period, order", [(109, [1, 2]),   # tie at 115: timer first
                                                 (115, [2, 1]),   # disk at 115, timer at 121
                                                 (105, [1, 2])])  # timer at 111, disk at 115
def test_pending_delivered_in_time_order(disk, timer_period, order):
    src = f"""
        out 0x11, th        ; 0
        out 0x26, dh        ; 1
        mov r14, {LOG}      ; 2
        out 0x21, 0x1000    ; 3
        out 0x22, 1         ; 4
        out 0x23, 1         ; 5: done at 115
        out 0x10, {timer_period} ; 6
        mov r1, 0           ; 7
spin:   add r1, r1, 1       ; 8 .. 207, interrupts disabled
        blt r1, 100, spin
        out 0x10, 0         ; 208
        ei                  ; 209
loop:   blt r13, 2, loop
        halt
""" + TWO_HANDLERS
    machine = make_machine(src, disk=disk)
    machine.run(208)
    assert len(machine.interrupts.pending()) == 2
    assert machine.run(1000).reason == "halt"
    log = words(machine, LOG, 4)
    assert [log[1], log[3]] == order
    assert log[0] == 210 and log[2] == 217      # delivered after ei, one after the other


def test_wait_advances_clock_to_next_event():
    src = """
        out 0x11, h         ; 0
        out 0x10, 50        ; 1: fires at 51
        wait                ; 2: clock jumps to 51; disabled, so it stays pending
        in r1, 0x12         ; 51
        out 0x10, 0         ; 52
        halt                ; 53
h:      iret
"""
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert result.machine.regs[1] == 51
    assert result.machine.tick == 54
    assert result.machine.interrupts.pending() == [(51, "timer")]
    assert result.machine.interrupts_taken == 0


def test_wait_delivers_when_enabled():
    src = """
        out 0x11, h         ; 0
        out 0x10, 50        ; 1: fires at 51
        ei                  ; 2
        wait                ; 3: clock jumps to 51, the handler runs at 51, 52
        in r2, 0x12         ; 53
        out 0x10, 0         ; 54
        halt                ; 55
h:      in r1, 0x12
        iret
"""
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert result.machine.regs[1:3] == [51, 53]
    assert result.machine.tick == 56


def test_wait_spends_its_own_tick():
    src = """
        out 0x10, 2         ; 0: fires at 2 (no handler: dropped)
        wait                ; 1: t + 1 = 2 = the event
        in r1, 0x12         ; 2
        wait                ; 3: next event at 4 = t + 1
        in r2, 0x12         ; 4
        out 0x10, 0
        halt
"""
    result = run_source(src)
    assert result.stop.reason == "halt"
    assert result.machine.regs[1:3] == [2, 4]


def test_wait_for_disk(disk):
    src = """
        out 0x22, 1         ; 0
        out 0x23, 1         ; 1: done at 111
        wait                ; 2 -> 111
        in r1, 0x12         ; 111
        in r2, 0x24         ; 0 in flight
        in r3, 0x25         ; 1 completed
        halt
"""
    result = run_source(src, disk=disk)
    assert result.stop.reason == "halt"
    assert result.machine.regs[1:4] == [111, 0, 1]


@pytest.mark.parametrize("src, pc", [
    ("nop\nwait\nhalt\n", 1),
    ("out 0x10, 5\nout 0x10, 0\nwait\nhalt\n", 2),                  # timer stopped
    ("out 0x11, h\nout 0x10, 2\nnop\nnop\nout 0x10, 0\nwait\nhalt\nh: iret\n", 5),  # pending only
])
def test_wait_with_nothing_scheduled_faults(src, pc):
    text = fault_text(run_source(src))
    assert "wait" in text and "nothing scheduled" in text
    assert f"pc {pc}" in text


def test_wait_after_disk_idle_faults(disk):
    src = "out 0x22, 1\nout 0x23, 1\nwait\nwait\nhalt\n"
    result = run_source(src, disk=disk)
    text = fault_text(result)
    assert "nothing scheduled" in text and "pc 3" in text
    assert result.machine.tick == 111       # the first wait jumped to 111


def test_device_program_via_cli_uses_disk_options(tmp_path):
    img = tmp_path / "d.img"
    create_raw_disk(str(img), DISK_SIZE)
    src = tmp_path / "t.asm"
    src.write_text("out 0x22, 4\nout 0x23, 1\nwait\nin r0, 0x12\nhalt\n")
    # done at 1 + latency + per_block * 4; the exit status is that & 0xFF
    proc = run_cli("run", str(src), "--disk", str(img), "--disk-latency", "20",
                   "--disk-per-block", "5", input=b"")
    assert proc.returncode == 41, proc.stderr.decode()
    proc = run_cli("run", str(src), "--disk", str(img), input=b"")
    assert proc.returncode == 141, proc.stderr.decode()


def test_programs_dir_exists():
    assert (PROGRAMS / "hello.asm").exists()
