"""The ``minivm`` command line: bad inputs, faults, limits, exit statuses,
memory sizes and the asm/disasm round trip (docs/isa.md, docs/contract.md section 8)."""

from __future__ import annotations

import os
import random
import re

import pytest

from minivm.assembler import assemble_file
from minivm.errors import MinivmError
from minivm.image import load_image
from minivm.program import load_program

from support import PROGRAMS, run_cli, time_limit

LOCATION = re.compile(r"(?m)^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+): ")


def _no_traceback(proc):
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stdout


def _one_paragraph(text: str) -> None:
    body = text.strip("\n")
    assert body, "an error message is expected on stderr"
    assert "\n\n" not in body, f"more than one paragraph:\n{text}"


def _caret_under(text: str, col: int) -> None:
    """A caret line, right under column ``col`` of the source line above it."""
    lines = text.splitlines()
    carets = [i for i, l in enumerate(lines) if l.strip() == "^"]
    assert carets, f"no caret line in:\n{text}"
    i = carets[0]
    assert i >= 1, "the caret line follows the offending text"
    assert lines[i].index("^") == col - 1, f"caret not under column {col}:\n{text}"


# --- bad programs ----------------------------------------------------------------------------

def _garbage_non_utf8() -> bytes:
    rng = random.Random(20240601)
    data = bytearray(rng.randrange(256) for _ in range(300))
    data[0] = 0xC3          # a lead byte followed by a non-continuation byte:
    data[1] = 0x28          # certainly not UTF-8, at offset 0 -> column 1
    data[50] = 0            # and a NUL somewhere
    return bytes(data)


# (id, file bytes, line, col, words the message must contain, caret expected)
BAD_PROGRAMS = [
    # nothing to point at in an empty file: location only, no caret
    ("empty", b"", 1, 1, ["no instructions"], False),
    ("comments-only", b"; nothing here\n\n", 1, 1, ["no instructions"], False),
    ("binary-garbage-utf8-with-nul", b"\x00\x01\x02garbage\x00\x7f\n", 1, 1,
     ["unexpected character"], True),
    ("binary-garbage-random", _garbage_non_utf8(), 1, 1, ["UTF-8"], True),
    ("unknown-mnemonic", b"nop\n; comment\nfrob r1, 2\nhalt\n", 3, 1,
     ["unknown mnemonic", "frob"], True),
    ("wrong-operand-count", b"add r1, r2\nhalt\n", 1, 1, ["add", "3 operands"], True),
    ("too-many-operands", b"halt\nnot r1, r2, r3\n", 2, 1, ["not", "2 operands"], True),
    ("register-r16", b"mov r16, 1\nhalt\n", 1, 5, ["r16"], True),
    ("label-defined-twice", b"a:  nop\n    nop\na:  halt\n", 3, 1,
     ["'a'", "already defined", "line 1"], True),
    ("undefined-label", b"    jmp nowhere\n", 1, 9, ["undefined", "nowhere"], True),
    ("immediate-too-big", b"mov r1, 0x100000000\nhalt\n", 1, 9, ["32 bits"], True),
    ("immediate-too-small", b"mov r1, -0x80000001\nhalt\n", 1, 9, ["32 bits"], True),
    ("instruction-in-data", b"halt\n.data\nx: .word 1\n  nop\n", 4, 3,
     ["'nop'", ".data"], True),
    ("non-utf8", b"nop\nhalt ; caf\xe9\n", 2, 11, ["UTF-8"], True),
]


@pytest.mark.parametrize("content, line, col, words, caret",
                         [case[1:] for case in BAD_PROGRAMS],
                         ids=[case[0] for case in BAD_PROGRAMS])
@pytest.mark.parametrize("command", ["run", "asm"])
def test_bad_program(tmp_path, command, content, line, col, words, caret):
    src = tmp_path / "bad.asm"
    src.write_bytes(content)
    args = [command, str(src)] + (["-o", str(tmp_path / "bad.mvb")] if command == "asm" else [])
    proc = run_cli(*args, input=b"")
    _no_traceback(proc)
    assert proc.returncode == 2, proc.stderr.decode(errors="replace")
    err = proc.stderr.decode()
    _one_paragraph(err)
    match = LOCATION.search(err)
    assert match, f"no file:line:col in:\n{err}"
    assert match["file"].endswith("bad.asm")
    assert (int(match["line"]), int(match["col"])) == (line, col), err
    for word in words:
        assert word in err, f"{word!r} missing from:\n{err}"
    if caret:
        _caret_under(err, col)
    assert proc.stdout == b""
    assert not (tmp_path / "bad.mvb").exists()


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.asm"
    for args in (["run", str(missing)], ["asm", str(missing)], ["disasm", str(missing)]):
        proc = run_cli(*args, input=b"")
        _no_traceback(proc)
        assert proc.returncode == 2
        err = proc.stderr.decode()
        _one_paragraph(err)
        assert "nope.asm" in err
        assert "does not exist" in err or "no such file" in err.lower()


