"""Issue 16, item 8: a label of the wrong section is an error, with a hint,
and the common slips (a label without ':', a missing ',' before a branch
target, 'out' with its operands swapped) get messages that name them.

A label as a plain value stays legal (docs/isa.md: a code label is a number,
``mov r1, loop`` or ``.word loop``); only a data label where a code address is
needed (the target of jmp, call or a branch) and a code label inside a memory
operand are refused.
"""

from __future__ import annotations

import pytest

from minivm.assembler import assemble
from tests.support import run_source
from tests.test_assembler import assert_error

DATA = '.data\nmsg: .asciz "hi"\n'


@pytest.mark.parametrize("line", ["jmp msg", "call msg", "beq r1, r2, msg", "bne r1, 0, msg",
                                  "bge r1, r2, msg + 1"])
def test_data_label_as_jump_target(line):
    col = line.index("msg") + 1
    assert_error(f"{line}\nhalt\n{DATA}", 1, col,
                 r"'msg' is a data label \(byte address 0x0\), not a code address",
                 rf"'{line.split()[0]}' needs a label in \.text")


@pytest.mark.parametrize("operand", ["[loop]", "[r2 + loop]", "[r2 - loop]", "[loop + 4]"])
def test_code_label_in_memory_operand(operand):
    src = f"halt\nloop: ld r1, {operand}\nhalt\n"
    assert_error(src, 2, src.split("\n")[1].index("loop", 5) + 1,
                 r"'loop' is a code label \(instruction 1\), not a data address")


def test_labels_as_values_stay_legal(engine):
    src = ("        mov r1, loop\n"          # a code label as a number (handlers, jump tables)
           "        ld r2, [table]\n"
           "        jmp r2\n"
           "loop:   mov r3, msg\n"           # a data label as a number
           "        ld r4, [msg]\n"
           "        halt\n" + DATA + "table: .word loop\n")
    result = run_source(src, engine=engine)
    assert result.stop.reason == "halt"
    regs = result.machine.regs
    assert (regs[1], regs[2], regs[3]) == (3, 3, 0)
    assert regs[4] == int.from_bytes(b"hi\0\x03", "little")   # "hi", NUL, table's first byte


def test_a_data_label_in_a_register_jump_is_the_programs_business():
    assemble(f"mov r1, msg\njmp r1\nhalt\n{DATA}", "t.asm")   # no error: a register's value


@pytest.mark.parametrize("src, col, what", [
    ("loop add r1, r1, 1\nhalt\n", 5, "loop: add"),
    ("start mov r1, 5\nhalt\n", 6, "start: mov"),
    ("nop\n  again   sub r1, r1, 1\nhalt\n", None, "again: sub"),
    ("done halt\n", 1, "done: halt"),
    ("msg .asciz \"x\"\nhalt\n", None, "msg: .asciz"),
])
def test_missing_colon_after_label(src, col, what):
    if col is None:
        with pytest.raises(Exception) as info:
            assemble(src, "prog.asm")
        assert "missing ':' after the label" in str(info.value)
        assert what in str(info.value)
        return
    assert_error(src, 1, col, r"missing ':' after the label", what)


@pytest.mark.parametrize("src, col", [
    ("loop: beq r1, 0 loop\n", 17), ("loop: bne r1, r2 loop\n", 18),
    ("loop: blt r1, 'a' loop\n", 19), ("f: call f r1\n", 11),
])
def test_missing_comma_before_branch_target(src, col):
    assert_error(src, 1, col, r"missing ',' between operands")


@pytest.mark.parametrize("src", ["out r1, 0x00\nhalt\n", "out r2, 1\nhalt\n"])
def test_out_with_swapped_operands(src):
    assert_error(src, 1, 5, r"must be an expression, not a register",
                 r"the port comes first: 'out PORT, src'")


def test_in_with_swapped_operands():
    assert_error("in 0x02, r1\nhalt\n", 1, 4, r"must be a register",
                 r"the register comes first: 'in rd, PORT'")


@pytest.mark.parametrize("port", ["0x11", "0x26"])
def test_a_data_label_as_an_interrupt_handler(port):
    src = f"        out {port}, msg\n        halt\n{DATA}"
    assert_error(src, 1, 19, r"'msg' is a data label \(byte address 0x0\), not a code address",
                 rf"'out {port}' needs a label in \.text")
    assemble(f"        out {port}, h\nh:      halt\n", "ok.asm")            # a code label: fine
    assemble(f"        out {port}, -1\n        out 0x00, msg\n        halt\n{DATA}", "ok.asm")


def test_the_handler_ports_are_the_devices():
    from minivm.asm_hints import HANDLER_PORTS
    from minivm.machine import Machine
    machine = Machine(assemble("halt\n", "t.asm"))
    handlers = {port for device in machine.devices.values()
                for port, (setter, _) in device.out_ports.items()
                if getattr(setter, "__name__", "") == "set_handler"}
    assert handlers == set(HANDLER_PORTS)
