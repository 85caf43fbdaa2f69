"""Instruction semantics and faults (docs/isa.md, sections 1 to 3 and 6).

Each test runs a short program and checks registers, memory, console output
or the tick counter; expected values are worked out from docs/isa.md by hand.
"""

from __future__ import annotations

import re

import pytest

from minivm.engine import ENGINES
from tests.support import run_source as _run_source

MASK = 0xFFFF_FFFF
FILE = "sem.asm"
INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1


# --- engines ---------------------------------------------------------------------
# Every execution engine the machine offers must keep these semantics.

_engine = {"name": ENGINES[0]}


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    _engine["name"] = request.param
    yield request.param
    _engine["name"] = ENGINES[0]


def run_source(src: str, **kw):
    if _engine["name"] != "interp":
        kw.setdefault("engine", _engine["name"])
    return _run_source(src, **kw)


# --- helpers ---------------------------------------------------------------------

def run(src: str, **kw):
    result = run_source(src, filename=FILE, max_ticks=100_000, **kw)
    assert result.stop.reason == "halt", result.stop
    return result


def u(x: int) -> int:
    return x & MASK


def s(x: int) -> int:
    x &= MASK
    return x - (1 << 32) if x & 0x8000_0000 else x


def reg(result, i: int) -> int:
    """Register i as an unsigned 32-bit word (whatever the machine stores)."""
    return result.machine.regs[i] & MASK


def fault(src: str, pc: int, line: int, *patterns: str, **kw) -> str:
    """Run ``src``; it must stop with a fault at ``pc`` (source line ``line``)
    whose message matches every regex in ``patterns``. Returns the message."""
    result = run_source(src, filename=FILE, max_ticks=100_000, **kw)
    assert result.stop.reason == "fault", result.stop
    message = str(result.stop.detail)
    assert message == str(result.machine.fault) or str(result.machine.fault) in message
    assert re.search(rf"\bpc\W{{0,3}}{pc}\b", message), f"pc {pc} not named in {message!r}"
    assert f"{FILE}:{line}" in message, f"{FILE}:{line} not in {message!r}"
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), f"{pattern!r} not in {message!r}"
    assert "Traceback" not in message
    return message


# --- mov and arithmetic ---------------------------------------------------------------

def test_mov_immediate_and_register():
    r = run("mov r1, 42\nmov r2, r1\nmov r3, -1\nmov r4, 0xFFFFFFFF\nmov r0, 7\nhalt\n")
    assert (reg(r, 1), reg(r, 2), reg(r, 3), reg(r, 4), reg(r, 0)) == (42, 42, MASK, MASK, 7)


def test_registers_start_at_zero():
    r = run("halt\n")
    assert [reg(r, i) for i in range(15)] == [0] * 15


def test_r0_is_an_ordinary_register():
    r = run("mov r0, 5\nadd r0, r0, 1\nmov r1, r0\nhalt\n")
    assert (reg(r, 0), reg(r, 1)) == (6, 6)


@pytest.mark.parametrize("i", range(16))
def test_every_register_holds_a_value(i):
    r = run(f"mov r{i}, 0x{0x1000 + i:x}\nout 0x01, r{i}\nhalt\n")
    assert reg(r, i) == 0x1000 + i
    assert r.text == str(0x1000 + i)


@pytest.mark.parametrize("op, a, b, expected", [
    ("add", 2, 3, 5),
    ("add", 0xFFFFFFFF, 2, 1),
    ("add", 0x7FFFFFFF, 1, 0x80000000),
    ("add", 0x80000000, 0x80000000, 0),
    ("add", -5, 3, -2),
    ("sub", 5, 3, 2),
    ("sub", 0, 1, 0xFFFFFFFF),
    ("sub", 0x80000000, 1, 0x7FFFFFFF),
    ("sub", 3, -4, 7),
    ("mul", 6, 7, 42),
    ("mul", 0x10000, 0x10000, 0),
    ("mul", -3, 5, -15),
    ("mul", -3, -5, 15),
    ("mul", 0x12345678, 0x9ABCDEF, (0x12345678 * 0x9ABCDEF) & MASK),
    ("mul", 0xFFFFFFFF, 0xFFFFFFFF, 1),
    ("and", 0xF0F0F0F0, 0xFF00FF00, 0xF000F000),
    ("and", -1, 0x1234, 0x1234),
    ("or", 0xF0F0F0F0, 0x0F000F00, 0xFFF0FFF0),
    ("or", 0, 0, 0),
    ("xor", 0xFFFF0000, 0xFF00FF00, 0x00FFFF00),
    ("xor", 12345, 12345, 0),
])
def test_alu_register_and_immediate_forms(op, a, b, expected):
    src = (f"mov r1, {a}\nmov r2, {b}\n"
           f"{op} r3, r1, r2\n"
           f"{op} r4, r1, {b}\n"
           f"{op} r1, r1, r2\n"            # destination may be a source
           "halt\n")
    r = run(src)
    assert reg(r, 3) == u(expected)
    assert reg(r, 4) == u(expected)
    assert reg(r, 1) == u(expected)


