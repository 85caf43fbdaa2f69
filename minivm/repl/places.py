"""Where things are in a program image: labels, source lines, file:line.

Everything here that comes from the image's file (the source file's name,
the source lines) is returned escaped (errors.show); symbol names are
checked by the image loader to be assembler names."""

from __future__ import annotations

import os
import re

from ..errors import show
from .parsing import CommandError, strip_comment

_LABEL_PREFIX = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_.]*:\s*)+")


def show_path(path: str) -> str:
    """A path for messages: relative to the current folder when inside it,
    escaped (errors.show: it may come from a file, e.g. a disk chain)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return show(path)
    return show(path if rel.startswith("..") else rel)


class Places:
    """Names and locations for the instructions and data of one image."""

    def __init__(self, image):
        self.image = image
        self._code_labels = sorted((v, n) for n, (sec, v) in image.symbols.items()
                                   if sec == "text")

    def label_of(self, pc: int) -> str:
        """``<loop>`` or ``<loop+2>``: the nearest code label at or before pc."""
        best = None
        for value, name in self._code_labels:
            if value <= pc:
                best = (value, name)
            else:
                break
        if best is None:
            return ""
        return f"<{best[1]}>" if best[0] == pc else f"<{best[1]}+{pc - best[0]}>"

    def source_of(self, pc: int) -> str:
        """The instruction as written, without its comment or a label before it."""
        return show(_LABEL_PREFIX.sub("", strip_comment(self.image.source_text(pc))))

    def describe(self, pc: int) -> str:
        """``pc 3 <loop>  fib.asm:15  out 0x01, r1`` (pc, label, line, source)."""
        if not 0 <= pc < len(self.image.code):
            return f"pc {pc} (past the last instruction)"
        label = self.label_of(pc)
        return f"pc {pc}{' ' + label if label else ''}  {self.loc(pc)}  {self.source_of(pc)}"

    def loc(self, pc: int) -> str:
        """``fib.asm:15``: the source file's name (not its folder) and line."""
        image = self.image
        if 0 <= pc < len(image.lines):
            return f"{show(os.path.basename(image.file_of(pc)))}:{image.lines[pc]}"
        return show(image.location(pc))

    def data_label_at(self, addr: int) -> str:
        names = sorted(n for n, (sec, v) in self.image.symbols.items()
                       if sec == "data" and v == addr)
        return f" <{names[0]}>" if names else ""

    def data_marks(self) -> dict[int, list[str]]:
        """address -> the data labels there."""
        marks: dict[int, list[str]] = {}
        for name, (sec, v) in self.image.symbols.items():
            if sec == "data":
                marks.setdefault(v, []).append(name)
        return marks

    def handler(self, pc: int | None) -> str:
        """An interrupt handler's address for messages: ``4 <on_tick>`` or none."""
        return "none" if pc is None else f"{pc} {self.label_of(pc)}".rstrip()

    def line_address(self, filename: str, line: int) -> tuple[int, str]:
        """The pc of FILE:LINE (the first instruction on that line or the next
        one with an instruction), and a note when it is not that line."""
        image = self.image
        source, index = self.source_file(filename)
        lines = image.lines
        if image.files:                  # a program with .include: that file's lines only
            lines = [ln if i == index else -1 for ln, i in zip(image.lines, image.file_ids)]
        candidates = [(ln, pc) for pc, ln in enumerate(lines) if ln >= line]
        if not candidates:
            mine = [ln for ln in lines if ln >= 0]
            last = max(mine) if mine else 0
            raise CommandError(f"line {line} is after the last instruction "
                               f"({show(os.path.basename(source))}:{last})")
        best_line = min(ln for ln, _ in candidates)
        pc = min(pc for ln, pc in candidates if ln == best_line)
        note = f"(line {line} has no instruction; using line {best_line})" \
            if best_line != line else ""
        return pc, note

    def source_file(self, filename: str) -> tuple[str, int]:
        """The source file FILE:LINE names (its path, or just its name), and
        its index in the image's files; no name is the main file."""
        image = self.image
        files = image.files or [image.source_file]
        if not filename:
            return files[0], 0
        for want in (lambda f: f == filename, lambda f: os.path.basename(f) == filename):
            for i, name in enumerate(files):
                if want(name):
                    return name, i
        names = ", ".join(show(os.path.basename(f)) for f in files)
        source = show(files[0])
        if len(files) == 1:
            raise CommandError(f"the program comes from '{source}', not '{show(filename)}' "
                               f"(give {show(os.path.basename(files[0]))}:LINE or :LINE)")
        raise CommandError(f"no source file '{show(filename)}' in this program "
                           f"(its files: {names}; :LINE is {show(os.path.basename(files[0]))})")
