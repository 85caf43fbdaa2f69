"""Every example in README.md and docs/*.md is run, and its output checked.

How examples are marked (in the Markdown source):

* ```` ```asm ```` -- a complete program. It is assembled and run as
  ``minivm run example.asm`` in a fresh folder. If the next block is an
  ```` ```output ```` block, that is the exact console output (stdout and
  stderr together, as in a terminal); otherwise the program must simply halt
  with the expected exit status.
* ```` ```asm-fragment ```` -- a snippet that is not a whole program (one
  instruction in a table, a data declaration). It is assembled after
  wrapping: ``.text`` + the snippet + ``.text`` / ``halt``.
* ```` ```console ```` -- a terminal session: lines starting with ``$ `` are
  commands, the lines after each one its exact output. ``minivm ...`` runs
  in-process (``minivm.cli.main``), ``printf ... | minivm ...`` feeds the
  console, anything else runs in ``bash`` (where ``python3`` is the Python
  running the tests). All the sessions of one Markdown
  file share one folder, which holds a copy of ``programs/`` and the files
  written by ``file=`` blocks, so a page reads top to bottom like a real
  session. ``minivm repl`` sessions are written as typed at a terminal:
  the commands after each ``minivm[...]>`` prompt are fed to the REPL and
  the transcript (banner first) must match.
* An HTML comment, on one line, right before a block gives options
  (``key=value``, quoted as in a shell)::

      <!-- minivm: file=hello.asm input="abc\\n" disk=64K mem=64K exit=1 -->
      <!-- minivm: fault="division by zero" args="--disk-latency 5" -->
      <!-- minivm: error="unknown mnemonic" -->

  ``file=NAME`` also writes the block into the page's session folder (any
  block kind), and runs an ``asm`` example under that name; ``input`` is the
  console input (``\\n`` escapes); ``disk=SIZE`` attaches a fresh zeroed disk
  ``disk.img``; ``fault`` means the run must stop with a guest fault whose
  message contains the text (exit status 3); ``error`` means the text must
  not assemble and the error must contain the text (exit status 2);
  ``exit`` is the expected exit status (default 0).

Absolute paths: the sessions run in a folder whose absolute path has the
length of ``/home/you/minivm`` and is shown as that, so that outputs which
contain an absolute path (and sizes that depend on its length) are the same
on every machine.

docs/isa.md must also show an example of every opcode in ``minivm.isa`` and
of every device port, and docs/formats.md's opcode table must match
``minivm.isa``, so that the reference cannot fall behind the code.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from minivm import cli, isa
from minivm.assembler import AssemblyError, assemble
from minivm.machine import Machine
from minivm.repl import BANNER

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
PLACEHOLDER = "/home/you/minivm"
MARKER_RE = re.compile(r"^<!--\s*minivm:(.*?)-->\s*$")
FENCE_RE = re.compile(r"^(`{3,})\s*([\w.+-]*)\s*$")
PROMPT_RE = re.compile(r"^minivm(?:\[[^\]\n]*\])?> (.*)$")
KNOWN_OPTIONS = {"file", "input", "disk", "mem", "exit", "fault", "error", "args"}
CHECKED_KINDS = {"asm", "asm-fragment", "output", "console"}


# --- reading the Markdown ------------------------------------------------------------------

@dataclass
class Block:
    path: Path
    line: int                     # 1-based line of the opening fence
    kind: str
    text: str                     # content, each line ending with "\n"
    options: dict = field(default_factory=dict)
    output: "Block | None" = None  # the ```output block after an ```asm block

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def _parse_options(text: str, where: str) -> dict:
    options = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        assert sep and key in KNOWN_OPTIONS, f"{where}: unknown marker option {word!r}"
        options[key] = value
    return options


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE_RE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, kind = match.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{path}:{start + 1}: unclosed code block"
        i += 1
        options = {}
        previous = lines[start - 1] if start else ""
        marker = MARKER_RE.match(previous)
        if marker:
            options = _parse_options(marker.group(1), f"{path}:{start}")
        block = Block(path, start + 1, kind, "".join(line + "\n" for line in body), options)
        if kind == "output":
            assert blocks and blocks[-1].kind == "asm" and blocks[-1].output is None, \
                f"{block.where}: an ```output block must follow an ```asm block"
            blocks[-1].output = block
        blocks.append(block)
    return blocks


def all_blocks(kinds) -> list[Block]:
    return [b for doc in DOCS for b in parse_blocks(doc) if b.kind in kinds]


# --- running minivm in-process, as a terminal would show it --------------------------------

def run_minivm(argv: list[str], cwd: Path, stdin: bytes = b"") -> tuple[int, str]:
    """``minivm ARGV`` with stdout and stderr in one stream, in call order."""
    out = io.BytesIO()
    term = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
    fake_in = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    saved = sys.stdin, sys.stdout, sys.stderr
    old_cwd = os.getcwd()
    sys.stdin, sys.stdout, sys.stderr = fake_in, term, term
    os.chdir(cwd)
    try:
        try:
            status = cli.main(argv)
        except SystemExit as exc:              # argparse
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        term.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        os.chdir(old_cwd)
    return status, out.getvalue().decode("utf-8", "replace")


def wrap_fragment(text: str) -> str:
    return "        .text\n" + text + "        .text\n        halt\n"


def unescape(text: str) -> bytes:
    return codecs.decode(text, "unicode_escape").encode("latin-1")


def run_asm_block(block: Block, folder: Path) -> tuple[int, str]:
    """Run an ```asm block as ``minivm run NAME [options]`` in ``folder``."""
    opts = block.options
    name = opts.get("file", "example.asm")
    (folder / name).write_text(block.text, encoding="utf-8")
    argv = ["run", name]
    if "disk" in opts:
        assert run_minivm(["disk", "create", "disk.img", opts["disk"]], folder)[0] == 0
        argv += ["--disk", "disk.img"]
    if "mem" in opts:
        argv += ["--mem", opts["mem"]]
    argv += shlex.split(opts.get("args", ""))
    return run_minivm(argv, folder, unescape(opts.get("input", "")))


def expected_status(block: Block) -> int:
    if "exit" in block.options:
        return int(block.options["exit"])
    if "fault" in block.options:
        return cli.EXIT_FAULT
    if "error" in block.options:
        return cli.EXIT_USAGE
    return 0


# --- console sessions ------------------------------------------------------------------------

def split_console(block: Block) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a ```console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"{block.where}: a console block starts with a '$ ' command"
            steps[-1][1].append(line + "\n")
    return [(cmd, "".join(out)) for cmd, out in steps]