@pytest.mark.parametrize("a, b", [
    (7, 2), (-7, 2), (7, -2), (-7, -2), (INT_MIN, -1), (INT_MIN, 1), (INT_MIN, 2),
    (INT_MAX, -1), (5, 7), (-5, 7), (0, -3), (INT_MIN, INT_MIN), (INT_MAX, INT_MIN),
    (100, 10), (-1, 0xFFFFFFFF), (0xFFFFFFFE, 2),
])
def test_div_and_mod_signed_truncating(a, b):
    # reference: C semantics on signed 32-bit values, result wrapped
    x, y = s(a), s(b)
    q = abs(x) // abs(y)
    if (x < 0) != (y < 0):
        q = -q
    rem = x - q * y
    src = (f"mov r1, {a}\nmov r2, {b}\n"
           "div r3, r1, r2\nmod r4, r1, r2\n"
           f"div r5, r1, {b}\nmod r6, r1, {b}\n"
           "out 0x01, r3\nout 0x00, 32\nout 0x01, r4\n"
           "halt\n")
    r = run(src)
    assert (reg(r, 3), reg(r, 4)) == (u(q), u(rem))
    assert (reg(r, 5), reg(r, 6)) == (u(q), u(rem))
    assert r.text == f"{s(q)} {s(rem)}"


@pytest.mark.parametrize("a, b, q, rem", [
    (-7, 2, -3, -1), (7, -2, -3, 1), (-7, -2, 3, -1), (7, 2, 3, 1),
    (INT_MIN, -1, INT_MIN, 0), (INT_MIN, 1, INT_MIN, 0), (1, INT_MIN, 0, 1),
    (INT_MIN, 3, -715827882, -2),
])
def test_div_mod_spec_examples(a, b, q, rem):
    r = run(f"mov r1, {a}\ndiv r2, r1, {b}\nmod r3, r1, {b}\nhalt\n")
    assert (reg(r, 2), reg(r, 3)) == (u(q), u(rem))


def test_not_and_neg():
    src = ("mov r1, 0\nnot r2, r1\n"
           "mov r3, 0x0F0F0F0F\nnot r4, r3\n"
           "mov r5, 1\nneg r6, r5\n"
           "mov r7, -2147483648\nneg r8, r7\n"
           "neg r9, r1\n"
           "mov r10, -5\nneg r10, r10\n"
           "halt\n")
    r = run(src)
    assert reg(r, 2) == 0xFFFFFFFF
    assert reg(r, 4) == 0xF0F0F0F0
    assert reg(r, 6) == 0xFFFFFFFF
    assert reg(r, 8) == 0x80000000
    assert reg(r, 9) == 0
    assert reg(r, 10) == 5


@pytest.mark.parametrize("op, value, count, expected", [
    ("shl", 1, 1, 2),
    ("shl", 1, 31, 0x80000000),
    ("shl", 1, 32, 1),                 # counts are taken mod 32
    ("shl", 1, 33, 2),
    ("shl", 3, 64 + 4, 48),
    ("shl", 1, -1, 0x80000000),        # 0xFFFFFFFF mod 32 = 31
    ("shl", 0xFFFFFFFF, 4, 0xFFFFFFF0),
    ("shl", 0x80000001, 1, 2),
    ("shr", 0x80000000, 31, 1),
    ("shr", 0xFFFFFFFF, 4, 0x0FFFFFFF),
    ("shr", -16, 2, 0x3FFFFFFC),
    ("shr", 0x80000000, 32, 0x80000000),
    ("shr", 0x80000000, 33, 0x40000000),
    ("shr", 256, 0, 256),
    ("sar", 0x80000000, 31, 0xFFFFFFFF),
    ("sar", -16, 2, -4),
    ("sar", -1, 31, -1),
    ("sar", 0x40000000, 30, 1),
    ("sar", -16, 34, -4),
    ("sar", 0x80000000, 32, 0x80000000),
    ("sar", -7, 1, -4),
])
def test_shifts(op, value, count, expected):
    src = (f"mov r1, {value}\nmov r2, {count}\n"
           f"{op} r3, r1, r2\n"
           f"{op} r4, r1, {count}\n"
           "halt\n")
    r = run(src)
    assert reg(r, 3) == u(expected)
    assert reg(r, 4) == u(expected)


