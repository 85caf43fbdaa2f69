"""The classroom demos (programs/demos, docs/demos.md).

Every demo is run straight through (no pauses) and must exit 0 with no
``error:`` line and no guest fault. Then the facts each demo is about are
checked in its transcript - what the page map, ``devices``, ``x``, ``diff``
and the guest print at each step - and, where the demo looks inside a
checkpoint, in the checkpoint file itself. So a demo whose narration stops
being true (because the protocol or the program changed) fails here.
``elsewhere.sh`` is run with ``sh`` and must report identical outputs and
clean up after itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

from minivm.demos import available, demos_folder, run_demo
from minivm.engine import ENGINES
from minivm.program import load_program
from minivm.resume import read_checkpoint

from support import ROOT, run_cli

DEMOS = demos_folder()
EXPECTED = {"cow", "timer", "p5", "p6", "p7", "p8", "p9", "elsewhere", "reverse", "commit",
            "catch", "strategies"}
#: What 'compare' (the strategies demo) measures on the host, and the engine it names
HOST_TIME = re.compile(r"[\d,.]+ (us|ms|M/s|M ticks/s)|engine \w+")
PROMPT = re.compile(r"^minivm(?:\[[^\]]*\])?> (.*)$")
MAP_ROW = re.compile(r"^\s+0x0+\s+0\s+(\S+)$", re.M)


class Transcript:
    """A demo's output, cut into (command, output) pairs at each prompt."""

    def __init__(self, text: str):
        self.text = text
        self.steps: list[tuple[str, str]] = []
        command, lines = None, []
        for line in text.splitlines():
            match = PROMPT.match(line)
            if match:
                if command is not None:
                    self.steps.append((command, "\n".join(lines)))
                command, lines = match.group(1), []
            elif line.startswith("-- ") and line.endswith(" --"):
                continue                   # a pause's own text belongs to no command
            elif command is not None and not line.startswith("#"):
                lines.append(line)
        if command is not None:
            self.steps.append((command, "\n".join(lines)))

    def outputs(self, command: str) -> list[str]:
        """The outputs of every run of exactly this command line, in order."""
        return [out for cmd, out in self.steps if cmd == command]

    def after(self, command: str, n: int = 0) -> str:
        found = self.outputs(command)
        assert len(found) > n, f"'{command}' ran {len(found)} time(s):\n{self.text}"
        return found[n]


def page_map(pages_output: str) -> str:
    """The first row of a 'pages' map (pages 0-63)."""
    match = MAP_ROW.search(pages_output)
    assert match, pages_output
    return match.group(1)


