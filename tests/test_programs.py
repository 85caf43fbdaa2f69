"""The guest programs in programs/: exact output, exit status, determinism.

Every expected output here is derived from the program text and docs/isa.md
(section 4 for the devices), not copied from a run of minivm.
"""

from __future__ import annotations

import pytest

from minivm.disks import create_raw_disk, open_disk

from support import PROGRAMS, run_cli, run_program

DISK_SIZE = 65536

# --- expected outputs, written out by hand ---------------------------------------------------

HELLO = "Hello, world!\n"

# F(0) .. F(19)
FIB = ("0\n1\n1\n2\n3\n5\n8\n13\n21\n34\n55\n89\n144\n233\n377\n610\n987\n"
       "1597\n2584\n4181\n")

# The array in bubble_sort.asm is 42 -7 13 0 99 -7 5 1000 -250 13 8 3 -1 64.
BUBBLE = "-250 -7 -7 -1 0 3 5 8 13 13 42 64 99 1000\n"

# Timer period 1000 set at tick 0: fires at 1000, 2000, ...; a line every 5th.
TIMER = "tick 5000\ntick 10000\ntick 15000\ntick 20000\n"

DISK = "OK\n"

ECHO_INPUT = b"Hello, World! 0-9 az AZ `{@[ ~\n\tmixed Case\xe9\x80\xff\x00end"
ECHO_OUTPUT = b"HELLO, WORLD! 0-9 AZ AZ `{@[ ~\n\tMIXED CASE\xe9\x80\xff\x00END"


def _primes_below(n: int) -> list[int]:
    """Independent reference: trial division (not a sieve)."""
    return [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


SIEVE_PRIMES = _primes_below(1000)
SIEVE = "".join(f"{p}\n" for p in SIEVE_PRIMES)


def test_reference_values_are_sane():
    # Guards the hand-written expectations above against typos.
    assert len(SIEVE_PRIMES) == 168 and SIEVE_PRIMES[:5] == [2, 3, 5, 7, 11]
    assert SIEVE_PRIMES[-1] == 997
    fib = [0, 1]
    while len(fib) < 20:
        fib.append(fib[-1] + fib[-2])
    assert FIB == "".join(f"{v}\n" for v in fib)
    values = [42, -7, 13, 0, 99, -7, 5, 1000, -250, 13, 8, 3, -1, 64]
    assert BUBBLE == " ".join(map(str, sorted(values))) + "\n"
    assert ECHO_OUTPUT == bytes(b - 32 if 97 <= b <= 122 else b for b in ECHO_INPUT)


def _disk(tmp_path, name="disk.img"):
    path = tmp_path / name
    create_raw_disk(str(path), DISK_SIZE)
    return path


def _pattern(n: int) -> bytes:
    """disk_copy.asm's pattern: byte i = (i ^ (i >> 8)) & 0xFF."""
    return bytes((i ^ (i >> 8)) & 0xFF for i in range(n))


def _assert_clean_halt(result):
    assert result.stop.reason == "halt", str(result.stop)
    assert result.machine.halted
    assert result.machine.fault is None
    assert result.machine.regs[0] & 0xFF == 0


# --- exact output, in process ---------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("hello.asm", HELLO), ("fib.asm", FIB), ("sieve.asm", SIEVE),
    ("bubble_sort.asm", BUBBLE), ("timer_clock.asm", TIMER),
])
def test_program_output(name, expected):
    result = run_program(name)
    _assert_clean_halt(result)
    assert result.text == expected


def test_bubble_sort_sorts_in_memory():
    result = run_program("bubble_sort.asm")
    _assert_clean_halt(result)
    symbols = result.machine.image.symbols
    count_addr, array_addr = symbols["count"][1], symbols["array"][1]
    mem = result.machine.memory
    n = mem.load_word(count_addr)
    assert n == 14
    words = [mem.load_word(array_addr + 4 * i) for i in range(n)]
    signed = [w - (1 << 32) if w & 0x8000_0000 else w for w in words]
    assert signed == [-250, -7, -7, -1, 0, 3, 5, 8, 13, 13, 42, 64, 99, 1000]
    # subroutines restore the registers they save: the stack is balanced
    assert result.machine.regs[15] == result.machine.memory.size


def test_timer_clock_exact_state():
    result = run_program("timer_clock.asm")
    _assert_clean_halt(result)
    m = result.machine
    # The 20th interrupt fires at tick 20000. The handler is 9 instructions
    # (20000..20008); then main: di, ld, ld, ei, mod, bne, mov (20009..20015),
    # "tick " takes 5 x 5 instructions plus ldb/beq on the NUL (20016..20042),
    # out, out, add, blt, di, out 0x10, mov r0, halt (20043..20050). The halt
    # runs at tick 20050 and leaves the clock at 20051.
    assert m.tick == 20051
    assert m.regs[1] == 20          # interrupts counted
    assert m.regs[2] == 20000       # tick of the last one
    assert m.regs[5] == 4           # lines printed
    assert m.interrupts_taken == 20
    assert m.memory.load_word(m.image.symbols["ticks"][1]) == 20
    assert m.timer.period == 0 and m.timer.next_event() is None
    assert not m.interrupts.enabled
    assert m.regs[15] == m.memory.size      # every push undone by pop/iret


