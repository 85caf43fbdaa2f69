"""``minivm demo``: scripted classroom demos.

A demo is a REPL batch file, ``programs/demos/NAME.demo``: REPL commands,
``# narration`` lines that are printed as they are, and ``pause`` lines where
a presenter at a terminal presses Enter to go on. Its first ``#`` line is
the title shown by ``minivm demo``. Lines ``#! disk SIZE`` (a fresh,
zero-filled scratch disk) and ``#! mem SIZE`` set up the machine. Paths in a demo are relative to the
demos folder, and checkpoints go to a fresh temporary folder unless told
otherwise, so a demo never clutters the presenter's directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .engine import DEFAULT_ENGINE
from .errors import MinivmError

DEMO_SUFFIX = ".demo"


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


def run_demo(name: str, *, pause: bool, checkpoint_dir: str | None = None,
             engine: str = DEFAULT_ENGINE, pictures: str | None = None) -> int:
    from .repl import Session, run_batch
    demos = available()
    if name not in demos:
        import difflib
        close = difflib.get_close_matches(name, list(demos), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MinivmError(f"no demo named '{name}'{hint} ('minivm demo' lists them)")
    path = demos[name]
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if not line.startswith("#!")]
    options = _options(path.read_text(encoding="utf-8").splitlines(), name)
    from .pictures import DemoPictures
    shots = DemoPictures(pictures, name) if pictures else None    # --pictures DIR
    with tempfile.TemporaryDirectory(prefix="minivm-demo-") as scratch:
        # The demo runs in a scratch copy of the demos folder, so messages show
        # short relative paths (checkpoints/ckpt-0001.mvc) and nothing is left
        # behind; with --checkpoint-dir, the checkpoints and the disk they
        # point to are kept there instead.
        for item in path.parent.iterdir():
            if item.is_file() and item.suffix != DEMO_SUFFIX:
                shutil.copy(item, scratch)
        keep = os.path.abspath(checkpoint_dir) if checkpoint_dir else None
        folder = keep or "checkpoints"
        disk = None
        if "disk" in options:
            from .disks import create_raw_disk
            from .memory import parse_size
            if keep:
                os.makedirs(keep, exist_ok=True)
            disk = os.path.join(keep, f"{name}-disk.img") if keep else "disk.img"
            create_raw_disk(os.path.join(scratch, disk), parse_size(options["disk"], "disk size"))
        previous = os.getcwd()
        os.chdir(scratch)
        try:
            session = Session(checkpoint_dir=folder, disk=disk,
                              mem=options.get("mem", "1M"), engine=engine)
            if pause:
                session.pause_hook = _wait_for_enter
            if shots:
                shots.watch(session)
            status = run_batch(session, lines)
            if shots:
                shots.write()
            return status
        finally:
            os.chdir(previous)


def _wait_for_enter() -> None:
    try:
        input()
    except EOFError:
        pass
