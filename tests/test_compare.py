"""``minivm compare`` (minivm/lab.py, labcli.py, labsvg.py) and the resume report.

Only tick- and page-defined quantities are checked for their values (pre-copy
rounds, pages, ticks, whether states are identical); the host-time columns
are checked for presence and format only.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from minivm import cli, lab
from minivm.precopy import MAX_ROUNDS
from support import run_cli

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "programs" / "checkpoint_demo.asm")
SIEVE = str(ROOT / "programs" / "sieve.asm")
MODE_KEYS = {"mode", "asked_tick", "checkpoint_tick", "stop_us", "rounds", "final_stop_pages",
             "pages_written_twice", "complete_ms", "guest_ticks_per_s", "bytes_written",
             "identical_run", "resume", "identical", "note"}
RESUME_KEYS = {"mode", "first_instruction_us", "pages_saved", "pages_loaded", "identical",
               "differs"}


def disk(tmp_path) -> str:
    path = tmp_path / "d.img"
    path.write_bytes(bytes(64 * 1024))
    return str(path)


@pytest.mark.parametrize("engine", ["interp", "blocks"])
def test_compare_json_every_mode_identical(tmp_path, engine):
    done = run_cli("compare", DEMO, "--disk", disk(tmp_path), "--at", "300", "--json",
                   "--engine", engine, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    assert doc["identical"] is True and doc["at"] == 300 and doc["engine"] == engine
    assert [m["mode"] for m in doc["modes"]] == ["stop-copy", "cow", "precopy"]
    for m in doc["modes"]:
        assert set(m) == MODE_KEYS
        assert m["identical"] and m["identical_run"] and m["asked_tick"] == 300
        assert set(m["resume"]) == {"eager", "lazy"}
        for how, r in m["resume"].items():
            assert set(r) == RESUME_KEYS and r["mode"] == how and r["identical"]
            assert isinstance(r["first_instruction_us"], float) and r["first_instruction_us"] > 0
        assert m["resume"]["eager"]["pages_loaded"] == m["resume"]["eager"]["pages_saved"]
        assert m["resume"]["lazy"]["pages_loaded"] <= m["resume"]["lazy"]["pages_saved"]
    stop_copy, cow, precopy = doc["modes"]
    assert stop_copy["rounds"] is None and cow["rounds"] is None and precopy["rounds"] >= 1
    assert stop_copy["checkpoint_tick"] == cow["checkpoint_tick"] == 300
    assert precopy["checkpoint_tick"] >= 300
    # compare's progress goes to stderr, one line per step
    assert b"compare: precopy: resuming" in done.stderr


def test_compare_table(tmp_path):
    done = run_cli("compare", SIEVE, "--svg", "c.svg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    for label in lab.ROWS:
        assert label in text
    assert max(len(line) for line in text.splitlines()) <= 80      # a terminal, a projector
    head, *rows = [line for line in text.splitlines()
                   if line.split() and (line.split() == list(lab.LAB_MODES)
                                        or any(line.startswith(r) for r in lab.ROWS))]
    assert head.split() == list(lab.LAB_MODES)
    values = {label: line[len(label):].split("  ") for label in lab.ROWS for line in rows
              if line.startswith(label)}
    values = {label: [v.strip() for v in vs if v.strip()] for label, vs in values.items()}
    # the default tick: a quarter of the uninterrupted run (sieve: 11,470 ticks)
    assert "asked for at tick 2,867 of 11,470" in text
    assert all(re.search(r"\d us$", v) for v in values["stop window (guest stopped)"])
    assert all(re.search(r"\d ms$", v) for v in values["complete after"])
    assert values["identical to the plain run"] == ["yes"] * 3
    assert "every resumed final state is identical" in text
    svg = (tmp_path / "c.svg").read_text()
    assert 'width="1280"' in svg
    assert "each panel has its own scale" in svg   # a long bar is not a long time
    sizes = [int(s) for s in re.findall(r'font-size="(\d+)"', svg)]
    assert sizes and min(sizes) >= 16
    for mode in lab.LAB_MODES:
        assert f">{mode}</text>" in svg


def test_compare_exits_non_zero_when_a_resumed_state_differs(tmp_path, monkeypatch, capsys):
    real_resume = lab.resume

    def broken_resume(*args, **kwargs):
        machine, overlay = real_resume(*args, **kwargs)
        machine.regs[3] ^= 1                # a resume that gets one register wrong
        return machine, overlay

    monkeypatch.setattr(lab, "resume", broken_resume)
    monkeypatch.chdir(tmp_path)
    status = cli.main(["compare", SIEVE, "--at", "1000"])
    out = capsys.readouterr().out
    assert status == 1
    assert "NOT every resumed final state is identical" in out
    assert re.search(r"resumed eager: differs from the uninterrupted run in .*regs", out)
    assert out.count(" NO") >= 3


def test_compare_errors_are_one_paragraph(tmp_path):
    (tmp_path / "loop.asm").write_text("loop: jmp loop\n")
    for args, words in ((["compare"], "needs a program"),
                        (["compare", "loop.asm", "--max-steps", "5000"], "did not end within"),
                        (["compare", SIEVE, "--at", "99999999"], "ends at tick 11470"),
                        (["compare", "--sweep", "8,x"], "not a whole number"),
                        (["compare", SIEVE, "--sweep"], "give no program"),
                        # the picture's folder is checked before the runs
                        (["compare", SIEVE, "--svg", "no/such/c.svg"], "does not exist"),
                        (["compare", "--sweep", "8", "--svg", "."], "is a folder"),
                        (["compare", "--sweep", "8", "--mem", "64K"], "needs 1M of memory"),
                        # as 'run' says it, before any run starts
                        (["compare", SIEVE, "--disk", "nope.img"],
                         "disk file 'nope.img' does not exist")):
        done = run_cli(*args, cwd=tmp_path)
        err = done.stderr.decode()
        assert done.returncode != 0 and words in err and "Traceback" not in err, (args, err)


def test_sweep_shows_where_precopy_stops_converging(tmp_path):
    done = run_cli("compare", "--sweep", "8,90", "--mem", "1M", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    slow, fast = doc["rows"]
    assert (slow["rate"], fast["rate"]) == (8, 90)
    assert slow["converged"] and slow["precopy_rounds"] < MAX_ROUNDS
    assert not fast["converged"] and fast["precopy_rounds"] == MAX_ROUNDS
    assert fast["final_stop_pages"] > slow["final_stop_pages"]
    assert fast["pages_written_twice"] > slow["pages_written_twice"]
    text = run_cli("compare", "--sweep", "8,90", "--mem", "1M", cwd=tmp_path).stdout.decode()
    assert "no: limit" in text and "cow stop" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_parse_rates():
    assert lab.parse_rates("8,16") == [8, 16]
    assert lab.parse_rates("8-32") == [8, 16, 24, 32]
    assert lab.parse_rates("10-40:10") == [10, 20, 30, 40]


def test_resume_reports_time_to_first_instruction_and_pages_loaded(tmp_path):
    done = run_cli("run", SIEVE, "--checkpoint-at", "2000", "--checkpoint-dir", "ck",
                   "--checkpoint-mode", "precopy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    ckpt = "ck/ckpt-0001.mvc"
    for flag, how in (("--eager", "eager"), ("--lazy", "lazy")):
        done = run_cli("resume", ckpt, flag, "--checkpoint-dir", "ck", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)["resume"]
        assert report["mode"] == how and report["pages_saved"] == 1
        assert report["pages_loaded"] == 1            # the sieve reads its one page
        assert re.search(rf"resumed {how}ly|resumed {how[:-1]}ily", done.stderr.decode())
        assert re.search(r"first instruction \d+\.\d\d ms", done.stderr.decode())


def test_compare_says_when_a_mode_took_no_checkpoint(tmp_path):
    """Asked for late, pre-copy's rounds cannot end before the halt: no checkpoint,
    said so, exit status 1 (the table cannot claim the states were compared)."""
    done = run_cli("compare", str(ROOT / "programs" / "demos" / "strategies.asm"), "--mem", "4M",
                   "--disk", disk(tmp_path), "--at", "70000", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr.decode()
    doc = json.loads(done.stdout)
    precopy = doc["modes"][2]
    assert precopy["mode"] == "precopy" and precopy["resume"] == {}
    assert precopy["checkpoint_tick"] is None and "halted at tick" in precopy["note"]
    assert doc["modes"][0]["identical"] and doc["modes"][1]["identical"]
    text = run_cli("compare", str(ROOT / "programs" / "demos" / "strategies.asm"), "--mem",
                   "4M", "--disk", disk(tmp_path), "--at", "70000", "--svg", "c.svg",
                   cwd=tmp_path)
    assert text.returncode == 1
    assert "no checkpoint was taken in precopy mode" in text.stdout.decode()
    svg = (tmp_path / "c.svg").read_text()          # the picture says the same
    assert "no checkpoint was taken in precopy mode" in svg and "NOT every" not in svg


def test_resume_json_always_says_how_it_resumed(tmp_path):
    run_cli("run", SIEVE, "--checkpoint-at", "2000", "--checkpoint-dir", "ck", cwd=tmp_path)
    done = run_cli("resume", "ck/ckpt-0001.mvc", "--checkpoint-dir", "ck", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["resume"]["mode"] == "lazy"
    assert "first instruction" not in done.stderr.decode()     # the line: only when chosen


def test_compare_says_when_the_program_faults(tmp_path):
    """A guest that faults (here: a disk request without --disk) is not
    mistaken for one that halts: the table's head and the --at error say so."""
    (tmp_path / "nodisk.asm").write_text("mov r1, 1\nmov r2, 2\nmov r3, 3\nout 0x23, 2\nhalt\n")
    done = run_cli("compare", "nodisk.asm", "--at", "1", "--svg", "f.svg", cwd=tmp_path)
    out = " ".join(done.stdout.decode().split())       # (the line is wrapped at 80)
    assert done.returncode == 0, done.stderr.decode()
    assert "did not halt: it ended at tick 3 with a fault: disk request with no disk" in out
    assert "did not halt: it ended with a fault: disk request with no disk attached" \
        in (tmp_path / "f.svg").read_text()
    done = run_cli("compare", "nodisk.asm", "--at", "1", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["uninterrupted_end"].startswith("fault: disk request")
    done = run_cli("compare", SIEVE, "--at", "100", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["uninterrupted_end"] == "halt"
    done = run_cli("compare", "nodisk.asm", "--at", "50", cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err
    assert "ends at tick 3, before the checkpoint, with a fault: disk request" in err


def test_compare_help_says_what_the_runs_get_and_what_sweep_refuses(tmp_path):
    text = " ".join(run_cli("compare", "--help", cwd=tmp_path).stdout.decode().split())
    assert "no console input" in text           # stdin piped to compare is not read
    assert "(with --sweep: the sweep) as a picture" in text


@pytest.mark.parametrize("engine", ["interp", "blocks"])
def test_the_api_restores_eagerly_or_lazily(tmp_path, engine):
    """minivm.restore offers both ways to resume, as 'resume --eager/--lazy'."""
    import minivm
    with minivm.boot(SIEVE, engine=engine, checkpoint_dir=str(tmp_path)) as vm:
        vm.step(2000)
        path = vm.checkpoint(str(tmp_path / "at2000.mvc"))
        vm.run()
        expected = (vm.output, vm.regs, vm.tick)
    for eager, loaded_at_start in ((True, 1), (False, 0)):
        with minivm.restore(path, engine=engine, eager=eager,
                            checkpoint_dir=str(tmp_path / f"r{eager}")) as again:
            assert again.machine.memory.pages_loaded == loaded_at_start
            again.run()                # its output is what came after the checkpoint
            assert expected[0].endswith(again.output) and len(again.output) > 100
            assert (again.regs, again.tick) == expected[1:]


def test_sweep_header_and_json_give_the_precopy_rate_in_use(tmp_path):
    done = run_cli("compare", "--sweep", "8", "--mem", "1M", "--precopy-rate", "16",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert "pre-copy copies 16 pages per 1,000 ticks" in " ".join(done.stdout.decode().split())
    done = run_cli("compare", "--sweep", "8", "--mem", "1M", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["precopy_pages_per_1000_ticks"] == 64


@pytest.mark.parametrize("rate", [8, 32, 48, 64, 90])
def test_the_sweep_guest_writes_at_the_rate_its_row_shows(rate):
    """The rate a row is labelled with is what the guest does: rates that
    the guest cannot tell apart (96 and 128 were the same guest) are refused."""
    import minivm
    from minivm.labguest import MAX_RATE, actual_rate, lab_source
    image = minivm.assemble(lab_source(1 << 20, rate, 10**6, 256, dma=False), "g.asm")
    with minivm.boot(image) as vm:
        vm.step(5000)
        before = vm.regs[2]                 # r2 counts the pages written
        vm.step(100_000)
        measured = (vm.regs[2] - before) / 100
    assert abs(measured - actual_rate(rate, dma=False)) < 0.2
    assert abs(measured - rate) / rate < 0.05
    assert MAX_RATE == 90
    with pytest.raises(Exception, match="1 to 90"):
        lab.parse_rates("96")


def test_the_repl_compare_names_the_tick_not_a_cli_option(capsys, monkeypatch, tmp_path):
    """'compare 99999' in the REPL said '--at 99999: ...', an option the REPL
    user never typed."""
    import io
    from minivm import cli
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("compare 99999999\n"))
    capsys.readouterr()
    cli.main(["repl", SIEVE])
    text = "".join(capsys.readouterr())
    assert "tick 99999999: the program ends at tick 11470" in text, text
    assert "--at" not in text


def test_sweep_svg_draws_where_precopy_stops_converging(tmp_path):
    """compare --sweep --svg: the final-stop pages and both stop windows per
    rate, for a projector (1280 wide, text 20 px and up), and the lesson."""
    done = run_cli("compare", "--sweep", "8,90", "--mem", "1M", "--svg", "s.svg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert "picture written to s.svg" in done.stderr.decode()
    svg = (tmp_path / "s.svg").read_text()
    ET.fromstring(svg)                                  # well-formed
    assert 'width="1280"' in svg
    assert min(int(v) for v in re.findall(r'font-size="(\d+)"', svg)) >= 20
    for words in ("pages pre-copy copies in its final stop", "stop window (ms)",
                  "threshold: 32 pages", "from rate 90 on, pre-copy did not converge",
                  f"its {MAX_ROUNDS} rounds ran out", ">8</text>", ">90</text>"):
        assert words in svg, words
    # one column per rate in the pages panel: the converged one, the one at the limit
    assert svg.count('fill="#d68910"') >= 2 and 'fill="#922b21"' in svg
