"""Pictures for a projector (minivm/timeline.py, minivm/pictures.py).

The timeline and the page map are drawn 1280 units wide: at 1280 px every
text must be 16 px or more; every protocol step the run recorded (P5-P9)
gets a label, and no two labels overlap or leave the picture; a cropped
axis says so; each stop window shows as a gap in host time; the page map
carries its letters. ``minivm demo NAME --pictures DIR`` writes valid SVG
files for every demo. Nothing here depends on how fast the host is: only
the layout is checked, never the measured milliseconds.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from minivm.demos import available, run_demo
from minivm.engine import ENGINES
from minivm.timeline import layout_labels, page_map_svg, text_width

from support import ROOT, run_cli

NS = "{http://www.w3.org/2000/svg}"
DEMOS = ROOT / "programs" / "demos"
#: demo program -> the steps its run must label
STEPS = {"p5": {"P2", "P4", "P5"}, "p6": {"P2", "P6"}, "p7": {"P2", "P5", "P7"},
         "p8": {"P2", "P8"}, "p9": {"P2", "P5", "P9"}}


def parse(text: str):
    root = ET.fromstring(text)
    assert root.tag == NS + "svg"
    return root, 1280 / float(root.get("width"))


def timeline(tmp_path, program: str, engine: str, *extra: str, folder=DEMOS) -> str:
    tmp_path = tmp_path / program
    tmp_path.mkdir()
    disk, svg = tmp_path / "d.img", tmp_path / f"{program}.svg"
    assert run_cli("disk", "create", str(disk), "64K").returncode == 0
    r = run_cli("run", str(folder / f"{program}.asm"), "--disk", str(disk), "--mem", "64K",
                "--checkpoint-dir", str(tmp_path / "ck"), "--timeline", str(svg),
                "--engine", engine, *extra)
    assert r.returncode == 0, r.stderr.decode()
    return svg.read_text(encoding="utf-8")


def boxes(root):
    """(x0, y0, x1, y1, step) of every event label's box."""
    return [(float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
             float(r.get("y")) + float(r.get("height")), r.get("data-step"))
            for r in root.iter(NS + "rect") if r.get("class") == "label-box"]


def assert_text_sizes(root, scale, least=16):
    sizes = [float(t.get("font-size")) * scale for t in root.iter(NS + "text")]
    assert sizes and min(sizes) >= least, min(sizes)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("program", sorted(STEPS))
