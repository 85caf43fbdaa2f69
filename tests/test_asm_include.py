"""Issue 16, item 9: ``.include`` and ``.macro``/``.endm`` (minivm/asm_source.py),
the standard library (programs/lib), errors located through both, the image's
per-instruction source files (the REPL and disasm), and the assembly cache
seeing an edited include."""

from __future__ import annotations

import io
import os
import re

import pytest
from hypothesis import given, settings, strategies as st

from minivm import asm_source, program
from minivm.asm_source import MAX_INCLUDE_DEPTH, library_folder
from minivm.assembler import AssemblyError, assemble, assemble_file
from minivm.disasm import listing
from minivm.image import Image
from minivm.repl import Session, run_batch
from tests.support import ROOT, run_source

LIB = ROOT / "programs" / "lib"


def write(folder, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(AssemblyError) as info:
        assemble_file(path)
    return str(info.value)


def run_file(path: str, engine: str, input: bytes = b"") -> str:
    with open(path) as f:
        src = f.read()
    result = run_source(src, filename=path, engine=engine, input=input)
    assert result.stop.reason == "halt", result.stop
    return result.text


# --- .include ------------------------------------------------------------------

def test_include_is_relative_to_the_including_file(tmp_path, engine):
    write(tmp_path, "sub/greet.asm", 'greet:  mov r1, hello\n        .include "../puts2.asm"\n')
    write(tmp_path, "puts2.asm", "        call puts\n        ret\n.include <puts>\n")
    main = write(tmp_path, "main.asm", '        call greet\n        halt\n.include "sub/greet.asm"\n'
                                       '.data\nhello: .asciz "hi\\n"\n')
    assert run_file(main, engine) == "hi\n"


def test_the_image_knows_each_instructions_file_and_line(tmp_path):
    write(tmp_path, "inc.asm", "; a comment\nf:  mov r1, 7\n    ret\n")
    main = write(tmp_path, "main.asm", "    call f\n    halt\n.include \"inc.asm\"\n")
    image = assemble_file(main)
    assert [image.location(pc) for pc in range(4)] == \
        [f"{main}:1", f"{main}:2", f"{tmp_path / 'inc.asm'}:2", f"{tmp_path / 'inc.asm'}:3"]
    again = Image.from_dict(image.to_dict())            # the source map survives a save
    assert again.files == image.files and again.file_ids == image.file_ids
    text = listing(image)
    assert "inc.asm:3" in text and "main.asm:2" in text


def test_a_program_without_include_keeps_the_old_image_fields(tmp_path):
    image = assemble("halt\n", "p.asm")
    assert image.files == [] and image.file_ids == [] and image.includes == []
    assert set(image.to_dict()) == {"code", "data", "entry", "source_file", "lines",
                                    "texts", "symbols"}


def test_an_error_in_an_included_file_is_shown_there(tmp_path):
    write(tmp_path, "inc.asm", "f:  mov r1, 7\n    bad r1\n")
    main = write(tmp_path, "main.asm", "    call f\n    halt\n.include \"inc.asm\"\n")
    report = error_of(main)
    assert report.startswith(f"{tmp_path / 'inc.asm'}:2:5: error: unknown mnemonic 'bad'")
    assert f"  included from {main}:3" in report
    assert "    bad r1\n    ^" in report


def test_a_duplicate_label_across_files_names_both_places(tmp_path):
    write(tmp_path, "inc.asm", "f:  ret\n")
    main = write(tmp_path, "main.asm", "f:  halt\n.include \"inc.asm\"\n")
    report = error_of(main)
    assert f"'f' is already defined at {main}:1" in report


@pytest.mark.parametrize("text, words", [
    ('.include "none.asm"\nhalt\n', r"cannot include 'none\.asm': there is no file"),
    (".include <nonesuch>\nhalt\n", r"there is no file .*\(in the standard library\); "
                                    r"the library has: .*puts"),
    (".include <../x>\nhalt\n", r"is not a library name"),
    (".include\nhalt\n", r"\.include needs a file name"),
])
def test_include_errors(tmp_path, text, words):
    main = write(tmp_path, "main.asm", text)
    report = error_of(main)
    assert report.startswith(f"{main}:1:"), report
    assert re.search(words, report.splitlines()[0]), report


def test_an_include_cycle_is_an_error_that_shows_it(tmp_path):
    write(tmp_path, "a.asm", '.include "b.asm"\n')
    write(tmp_path, "b.asm", 'nop\n.include "a.asm"\n')
    main = write(tmp_path, "main.asm", 'halt\n.include "a.asm"\n')
    report = error_of(main)
    assert f"{tmp_path / 'b.asm'}:2:10: error: include cycle: a.asm -> b.asm -> a.asm" in report
    assert f"included from {tmp_path / 'a.asm'}:1" in report
    assert f"included from {main}:2" in report


def test_includes_too_deep_are_an_error(tmp_path):
    for i in range(MAX_INCLUDE_DEPTH + 3):
        write(tmp_path, f"f{i}.asm", f'.include "f{i + 1}.asm"\n')
    write(tmp_path, f"f{MAX_INCLUDE_DEPTH + 3}.asm", "halt\n")
    report = error_of(str(tmp_path / "f0.asm"))
    assert f"includes nest more than {MAX_INCLUDE_DEPTH} deep" in report


def test_the_same_file_twice_is_allowed_when_it_defines_no_labels(tmp_path, engine):
    write(tmp_path, "two.asm", "    add r1, r1, 2\n")
    main = write(tmp_path, "main.asm", '.include "two.asm"\n.include "two.asm"\n'
                                       "    out 0x01, r1\n    halt\n")
    assert run_file(main, engine) == "4"


# --- .macro ----------------------------------------------------------------------

MACROS = """\
.macro addto reg, value     ; reg += value
        add \\reg, \\reg, \\value
.endm
.macro countdown reg, from
        mov \\reg, \\from
loop\\@: sub \\reg, \\reg, 1
        addto r5, 1
        bne \\reg, 0, loop\\@
.endm
        countdown r1, 3
        countdown r2, 4
        addto r5, (2 + 3) * 2
        out 0x01, r5
        halt
"""


def test_macros_with_parameters_and_unique_labels(engine):
    result = run_source(MACROS, engine=engine)
    assert result.text == "17"
    names = [n for n, (sec, _) in result.machine.image.symbols.items() if sec == "text"]
    assert len(names) == 2 and len(set(names)) == 2 and all(n.startswith("loop") for n in names)


def test_a_macros_instructions_are_on_the_line_that_uses_it():
    image = assemble(MACROS, "m.asm")
    assert image.lines[:4] == [10, 10, 10, 10]        # mov, sub, add (addto), bne
    assert image.lines[-2:] == [13, 14]


@pytest.mark.parametrize("text, line, col, words", [
    (".macro m a\n  mov \\a, \\b\n.endm\n  m r1\nhalt\n", 4, 3, r"macro 'm' has no parameter 'b' "
                                                             r"\(used at m\.asm:2\)"),
    (".macro m a\n  mov \\a, 1\n.endm\n  m r1, r2\nhalt\n", 4, 3,
     r"macro 'm' takes 1 argument \(a\), got 2"),
    (".macro m\nhalt\n", 1, 1, r"\.macro without its \.endm"),
    (".endm\nhalt\n", 1, 1, r"\.endm without a \.macro"),
    (".macro mov a\n.endm\nhalt\n", 1, 1, r"'mov' is an instruction"),
    (".macro m\n.endm\n.macro m\n.endm\nhalt\n", 3, 1, r"macro 'm' is already defined at m\.asm:1"),
    (".macro m\n  m\n.endm\n  m\nhalt\n", 2, 3, r"macros expand more than \d+ deep"),
    (".macro m\n.macro n\n.endm\nhalt\n", 2, 1, r"a \.macro cannot be defined inside another"),
])
def test_macro_errors(text, line, col, words):
    with pytest.raises(AssemblyError) as info:
        assemble(text, "m.asm")
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"m.asm:{line}:{col}: error:"), str(info.value)
    assert re.search(words, first), first