def test_directory_instead_of_program(tmp_path):
    proc = run_cli("run", str(tmp_path), input=b"")
    _no_traceback(proc)
    assert proc.returncode != 0
    _one_paragraph(proc.stderr.decode())


@pytest.mark.parametrize("command", ["run", "asm"])
def test_fifo_instead_of_program(tmp_path, command):
    """`asm` read its source with a plain open(), so a FIFO blocked it for ever;
    both commands now read programs the same way (container.read_program_file)."""
    fifo = tmp_path / "prog.asm"
    os.mkfifo(fifo)
    with time_limit(60, f"minivm {command} on a FIFO"), pytest.raises(MinivmError) as info:
        (assemble_file if command == "asm" else load_program)(str(fifo))
    assert "is not a regular file" in str(info.value)
    proc = run_cli(command, str(fifo), input=b"", timeout=60)
    _no_traceback(proc)
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr.decode()


# --- asm / disasm ------------------------------------------------------------------------

ALL_PROGRAMS = ["hello.asm", "fib.asm", "sieve.asm", "bubble_sort.asm", "timer_clock.asm",
                "disk_copy.asm", "echo.asm"]


@pytest.mark.parametrize("name", ["hello.asm", "fib.asm", "bubble_sort.asm",
                                  "timer_clock.asm", "echo.asm"])
def test_assembled_image_runs_like_source(tmp_path, name):
    image = tmp_path / "prog.mvb"
    proc = run_cli("asm", str(PROGRAMS / name), "-o", str(image))
    assert proc.returncode == 0, proc.stderr.decode()
    assert image.exists()
    from_source = run_cli("run", str(PROGRAMS / name), input=b"some input\n")
    from_image = run_cli("run", str(image), input=b"some input\n")
    assert from_source.returncode == from_image.returncode == 0
    assert from_source.stdout == from_image.stdout
    assert from_source.stdout != b""


def test_assembled_image_keeps_source_locations_for_faults(tmp_path):
    src = tmp_path / "f.asm"
    src.write_text("nop\nmov r2, 0\ndiv r1, r1, r2\nhalt\n")
    image = tmp_path / "f.mvb"
    assert run_cli("asm", str(src), "-o", str(image)).returncode == 0
    proc = run_cli("run", str(image), input=b"")
    _no_traceback(proc)
    assert proc.returncode == 3
    err = proc.stderr.decode()
    assert "division by zero" in err and "f.asm:3" in err and "pc 2" in err


def asm_disasm_asm(tmp_path, source) -> tuple:
    """`asm` the source, `disasm` the image, `asm` the listing: both images."""
    image = tmp_path / "prog.mvb"
    proc = run_cli("asm", str(source), "-o", str(image))
    assert proc.returncode == 0, proc.stderr.decode()
    listing = run_cli("disasm", str(image))
    assert listing.returncode == 0, listing.stderr.decode()
    relisted = tmp_path / "listing.asm"
    relisted.write_bytes(listing.stdout)
    again = tmp_path / "again.mvb"
    proc = run_cli("asm", str(relisted), "-o", str(again))
    assert proc.returncode == 0, proc.stderr.decode() + listing.stdout.decode()
    return load_image(str(image)), load_image(str(again))


@pytest.mark.parametrize("name", ALL_PROGRAMS)
def test_disasm_round_trip(tmp_path, name):
    first, second = asm_disasm_asm(tmp_path, PROGRAMS / name)
    assert first.same_program(second)


def test_disasm_round_trip_of_tricky_source(tmp_path):
    src = tmp_path / "t.asm"
    src.write_text(
        ".equ N, 3\n"
        "        jmp start\n"
        "handler: iret\n"
        "start:  mov r1, -1\n"
        "        mov sp, 0x8000\n"
        "        ld r2, [r1 - 4]\n"
        "        stb r2, [table + 2]\n"
        "        add r3, r3, 'A'\n"
        "        out 0x11, handler\n"
        "        bge r1, N * 2, start\n"
        "        call r3\n"
        "        halt\n"
        ".data\n"
        "table:  .byte -1, 255, 0\n"
        "        .align 8\n"
        "        .asciz \"q\\\"\\n\"\n"
        "        .word -2147483648, 4294967295\n"
        ".entry start\n")
    first, second = asm_disasm_asm(tmp_path, src)
    assert first.entry == 2
    assert first.same_program(second)


# --- guest faults ------------------------------------------------------------------------