# --- memory -----------------------------------------------------------------------------

def test_store_word_is_little_endian_and_loads_back():
    src = ("mov r1, 0x11223344\nmov r2, 0x100\n"
           "st r1, [r2]\n"
           "ldb r3, [r2]\nldb r4, [r2 + 1]\nldb r5, [r2 + 2]\nldb r6, [0x103]\n"
           "ld r7, [0x100]\n"
           "halt\n")
    r = run(src)
    assert [reg(r, i) for i in range(3, 8)] == [0x44, 0x33, 0x22, 0x11, 0x11223344]


def test_store_byte_stores_low_byte_only():
    src = ("mov r1, 0xAABBCCDD\nst r1, [0x200]\n"
           "mov r2, 0x12345678\nstb r2, [0x201]\n"
           "ld r3, [0x200]\nhalt\n")
    assert reg(run(src), 3) == 0xAABB78DD


def test_load_byte_zero_extends():
    src = "mov r1, -1\nstb r1, [0x10]\nldb r2, [0x10]\nld r3, [0x10]\nhalt\n"
    r = run(src)
    assert reg(r, 2) == 0xFF
    assert reg(r, 3) == 0xFF


def test_unaligned_word_access():
    src = ("mov r1, 0xA1B2C3D4\nmov r9, 0x301\n"
           "st r1, [r9]\n"
           "ld r2, [r9]\n"
           "ldb r3, [0x300]\nldb r4, [0x301]\nldb r5, [0x304]\nldb r6, [0x305]\n"
           "ld r7, [0x300]\n"
           "ld r8, [0x302]\n"
           "halt\n")
    r = run(src)
    assert reg(r, 2) == 0xA1B2C3D4
    assert [reg(r, i) for i in range(3, 7)] == [0, 0xD4, 0xA1, 0]
    assert reg(r, 7) == 0xB2C3D400
    assert reg(r, 8) == 0x00A1B2C3


@pytest.mark.parametrize("addr", [4093, 4094, 4095, 8190, 0xFEFFE])
def test_word_crossing_a_page_boundary(addr):
    src = (f"mov r1, 0x01020304\nmov r2, {addr}\n"
           "st r1, [r2]\n"
           "ld r3, [r2]\n"
           "ldb r4, [r2]\nldb r5, [r2 + 1]\nldb r6, [r2 + 2]\nldb r7, [r2 + 3]\n"
           "mov r8, 0xAABBCCDD\nst r8, [r2 - 4]\n"    # neighbour, also crossing nearby
           "ld r9, [r2]\nld r10, [r2 - 4]\n"
           "halt\n")
    r = run(src)
    assert reg(r, 3) == 0x01020304
    assert [reg(r, i) for i in range(4, 8)] == [4, 3, 2, 1]
    assert (reg(r, 9), reg(r, 10)) == (0x01020304, 0xAABBCCDD)
    assert r.machine.memory.load_word(addr) == 0x01020304


def test_memory_operand_offsets_wrap_and_negative():
    src = ("mov r1, 0x400\nmov r2, 77\n"
           "st r2, [r1 - 8]\n"
           "ld r3, [0x3F8]\n"
           "mov r4, 0x3F0\nld r5, [r4 + 8]\n"
           "mov r6, -8\nld r7, [r6 + 0x400]\n"       # base + offset wraps mod 2^32
           "halt\n")
    r = run(src)
    assert (reg(r, 3), reg(r, 5), reg(r, 7)) == (77, 77, 77)


def test_untouched_memory_reads_zero_and_costs_nothing():
    src = ("mov r1, 0x8000\n"
           "ld r2, [r1]\nldb r3, [r1 + 4095]\nld r4, [0]\nld r5, [0xFFFFC]\n"
           "mov r6, 0x54321\nld r6, [r6]\nldb r7, [0x7FFFF]\n"
           "halt\n")
    r = run(src)
    assert [reg(r, i) for i in range(2, 8)] == [0] * 6
    assert r.machine.memory.allocated == 0