def test_timeline_labels_every_step_legibly(tmp_path, program, engine):
    root, scale = parse(timeline(tmp_path, program, engine))
    assert_text_sizes(root, scale)
    found = boxes(root)
    assert STEPS[program] <= {b[4] for b in found}
    for i, a in enumerate(found):
        assert 0 <= a[0] and a[2] <= 1280 / scale, a
        for b in found[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    labels = [t for t in root.iter(NS + "text") if t.get("class") == "label"]
    assert len(labels) == len(found)
    for t in labels:                          # each label lies inside its box
        x, y = float(t.get("x")), float(t.get("y"))
        assert any(b[0] <= x and x + text_width(t.text, 16) <= b[2] and b[1] <= y <= b[3]
                   for b in found), t.text
    every = " ".join(t.text or "" for t in root.iter(NS + "text"))
    assert "P8: 2 pending request(s) completed first" in every or program != "p8"
    assert "lands in both copies of page 1" in every or program != "p7"
    assert "P9: write #3 copies group 2 after write #2" in every or program != "p9"


def test_timeline_says_when_its_axis_is_cropped(tmp_path):
    # its first checkpoint is at tick 375 of 1263: the axis starts near it
    root, _ = parse(timeline(tmp_path, "checkpoint_demo", "interp", folder=ROOT / "programs"))
    crop = [t.text for t in root.iter(NS + "text") if t.get("class") == "crop"]
    assert len(crop) == 1
    lo, hi, end = map(int, re.match(r"axis cropped: ticks (\d+)-(\d+) of 0-(\d+)", crop[0]).groups())
    assert 0 < lo < hi <= end
    ticks = [int(t.text) for t in root.iter(NS + "text") if t.get("class") == "tick"]
    assert ticks and lo <= min(ticks) and max(ticks) <= hi
    whole = parse(timeline(tmp_path, "p9", "interp"))[0]
    assert not [t for t in whole.iter(NS + "text") if t.get("class") == "crop"]
    assert any("(the whole run)" in (t.text or "") for t in whole.iter(NS + "text"))
    # p7's axis would start at tick 3: a few ticks after 0 is not "cropped"
    near = parse(timeline(tmp_path, "p7", "interp"))[0]
    assert not [t for t in near.iter(NS + "text") if t.get("class") == "crop"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["cow", "stop-copy"])
def test_the_stop_window_is_a_gap_in_host_time(tmp_path, mode, engine):
    root, _ = parse(timeline(tmp_path, "p9", engine, "--checkpoint-mode", mode))
    gaps = [r for r in root.iter(NS + "rect") if r.get("class") == "stop-gap"]
    assert len(gaps) == 1
    assert float(gaps[0].get("width")) >= 2 and float(gaps[0].get("data-ms")) > 0
    title = " ".join(t.text or "" for t in root.iter(NS + "text"))
    assert f"ckpt-0001 ({mode})" in title and "stopped " in title


def test_labels_are_laid_out_in_rows_without_overlap_or_crossing():
    crowded = [(100 + 7 * k, 200) for k in range(12)] + [(1230, 300), (1235, 150)]
    for wants, strict in ((crowded, False), ([(100 + 30 * k, 250) for k in range(8)], True)):
        placed = layout_labels(wants, 40, 1240)
        spans = [(x, x + w, row, want) for (x, row), (want, w) in zip(placed, wants)]
        for i, (a0, a1, ra, wa) in enumerate(spans):
            assert 40 <= a0 and a1 <= 1240
            assert a0 <= wa <= a1                 # the leader leaves from the label itself
            for b0, b1, rb, wb in spans[:i] + spans[i + 1:]:
                if ra == rb:
                    assert a1 <= b0 or b1 <= a0
                if strict and rb > ra:            # a's leader runs down through b's row
                    assert not b0 < wa < b1, (spans[i], (b0, b1, rb, wb))


def test_page_map_has_letters_scaled_cells_and_a_legend_below():
    states = "SSCSs" + "." * 10 + "c"
    root, scale = parse(page_map_svg(states, "sixteen pages"))
    assert_text_sizes(root, scale)
    cells = [t for t in root.iter(NS + "text") if t.get("class") == "cell"]
    assert "".join(t.text for t in cells[:16]) == states
    legend_y = min(float(t.get("y")) for t in cells[16:])
    assert legend_y > max(float(t.get("y")) for t in cells[:16])
    squares = [r for r in root.iter(NS + "rect") if r.get("stroke-width") == "0.5"]
    assert len(squares) == 16 and float(squares[0].get("width")) >= 48
    hatched = {r.get("fill") for r in squares if r.get("fill", "").startswith("url(")}
    assert hatched == {"url(#hatch-s)", "url(#hatch-c)"}     # saved: hatched, not only paler


def test_a_big_page_map_folds_untouched_rows():
    states = "p" * 5 + "." * 4090 + "p"
    root, _ = parse(page_map_svg(states, "16 MiB"))
    folds = [t.text for t in root.iter(NS + "text") if t.get("class") == "fold"]
    assert folds == ["... pages 32-4063 untouched (0x20000..0xfdffff)"]
    assert int(root.get("height")) < 600


def test_demo_pictures_writes_svg_for_every_demo(tmp_path, capsys):
    for name in available():
        folder = tmp_path / "pics" / name            # created, with its parent
        assert run_demo(name, pause=False, pictures=str(folder)) == 0
        out = capsys.readouterr().out
        wrote = re.findall(r"^wrote (\S+)$", out, re.M)
        files = sorted(p.name for p in folder.iterdir())
        assert wrote and sorted(w.rsplit("/", 1)[-1] for w in wrote) == files, out[-500:]
        assert files == [f"{name}.svg"] or files == [f"{name}-{k}.svg"
                                                     for k in range(1, len(files) + 1)]
        for f in files:
            root, scale = parse((folder / f).read_text(encoding="utf-8"))
            assert_text_sizes(root, scale)
    assert sorted((tmp_path / "pics" / "cow").iterdir())[-1].read_text().count(
        "checkpoint timeline") >= 1                  # cow: page maps, then its timeline


def test_demo_pictures_into_a_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("demo", "cow", "--no-pause", "--pictures", str(blocker / "sub"))
    err = r.stderr.decode()
    assert r.returncode != 0 and "cannot create the pictures folder" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_repl_pages_svg_draws_the_letters_of_pages(tmp_path, engine):
    batch = tmp_path / "b.txt"
    batch.write_text(f"load {DEMOS / 'cow.asm'}\nbreak checkpoint_here\nrun\ncheckpoint before\n"
                     f"step 4\npages --svg {tmp_path / 'map.svg'}\n")
    r = run_cli("repl", "--mem", "64K", "--batch", str(batch), "--engine", engine, cwd=tmp_path)
    assert r.returncode == 0, r.stdout.decode()[-800:]
    text = r.stdout.decode()
    row = re.search(r"^\s+0x0+\s+0\s+(\S+)$", text, re.M).group(1)
    root, scale = parse((tmp_path / "map.svg").read_text(encoding="utf-8"))
    assert_text_sizes(root, scale)
    cells = [t.text for t in root.iter(NS + "text") if t.get("class") == "cell"]
    assert "".join(cells[:len(row)]) == row == "SSCSS" + "." * 11


def test_repl_pages_svg_to_a_path_that_cannot_be_written_prints_only_the_error(tmp_path):
    """It printed the whole map first, then the error."""
    batch = tmp_path / "b.txt"
    batch.write_text(f"load {DEMOS / 'cow.asm'}\npages --svg {tmp_path / 'no' / 'map.svg'}\n")
    r = run_cli("repl", "--mem", "64K", "--batch", str(batch), cwd=tmp_path)
    out = r.stdout.decode() + r.stderr.decode()
    assert "cannot write" in out and "map.svg" in out
    assert "pages of 4 KiB" not in out and "legend" not in out.lower()


def test_the_strategies_demo_pictures_its_comparison(tmp_path):
    """Its work is all in 'compare': it drew an empty page map of tick 0."""
    r = run_cli("demo", "strategies", "--no-pause", "--pictures", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr.decode()
    (svg,) = sorted((tmp_path / "p").iterdir())
    root, scale = parse(svg.read_text(encoding="utf-8"))
    assert_text_sizes(root, scale)
    texts = " ".join(t.text or "" for t in root.iter(NS + "text"))
    assert "three checkpoint strategies" in texts and "stop window" in texts