FAULTS = [
    ("division-by-zero", "mov r1, 5\nmov r2, 0\ndiv r3, r1, r2\nhalt\n", 2, 3,
     ["division by zero"]),
    ("mod-by-zero", "mov r1, 5\nmod r3, r1, 0\nhalt\n", 1, 2, ["division by zero"]),
    ("load-out-of-range", "nop\nmov r1, 0x100000\nld r2, [r1]\nhalt\n", 2, 3,
     ["out of range", "0x00100000"]),
    ("store-out-of-range", "mov r1, -1\nstb r1, [r1]\nhalt\n", 1, 2, ["out of range"]),
    ("bad-jump-target", "mov r1, 1000\njmp r1\nhalt\n", 1, 2, ["bad jump target", "1000"]),
    ("bad-call-target", "mov r1, 3\ncall r1\nhalt\n", 1, 2, ["bad jump target"]),
    ("ret-to-garbage", "push 77\nret\nhalt\n", 1, 2, ["77"]),
    ("running-off-the-end", "nop\nmov r1, 1\n", 1, 2, ["ran off the end"]),
    ("unknown-port", "out 0x99, 1\nhalt\n", 0, 1, ["port"]),
    ("port-wrong-direction", "in r1, 0x00\nhalt\n", 0, 1, ["port"]),
    ("wait-nothing-scheduled", "nop\nwait\nhalt\n", 1, 2, ["wait", "nothing scheduled"]),
    ("pop-empty-stack", "pop r1\nhalt\n", 0, 1, ["empty stack"]),
]


@pytest.mark.parametrize("source, pc, line, words", [f[1:] for f in FAULTS],
                         ids=[f[0] for f in FAULTS])
def test_guest_fault(tmp_path, source, pc, line, words):
    src = tmp_path / "guest.asm"
    src.write_text(source)
    proc = run_cli("run", str(src), input=b"")
    _no_traceback(proc)
    assert proc.returncode == 3, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "fault" in err
    assert f"guest.asm:{line}" in err, err
    assert re.search(rf"\bpc {pc}\b", err), err
    for word in words:
        assert word in err, f"{word!r} missing from:\n{err}"


def test_fault_keeps_output_before_it(tmp_path):
    src = tmp_path / "g.asm"
    src.write_text("out 0x01, 12\nout 0x00, 10\nmov r1, 0\ndiv r1, r1, r1\n")
    proc = run_cli("run", str(src), input=b"")
    assert proc.returncode == 3
    assert proc.stdout == b"12\n"


def test_max_steps_on_infinite_loop(tmp_path):
    src = tmp_path / "loop.asm"
    src.write_text("start: add r1, r1, 1\n       jmp start\n")
    proc = run_cli("run", str(src), "--max-steps", "1000", input=b"")
    _no_traceback(proc)
    assert proc.returncode == 4
    err = proc.stderr.decode()
    _one_paragraph(err)
    assert "--max-steps" in err and "1000" in err
    assert "loop.asm:" in err


def test_max_steps_not_reached(tmp_path):
    src = tmp_path / "short.asm"
    src.write_text("nop\nnop\nhalt\n")          # halts at tick 2: 3 instructions
    proc = run_cli("run", str(src), "--max-steps", "3", input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    proc = run_cli("run", str(src), "--max-steps", "2", input=b"")
    assert proc.returncode == 4


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_max_steps_bad_value(tmp_path, value):
    src = tmp_path / "p.asm"
    src.write_text("halt\n")
    proc = run_cli("run", str(src), "--max-steps", value, input=b"")
    _no_traceback(proc)
    assert proc.returncode == 2


# --- exit status ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, status", [("0", 0), ("7", 7), ("0x1FF", 0xFF),
                                           ("256", 0), ("-1", 255), ("0x12345678", 0x78)])
def test_halt_exit_status(tmp_path, value, status):
    src = tmp_path / "exit.asm"
    src.write_text(f"mov r0, {value}\nhalt\n")
    proc = run_cli("run", str(src), input=b"")
    _no_traceback(proc)
    assert proc.returncode == status


# --- memory sizes ---------------------------------------------------------------------------

# Stores 42 at the given address, loads it back, exits with it.
STORE_LOAD = "mov r1, {addr}\nmov r2, 42\nst r2, [r1]\nld r0, [r1]\nhalt\n"


@pytest.mark.parametrize("mem, addr, status", [
    ("64K", 0xFFFC, 42),            # last word of 64 KiB
    ("32K", 0xFFFC, 3),             # beyond 32 KiB: a fault
    ("32K", 0x7FFC, 42),
    ("65536", 0xFFFC, 42),
    ("65535", 0xFFFC, 3),           # one byte short of the word
    ("4M", 0x3FFFFC, 42),
    ("4m", 0x3FFFFC, 42),           # suffixes are case-insensitive
    ("2M", 0x3FFFFC, 3),
    ("1G", 0x3FFFFFFC, 42),
    ("1G", 0x40000000, 3),
    ("4G", 0xFFFFFFFC, 42),         # 4 GiB must be accepted; untouched pages are free
])
def test_mem_suffixes(tmp_path, mem, addr, status):
    src = tmp_path / "m.asm"
    src.write_text(STORE_LOAD.format(addr=hex(addr)))
    proc = run_cli("run", str(src), "--mem", mem, input=b"")
    _no_traceback(proc)
    assert proc.returncode == status, proc.stderr.decode()
    if status == 3:
        assert "out of range" in proc.stderr.decode()