def dumped(x_output: str) -> str:
    """The ASCII column of an 'x' dump, rows joined."""
    return "".join(re.findall(r"\|(.{1,16})\|", x_output))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Run a demo once per module and engine: (exit status, Transcript, checkpoint folder)."""
    results = {}

    def run(name, engine):
        if (name, engine) not in results:
            folder = tmp_path_factory.mktemp(f"demo-{name}-{engine}") / "checkpoints"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = run_demo(name, pause=False, checkpoint_dir=str(folder), engine=engine)
            results[name, engine] = (status, Transcript(out.getvalue()), folder)
        return results[name, engine]
    return run


@pytest.fixture
def demo(demo_runs, engine):
    """demo(NAME): the demo's run on each engine in turn, so every check of a
    transcript below holds on both engines."""
    return lambda name: demo_runs(name, engine)


# --- every demo ---------------------------------------------------------------------------------

def test_the_demos_are_all_there():
    assert set(available()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demo_runs_cleanly(name, demo):
    status, t, _ = demo(name)
    assert status == 0, t.text
    lines = t.text.splitlines()
    assert not [line for line in lines if line.startswith("error:")], t.text
    assert not [line for line in lines if ": fault: " in line], t.text
    source = (DEMOS / f"{name}.demo").read_text().splitlines()
    # the title comes first, every narration line and every pause is shown
    title = next(line for line in source if line.startswith("#") and not line.startswith("#!"))
    assert lines[0] == title
    for line in source:
        if line.startswith("# "):
            assert line in lines, f"narration line missing: {line}"
    pauses = sum(line.split()[:1] == ["pause"] for line in source)
    assert pauses >= 3, "a demo pauses where it matters"
    assert sum(line.startswith("-- ") and line.endswith(" --") for line in lines) == pauses


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demo_transcripts_are_the_same_on_both_engines(name, demo_runs):
    """The whole transcript, byte for byte (the checkpoint folder's path aside),
    and the checkpoint files' names."""
    (_, reference, ref_folder), *others = [demo_runs(name, e) for e in ENGINES]

    def text(t, folder):            # host times aside ('compare' measures them; its
        # table's columns are as wide as the times)
        return re.sub(" +", " ", HOST_TIME.sub("T", t.text.replace(str(folder), "CK")))
    for engine, (_, t, folder) in zip(ENGINES[1:], others):
        assert text(t, folder) == text(reference, ref_folder), engine
        def names(f):
            return sorted(p.name for p in f.iterdir()) if f.exists() else []   # none taken
        assert names(folder) == names(ref_folder), engine


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_demo_programs_are_commented_and_assemble(name):
    loads = [line.split()[1] for line in (DEMOS / f"{name}.demo").read_text().splitlines()
             if line.startswith("load ")]
    assert loads, f"{name}.demo loads no program"
    for program in loads:
        path = DEMOS / program
        load_program(str(path))
        text = path.read_text()
        assert text.startswith(f"; {program} - "), "a program starts with what it shows"
        comments = sum(1 for line in text.splitlines() if ";" in line)
        assert comments >= 15, f"{program}: too few comments for students"


def test_minivm_demo_lists_every_demo_with_its_title():
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.decode()
    files = sorted(DEMOS.glob("*.demo"))
    assert {f.stem for f in files} == EXPECTED
    for path in files:
        title = next(line for line in path.read_text().splitlines()
                     if line.startswith("#") and not line.startswith("#!")).lstrip("# ").strip()
        assert title
        assert re.search(rf"^  {re.escape(path.stem)}\s+{re.escape(title)}$", listing, re.M), \
            listing


def test_a_demo_through_the_cli_does_not_wait_without_a_terminal(engine):
    result = run_cli("demo", "cow", "--engine", engine, input=b"", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "# The checkpoint kept the original bytes" in out
    assert "-- press Enter to go on --" in out


# --- what each demo shows -------------------------------------------------------------------------

def test_cow_copies_only_written_pages_and_keeps_the_originals(demo):
    _, t, folder = demo("cow")
    maps = [page_map(out) for out in t.outputs("pages")]
    assert maps == ["ppppp...........",      # before the checkpoint
                    "SSSSS...........",      # right after it: all shared, nothing copied
                    "ssCSS...........",      # 1 page per 2 ticks saved 0 and 1 while it ran;
                    #                          reads of pages 1 and 4, a write to page 2
                    "sscSS...........",      # save-batch: page 2's original saved
                    "ppccp..........."]      # end: pages 2 and 3 copied, originals saved
    assert "before: saved page(s) 2; 3 of 5 done, 2 to go" in t.after("save-batch")
    x = [dumped(out) for out in t.outputs("x 0x2000 48")]
    assert x[0].startswith("original text, written before the checkpoint")
    assert x[1].startswith("NEW!NEW! text")
    assert x[2].startswith("original text, written before the checkpoint")   # after restore
    assert "memory: 2 page(s) differ: 2 (8 bytes), 3 (4 bytes)" in t.after("diff before now")
    ckpt = read_checkpoint(str(folder / "before.mvc"))
    for index in (1, 2, 3, 4):
        assert ckpt.pages[index].startswith(b"original text, written before the checkpoint\0")


def test_p5_inflight_write_and_read_belong_to_the_checkpoint(demo):
    _, t, folder = demo("p5")
    before = t.after("devices", 0)
    assert "2 request(s) in flight" in before
    assert "#2 write blocks 3..3" in before and "#3 read  blocks 8..8 -> mem 0x3000" in before
    assert set(dumped(t.after("x INBUF 48", 0))) == {"."}           # the read has not landed
    assert "ckpt-0001 still waits for in-flight disk requests (P5)" in t.after("sync")
    idle_vs_ckpt = t.after("diff idle ckpt-0001")
    assert "memory: 1 page(s) differ: 3 (46 bytes)" in idle_vs_ckpt    # the read's data
    assert "  disk: 1 block(s) differ: 3\n" in idle_vs_ckpt + "\n"     # the write's data
    ckpt_vs_now = t.after("diff ckpt-0001 now")
    assert "  disk: 1 block(s) differ: 4\n" in ckpt_vs_now + "\n"      # issued after: not in it
    assert "memory: 1 page(s) differ: 15 (1 byte)" in ckpt_vs_now     # only the stack
    assert dumped(t.after("x INBUF 48", 1)).startswith(
        "block 8: put on the disk before the checkpoint")           # after restore
    assert "2 request(s) in flight" in t.after("devices", 1)              # after restore
    ckpt = read_checkpoint(str(folder / "ckpt-0001.mvc"))
    assert ckpt.pages[3].startswith(b"block 8: put on the disk before the checkpoint\0")
    assert [(r[0], r[1], r[2]) for r in ckpt.state["disk"]["queue"]] == [(2, 2, 3), (3, 1, 8)]


def test_p6_a_new_read_copies_the_shared_page_first(demo):
    _, t, folder = demo("p6")
    before, after = (page_map(out) for out in t.outputs("pages"))
    assert before[:2] == "SS" and after[:2] == "sC"     # page 0 saved while the guest ran
    assert "#2 read  blocks 8..8 -> mem 0x1000" in t.after("devices")   # not landed yet
    x = [dumped(out) for out in t.outputs("x buf 48")]
    assert x[0].startswith("in memory at the checkpoint")
    assert x[1].startswith("from disk block 8: read AFTER the checkpoint")
    assert x[2].startswith("in memory at the checkpoint")               # after restore
    assert "memory: 2 page(s) differ: 1 (42 bytes), 15 (1 byte)" in t.after("diff ckpt-0001 now")
    ckpt = read_checkpoint(str(folder / "ckpt-0001.mvc"))
    assert ckpt.pages[1].startswith(b"in memory at the checkpoint\0")


def test_p7_the_inflight_read_lands_in_both_copies(demo):
    _, t, folder = demo("p7")
    assert page_map(t.after("pages"))[1] == "C"
    buf32 = [dumped(out) for out in t.outputs("x buf 32")]
    assert set(buf32[0]) == {"."} and set(buf32[1]) == {"."}   # not landed when page 1 was copied
    read_data = "from disk block 8: the read in flight"
    live, restored = (dumped(out) for out in t.outputs("x buf 48"))
    assert live.startswith(read_data), "the guest's copy must get the read"
    assert restored.startswith(read_data), "the checkpoint's page must get the read"
    notes = [dumped(out) for out in t.outputs("x note 32")]
    assert notes[0].startswith("note: set before the checkpoint")
    assert notes[1].startswith("NEW!: set before") and notes[2].startswith("NEW!: set before")
    assert notes[3].startswith("note: set before the checkpoint")     # the checkpoint's page
    assert "memory: 2 page(s) differ: 1 (4 bytes), 15 (1 byte)" in t.after("diff ckpt-0001 now")
    page = read_checkpoint(str(folder / "ckpt-0001.mvc")).pages[1]
    assert page.startswith(read_data.encode() + b"\0")
    assert page[0x800:].startswith(b"note: set before the checkpoint\0")


def test_p8_pending_requests_complete_before_the_guest_resumes(demo):
    _, t, folder = demo("p8")
    before, after = t.after("devices", 0), t.after("devices", 1)
    assert "2 request(s) in flight" in before
    assert "#2 read  blocks 8..8" in before and "#3 write blocks 8..8" in before
    assert "0 request(s) in flight; last completed #3" in after
    assert re.search(r"pending: disk \(tick (\d+)\), disk \(tick \1\)", after), after
    regs = t.after("regs r4 r5")
    assert re.search(r"r4\s+0x00000002 2", regs) and re.search(r"r5\s+0x00000000 0", regs)
    with_ckpt, without = t.outputs("continue")[1], t.outputs("continue")[3]
    assert "in flight just before ckpt: 2, just after: 0" in with_ckpt
    assert "in flight just before ckpt: 2, just after: 2" in without        # ckpt skipped
    old = "the read brought back: OLD text, on block 8 before the checkpoint"
    assert old in with_ckpt and old in without
    assert "halted at tick 706" in with_ckpt and "halted at tick 705" in without
    ckpt = read_checkpoint(str(folder / "ckpt-0001.mvc"))
    assert ckpt.meta["p8_drained"] == 2 and ckpt.state["disk"]["queue"] == []


def test_p9_the_overlay_copy_includes_the_pending_write(demo):
    _, t, _ = demo("p9")
    inflight = t.after("devices", 1)
    assert "#2 write blocks 16..17" in inflight and "#3 write blocks 19..19" in inflight
    lines = ["block 16: NEW, written by #2 (in flight at the checkpoint)",
             "block 17: NEW, written by #2 (in flight at the checkpoint)",
             "block 18: old",
             "block 19: NEW, written by #3 (after the checkpoint)"]
    first, replay = t.outputs("continue")[1], t.outputs("continue")[2]
    assert first.splitlines()[:4] == lines
    assert replay.splitlines()[:4] == lines
    assert "  disk: 1 block(s) differ: 19\n" in t.after("diff ckpt-0001 now") + "\n"


def test_timer_interrupts_pend_while_disabled_and_survive_a_checkpoint(demo):
    _, t, _ = demo("timer")
    at_ei = t.after("devices", 0)
    assert "timer       period 50 ticks, next at tick 151, handler 24 <on_timer>" in at_ei
    assert "interrupts  disabled; pending: timer (tick 51), timer (tick 101)" in at_ei
    assert "(interrupt taken: jumped to pc 24 <on_timer>" in t.after("step 2")
    assert "pending: timer (tick 101)\n" in t.after("devices", 1) + "\n"
    assert t.after("devices", 2) == at_ei                         # restored
    ticks = [124, 137, 151, 201, 251]
    expected = "\n".join(f"interrupt #{n} handled at tick {tick}"
                         for n, tick in enumerate(ticks, 1))
    first, replay = t.outputs("continue")
    assert first.startswith(expected) and replay.startswith(expected)


def test_elsewhere_demo_goes_on_from_the_middle_of_a_line(demo):
    _, t, _ = demo("elsewhere")
    assert t.after("continue 900").splitlines()[2] == "round 3: counter"
    assert "1 request(s) in flight" in t.after("devices", 0)
    first, replay = (out.split("halted at tick 2085")[0] for out in t.outputs("continue"))
    assert first.startswith(" 3, being written to disk\nround 4: counter 4")
    assert first.endswith("round 6: counter 6, being written to disk\n")
    assert replay == first


def test_elsewhere_script_resumes_in_another_folder(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    result = subprocess.run(["sh", "programs/demos/elsewhere.sh"], cwd=ROOT, env=env,
                            capture_output=True, timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "round 3: counter| 3, being written to disk" in out
    assert re.search(r"^identical: .* \((\d+) of (\d+) bytes\)$", out, re.M), out
    assert "disk.img (unchanged; opened read-only)" in result.stderr.decode()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("minivm-elsewhere")]
    assert left == [], "the script must clean up after itself"


def test_reverse_demo_finds_the_store_that_broke_the_total(demo):
    _, t, _ = demo("reverse")
    assert t.after("run").startswith("0\n")
    found = t.outputs("reverse-continue")
    assert "changed 150 -> 0" in found[0] and "at tick 45" in found[0]
    assert "st r0, [r3 + partial]" in t.after("reverse-step")
    assert "r3  0x00000014 20" in t.after("regs r3")
    assert "changed 0 -> 150" in found[1]
    assert "undid 'goto 0': at tick 28" in t.after("undo")


def test_commit_demo_merges_the_overlay_while_the_guest_runs(demo):
    _, t, _ = demo("commit")
    assert re.search(r"writes go to \S*ckpt-0001\.cow \(overlay\) on \S*disk\.img \(raw\)",
                     t.after("devices", 0))
    assert "committed 1 block group(s) from ckpt-0001.cow" in t.after("commit")
    assert re.search(r"writes go to \S*commit-0002\.cow \(overlay\) on \S*disk\.img \(raw\)",
                     t.after("devices", 1))


def test_catch_stops_at_each_protocol_step_in_turn(demo):
    """Each 'continue' of the catch demo stops at the step its narration names."""
    _, t, _ = demo("catch")
    stops = [re.findall(r"^Catchpoint [\d, ]+ \(([\w-]+)\): (P[\d/P]+), claims", out, re.M)
             for cmd, out in t.steps if cmd in ("run", "continue")]
    assert [[event for event, _ in stop] for stop in stops] == [
        ["stop-window"], ["cow"], ["p6"], ["dma-land"], ["save"], ["disk-cow", "p9"],
        ["disk-cow", "stop-window", "p8"], []]
    # the narration before the dma-land stop names the step the stop reports (P5:
    # page 3 is still shared, the guest never copied it)
    before_land = t.text.split("> catch dma-land\n", 1)[0].rsplit("--\n", 1)[1]
    landed = re.search(r"landed in .*\((P\d)\)$", t.text, re.M)
    assert landed and before_land.startswith(f"# {landed.group(1)}: "), before_land
    # the narration after the P8 stop names its steps in the order they are printed
    after_p8 = t.text.split("> catch p8\n", 1)[1].split("\n-- ", 1)[0]
    told = "".join(line for line in after_p8.splitlines() if line.startswith("#"))
    assert re.findall(r"\((P\d+)\)", told) == [step for _, step in stops[6]], after_p8
    assert "SCSSS..........S" in t.after("pages", 1)     # page 1 copied by the caught store
    listing = t.after("info catch")
    assert re.search(r"^\s+8\s+p8\s+any\s+P8\s+1$", listing, re.M), listing
    assert "halted at tick 6625" in t.outputs("continue")[-1]


def test_strategies_compares_three_modes_all_identical(demo):
    status, t, _ = demo("strategies")
    out = t.after("compare 6000")
    lines = out.splitlines()
    head = next(line for line in lines if line.split() == ["stop-copy", "cow", "precopy"])
    modes = head.split()

    def row(label):                 # the row's value in each mode's column
        line = next(line for line in lines if line.startswith(label))
        values = [v.strip() for v in line[len(label):].split("  ") if v.strip()]
        assert len(values) == 3, line
        return dict(zip(modes, values))

    assert set(row("identical to the plain run").values()) == {"yes"}, out
    assert "every resumed final state is identical to the uninterrupted run" in out
    # the narration's facts (ticks and pages, not host time): both others stop at
    # 6000; pre-copy hits its round limit later, with the working set dirty
    at = row("checkpoint at tick")
    assert at["stop-copy"] == at["cow"] == "6,000"
    assert int(at["precopy"].replace(",", "")) > 6000
    rounds = int(row("pre-copy rounds")["precopy"])
    final_pages = int(row("pages in the final stop")["precopy"].replace(",", ""))
    assert rounds == 8 and final_pages >= 128, out
    # lazy resumes read fewer pages than eager ones (which read all)
    eager, lazy = map(int, row("pages loaded, eager/lazy")["cow"].replace(",", "").split("/"))
    assert lazy < eager