def test_huge_memory_is_lazy():
    # docs/isa.md, section 1: up to 4 GiB must be accepted as a size
    src = ("ld r1, [0xFFFFFFFC]\nldb r2, [0x80000000]\n"
           "mov r3, 0x12345678\nst r3, [0xC0000000]\nld r4, [0xC0000000]\nhalt\n")
    r = run(src, memory_size=4 << 30)
    assert (reg(r, 1), reg(r, 2), reg(r, 4)) == (0, 0, 0x12345678)
    assert r.machine.memory.allocated == 1


def test_data_section_is_in_memory_from_address_zero():
    src = ("ld r1, [0]\nld r2, [4]\nldb r3, [8]\nhalt\n"
           ".data\n.word 10, 20\n.ascii \"Z\"\n")
    r = run(src)
    assert (reg(r, 1), reg(r, 2), reg(r, 3)) == (10, 20, ord("Z"))


# --- branches and jumps -----------------------------------------------------------------------

PAIRS = [(1, 2), (2, 1), (5, 5), (-1, 1), (1, -1), (-1, -1), (-2, -1),
         (INT_MIN, INT_MAX), (INT_MAX, INT_MIN), (0, 0xFFFFFFFF), (0x80000000, 0)]
BRANCHES = {
    "beq": lambda a, b: a == b, "bne": lambda a, b: a != b,
    "blt": lambda a, b: a < b, "ble": lambda a, b: a <= b,
    "bgt": lambda a, b: a > b, "bge": lambda a, b: a >= b,
}


@pytest.mark.parametrize("op", sorted(BRANCHES))
@pytest.mark.parametrize("a, b", PAIRS)
def test_branches_signed_register_and_immediate(op, a, b):
    taken = BRANCHES[op](s(a), s(b))
    src = (f"mov r1, {a}\nmov r2, {b}\n"
           "mov r3, 0\nmov r4, 0\n"
           f"{op} r1, r2, t1\n"
           "jmp n1\n"
           "t1: mov r3, 1\n"
           f"n1: {op} r1, {b}, t2\n"
           "jmp n2\n"
           "t2: mov r4, 1\n"
           "n2: halt\n")
    r = run(src)
    assert (reg(r, 3), reg(r, 4)) == (int(taken), int(taken))
    # taken: mov,mov,mov,mov,b,mov,b,mov,halt = 9; not taken: ...,b,jmp,b,jmp,halt = 9
    assert r.machine.tick == 9


def test_branch_backwards_loop_and_tick_count():
    src = ("mov r1, 10\n"
           "mov r2, 0\n"
           "loop: add r2, r2, r1\n"
           "sub r1, r1, 1\n"
           "bne r1, 0, loop\n"
           "halt\n")
    r = run(src)
    assert reg(r, 2) == 55
    assert r.machine.tick == 2 + 10 * 3 + 1


def test_jmp_label_and_register():
    src = ("jmp a\n"
           "mov r1, 1\n"          # skipped
           "a: mov r5, b\n"
           "jmp r5\n"
           "mov r2, 1\n"          # skipped
           "b: mov r3, 3\n"
           "halt\n")
    r = run(src)
    assert (reg(r, 1), reg(r, 2), reg(r, 3)) == (0, 0, 3)
    assert r.machine.tick == 5


def test_jmp_to_numeric_address():
    r = run("jmp 2\nmov r1, 1\nmov r2, 2\nhalt\n")
    assert (reg(r, 1), reg(r, 2)) == (0, 2)


def test_call_and_ret_with_label():
    src = ("call sub\n"          # 0
           "mov r4, 4\n"         # 1
           "halt\n"              # 2
           "sub: mov r1, sp\n"   # 3
           "ld r2, [sp]\n"       # 4
           "mov r3, 3\n"         # 5
           "ret\n")              # 6
    size = 65536
    r = run(src, memory_size=size)
    assert reg(r, 1) == size - 4        # the return address was pushed
    assert reg(r, 2) == 1               # ... and it is the next instruction
    assert (reg(r, 3), reg(r, 4)) == (3, 4)
    assert reg(r, 15) == size           # ret popped it
    assert r.machine.tick == 7