def test_an_error_inside_a_macro_names_the_expansion():
    text = ".macro jump where\n        jmp \\where\n.endm\n        jump msg\n        halt\n" \
           ".data\nmsg: .word 0\n"
    with pytest.raises(AssemblyError) as info:
        assemble(text, "m.asm")
    report = str(info.value)
    assert report.startswith("m.asm:2:13: error: 'msg' is a data label")
    assert "        jmp msg\n            ^\n  in macro jump expanded at m.asm:4" in report


_operand = st.sampled_from(["r1", "r2", "r3", "7", "(1 + 2)", "'A'", "-4"])


@settings(max_examples=60, deadline=None)
@given(params=st.lists(st.sampled_from(["a", "b", "cnt", "x_1"]), min_size=1, max_size=3,
                       unique=True),
       uses=st.lists(st.lists(_operand, min_size=3, max_size=3), min_size=1, max_size=4),
       ops=st.lists(st.sampled_from(["add", "sub", "xor", "mul"]), min_size=1, max_size=3))
def test_macro_expansion_equals_hand_expansion(params, uses, ops):
    """A macro's use assembles to the same code as its body written out by hand."""
    body = [f"        {op} r4, r4, \\{params[i % len(params)]}" for i, op in enumerate(ops)]
    macro = [f".macro m {', '.join(params)}", *body, ".endm"]
    by_macro, by_hand = list(macro), []
    for args in uses:
        args = args[:len(params)]
        by_macro.append("        m " + ", ".join(args))
        values = dict(zip(params, args))
        for i, op in enumerate(ops):
            by_hand.append(f"        {op} r4, r4, {values[params[i % len(params)]]}")
    expanded = assemble("\n".join(by_macro + ["        halt"]) + "\n", "m.asm")
    hand = assemble("\n".join(by_hand + ["        halt"]) + "\n", "h.asm")
    assert expanded.same_program(hand)


