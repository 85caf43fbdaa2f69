"""``minivm run --json`` and ``resume --json`` against the schema that
docs/formats.md ("run --json") documents: its table of keys and types is
read from the page, and real outputs (a halt, a fault, a limit, a resumed
run) are checked against it by a small validator, as is the Python API's
``Result.to_dict()``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import minivm
from minivm import cli

ROOT = Path(__file__).resolve().parent.parent
FORMATS = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")


def documented_schema() -> dict[str, str]:
    """{key: type text} from the table of formats.md's 'run --json' section."""
    section = FORMATS.split("## 8. `run --json`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    return {key: kind.strip() for key, kind in rows}


def _is(value, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "int or null": lambda v: v is None or _is(v, "int"),
        "object": lambda v: isinstance(v, dict),
        "object or null": lambda v: v is None or isinstance(v, dict),
        "list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }
    assert kind in checks, f"formats.md gives a type the validator does not know: {kind!r}"
    return checks[kind](value)


def validate(obj: dict) -> list[str]:
    """What is wrong with a run --json object, by the documented schema."""
    schema, problems = documented_schema(), []
    if set(obj) != set(schema):
        problems.append(f"keys {sorted(set(obj) ^ set(schema))} differ from the table")
    for key, kind in schema.items():
        if key in obj and not _is(obj[key], kind):
            problems.append(f"{key}: {obj[key]!r} is not {kind}")
    if isinstance(obj.get("fault"), dict):
        fault = obj["fault"]
        if set(fault) != {"reason", "pc", "tick", "location", "source"} or \
                not all(isinstance(fault[k], str) for k in ("reason", "location", "source")) \
                or not all(_is(fault[k], "int or null") for k in ("pc", "tick")):
            problems.append(f"fault: {fault!r} is not as documented")
    regs = obj.get("registers", {})
    if list(regs) != [f"r{i}" for i in range(15)] + ["sp"] or \
            not all(_is(v, "int") and 0 <= v < 2**32 for v in regs.values()):
        problems.append(f"registers: {regs!r} are not r0..r14, sp as unsigned 32-bit values")
    if obj.get("stop") not in ("halt", "fault", "limit", "interrupted", "output-limit",
                               "breakpoint", "watch"):
        problems.append(f"stop: {obj.get('stop')!r} is not a documented reason")
    return problems


def test_the_table_is_the_one_the_validator_reads():
    assert documented_schema() == {
        "stop": "string", "exit_status": "int or null", "ticks": "int", "pc": "int",
        "output": "string", "output_bytes": "int", "fault": "object or null",
        "checkpoints": "list of strings", "registers": "object",
        "resume": "object or null"}


def test_the_validator_finds_mistakes():
    good = minivm.run(minivm.assemble("halt\n")).to_dict()
    assert validate(good) == []
    for broken in ({**good, "ticks": "6"}, {**good, "exit_status": True},
                   {k: v for k, v in good.items() if k != "pc"}, {**good, "extra": 1},
                   {**good, "fault": {"reason": "x"}}, {**good, "stop": "done"},
                   {**good, "registers": {"r0": -1}}, {**good, "checkpoints": [1]}):
        assert validate(broken), broken


def _json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    status = cli.main(list(argv))
    out = capsys.readouterr().out
    return status, json.loads(out)           # one object, nothing else on stdout


@pytest.mark.parametrize("source, extra, stop, status", [
    ("mov r1, 7\nout 0x01, r1\nout 0x00, 10\nmov r0, 3\nhalt\n", [], "halt", 3),
    ("out 0x00, 0xff\nmov r1, 0\ndiv r2, r1, r1\nhalt\n", [], "fault", cli.EXIT_FAULT),
    ("loop: jmp loop\n", ["--max-steps", "100"], "limit", cli.EXIT_LIMIT),
], ids=["halt", "fault", "limit"])
def test_run_json_follows_the_schema(tmp_path, capsys, monkeypatch, engine,
                                     source, extra, stop, status):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.asm").write_text(source)
    code, obj = _json(capsys, "run", "p.asm", "--json", "--engine", engine, *extra)
    assert validate(obj) == [] and code == status
    assert obj["stop"] == stop
    if stop == "fault":
        assert obj["fault"]["location"] == "p.asm:3" and obj["output"] == "\\xff"
        assert obj["output_bytes"] == 1
    if stop == "halt":
        assert (obj["output"], obj["exit_status"], obj["registers"]["r1"]) == ("7\n", 3, 7)
    api = minivm.run(minivm.load(tmp_path / "p.asm"), engine=engine,
                     max_ticks=100 if extra else None).to_dict()
    assert validate(api) == [] and api["ticks"] == obj["ticks"]


def test_resume_json_follows_the_schema(tmp_path, capsys, monkeypatch, engine):
    monkeypatch.chdir(tmp_path)
    with minivm.boot(ROOT / "programs" / "fib.asm", engine=engine) as vm:
        vm.step(10)
        path = vm.checkpoint(tmp_path / "at10.mvc")
    code, obj = _json(capsys, "resume", path, "--json", "--engine", engine)
    assert validate(obj) == [] and code == 0
    assert obj["stop"] == "halt" and obj["ticks"] > 10 and obj["output"].endswith("4181\n")


@pytest.mark.parametrize("what", ["run", "resume"])
def test_json_of_a_run_that_cannot_start_is_no_object_and_status_2(tmp_path, capsys,
                                                                    monkeypatch, what):
    """As docs/formats.md says: stdout empty, the error on stderr, status 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.asm").write_text("mov r1, 0\nfoo r2\nhalt\n")
    (tmp_path / "bad.mvc").write_bytes(b"not a checkpoint")
    code = cli.main([what, "bad.asm" if what == "run" else "bad.mvc", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "bad." in err and "Traceback" not in err


def test_the_api_takes_text_input_as_utf8(engine):
    """minivm.run(..., input="3 4") as the fixture takes it, not a TypeError."""
    sum_asm = ROOT / "programs" / "grading" / "sum.asm"
    assert minivm.run(sum_asm, input="3 4", engine=engine).output == b"7\n"
    with minivm.boot(sum_asm, engine=engine) as vm:
        vm.feed("10 é")                      # é is two bytes, neither a digit
        assert vm.run().output == b"10\n"


def test_an_unknown_label_is_a_readable_minivm_error(engine):
    with minivm.boot(ROOT / "programs" / "grading" / "sum.asm", engine=engine) as vm:
        for call in (lambda: vm.symbol("total"), lambda: vm.break_at("total")):
            with pytest.raises(minivm.MinivmError) as caught:
                call()
            assert isinstance(caught.value, KeyError)      # as it was documented before
            assert "sum.asm has no label or .equ named 'total' (it has: done, gap, next)" \
                in str(caught.value)


def test_api_runs_leave_no_empty_folders_in_tmp(tmp_path, monkeypatch, engine):
    """minivm.run in a loop (a grader's) left one empty /tmp/minivm-* per call."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fib = ROOT / "programs" / "fib.asm"
    for _ in range(3):
        assert minivm.run(fib, engine=engine).stop == "halt"
    assert list(tmp_path.iterdir()) == []
    with minivm.boot(fib, engine=engine) as vm:    # a checkpoint's folder is kept
        vm.step(10)
        path = vm.checkpoint()
    with minivm.restore(path, engine=engine) as again:
        assert again.run().stop == "halt"
    assert [p.name for p in tmp_path.iterdir()] == [Path(path).parent.name]