class Session:
    """The folder and shell state shared by the console blocks of one page."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.status = 0

    def run(self, command: str, expected: str, where: str) -> tuple[int, str, str]:
        """Returns (status, actual output, expected output), both with the
        folder shown as PLACEHOLDER."""
        stdin = b""
        shell_part, bar, rest = command.partition(" | ")
        if bar and rest.startswith("minivm ") and not shell_part.startswith("minivm"):
            stdin = self.shell(shell_part).stdout
            command = rest
        if command.startswith("minivm "):
            words = shlex.split(command)[1:]
            if "<" in words:
                at = words.index("<")
                stdin = (self.folder / words[at + 1]).read_bytes()
                words = words[:at] + words[at + 2:]
            if words[:1] == ["repl"]:
                typed = [m.group(1) for m in map(PROMPT_RE.match, expected.splitlines()) if m]
                assert typed, f"{where}: a REPL session shows the commands after its prompts"
                status, text = run_minivm(words, self.folder,
                                          "".join(t + "\n" for t in typed).encode())
                text = BANNER + "\n" + text
            else:
                status, text = run_minivm(words, self.folder, stdin)
        else:
            proc = self.shell(command)
            status, text = proc.returncode, proc.stdout.decode("utf-8", "replace")
        self.status = status
        return status, self.show(text), expected

    def shell(self, command: str):
        """Run a non-minivm command in bash; ``python3`` is this interpreter."""
        bin_dir = self.folder.parent / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir()
            # A wrapper, not a symlink: a symlink to a venv's interpreter has no
            # pyvenv.cfg beside it, so it would run the bare system Python.
            wrapper = bin_dir / "python3"
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
            wrapper.chmod(0o755)
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        return subprocess.run(["bash", "-c", f"(exit {self.status}); {command}"],
                              cwd=self.folder, stdout=subprocess.PIPE, env=env,
                              stderr=subprocess.STDOUT, timeout=120)

    def show(self, text: str) -> str:
        return text.replace(str(self.folder), PLACEHOLDER)


def make_session_folder() -> Path:
    """A fresh folder whose absolute path is as long as PLACEHOLDER."""
    for root in (tempfile.gettempdir(), "/tmp"):
        base = Path(tempfile.mkdtemp(prefix="d", dir=root))
        pad = len(PLACEHOLDER) - len(str(base)) - 1
        if pad >= 1:
            folder = base / ("w" * pad)
            folder.mkdir()
            shutil.copytree(ROOT / "programs", folder / "programs")
            return folder
        shutil.rmtree(base)
    pytest.fail(f"no temp folder short enough to stand for {PLACEHOLDER}")


# --- the tests ------------------------------------------------------------------------------------

ASM = all_blocks({"asm"})
FRAGMENTS = all_blocks({"asm-fragment"})
PAGES = [doc for doc in DOCS if any(b.kind in CHECKED_KINDS or "file" in b.options
                                    for b in parse_blocks(doc))]


def test_the_docs_have_examples():
    assert len(ASM) >= 40 and len(FRAGMENTS) >= 2
    assert {b.path.name for b in ASM} >= {"tutorial.md", "isa.md"}


@pytest.mark.parametrize("block", ASM, ids=lambda b: b.where)
def test_asm_example(block, tmp_path):
    status, text = run_asm_block(block, tmp_path)
    assert status == expected_status(block), f"{block.where}: exit status {status}\n{text}"
    if "fault" in block.options:
        faults = [line for line in text.splitlines() if ": fault: " in line]
        assert faults and block.options["fault"] in faults[0], text
    if "error" in block.options:
        assert ": error: " in text and block.options["error"] in text, text
    if block.output is not None:
        assert text == block.output.text, f"{block.where}: the output changed"


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.where)
def test_asm_fragment_assembles(block):
    source = wrap_fragment(block.text)
    if "error" in block.options:
        with pytest.raises(AssemblyError, match=re.escape(block.options["error"])):
            assemble(source, "fragment.asm")
    else:
        assemble(source, "fragment.asm")


@pytest.mark.parametrize("doc", PAGES, ids=lambda p: p.name)
def test_console_sessions(doc):
    folder = make_session_folder()
    try:
        session = Session(folder)
        for block in parse_blocks(doc):
            if "file" in block.options:
                (folder / block.options["file"]).write_text(block.text, encoding="utf-8")
            if block.kind != "console":
                continue
            for command, expected in split_console(block):
                status, actual, expected = session.run(command, expected, block.where)
                assert actual == expected, (
                    f"{block.where}: the output of '$ {command}' changed "
                    f"(exit status {status}):\n{actual}")
    finally:
        shutil.rmtree(folder.parent)


def test_every_asm_block_has_a_known_kind():
    """An asm block with a misspelt kind (```asm-fragmnet) would escape the test."""
    for doc in DOCS:
        for block in parse_blocks(doc):
            if "asm" in block.kind or "output" in block.kind or "console" in block.kind:
                assert block.kind in CHECKED_KINDS, f"{block.where}: unknown kind {block.kind!r}"


# --- the reference must cover the code --------------------------------------------------------

def _isa_images():
    isa_md = ROOT / "docs" / "isa.md"
    images = []
    for block in parse_blocks(isa_md):
        if "error" in block.options:
            continue
        if block.kind == "asm":
            images.append(assemble(block.text, "example.asm"))
        elif block.kind == "asm-fragment":
            images.append(assemble(wrap_fragment(block.text), "fragment.asm"))
    return images


def _ports():
    machine = Machine(assemble("halt\n"))
    out_ports, in_ports = set(), set()
    for device in machine.devices.values():
        out_ports |= set(device.out_ports)
        in_ports |= set(device.in_ports)
    return out_ports, in_ports


def test_isa_reference_shows_every_instruction():
    text = (ROOT / "docs" / "isa.md").read_text(encoding="utf-8")
    used = {op for image in _isa_images() for op, *_ in image.code}
    for mnemonic in isa.SHAPES:
        assert f"`{mnemonic}" in text, f"docs/isa.md does not describe '{mnemonic}'"
    missing = [op.name for op in isa.OPCODES if op.code not in used]
    assert not missing, f"docs/isa.md has no example of {missing}"


def test_isa_reference_shows_every_port():
    text = (ROOT / "docs" / "isa.md").read_text(encoding="utf-8")
    out_ports, in_ports = _ports()
    used_out, used_in = set(), set()
    for image in _isa_images():
        for op, a, b, _ in image.code:
            if op in (isa.OUT_R, isa.OUT_I):
                used_out.add(a)
            elif op == isa.IN:
                used_in.add(b)
    for port in out_ports | in_ports:
        assert f"0x{port:02x}" in text.lower(), f"docs/isa.md does not describe port 0x{port:02x}"
    assert out_ports <= used_out, f"no example writes ports {sorted(out_ports - used_out)}"
    assert in_ports <= used_in, f"no example reads ports {sorted(in_ports - used_in)}"


def test_formats_opcode_table_matches_the_code():
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| `(\w+)` \| ([^|]*) \|$", text, re.M)
    table = [(int(code), name, mnemonic, fields.strip()) for code, name, mnemonic, fields in rows]
    expected = [(op.code, op.name, op.mnemonic, ", ".join(op.fields) or "-")
                for op in isa.OPCODES]
    assert table == expected, "docs/formats.md's opcode table differs from minivm/isa.py"