# --- the standard library --------------------------------------------------------

LIBRARY_TEST = """\
        mov sp, 0x8000
again:  mov r1, buf
        mov r2, 8
        call getline
        blt r3, 0, numbers
        mov r6, r3
        mov r1, buf
        call puts
        out 0x00, '|'
        mov r1, r6
        call putdec
        call newline
        jmp again
numbers:
        mov r7, values
next:   ld r1, [r7]
        call putdec
        out 0x00, ' '
        ld r1, [r7]
        call puthex
        call newline
        add r7, r7, 4
        blt r7, values_end, next
        halt
.include <puts>
.include <putdec>
.include <puthex.asm>
.include <newline>
.include <getline>
.data
values: .word 0, 7, -305, 2147483647, -2147483648, 0xDEADBEEF
values_end:
buf:    .space 8
"""


def test_the_library_routines(engine):
    result = run_source(LIBRARY_TEST, filename=str(ROOT / "t.asm"), engine=engine,
                        input=b"hello\n\nabcdefghijk\nlast")
    assert result.stop.reason == "halt", result.stop
    assert result.text == (
        "hello|5\n|0\nabcdefg|7\nhijk|4\nlast|4\n"
        "0 0x00000000\n7 0x00000007\n-305 0xfffffecf\n2147483647 0x7fffffff\n"
        "-2147483648 0x80000000\n-559038737 0xdeadbeef\n")