def test_disk_copy_output_and_disk_contents(tmp_path):
    path = _disk(tmp_path)
    disk = open_disk(str(path))
    try:
        result = run_program("disk_copy.asm", disk=disk)
        _assert_clean_halt(result)
        assert result.text == DISK
        m = result.machine
        sym = m.image.symbols
        assert m.memory.load_word(sym["completed"][1]) == 8       # 4 writes + 4 reads
        assert m.memory.load_word(sym["in_flight_seen"][1]) == 4  # all writes in flight
        assert m.disk.last_completed == 8 and m.disk.next_id == 9
        assert m.disk.in_flight() == 0
        pattern = _pattern(4096)
        assert m.memory.read_bytes(sym["src"][1], 4096) == pattern
        assert m.memory.read_bytes(sym["dst"][1], 4096) == pattern
    finally:
        disk.close()
    data = path.read_bytes()
    assert len(data) == DISK_SIZE
    assert data[8 * 512:16 * 512] == _pattern(4096)   # blocks 8..15
    assert data[:8 * 512] == bytes(8 * 512)
    assert data[16 * 512:] == bytes(DISK_SIZE - 16 * 512)


def test_disk_copy_without_disk_faults_cleanly():
    result = run_program("disk_copy.asm")
    assert result.stop.reason == "fault"
    assert "no disk" in str(result.stop.detail)
    assert result.text == ""


@pytest.mark.parametrize("data, expected", [
    (ECHO_INPUT, ECHO_OUTPUT),
    (b"", b""),
    (b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    (b"@AZ[`az{", b"@AZ[`AZ{"),                    # the bytes around both ranges
    (bytes(range(256)), bytes(b - 32 if 97 <= b <= 122 else b for b in range(256))),
])
def test_echo_output(data, expected):
    result = run_program("echo.asm", input=data)
    _assert_clean_halt(result)
    assert result.output == expected
    assert result.machine.console.input_consumed == len(data)


# --- determinism -----------------------------------------------------------------------------

def _state(result):
    m = result.machine
    pages = {i: m.memory.page_bytes(i) for i in m.memory.nonzero_page_indexes()}
    return (result.output, m.tick, list(m.regs), m.pc, pages, m.save_state(),
            str(result.stop))


def test_timer_clock_is_deterministic():
    first, second = run_program("timer_clock.asm"), run_program("timer_clock.asm")
    assert first.text == TIMER
    assert _state(first) == _state(second)


def test_echo_is_deterministic():
    first = run_program("echo.asm", input=ECHO_INPUT)
    second = run_program("echo.asm", input=ECHO_INPUT)
    assert first.output == ECHO_OUTPUT
    assert _state(first) == _state(second)


def test_disk_copy_is_deterministic(tmp_path):
    states, images = [], []
    for name in ("a.img", "b.img"):
        path = _disk(tmp_path, name)
        disk = open_disk(str(path))
        try:
            result = run_program("disk_copy.asm", disk=disk)
            assert result.text == DISK
            states.append(_state(result))
        finally:
            disk.close()
        images.append(path.read_bytes())
    assert states[0] == states[1]
    assert images[0] == images[1]


# --- through the command line ----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("hello.asm", HELLO), ("fib.asm", FIB), ("sieve.asm", SIEVE),
    ("bubble_sort.asm", BUBBLE), ("timer_clock.asm", TIMER),
])
def test_cli_run(name, expected):
    proc = run_cli("run", str(PROGRAMS / name), input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == expected.encode()
    assert b"Traceback" not in proc.stderr


def test_cli_run_echo_stdin_and_input_file(tmp_path):
    proc = run_cli("run", str(PROGRAMS / "echo.asm"), input=ECHO_INPUT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ECHO_OUTPUT
    infile = tmp_path / "in.txt"
    infile.write_bytes(ECHO_INPUT)
    proc = run_cli("run", str(PROGRAMS / "echo.asm"), "--input", str(infile))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ECHO_OUTPUT


def test_cli_run_disk_copy(tmp_path):
    img = tmp_path / "disk.img"
    proc = run_cli("disk", "create", str(img), "64K")
    assert proc.returncode == 0, proc.stderr.decode()
    assert img.stat().st_size == DISK_SIZE
    proc = run_cli("run", str(PROGRAMS / "disk_copy.asm"), "--disk", str(img),
                   "--checkpoint-dir", str(tmp_path / "ckpt"), input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == DISK.encode()
    assert b"Traceback" not in proc.stderr
    assert img.read_bytes()[4096:8192] == _pattern(4096)


def test_cli_run_disk_copy_without_disk_fails(tmp_path):
    proc = run_cli("run", str(PROGRAMS / "disk_copy.asm"), input=b"")
    assert proc.returncode == 3
    assert b"no disk" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_every_program_is_tested():
    tested = {"hello.asm", "fib.asm", "sieve.asm", "bubble_sort.asm", "timer_clock.asm",
              "disk_copy.asm", "echo.asm"}
    assert tested <= {p.name for p in PROGRAMS.glob("*.asm")}


@pytest.mark.parametrize("name", ["hello.asm", "fib.asm", "sieve.asm", "bubble_sort.asm",
                                  "timer_clock.asm", "disk_copy.asm", "echo.asm"])
def test_program_is_commented_and_halts(name):
    text = (PROGRAMS / name).read_text()
    first = text.lstrip().splitlines()[0]
    assert first.startswith(";"), "a header comment comes first"
    code_lines = [l.split(";")[0].strip().lower() for l in text.splitlines()]
    assert any(l.split(":")[-1].strip() == "halt" for l in code_lines)
