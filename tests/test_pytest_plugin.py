"""The pytest plugin (minivm/pytest_plugin.py, docs/grading.md), tested with
pytest's own ``pytester``: each test writes a small project of guest
programs and test files, runs pytest on it in-process, and looks at the
outcome, the failure reports and the files they left.

The inner runs use the engine of the outer test (``--minivm-engine``)."""

from __future__ import annotations

import re
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import minivm
# pytester forgets, after each test, every module imported during it; one
# imported again would make a second Image class, unlike the first. So
# everything the inner runs use is imported here, once.
import minivm.api
import minivm.assembler
import minivm.engine.blocks
import minivm.engine.reference
import minivm.program
import minivm.pytest_plugin
import minivm.repl
import minivm.resume
from minivm import cli
from minivm.assembler import AssemblyError


def _import_what_inner_runs_import_lazily() -> None:
    """Every minivm module, and Lark with a parser built: the assembler loads
    Lark only for a line its fast path cannot read. Imported first during a
    pytester test, Lark would be forgotten after it, and the cached parser of
    the old module would raise exceptions that the new module's classes do not
    catch (a suite-order failure that was seen: test_docs' isa.md example)."""
    import importlib
    import pkgutil
    for info in pkgutil.walk_packages(minivm.__path__, "minivm."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    try:
        minivm.assemble("loop add r1, r1, 1\n", "warm.asm")    # Lark and its error hints
    except AssemblyError:
        pass


_import_what_inner_runs_import_lazily()

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SUM = (ROOT / "programs" / "grading" / "sum.asm").read_text()
SECTION = "minivm: the last run"
ENGINE_FUNCTION = {"interp": "run_fast", "blocks": "run_blocks"}


def _inner(pytester, engine: str, *args: str):
    return pytester.runpytest("-p", "no:cacheprovider", "--minivm-engine", engine, *args)


def _sections(outlines: list[str]) -> list[dict]:
    """The minivm sections of a pytest output, each as {field: value}."""
    found, current = [], None
    for line in outlines:
        if SECTION in line and line.startswith("-"):
            current = {}
            found.append(current)
        elif current is not None:
            match = re.match(r"^([a-z ]+):\s+(.*)$", line)
            if not match or line.startswith("_") or line.startswith("="):
                current = None
            else:
                current[match.group(1)] = match.group(2)
    return found


def test_the_package_registers_the_plugin():
    found = [ep for ep in entry_points(group="pytest11") if ep.name == "minivm"]
    assert [ep.value for ep in found] == ["minivm.pytest_plugin"]


def test_the_fixture_runs_and_resumes_with_paths_from_the_test_file(pytester, engine):
    lab = pytester.mkdir("lab")
    (lab / "sum.asm").write_text(SUM)
    with minivm.boot(lab / "sum.asm", engine=engine) as vm:      # before the first 'in'
        vm.step(2)
        vm.checkpoint(lab / "lab3.mvc")
    (lab / "test_lab.py").write_text(f"""
import pytest

def test_run(minivm):
    r = minivm.run("sum.asm", input=b"3 4\\n", max_ticks=10**6)
    assert (r.stop, r.output, r.exit_status) == ("halt", b"7\\n", 0)
    assert minivm.vm.regs[2] == 7 and minivm.vm.halted
    assert minivm.vm.machine.engine.__name__ == {ENGINE_FUNCTION[engine]!r}

@pytest.mark.parametrize("given, total", [(b"3 4\\n", b"7\\n"), (b"10 20 30", b"60\\n")])
def test_resume(minivm, given, total):
    r = minivm.resume("lab3.mvc", input=given, max_ticks=10**6)
    assert r.output == total and r.ticks > 2

def test_assembled_text(minivm):
    r = minivm.run(minivm.assemble("out 0x01, 42\\nhalt\\n", "tiny.asm"))
    assert r.output == b"42"
""")
    result = _inner(pytester, engine)          # started from the folder above lab/
    result.assert_outcomes(passed=4)
    assert SECTION not in result.stdout.str()


FAILING = """
def test_wrong_output(minivm):
    r = minivm.run("sum.asm", input=b"3 4\\n")
    assert r.output == b"8\\n"

def test_fault(minivm):
    r = minivm.run("avg.asm", input=b"")
    assert r.halted

def test_endless(minivm):
    r = minivm.run(minivm.assemble("mov r1, 1\\nloop: jmp loop\\n", "spin.asm"), max_ticks=500)
    assert r.halted

def test_fails_before_any_run(minivm):
    assert False, "nothing ran"

def test_does_not_assemble(minivm):
    minivm.run("sum.asm", input=b"1")
    minivm.run("broken.asm")
"""

AVG = """        mov r1, 0
        mov r2, 0
        out 0x00, 'a'
        div r3, r1, r2
        halt
"""


def test_a_failure_reports_the_last_run_and_writes_a_checkpoint(pytester, engine, capsys):
    pytester.makefile(".asm", sum=SUM, avg=AVG, broken="        mov r1, 1\n        jump r1\n")
    pytester.makepyfile(test_grade=FAILING)
    result = _inner(pytester, engine)
    result.assert_outcomes(failed=5)
    wrong, fault, endless, broken = _sections(result.outlines)  # none before any run
    assert broken["program"] == "broken.asm" and broken["input"] == "b''"
    assert broken["not run"] == "broken.asm:2:1: error: unknown mnemonic 'jump'; did you mean 'jmp'?"
    assert "checkpoint" not in broken
    assert "pytest_plugin.py" not in result.stdout.str()     # tracebacks end in the tests
    assert wrong["program"] == "sum.asm" and wrong["input"] == r"b'3 4\n'"
    assert wrong["stopped"] == "halt, exit status 0"
    assert wrong["pc"] == "17  sum.asm:30  halt" and wrong["output"] == r"b'7\n'"
    assert fault["stopped"] == "fault: division by zero ('div' of 0 by 0)"
    assert (fault["tick"], fault["pc"]) == ("3", "3  avg.asm:4  div r3, r1, r2")
    assert fault["output"] == "b'a'"
    assert endless["stopped"] == "limit: max_ticks=500 reached before the program halted"
    assert (endless["tick"], endless["pc"]) == ("500", "1  spin.asm:2  loop: jmp loop")
    for section in (wrong, fault, endless):
        path = section["checkpoint"].split(" (the machine at tick")[0]
        assert section["open it"] == f"minivm repl {path}"
        assert Path(path).parent.parent.name == "basetemp"    # the test's own tmp_path
        with minivm.restore(pytester.path / path, engine=engine) as vm:
            assert vm.tick == int(section["tick"]) and vm.pc == int(section["pc"].split()[0])
            assert vm.output == b""                          # the output went before it
    fault_path = fault["checkpoint"].split(" ")[0]
    with minivm.restore(pytester.path / fault_path, engine=engine) as vm:
        assert vm.fault is None                  # the machine just before the faulting
        again = vm.step()                        # instruction: one step faults again
        assert again.stop == "fault" and again.fault.location.endswith("/avg.asm:4")

    # minivm repl opens the checkpoint directly, here with batch input
    capsys.readouterr()
    script = pytester.path / "look.txt"
    script.write_text("regs\nstep\nregs\n")
    endless_path = endless["checkpoint"].split(" ")[0]
    status = cli.main(["repl", "--engine", engine, "--batch", str(script),
                       str(pytester.path / endless_path)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert text.startswith("restored minivm-failure (tick 500)")
    assert "r1  0x00000001 1" in text and "minivm[tick 501 pc 1]>" in text


def test_passing_tests_write_nothing(pytester, engine):
    pytester.makefile(".asm", sum=SUM)
    pytester.makepyfile(test_ok="""
def test_a(minivm):
    assert minivm.run("sum.asm", input=b"1 2").output == b"3\\n"

def test_b(minivm):
    assert minivm.run("sum.asm", input=b"").output == b"0\\n"
""")
    result = _inner(pytester, engine, "--minivm-artifacts", "failed")
    result.assert_outcomes(passed=2)
    assert not list(pytester.path.rglob("*.mvc")) and not list(pytester.path.rglob("*.cow"))
    assert not (pytester.path / "failed").exists()


def test_a_wrong_engine_name_is_one_usage_error_not_a_failure_per_student(pytester):
    pytester.makefile(".asm", sum=SUM)
    pytester.makepyfile(test_ok="""
def test_a(minivm):
    assert minivm.run("sum.asm", input=b"1 2").output == b"3\\n"
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--minivm-engine", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid choice: 'fast'" in "\n".join(result.errlines)


def test_a_test_that_passes_now_loses_its_old_failure(pytester, engine):
    """Grading again after a student's fix: the artifacts folder no longer
    shows the failure of the session before; other folders are left alone."""
    pytester.makefile(".asm", sum=SUM)
    pytester.makepyfile(test_ok="""
def test_a(minivm):
    assert minivm.run("sum.asm", input=b"1 2").output == b"3\\n"
""")
    old = pytester.path / "failed" / "test_ok.py-test_a"
    old.mkdir(parents=True)
    (old / "minivm-failure.mvc").write_bytes(b"from the session before")
    (pytester.path / "failed" / "notes.txt").write_text("the teacher's")
    _inner(pytester, engine, "--minivm-artifacts", "failed").assert_outcomes(passed=1)
    assert not old.exists() and (pytester.path / "failed" / "notes.txt").exists()


def test_artifacts_folder_gets_the_checkpoint_and_its_disk(pytester, engine):
    shutil.copy(ROOT / "programs" / "disk_copy.asm", pytester.path)
    (pytester.path / "disk.img").write_bytes(bytes(64 * 1024))
    pytester.makepyfile(test_disk="""
def test_copy(minivm):
    r = minivm.run("disk_copy.asm", disk="disk.img")
    assert r.output == b"OK\\n"
    with open(minivm.disk, "rb") as f:             # the test's own copy was written
        assert any(f.read()[4096:8192])
    assert False, "fail on purpose, after the run"
""")
    result = _inner(pytester, engine, "--minivm-artifacts", "failed")
    result.assert_outcomes(failed=1)
    assert (pytester.path / "disk.img").read_bytes() == bytes(64 * 1024)   # untouched
    (section,) = _sections(result.outlines)
    folder = pytester.path / "failed" / "test_disk.py-test_copy"     # the test's node id
    assert section["checkpoint"].startswith("failed/test_disk.py-test_copy/minivm-failure.mvc")
    assert sorted(p.name for p in folder.iterdir()) == ["disk.img", "minivm-failure.mvc"]
    with minivm.restore(folder / "minivm-failure.mvc", engine=engine) as vm:
        assert vm.halted and vm.devices()["disk"] is not None


def test_what_a_resumed_run_wrote_to_the_disk_is_read_through_the_vm(pytester, engine):
    """A resume writes to an overlay, so ``minivm.disk`` (a run's own copy)
    is None; ``minivm.vm.read_disk`` reads the disk as the guest sees it, the
    writes that were in flight at the checkpoint included once they land."""
    shutil.copy(ROOT / "programs" / "disk_copy.asm", pytester.path)
    (pytester.path / "disk.img").write_bytes(bytes(64 * 1024))
    with minivm.boot(str(pytester.path / "disk_copy.asm"), disk=str(pytester.path / "disk.img"),
                     engine=engine) as vm:
        vm.break_at("wait_for")
        vm.run(max_ticks=10**6)
        assert len(vm.devices()["disk"]["queue"]) == 4
        vm.checkpoint(str(pytester.path / "lab.mvc"))
    pytester.makepyfile(test_resumed="""
import pytest
from minivm import MinivmError

PATTERN = bytes((i ^ (i >> 8)) & 0xFF for i in range(4096))


def test_the_copy_is_on_the_disk(minivm):
    r = minivm.resume("lab.mvc", max_ticks=10**6)
    assert r.output == b"OK\\n" and minivm.disk is None
    assert minivm.vm.read_disk(8, 8) == PATTERN
    assert minivm.vm.read_disk(0) == bytes(512) and minivm.vm.read_disk(127) == bytes(512)
    for block, count in ((127, 2), (-1, 1), (0, 0)):
        with pytest.raises(MinivmError, match="not all on the disk .128 blocks, 0..127"):
            minivm.vm.read_disk(block, count)


def test_in_flight_writes_are_not_there_before_they_land(minivm):
    minivm.resume("lab.mvc", max_ticks=1)
    assert minivm.vm.read_disk(8, 8) == bytes(4096)


def test_a_machine_without_a_disk(minivm):
    minivm.run(minivm.assemble("halt"))
    with pytest.raises(MinivmError, match="has no disk"):
        minivm.vm.read_disk(0)
""")
    _inner(pytester, engine).assert_outcomes(passed=3)
    assert (pytester.path / "disk.img").read_bytes() == bytes(64 * 1024)   # the overlay took it


# --- a class graded in parallel ---------------------------------------------------------------

RIGHT = """        mov {acc}, 0
        mov {num}, 0
{loop}: in r1, 0x02
        beq r1, -1, {end}
        blt r1, '0', {gap}
        bgt r1, '9', {gap}
        mul {num}, {num}, 10
        sub r1, r1, '0'
        add {num}, {num}, r1
        jmp {loop}
{gap}:  add {acc}, {acc}, {num}
        mov {num}, 0
        jmp {loop}
{end}:  {last}
        out 0x01, {acc}
        out 0x00, 10
        mov r0, 0
        halt
"""


def _submission(i: int) -> str:
    """Submission number ``i`` of 50: 40 right, 8 forget the last number,
    one divides by zero, one waits for a newline forever."""
    regs = ["r2", "r3", "r4", "r5", "r6", "r7"]
    acc, num = regs[i % 6], regs[(i + 1 + i // 6 % 5) % 6]
    fill = dict(acc=acc, num=num, loop=f"next{i}", gap=f"gap{i}", end=f"end{i}",
                last=f"add {acc}, {acc}, {num}")
    if 40 <= i < 48:
        fill["last"] = "nop"
    elif i == 48:
        fill["last"] = f"div {acc}, {acc}, 0"
    source = RIGHT.format(**fill)
    if i == 49:
        source = source.replace(f"beq r1, -1, {fill['end']}", f"beq r1, 10, {fill['end']}")
    return f"; student {i}\n" + source


def test_a_class_of_fifty_graded_under_xdist(pytester):
    folder = pytester.mkdir("submissions")
    for i in range(50):
        (folder / f"s{i:02}.asm").write_text(_submission(i))
    pytester.makepyfile(test_class="""
from pathlib import Path
import pytest

SUBMISSIONS = sorted((Path(__file__).parent / "submissions").glob("*.asm"))

@pytest.mark.parametrize("path", SUBMISSIONS, ids=lambda p: p.stem)
def test_sum(minivm, path):
    r = minivm.run(path, input=b"3 4 5", max_ticks=2000)
    assert (r.stop, r.output) == ("halt", b"12\\n")
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=40, failed=10)
    out = result.stdout.str()
    assert "2 workers" in out
    sections = _sections(result.outlines)
    assert len(sections) == 10
    stops = sorted(s["stopped"].split(":")[0].split(",")[0] for s in sections)
    assert stops == ["fault"] + ["halt"] * 8 + ["limit"]
    assert {s["program"] for s in sections} == {f"submissions/s{i}.asm" for i in range(40, 50)}
    for s in sections:                       # each worker wrote in its own test's folder
        assert Path(pytester.path / s["checkpoint"].split(" ")[0]).is_file()


def test_a_long_output_is_cut_and_text_input_is_shown_as_bytes(pytester, engine):
    pytester.makepyfile(test_long="""
SOURCE = '''
        mov r1, 0
again:  out 0x00, 'x'
        add r1, r1, 1
        blt r1, 300, again
        out 0x00, 10
        halt
'''

def test_long(minivm):
    r = minivm.run(minivm.assemble(SOURCE, "long.asm"), input="é\\n")
    assert len(r.output) == 300
""")
    result = _inner(pytester, engine)
    result.assert_outcomes(failed=1)
    (section,) = _sections(result.outlines)
    assert section["input"] == r"b'\xc3\xa9\n'"
    assert section["output"] == "(301 bytes, the last 200) b'" + "x" * 199 + r"\n'"


def test_an_artifacts_folder_name_is_the_whole_node_id():
    from minivm.pytest_plugin import _safe_name
    assert _safe_name("lab/a/test_x.py::test_y[3-b]") == "lab-a-test_x.py-test_y-3-b"
    assert _safe_name("lab/b/test_x.py::test_y[3-b]") != _safe_name("lab/a/test_x.py::test_y[3-b]")
    long_a, long_b = "t.py::test[" + "a" * 300 + "]", "t.py::test[" + "a" * 299 + "b]"
    assert len(_safe_name(long_a)) == 149 and _safe_name(long_a) != _safe_name(long_b)