def test_call_and_ret_through_register_nested():
    src = ("mov r9, outer\n"     # 0
           "call r9\n"           # 1
           "out 0x01, r1\n"      # 2
           "halt\n"              # 3
           "outer: mov r1, 1\n"  # 4
           "call inner\n"        # 5
           "add r1, r1, 100\n"   # 6
           "ret\n"               # 7
           "inner: mul r1, r1, 7\n"  # 8
           "ret\n")              # 9
    r = run(src)
    assert r.text == "107"
    assert reg(r, 15) == 1 << 20


def test_push_pop_and_stack_grows_down():
    size = 8192
    src = ("mov r1, sp\n"
           "push 5\n"
           "mov r2, sp\n"
           "mov r3, 0x0BADCAFE\n"
           "push r3\n"
           "mov r4, sp\n"
           "push -1\n"
           "pop r5\n"
           "pop r6\n"
           "pop r7\n"
           "mov r8, sp\n"
           "halt\n")
    r = run(src, memory_size=size)
    assert reg(r, 1) == size
    assert reg(r, 2) == size - 4
    assert reg(r, 4) == size - 8
    assert (reg(r, 5), reg(r, 6), reg(r, 7)) == (MASK, 0x0BADCAFE, 5)
    assert reg(r, 8) == size
    mem = r.machine.memory
    assert mem.load_word(size - 4) == 5
    assert mem.load_word(size - 8) == 0x0BADCAFE


def test_push_stores_at_new_sp():
    src = "mov r1, 0x100\nmov sp, r1\npush 0x01020304\nldb r2, [0xFC]\nld r3, [0xFC]\nhalt\n"
    r = run(src)
    assert (reg(r, 2), reg(r, 3), reg(r, 15)) == (4, 0x01020304, 0xFC)


def test_sp_starts_at_memory_size():
    for size in (4096, 10000, 1 << 20):
        r = run("mov r1, sp\nhalt\n", memory_size=size)
        assert reg(r, 1) == size
        assert reg(r, 15) == size


def test_nop_and_halt_ticks():
    r = run("nop\nnop\nnop\nhalt\nmov r1, 1\n")
    assert r.machine.tick == 4
    assert reg(r, 1) == 0
    assert r.machine.halted


def test_tick_counts_every_instruction_of_a_known_program():
    src = ("mov r1, 3\n"              # 1
           "loop: call sub\n"         # 3 x (call + 2 + ret) = 12
           "sub r1, r1, 1\n"          # 3
           "bgt r1, 0, loop\n"        # 3
           "push 1\npop r2\n"         # 2
           "halt\n"                   # 1
           "sub: nop\nnop\nret\n")
    r = run(src)
    assert r.machine.tick == 1 + 3 * (4 + 1 + 1) + 2 + 1


def test_console_output_ports():
    r = run("mov r1, -42\nout 0x01, r1\nout 0x00, 10\nmov r2, 0x141\nout 0x00, r2\n"
            "out 0x01, 0xFFFFFFFF\nout 0x01, 2147483647\nhalt\n")
    assert r.output == b"-42\nA-12147483647"


def test_console_input_port():
    r = run("in r1, 0x02\nin r2, 0x02\nin r3, 0x02\nhalt\n", input=b"hi")
    assert (reg(r, 1), reg(r, 2), reg(r, 3)) == (ord("h"), ord("i"), MASK)


# --- faults ---------------------------------------------------------------------------------

@pytest.mark.parametrize("instr", ["div r3, r1, r2", "mod r3, r1, r2",
                                   "div r3, r1, 0", "mod r3, r1, 0"])
def test_fault_division_by_zero(instr):
    src = f"mov r1, 5\nmov r2, 0\n{instr}\nhalt\n"
    fault(src, 2, 3, "division by zero")


def test_fault_division_by_zero_leaves_destination_unchanged():
    result = run_source("mov r3, 9\ndiv r3, r3, 0\nhalt\n", filename=FILE)
    assert result.stop.reason == "fault"
    assert result.machine.regs[3] & MASK == 9


@pytest.mark.parametrize("instr", [
    "ld r1, [65536]", "ld r1, [65533]", "ld r1, [65534]", "ld r1, [65535]",
    "ldb r1, [65536]", "st r1, [65536]", "st r1, [65533]", "stb r1, [65536]",
    "ld r1, [0xFFFFFFFF]", "ld r1, [-4]", "ldb r1, [0x7FFFFFFF]",
])
def test_fault_memory_out_of_range(instr):
    src = f"nop\n{instr}\nhalt\n"
    fault(src, 1, 2, "memory|address", "range|outside|bounds", memory_size=65536)


