"""``minivm demo``: scripted classroom demos a presenter can drive.

A demo is a REPL batch file, ``programs/demos/NAME.demo``: REPL commands,
``# narration`` lines that are printed as they are, and ``pause`` lines that
cut it into steps. Its first ``#`` line is the title shown by ``minivm demo``.
Lines ``#! disk SIZE`` (a fresh, zero-filled scratch disk) and ``#! mem SIZE``
set up the machine. Paths in a demo are relative to the demos folder, and
checkpoints go to a fresh temporary folder unless told otherwise, so a demo
never clutters the presenter's directory.

At a terminal, each pause asks what to do next (:data:`KEYS`): go on, go back
a step, replay the step, jump to a step, open the REPL on the demo's machine,
or quit. Going back re-runs the demo from the start, silently, up to the step
before the one shown: the machine is deterministic, so it arrives in the same
state. Without a terminal the demo runs straight through, as a batch file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .engine import DEFAULT_ENGINE
from .errors import MinivmError

DEMO_SUFFIX = ".demo"
KEYS = "Enter next, b back, r replay, N jump, p prompt, q quit"
KEY_HELP = ("keys at a pause (then Enter):",
            "  Enter    go on to the next step",
            "  b        back: show the step before again",
            "  r        replay this step from its start",
            "  N        jump to step N (a number)",
            "  p        open the REPL on the demo's machine; 'quit' or Ctrl-D comes back",
            "  q        quit the demo (Ctrl-C and Ctrl-D quit too)",
            "  ? or h   this list")


def demos_folder() -> Path:
    """programs/demos in the source tree minivm runs from."""
    return Path(__file__).resolve().parent.parent / "programs" / "demos"


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            return line.lstrip("# ").strip()
    return ""


def _options(lines: list[str], name: str) -> dict[str, str]:
    options = {}
    for line in lines:
        if line.startswith("#!"):
            words = line[2:].split()
            if len(words) != 2 or words[0] not in ("disk", "mem"):
                raise MinivmError(f"demo '{name}': bad option line '{line}' "
                                  "(use '#! disk SIZE' or '#! mem SIZE')")
            options[words[0]] = words[1]
    return options


def available() -> dict[str, Path]:
    folder = demos_folder()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*" + DEMO_SUFFIX))}


def list_demos() -> str:
    demos = available()
    if not demos:
        return f"no demos found (looked in {demos_folder()})\n"
    width = max(len(name) for name in demos)
    lines = ["demos (run one with: minivm demo NAME):"]
    lines += [f"  {name:<{width}}  {_title(path)}" for name, path in demos.items()]
    return "\n".join(lines) + "\n"


def _is_pause(line: str) -> bool:
    return line.strip().split()[:1] == ["pause"]


@dataclass
class Demo:
    """A demo cut into steps: each step's lines, the last of which may be its pause."""

    name: str
    path: Path
    options: dict
    steps: list

    @classmethod
    def load(cls, name: str) -> "Demo":
        demos = available()
        if name not in demos:
            import difflib
            close = difflib.get_close_matches(name, list(demos), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise MinivmError(f"no demo named '{name}'{hint} ('minivm demo' lists them)")
        path = demos[name]
        text = path.read_text(encoding="utf-8").splitlines()
        options = _options(text, name)
        steps, step = [], []
        for line in text:
            if line.startswith("#!"):
                continue
            step.append(line)
            if _is_pause(line):
                steps.append(step)
                step = []
        if any(line.strip() for line in step):
            steps.append(step)
        return cls(name, path, options, steps)


# --- what the presenter sees: wrapped, and in colour at a terminal -----------------------------

MAP_ROW = re.compile(r"^(\s+0x[0-9a-fA-F]{8}\s+\d+\s+)([.pSsCc]+)$")
LEGEND_LETTER = re.compile(r"(^legend: |^\s{6,}|  )([.pSsCc])(?= [a-z])")
COLOURS = {".": "2", "p": "34", "S": "1;33", "s": "32", "C": "1;31", "c": "35"}
NARRATION_COLOUR, PROMPT_COLOUR = "36", "7"


def colour_wanted(stream, refused: bool = False) -> bool:
    """Colour only on a terminal that can show it, unless NO_COLOR is set
    (https://no-color.org) or ``--no-color`` was given."""
    if refused or os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _paint(code: str, text: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


def wrap_line(line: str, width: int | None) -> list[str]:
    """``line`` cut at spaces to ``width`` columns (never inside a word or number);
    narration goes on with '# ', anything else indented under itself."""
    if not width or len(line) <= width:
        return [line]
    if line.startswith("#"):
        indent = "# "
    else:
        indent = line[:len(line) - len(line.lstrip(" "))] + "    "
    return textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [line]


def colour_line(line: str) -> str:
    if line.startswith("#"):
        return _paint(NARRATION_COLOUR, line)
    row = MAP_ROW.match(line)
    if row:
        cells = re.sub(r"([.pSsCc])\1*", lambda m: _paint(COLOURS[m.group(1)], m.group(0)),
                       row.group(2))
        return row.group(1) + cells
    if line.startswith("legend: ") or line.lstrip().startswith(("s shared, saved",
                                                                   "c copied, original saved")):
        return LEGEND_LETTER.sub(lambda m: m.group(1) + _paint(COLOURS[m.group(2)], m.group(2)),
                                 line)
    return line


class DemoStream:
    """The session's output stream for a demo: every line wrapped to the width,
    coloured if asked, or thrown away while ``muted`` (a silent re-run)."""

    def __init__(self, stream, width: int | None = None, colour: bool = False):
        self.stream, self.width, self.colour = stream, width, colour
        self.muted = False
        self._partial = ""
        self._midline = False        # part of this line was written already (a flush)

    def write(self, text: str) -> int:
        if self.muted:
            return len(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if self._midline:
                self.stream.write(line + "\n")
                self._midline = False
                continue
            for piece in wrap_line(line, self.width):
                self.stream.write((colour_line(piece) if self.colour else piece) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._partial and not self.muted:
            self.stream.write(self._partial)
            self._midline = True
        self._partial = ""
        self.stream.flush()

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, OSError, ValueError):
            return False

    def prompt(self, text: str) -> None:
        """A pause's question, on its own line, the cursor after it."""
        self.flush()
        self.stream.write(_paint(PROMPT_COLOUR, text) + " " if self.colour else text + " ")
        self.stream.flush()


# --- running a demo -----------------------------------------------------------------------------

def _open_repl(session) -> None:
    from .repl import interact, make_prompt_session
    interact(session, make_prompt_session(session), close=False)


class DemoRunner:
    """Plays a demo's steps on a session, and at each pause asks the presenter."""

    def __init__(self, demo: Demo, *, interactive: bool, checkpoint_dir: str | None,
                 engine: str, stream: DemoStream, input_fn=input, open_repl=_open_repl,
                 pictures: str | None = None):
        self.demo, self.interactive, self.engine = demo, interactive, engine
        self.pictures, self.shots = pictures, None        # --pictures DIR (pictures.py)
        self.keep = os.path.abspath(checkpoint_dir) if checkpoint_dir else None
        self.kept_before = set(os.listdir(self.keep)) if self.keep and os.path.isdir(self.keep) \
            else set()
        self.stream, self.input_fn, self.open_repl = stream, input_fn, open_repl
        self.session = None
        self._scratch = None

    # the machine: a fresh scratch folder and session, or none
    def start(self) -> None:
        """A fresh start: the demo runs in a scratch copy of the demos folder, so
        messages show short relative paths (checkpoints/ckpt-0001.mvc) and nothing
        is left behind; with --checkpoint-dir, the checkpoints and the disk they
        point to are kept there instead."""
        from .repl import Session
        if self.pictures:                   # made here, in the presenter's folder
            from .pictures import DemoPictures
            self.shots = DemoPictures(self.pictures, self.demo.name)
        self._scratch = tempfile.TemporaryDirectory(prefix="minivm-demo-")
        scratch = self._scratch.name
        for item in self.demo.path.parent.iterdir():
            if item.is_file() and item.suffix != DEMO_SUFFIX:
                shutil.copy(item, scratch)
        options, name = self.demo.options, self.demo.name
        disk = None
        if "disk" in options:
            from .disks import create_raw_disk
            from .memory import parse_size
            if self.keep:
                os.makedirs(self.keep, exist_ok=True)
            disk = os.path.join(self.keep, f"{name}-disk.img") if self.keep else "disk.img"
            create_raw_disk(os.path.join(scratch, disk), parse_size(options["disk"], "disk size"))
        os.chdir(scratch)
        self.session = Session(checkpoint_dir=self.keep or "checkpoints", disk=disk,
                               mem=options.get("mem", "1M"), engine=self.engine,
                               out=self.stream)
        if self.shots:
            self.shots.watch(self.session)

    def stop(self, cwd: str, last: bool = False) -> None:
        """Close the session (its checkpoints are finished) and its scratch folder;
        at the ``last`` stop, write the pictures of what the demo showed."""
        if self.session is not None:
            session, self.session = self.session, None
            session.close()
            if last and self.shots:
                self.shots.write()
        os.chdir(cwd)
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def restart(self, cwd: str) -> None:
        """Back to the start, silently: what this demo wrote to --checkpoint-dir goes."""
        self.stream.muted = True
        try:
            self.stop(cwd)
            if self.keep and os.path.isdir(self.keep):
                for entry in set(os.listdir(self.keep)) - self.kept_before:
                    path = os.path.join(self.keep, entry)
                    if os.path.isfile(path):
                        os.remove(path)
            self.start()
        finally:
            self.stream.muted = False

    def play(self, index: int, visible: bool = True) -> None:
        """Step ``index``'s lines, as a batch file does: narration printed,
        each command echoed after the prompt; the pause itself is not run."""
        s = self.session
        self.stream.muted = not visible
        try:
            for raw in self.demo.steps[index]:
                line = raw.strip()
                if not line:
                    continue
                if line.startswith("#"):
                    s.say(line)
                    continue
                if _is_pause(line):
                    if not self.interactive and visible:
                        s.execute(line)        # shows its text, as in any batch run
                    continue
                s.say(s.prompt_text() + line)
                s.execute(line)
            s.out.flush()
        finally:
            self.stream.muted = False

    def run(self) -> int:
        cwd = os.getcwd()
        steps = len(self.demo.steps)
        status = None
        try:
            self.start()
            index = 0
            while index < steps and status is None:
                self.play(index)
                if not self.interactive:
                    index += 1
                    continue
                target, status = self.ask(index)
                if target is not None and target != index + 1:
                    self.restart(cwd)
                    for earlier in range(target):
                        self.play(earlier, visible=False)
                index = target if target is not None else index
            errors = self.session.errors if self.session is not None else 0
            self.stop(cwd, last=True)
        finally:
            self.stop(cwd)                  # after an error: close, no pictures
        if status is not None:
            return status
        return 1 if errors else 0

    # the presenter's keys
    def ask(self, index: int) -> tuple[int | None, int | None]:
        """(the step to show next, None) or (None, exit status) to quit."""
        steps = len(self.demo.steps)
        last = index == steps - 1
        question = (f"-- the end (step {index + 1}/{steps}): Enter quits, b back, "
                    "r replay, N jump, p prompt --" if last
                    else f"-- step {index + 1}/{steps}: {KEYS} --")
        said = self.demo.steps[index][-1].strip()[len("pause"):].strip() \
            if _is_pause(self.demo.steps[index][-1]) else ""
        if said:
            self.stream.write(f"-- {said} --\n")
        while True:
            self.stream.prompt(question)
            try:
                answer = self.input_fn().strip().lower()
            except EOFError:                   # Ctrl-D
                self.stream.write("\n")
                return None, 0
            except KeyboardInterrupt:          # Ctrl-C
                self.stream.write("\n")
                return None, 130
            if answer == "":
                return (None, 0) if last else (index + 1, None)
            if answer in ("q", "quit"):
                return None, 0
            if answer == "b":
                return max(index - 1, 0), None
            if answer == "r":
                return index, None
            if answer.isdigit():
                if 1 <= int(answer) <= steps:
                    return int(answer) - 1, None
                self.stream.write(f"(no step {answer}: this demo has steps 1 to {steps})\n")
            elif answer == "p":
                self.prompt_here(index)
            elif answer in ("?", "h", "help"):
                self.stream.write("\n".join(KEY_HELP) + "\n")
            else:
                self.stream.write(f"(unknown key '{answer[:20]}': Enter goes on, q quits, "
                                  "? lists the keys)\n")

    def prompt_here(self, index: int) -> None:
        s = self.session
        s.say(f"(the REPL on the demo's machine, at step {index + 1}; 'quit' or Ctrl-D: "
              "back to the demo)")
        s.out.flush()
        self.stream.flush()
        try:
            self.open_repl(s)
        finally:
            s.quit_requested = False
        s.say(f"(back in the demo, at the end of step {index + 1})")
        s.out.flush()


def run_demo(name: str, *, pause: bool, checkpoint_dir: str | None = None,
             engine: str = DEFAULT_ENGINE, width: int | None = None, colour: bool = False,
             out=None, input_fn=input, open_repl=_open_repl, pictures: str | None = None) -> int:
    """Run demo ``name``; with ``pause``, a presenter drives it (:meth:`DemoRunner.ask`).
    ``width`` wraps every line at spaces to that many columns (None: no wrapping);
    ``pictures`` is a folder for the demo's pictures (SVG)."""
    import sys
    demo = Demo.load(name)
    stream = DemoStream(out if out is not None else sys.stdout, width, colour)
    runner = DemoRunner(demo, interactive=pause, checkpoint_dir=checkpoint_dir, engine=engine,
                        stream=stream, input_fn=input_fn, open_repl=open_repl,
                        pictures=pictures)
    return runner.run()