def test_sp_starts_at_memory_size(tmp_path):
    src = tmp_path / "sp.asm"
    src.write_text("mov r0, sp\nshr r0, r0, 10\nhalt\n")     # sp / 1024
    proc = run_cli("run", str(src), "--mem", "5K", input=b"")
    assert proc.returncode == 5


@pytest.mark.parametrize("mem", ["12Q", "lots", "", "-1K", "0"])
def test_mem_bad_value(tmp_path, mem):
    src = tmp_path / "p.asm"
    src.write_text("halt\n")
    proc = run_cli("run", str(src), "--mem", mem, input=b"")
    _no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip()


# --- help -----------------------------------------------------------------------------------

def test_help():
    proc = run_cli("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert out.startswith("usage: minivm")
    for command in ("run", "asm", "disasm", "resume", "inspect", "disk", "repl"):
        assert command in out


def test_run_help_lists_options():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for option in ("--mem", "--disk", "--input", "--max-steps", "--checkpoint-dir",
                   "--checkpoint-at", "--trace"):
        assert option in out


def test_no_command_is_usage_error():
    proc = run_cli()
    _no_traceback(proc)
    assert proc.returncode != 0


def test_trace_goes_to_stderr(tmp_path):
    src = tmp_path / "t.asm"
    src.write_text("out 0x01, 5\nhalt\n")
    proc = run_cli("run", str(src), "--trace", input=b"")
    assert proc.returncode == 0
    assert proc.stdout == b"5"
    assert b"out 0x01, 5" in proc.stderr and b"halt" in proc.stderr


def test_checkpoint_store_memory_takes_the_checkpoints_without_files(tmp_path):
    """P11 from the command line: the same run and checkpoints, none on disk."""
    prog = str(PROGRAMS / "checkpoint_demo.asm")
    disk = tmp_path / "d.img"
    results = {}
    for store in ("file", "memory"):
        disk.write_bytes(bytes(64 * 1024))
        folder = tmp_path / store
        done = run_cli("run", prog, "--disk", str(disk), "--checkpoint-dir", str(folder),
                       "--checkpoint-at", "500", "--checkpoint-store", store)
        assert done.returncode == 0, done.stderr
        results[store] = done.stdout
        mvc = sorted(p.name for p in folder.glob("*.mvc"))
        assert mvc == (["ckpt-0001.mvc", "ckpt-0002.mvc"] if store == "file" else [])
    assert results["file"] == results["memory"]
    assert b"2 checkpoint(s)" in done.stderr and b"host memory" in done.stderr
    assert b"-> memory:ckpt-0002" in done.stderr


def test_a_fault_is_reported_before_the_missing_timeline(tmp_path):
    """checkpoint_demo.asm needs a disk: without --disk it faults before its
    'ckpt', and the fault comes first on stderr, then the timeline's note."""
    result = run_cli("run", str(PROGRAMS / "checkpoint_demo.asm"), "--timeline",
                     str(tmp_path / "t.svg"), cwd=tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 3, err
    fault = err.index("fault: disk request with no disk attached")
    assert fault < err.index("no checkpoint was taken, so no timeline was written")
    assert not (tmp_path / "t.svg").exists()


def test_a_timeline_path_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    """--timeline into a missing folder, or naming a folder, fails at once:
    the guest does not run (no output) rather than run to its end and then
    lose the picture; run and resume check it the same way."""
    hello = str(PROGRAMS / "hello.asm")
    for target, why in ((tmp_path / "missing" / "t.svg", "does not exist"),
                        (tmp_path, "is a folder: give a file name")):
        result = run_cli("run", hello, "--timeline", str(target), cwd=tmp_path)
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert f"--timeline '{target}'" in err and why in err
        assert result.stdout == b""
        assert "Traceback" not in err
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(64 * 1024))
    done = run_cli("run", str(PROGRAMS / "checkpoint_demo.asm"), "--disk", str(disk),
                   "--checkpoint-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ckpt = sorted((tmp_path / "c").glob("*.mvc"))[0]
    result = run_cli("resume", str(ckpt), "--timeline", str(tmp_path / "no" / "t.svg"),
                     cwd=tmp_path)
    assert result.returncode == 2 and b"does not exist" in result.stderr
    assert b"Traceback" not in result.stderr and result.stdout == b""