def test_getline_at_the_end_of_the_input_gives_minus_one(engine):
    src = ("        mov sp, 0x8000\n        mov r1, buf\n        mov r2, 4\n        call getline\n"
           "        out 0x01, r3\n        ldb r1, [buf]\n        out 0x01, r1\n        halt\n"
           ".include <getline>\n.data\nbuf: .byte 9, 9, 9, 9\n")
    result = run_source(src, engine=engine)
    assert result.text == "-10"


@pytest.mark.parametrize("name", sorted(p.stem for p in LIB.glob("*.asm")))
def test_each_library_file_documents_its_registers(name):
    head = (LIB / f"{name}.asm").read_text().split("\n\n")[0]
    for word in ("in:", "out:", "clobbers:", f".include <{name}>"):
        assert word in head, f"{name}.asm's header lacks {word!r}"
    assert re.search(rf"(?m)^{name}:", (LIB / f"{name}.asm").read_text())


def test_the_library_is_found_and_shipped():
    assert os.path.samefile(library_folder(), LIB)
    text = (ROOT / "pyproject.toml").read_text()
    assert '"minivm.lib" = "programs/lib"' in text and '"minivm.lib" = ["*.asm"]' in text


# --- the REPL ------------------------------------------------------------------------

def test_the_repl_breaks_and_lists_by_included_file(tmp_path, engine):
    write(tmp_path, "inc.asm", "; helper\nf:  mov r1, 7\n    ret\n")
    main = write(tmp_path, "main.asm", "    call f\n    out 0x01, r1\n    halt\n"
                                       ".include \"inc.asm\"\n")
    out = io.StringIO()
    session = Session(main, out=out, checkpoint_dir=str(tmp_path / "ck"), engine=engine)
    session.buffer = out
    run_batch(session, ["break inc.asm:3", "run", "where", "break main.asm:3",
                        "break other.asm:1", "continue"])
    text = out.getvalue()
    assert "Breakpoint 1: pc 4 <f+1>  inc.asm:3  ret" in text
    assert "=> pc 4 <f+1>  inc.asm:3  ret" in text
    assert "Breakpoint 2: pc 2  main.asm:3  halt" in text
    assert "no source file 'other.asm' in this program (its files: main.asm, inc.asm" in text


# --- the assembly cache ---------------------------------------------------------------

def test_the_cache_sees_an_edited_include(tmp_path, monkeypatch):
    monkeypatch.setenv(program.CACHE_ENV, str(tmp_path / "cache"))
    inc = write(tmp_path, "value.asm", "    mov r1, 1\n")
    main = write(tmp_path, "main.asm", '.include "value.asm"\n    halt\n')
    first = program.load_program(main)
    assert program.load_program(main).to_dict() == first.to_dict()      # from the cache
    assert first.includes and first.includes[0][0] == os.path.abspath(inc)
    with open(inc, "w") as f:
        f.write("    mov r1, 2\n")
    edited = program.load_program(main)
    assert edited.code != first.code
    assert edited.code == assemble_file(main).code
    os.unlink(inc)                                   # gone: assembled again, and an error
    with pytest.raises(AssemblyError):
        program.load_program(main)


def test_a_macro_bomb_is_stopped_with_an_error_not_the_memory(monkeypatch):
    """Ten uses of a macro that uses the one before, ten deep: 10^10 lines.
    (The limit is lowered for the test; the real one stops it the same way.)"""
    monkeypatch.setattr(asm_source, "MAX_EXPANDED_LINES", 20_000)
    lines = [".macro m0\n    nop\n.endm"]
    for i in range(1, 11):
        lines.append(f".macro m{i}\n" + f"    m{i - 1}\n" * 10 + ".endm")
    lines.append("    m10\n    halt\n")
    with pytest.raises(AssemblyError) as info:
        assemble("\n".join(lines), "bomb.asm")
    assert "20000 lines as its includes and macros expand" in str(info.value)


def test_an_included_folder_is_an_error(tmp_path):
    (tmp_path / "dir.asm").mkdir()
    main = write(tmp_path, "main.asm", '.include "dir.asm"\nhalt\n')
    report = error_of(main)
    assert report.startswith(f"{main}:1:10: error: cannot include 'dir.asm': '")
    assert "is not a regular file" in report
    assert "Traceback" not in report