def test_fault_memory_out_of_range_through_register():
    src = "mov r2, 0x100000\nnop\nld r1, [r2]\nhalt\n"
    fault(src, 2, 3, "range|outside|bounds")


def test_fault_memory_out_of_range_negative_offset_from_zero():
    fault("mov r2, 0\nst r1, [r2 - 4]\nhalt\n", 1, 2, "range|outside|bounds")


@pytest.mark.parametrize("size", [10000, 4097, 65535])
def test_memory_not_a_multiple_of_the_page_size(size):
    ok = (f"mov r1, 0x55667788\n"
          f"stb r1, [{size - 1}]\nldb r2, [{size - 1}]\n"
          f"st r1, [{size - 4}]\nld r3, [{size - 4}]\n"
          "push 9\npop r4\nmov r5, sp\n"
          "halt\n")
    r = run(ok, memory_size=size)
    assert (reg(r, 2), reg(r, 3), reg(r, 4), reg(r, 5)) == (0x88, 0x55667788, 9, size)
    for instr in (f"ldb r1, [{size}]", f"stb r1, [{size}]", f"ld r1, [{size - 3}]",
                  f"st r1, [{size - 1}]", f"ld r1, [{size}]"):
        fault(f"nop\n{instr}\nhalt\n", 1, 2, "range|outside|bounds", memory_size=size)


def test_fault_bad_jump_target_immediate():
    fault("nop\njmp 100\nhalt\n", 1, 2, "jump|target")


def test_fault_bad_jump_target_register():
    fault("mov r1, 100\njmp r1\nhalt\n", 1, 2, "jump|target")


def test_fault_bad_jump_target_negative_register():
    fault("mov r1, -1\nnop\njmp r1\nhalt\n", 2, 3, "jump|target")


def test_fault_bad_branch_target():
    fault("mov r1, 1\nbeq r1, 1, 77\nhalt\n", 1, 2, "jump|target|branch")


def test_untaken_branch_to_bad_target_is_fine():
    r = run("mov r1, 2\nbeq r1, 1, 77\nhalt\n")
    assert r.machine.tick == 3


def test_fault_bad_call_target():
    fault("nop\ncall 50\nhalt\n", 1, 2, "jump|target|call")
    fault("mov r2, 50\ncall r2\nhalt\n", 1, 2, "jump|target|call")


def test_fault_ret_to_bad_address():
    fault("push 1000\nret\nhalt\n", 1, 2, "jump|target|return")


def test_fault_running_off_the_end_of_the_code():
    msg = fault("mov r1, 1\nmov r2, 2\n", 1, 2, "end")
    assert "code" in msg.lower()


def test_fault_running_off_the_end_after_a_jump():
    fault("jmp last\nhalt\nlast: nop\n", 2, 3, "end")


@pytest.mark.parametrize("src", ["mov r1, 1\nout 0x99, r1\nhalt\n",
                                 "mov r1, 1\nout 0x99, 5\nhalt\n",
                                 "mov r1, 1\nin r2, 0x77\nhalt\n"])
def test_fault_unknown_port(src):
    fault(src, 1, 2, "port", "0x77|0x99|119|153")


@pytest.mark.parametrize("src", ["nop\nout 0x02, r1\nhalt\n",       # console input port
                                 "nop\nin r1, 0x00\nhalt\n",        # console output port
                                 "nop\nin r1, 0x01\nhalt\n",
                                 "nop\nout 0x12, 1\nhalt\n"])       # timer tick is input
def test_fault_port_in_the_wrong_direction(src):
    fault(src, 1, 2, "port")


@pytest.mark.parametrize("instr", ["pop r1", "ret", "iret"])
def test_fault_empty_stack(instr):
    fault(f"nop\n{instr}\nhalt\n", 1, 2, "stack|range|empty")


def test_fault_stack_overflow():
    src = "loop: push 1\njmp loop\n"
    msg = fault(src, 0, 1, "stack|range", memory_size=4096)
    assert msg


def test_fault_stack_overflow_by_call():
    fault("f: call f\n", 0, 1, "stack|range", memory_size=4096)


def test_fault_reports_are_stable_after_the_fault():
    result = run_source("nop\ndiv r1, r1, 0\nhalt\n", filename=FILE)
    assert result.stop.reason == "fault"
    again = result.machine.run()
    assert again.reason == "fault"
    assert result.machine.pc == 1
