"""The assembler's messages for the slips a student makes first (issue 16's
outside-in trial): each names the file, line and column and says what to write."""

from __future__ import annotations

import re

import pytest

from minivm.assembler import AssemblyError, assemble


def first_error(text: str) -> str:
    with pytest.raises(AssemblyError) as info:
        assemble(text, "slip.asm")
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize("text, where, words", [
    # a library routine called without its .include
    ("        mov r1, 5\n        call putdec\n        halt\n", "2:14",
     r"undefined name 'putdec'; 'putdec' is a routine of the standard library: "
     r"add '\.include <putdec>' after the program's last instruction"),
    # a macro used above its definition
    ("        show 1\n.macro show v\n        mov r1, \\v\n.endm\n        halt\n", "1:9",
     r"macro 'show' is used before it is defined \(at slip\.asm:2\); "
     r"define a macro above its first use"),
    # other assemblers' section names
    (".code\n        halt\n", "1:1", r"unknown directive '\.code'; minivm uses \.text$"),
    (".data\nx: .long 1\n.text\n        halt\n", "2:4",
     r"unknown directive '\.long'; minivm uses \.word$"),
    # a memory operand where only ld/st take one
    ("        mov r1, [msg]\n        halt\n.data\nmsg: .word 1\n", "1:17",
     r"not a memory operand \(to read the word at an address: 'ld rd, \[ADDR\]'"),
    ("        add r1, r1, [msg]\n        halt\n.data\nmsg: .word 1\n", "1:21",
     r"not a memory operand \(memory is read with 'ld rd, \[ADDR\]' into a register first\)"),
])
def test_a_slip_gets_a_located_message_that_says_what_to_write(text, where, words):
    message = first_error(text)
    assert message.startswith(f"slip.asm:{where}: error: "), message
    assert re.search(words, message), message


def test_a_misspelt_routine_that_is_no_library_file_keeps_the_spelling_hint():
    message = first_error("        call sqare\n        halt\nsquare: ret\n")
    assert message.endswith("undefined name 'sqare'; did you mean 'square'?"), message


def test_a_library_file_included_twice_says_so(tmp_path):
    path = tmp_path / "twice.asm"
    path.write_text("        halt\n.include <puts>\n.include <puts>\n")
    with pytest.raises(AssemblyError) as info:
        assemble(path.read_text(), str(path))
    text = str(info.value)
    assert "'puts' is defined a second time by this line: its file is included twice " \
           "(include it once)" in text, text
    assert f"included from {path}:3" in text