def test_break_completes_every_source_file(tmp_path):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from minivm.repl import ReplCompleter
    write(tmp_path, "inc.asm", "f:  ret\n")
    main = write(tmp_path, "main.asm", "    call f\n    halt\n.include \"inc.asm\"\n")
    session = Session(main, out=io.StringIO(), checkpoint_dir=str(tmp_path / "ck"))
    found = ReplCompleter(session).get_completions(Document("break "),
                                                   CompleteEvent(completion_requested=True))
    words = {c.text for c in found}
    assert {"main.asm:", "inc.asm:", "f"} <= words


def test_escapes_in_a_macros_strings_are_not_parameters(engine):
    src = (".macro say text\n        mov r1, msg\\@\n        call puts\n        .data\n"
           "msg\\@:  .asciz \"\\text\\n\"\n        .text\n.endm\n"
           "        say hi\n        say 'x'\n        halt\n.include <puts>\n")
    result = run_source(src, filename=str(ROOT / "m.asm"), engine=engine)
    assert result.text == "hi\n'x'\n"


@pytest.mark.parametrize("change, words", [
    ({"file_ids": [0, 5]}, "its source files do not match its code"),
    ({"file_ids": [0]}, "its source files do not match its code"),
    ({"files": "main.asm"}, "its list of source files is not a list of names"),
    ({"files": [], "file_ids": [0, 0]}, "per instruction but no files"),
    ({"includes": [["a.asm"]]}, "its list of included files is malformed"),
])
def test_a_hand_made_image_with_bad_source_files_is_refused(tmp_path, change, words):
    from minivm.errors import FormatError
    write(tmp_path, "inc.asm", "    halt\n")
    main = write(tmp_path, "main.asm", 'nop\n.include "inc.asm"\n')
    d = assemble_file(main).to_dict()
    assert d["files"] and d["file_ids"] == [0, 1]
    d.update(change)
    with pytest.raises(FormatError, match=re.escape(words)):
        Image.from_dict(d)


def test_minivm_run_with_an_edited_include_and_a_broken_one(tmp_path, monkeypatch):
    """Through the command line, with the cache on: the edit is seen, and an
    error in the include is located there (exit status 2, no traceback)."""
    from tests.support import run_cli
    monkeypatch.setenv(program.CACHE_ENV, str(tmp_path / "cache"))
    write(tmp_path, "msg.asm", "        out 0x00, 'A'\n")
    main = write(tmp_path, "main.asm", '.include "msg.asm"\n        halt\n')
    assert run_cli("run", main).stdout == b"A"
    write(tmp_path, "msg.asm", "        out 0x00, 'B'\n")
    assert run_cli("run", main).stdout == b"B"
    write(tmp_path, "msg.asm", "        out 0x00 'C'\n")
    broken = run_cli("run", main)
    assert broken.returncode == 2
    err = broken.stderr.decode()
    assert f"{tmp_path / 'msg.asm'}:1:18: error: missing ',' between operands" in err
    assert f"included from {main}:1" in err and "Traceback" not in err


def test_a_diagnostic_after_an_include_names_the_line_the_report_names():
    """The fuzz test found it: after '.include <puts>', an error's Diagnostic
    kept its line in the expanded text (past the end of the file) while the
    report named the real line."""
    source = "\n".join(["        call puts", "        halt", ".include <puts>",
                        ".data", "        nop"]) + "\n"
    with pytest.raises(AssemblyError) as info:
        assemble(source, "main.asm")
    (diag,) = info.value.diagnostics
    assert (diag.file, diag.pos.line, diag.pos.column) == ("main.asm", 5, 9)
    assert "main.asm:5:9: error: instruction 'nop' in the .data section" in str(info.value)
