"""Terminal injection (issue 12): no string from a file reaches the terminal raw.

A checkpoint whose every string is hostile - its name and metadata, its
program's source file and source lines, the paths of its disk chain (real
files with an escape sequence and a newline in their names) - is fed through
every command that prints: ``minivm inspect``, ``resume``, ``disasm``, ``disk
info``, ``run --trace`` and the REPL's commands. Each output must hold no
control character but the newlines between its own lines, and no line may be
forged: every hostile string carries a newline followed by ``FORGED``, so an
output line that starts with ``FORGED`` is a line a file wrote.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from minivm.image import Image
from minivm.repl import Session
from minivm.resume import read_checkpoint
from tests.support import run_cli
from tests.test_hostile_numbers import make_seed, patched

EVIL = "\x1b[2J\x1b]0;owned\x07\r\u202e\nFORGED minivm: disk chain: raw trusted.img (unchanged"
#: A name a file system accepts (no '/' or NUL), with the same payload.
EVIL_NAME = "d\x1b[2J\x1b]0;owned\x07\r\nFORGED.img"


def assert_clean_output(text: str, what: str) -> None:
    for ch in text:
        assert ch == "\n" or ch.isprintable(), \
            f"{what}: raw {ch!r} in the output:\n{text!r}"
    forged = [line for line in text.split("\n") if line.lstrip().startswith("FORGED")]
    assert not forged, f"{what}: a file forged a line: {forged}\n{text}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder holding a disk with a hostile name, a checkpoint on it whose
    every string is hostile, and that checkpoint's image saved as a file."""
    base = tmp_path_factory.mktemp("hostile-strings")
    seed = make_seed(base / "run", disk_name=EVIL_NAME)
    evil_source = f"/src/{EVIL}.asm"

    def edit(name, tree):
        if name == "meta":
            tree.update(name=EVIL, origin=EVIL, mode=EVIL, minivm=EVIL, p8_drained=EVIL)
        elif name == "image":
            tree["source_file"] = evil_source
            tree["texts"] = [f"{t} ; {EVIL}" for t in tree["texts"]]
    ckpt_path = patched(seed, seed.parent / "evil.mvc", edit)
    ckpt = read_checkpoint(str(ckpt_path))           # the loader accepts it
    assert ckpt.image.source_file == evil_source
    image_path = base / "evil.mvb"
    Image.save(ckpt.image, str(image_path))
    return {"ckpt": ckpt_path, "image": image_path, "disk": base / "run" / EVIL_NAME,
            "base": base}


def cli(hostile, *args: str) -> str:
    proc = run_cli(*args, cwd=hostile["base"], timeout=120)
    text = (proc.stdout + proc.stderr).decode()
    assert "Traceback" not in text and "usage:" not in text, text
    return text


@pytest.mark.parametrize("command", [
    ["inspect", "{ckpt}"],
    ["resume", "{ckpt}"],
    ["disasm", "{image}"],
    ["run", "--trace", "--max-steps", "50", "{image}"],
    ["disk", "info", "{disk}"],
    ["export", "{ckpt}", "exported"],
], ids=["inspect", "resume", "disasm", "run-trace", "disk-info", "export"])
def test_cli_commands_show_file_strings_escaped(hostile, command):
    args = [a.format(**{k: str(v) for k, v in hostile.items()}) for a in command]
    text = cli(hostile, *args)
    assert_clean_output(text, " ".join(command))


def test_cli_error_messages_show_file_strings_escaped(hostile, tmp_path):
    """Errors that quote a file's strings: a checkpoint whose disk is missing,
    one whose disk changed, and a corrupt file named with an escape."""
    moved = tmp_path / "moved.mvc"
    moved.write_bytes(hostile["ckpt"].read_bytes())          # its disk is not beside it
    assert_clean_output(cli(hostile, "resume", str(moved)), "resume with a missing disk")
    bad = tmp_path / EVIL_NAME
    bad.write_bytes(b"not a checkpoint")
    assert_clean_output(cli(hostile, "inspect", str(bad)), "inspect of a foreign file")
    typed = tmp_path / "bad\x1b[2J\x07.asm"          # a name one can type: no line break
    typed.write_bytes(b"\x00 not a program")
    assert_clean_output(cli(hostile, "run", str(typed)), "run of a foreign file")


REPL_COMMANDS = [
    "restore {ckpt}", "status", "info status", "regs", "info registers", "disasm",
    "disasm 0 200", "devices", "info devices", "checkpoints", "info checkpoints",
    "break 20", "breakpoints", "step", "next", "mem 0 64", "pages", "checkpoint mine",
    "sync", "diff {ckpt} now", "diff mine {ckpt}", "continue", "status", "restore {ckpt}",
    "load {image}", "status", "step 3", "reset", "regs",
]


def test_repl_commands_show_file_strings_escaped(hostile, tmp_path):
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "ck"), out=out, handle_sigint=False)
    for line in REPL_COMMANDS:
        session.execute(line.format(**{k: str(v) for k, v in hostile.items()}))
    session.close()
    text = out.getvalue()
    assert "internal error" not in text, text
    assert "restored" in text and "loaded" in text, text
    assert_clean_output(text, "the REPL")


def test_repl_prompt_and_toolbar_show_file_strings_escaped(hostile, tmp_path):
    session = Session(checkpoint_dir=str(tmp_path / "ck"), out=io.StringIO(),
                      handle_sigint=False)
    session.execute(f"restore {hostile['ckpt']}")
    assert_clean_output(session.prompt_text() + session.toolbar_text(), "prompt and toolbar")


def test_repl_load_error_shows_the_path_escaped(hostile, tmp_path):
    out = io.StringIO()
    session = Session(checkpoint_dir=str(tmp_path / "ck"), out=out, handle_sigint=False)
    bad = tmp_path / "bad\x1b[2J\x07.mvc"               # a name one can type
    bad.write_bytes(b"\x00\x01 not a program")
    for line in (f"load {bad}", f"restore {bad}", f"diff {bad} {bad}"):
        session.execute(line)
    assert_clean_output(out.getvalue(), "REPL errors")


def test_repl_lists_checkpoint_files_with_hostile_names_escaped(hostile, tmp_path):
    """The checkpoint folder may hold files someone else named."""
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / f"{EVIL_NAME}.mvc").write_bytes(hostile["ckpt"].read_bytes())
    (folder / "x\nFORGED\x1b[2J.mvc").write_bytes(b"junk")
    out = io.StringIO()
    session = Session(checkpoint_dir=str(folder), out=out, handle_sigint=False)
    for line in ("checkpoints", "restore nothing-like-it", "diff nope now"):
        session.execute(line)
    assert_clean_output(out.getvalue(), "the checkpoint list")
