"""Before the assembler proper: ``.include`` and ``.macro``/``.endm``.

:func:`expand` turns a program whose text uses either into one plain text
for the assembler (assembler.py), and records for every line of that text
where it really came from (an :class:`Origin`: file, line, and the chain of
includes and macro expansions that led there). The assembler works on the
plain text as before; its messages and the image's source map are then put
back through the origins, so an error in an included file or a macro body
is shown at its own ``file:line:col``, followed by "included from X:N" or
"in macro M expanded at X:N".

The plain text has one line for every line read: a line that only steers
the expansion (``.include``, ``.macro``, ``.endm``, a macro's body where it
is defined, a macro's use) becomes an empty line, or its labels alone, so
that an error about it has a line to point at too.

- ``.include "file"`` reads a file relative to the folder of the file that
  includes it; ``.include <name>`` one of the standard library
  (:func:`library_folder`), ``<name>`` or ``<name>.asm``.
- ``.macro NAME p1, p2`` ... ``.endm`` defines a macro; a line ``NAME a, b``
  (with labels before it, if wanted) is replaced by the body, each ``\\p1``
  by the argument's text and each ``\\@`` by a number unique to that
  expansion (for labels local to it: ``loop\\@:``).

Includes nest at most MAX_INCLUDE_DEPTH deep and macros expand at most
MAX_MACRO_DEPTH deep (a macro that uses itself); a file that includes
itself, directly or through others, is an error that shows the cycle.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

from .container import MAX_PROGRAM_BYTES, read_program_file
from .errors import MinivmError, show

MAX_INCLUDE_DEPTH = 16
MAX_MACRO_DEPTH = 64
#: All the text an expansion may produce, as for one source (assembler.MAX_SOURCE),
#: and its lines (each keeps an Origin: a macro that uses another ten times,
#: nested, would otherwise fill the memory before the text grows long).
MAX_EXPANDED = MAX_PROGRAM_BYTES
MAX_EXPANDED_LINES = 1 << 20

_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_LABELS = rf"((?:[ \t]*{_NAME}[ \t]*:)*)[ \t]*"
_DIRECTIVE = re.compile(_LABELS + r"(\.(?i:include|macro|endm))\b(.*)$")
_INCLUDE_ARG = re.compile(r"[ \t]*(?:\"((?:\\.|[^\\\"])*)\"|<([^<>\n]*)>)[ \t]*(?:;.*)?$")
_USE = re.compile(_LABELS + rf"({_NAME})(?=[ \t;]|$)(.*)$")
_PARAM = re.compile(r"\\(@|[A-Za-z_][A-Za-z0-9_]*)")
_QUICK = re.compile(r"(?i)\.(?:include|macro|endm)\b")


def uses_expansion(source: str) -> bool:
    """Whether ``source`` has a ``.include`` or ``.macro`` (else it is assembled as it is)."""
    return _QUICK.search(source) is not None


def library_folder() -> str:
    """The standard library: ``minivm/lib`` in an installed package (pyproject
    maps programs/lib there), else ``programs/lib`` of the source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "lib")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(here), "programs", "lib")


@dataclass(frozen=True, slots=True)
class Origin:
    file: int                 # index in Expansion.files
    line: int
    via: tuple = ()           # ("included from X:N" | "in macro M expanded at X:N", ...) innermost first
    site: tuple | None = None  # in a macro's expansion: (file, line) of the outermost use

    def placed(self) -> tuple[int, int]:
        """(file, line) for the image's source map: a macro's instructions are
        where the macro is used (``break FILE:LINE`` on that line stops there)."""
        return self.site or (self.file, self.line)


@dataclass
class Expansion:
    lines: list = field(default_factory=list)          # the plain text, line by line
    origins: list = field(default_factory=list)        # an Origin per line
    files: list = field(default_factory=list)          # every file read, the main one first
    sources: list = field(default_factory=list)        # each file's lines, as read
    digests: list = field(default_factory=list)        # [path, sha256] of each included file
    errors: list = field(default_factory=list)         # (line in the plain text, column, message)
    macros: dict = field(default_factory=dict)         # lower-case name -> 'file:line' defined

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def original(self, line: int) -> str:
        """The line of the plain text as it is written in its file."""
        origin = self.origins[line - 1]
        return self.sources[origin.file][origin.line - 1]

    def where(self, line: int) -> str:
        """``file:line`` of a line of the plain text (1-based), escaped."""
        origin = self.origins[line - 1]
        return f"{show(self.files[origin.file])}:{origin.line}"


@dataclass
class _Macro:
    name: str
    params: list
    body: list                # [(text, Origin)]
    origin: Origin


class _Stop(Exception):
    """Too much text: the expansion ends with the error already recorded."""


class _Expander:
    def __init__(self, out: Expansion, library: str):
        self.out = out
        self.library = library
        self.macros: dict[str, _Macro] = {}
        self.uses = 0             # expansions so far, for \@
        self.size = 0
        self.stack: list[str] = []     # real paths of the files being read

    # --- output ------------------------------------------------------------------
    def emit(self, text: str, origin: Origin) -> int:
        self.size += len(text) + 1
        self.out.lines.append(text)
        self.out.origins.append(origin)
        if self.size > MAX_EXPANDED or len(self.out.lines) > MAX_EXPANDED_LINES:
            self.error(len(self.out.lines), 1, f"the program grows past {MAX_EXPANDED} "
                                                f"characters or {MAX_EXPANDED_LINES} lines as "
                                                "its includes and macros expand")
            raise _Stop
        return len(self.out.lines)

    def error(self, line: int, column: int, message: str) -> None:
        self.out.errors.append((line, column, message))

    # --- files -------------------------------------------------------------------
    def file(self, text: str, name: str, real: str, via: tuple) -> None:
        index = len(self.out.files)
        self.out.files.append(name)
        self.stack.append(real)
        lines = [ln.rstrip("\r") for ln in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        self.out.sources.append(lines)
        self.lines(iter([(ln, Origin(index, n, via)) for n, ln in enumerate(lines, 1)]), 0)
        self.stack.pop()

    def lines(self, source, depth: int) -> None:
        """Expand ``source``, an iterator of (text, Origin)."""
        for text, origin in source:
            match = _DIRECTIVE.match(text)
            if match is None:
                use = _USE.match(text)
                macro = self.macros.get(use.group(2).lower()) if use else None
                if macro is None:
                    self.emit(text, origin)
                else:
                    self.expand_use(macro, use, text, origin, depth)
                continue
            labels, word, rest = match.group(1), match.group(2).lower(), match.group(3)
            at = self.emit(labels.rstrip(), origin)    # labels keep their columns
            column = match.start(2) + 1
            if word == ".include":
                self.include(rest, at, column, origin, text, match.end(2))
            elif word == ".macro":
                self.define(rest, at, column, origin, source)
            else:
                self.error(at, column, ".endm without a .macro before it")

    def include(self, rest: str, at: int, column: int, origin: Origin, text: str, end: int):
        arg = _INCLUDE_ARG.match(rest)
        if arg is None:
            self.error(at, column, '.include needs a file name: .include "file.asm" (next to '
                                   "this file) or .include <name> (the standard library)")
            return
        here = self.out.files[origin.file]
        if arg.group(1) is not None:
            name = arg.group(1).replace('\\"', '"').replace("\\\\", "\\")
            path = os.path.join(os.path.dirname(here), name)
            if os.path.isabs(name):
                path = name
        else:
            name = arg.group(2).strip()
            path = os.path.join(self.library, name)
            if not os.path.exists(path) and not name.endswith(".asm"):
                path += ".asm"
            if not name or "/" in name or "\\" in name or name.startswith("."):
                self.error(at, end + 2, f"<{show(name)}> is not a library name "
                                        "(a file of the standard library, like <puts>)")
                return
        col = end + 1 + len(rest) - len(rest.lstrip(" \t"))
        path = _tidy(path)
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join(show(os.path.basename(p)) for p in self.stack[self.stack.index(real):])
            self.error(at, col, f"include cycle: {chain} -> {show(os.path.basename(real))} "
                                "(a file cannot include itself, directly or through others)")
            return
        if len(self.stack) > MAX_INCLUDE_DEPTH:
            self.error(at, col, f"includes nest more than {MAX_INCLUDE_DEPTH} deep "
                                f"(at '{show(name)}')")
            return
        if not os.path.exists(path):
            hint = ""
            if arg.group(2) is not None:
                have = sorted(f[:-4] for f in os.listdir(self.library) if f.endswith(".asm")) \
                    if os.path.isdir(self.library) else []
                hint = f"; the library has: {', '.join(have) or 'nothing'}"
            where = "in the standard library" if arg.group(2) is not None else \
                f"next to {show(here)}"
            self.error(at, col, f"cannot include '{show(name)}': there is no file "
                                f"'{show(path)}' ({where}){hint}")
            return
        if not os.path.isfile(path):
            self.error(at, col, f"cannot include '{show(name)}': '{show(path)}' is not a "
                                "regular file")
            return
        try:
            raw = read_program_file(path)
            body = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error(at, col, f"cannot include '{show(path)}': it is not UTF-8 text "
                                f"(byte 0x{raw[exc.start]:02x} at offset {exc.start})")
            return
        except (OSError, MinivmError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.error(at, col, f"cannot include '{show(name)}': {why}")
            return
        self.out.digests.append([os.path.abspath(path), hashlib.sha256(raw).hexdigest()])
        via = (f"included from {show(here)}:{origin.line}",) + origin.via
        self.file(body, path, real, via)

    # --- macros ------------------------------------------------------------------
    def define(self, rest: str, at: int, column: int, origin: Origin, source) -> None:
        head = rest.split(";", 1)[0].strip()
        match = re.fullmatch(rf"({_NAME})(?:[ \t]+(.*))?", head)
        params = [] if match is None or match.group(2) is None else \
            [p.strip() for p in match.group(2).split(",")]
        body, closed = [], False
        for text, where in source:
            inner = _DIRECTIVE.match(text)
            if inner and inner.group(2).lower() == ".endm":
                self.emit(inner.group(1).rstrip(), where)
                closed = True
                break
            line = self.emit("", where)
            if inner and inner.group(2).lower() == ".macro":
                self.error(line, inner.start(2) + 1, "a .macro cannot be defined inside another "
                                                     "(close the first with .endm)")
            body.append((text, where))
        if not closed:
            self.error(at, column, ".macro without its .endm (the file ends first)")
        if match is None:
            self.error(at, column, ".macro needs a name, then its parameters: "
                                   ".macro NAME p1, p2")
            return
        name = match.group(1)
        from .isa import MNEMONICS
        bad = [p for p in params if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p)]
        if name.lower() in MNEMONICS:
            self.error(at, column, f"'{name}' is an instruction; a macro needs another name")
        elif name.lower() in self.macros:
            first = self.macros[name.lower()].origin
            self.error(at, column, f"macro '{name}' is already defined at "
                                   f"{show(self.out.files[first.file])}:{first.line}")
        elif bad:
            self.error(at, column, f"macro parameter '{show(bad[0])}' is not a name "
                                   "(letters, digits and '_')")
        elif len(set(params)) != len(params):
            self.error(at, column, f"macro '{name}' names a parameter twice")
        else:
            self.macros[name.lower()] = _Macro(name, params, body, origin)
            self.out.macros[name.lower()] = f"{show(self.out.files[origin.file])}:{origin.line}"

    def expand_use(self, macro: _Macro, use, text: str, origin: Origin, depth: int) -> None:
        at = self.emit(use.group(1).rstrip(), origin)
        column = use.start(2) + 1
        args = _split_args(use.group(3))
        if len(args) != len(macro.params):
            want = ", ".join(macro.params) or "no arguments"
            self.error(at, column, f"macro '{macro.name}' takes {len(macro.params)} "
                                   f"argument{'s' if len(macro.params) != 1 else ''} ({want}), "
                                   f"got {len(args)}")
            return
        if depth >= MAX_MACRO_DEPTH:
            self.error(at, column, f"macros expand more than {MAX_MACRO_DEPTH} deep "
                                   f"(does '{macro.name}' use itself?)")
            return
        self.uses += 1
        values = dict(zip(macro.params, args))
        values["@"] = str(self.uses)
        via = (f"in macro {macro.name} expanded at {show(self.out.files[origin.file])}:"
               f"{origin.line}",) + origin.via
        site = origin.placed()
        body = []
        for line, where in macro.body:
            done, missing = _substitute(line, values)
            if missing:
                self.error(at, column, f"macro '{macro.name}' has no parameter '{missing}' "
                                       f"(used at {show(self.out.files[where.file])}:{where.line})")
                return
            body.append((done, Origin(where.file, where.line, via, site)))
        self.lines(iter(body), depth + 1)


def _tidy(path: str) -> str:
    """``path`` normalised, and relative to the current folder if it is inside
    it (a library file of the checkout shows as programs/lib/puts.asm)."""
    path = os.path.normpath(path)
    if os.path.isabs(path):
        try:
            rel = os.path.relpath(path)
        except ValueError:
            return path
        if not rel.startswith(".."):
            return rel
    return path


_QUOTED = re.compile(r"""("(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?)""")


def _substitute(line: str, values: dict) -> tuple[str, str | None]:
    """``line`` with each ``\\name`` of a parameter replaced; the first unknown
    name outside quotes, if any. In a string or character literal an unknown
    name is left alone (``"\\n"`` is an escape); a comment is left as written."""
    cut = _comment_start(line)
    code, comment = line[:cut], line[cut:]
    missing = []

    def one(match):
        key = match.group(1)
        if key in values:
            return values[key]
        missing.append(key)
        return match.group(0)

    def quoted(match):
        key = match.group(1)
        return values.get(key, match.group(0))
    pieces = _QUOTED.split(code)          # odd pieces are the quoted ones
    done = "".join(_PARAM.sub(quoted if i % 2 else one, piece) for i, piece in enumerate(pieces))
    return done + comment, (missing[0] if missing else None)


def _outside_quotes(text: str):
    """(index, character) of each character of ``text`` that is not inside a
    '...' or "..." literal (a backslash escapes the next character there)."""
    quote = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        else:
            yield i, ch
        i += 1


def _comment_start(line: str) -> int:
    """Where the ';' comment starts, outside quotes (len(line) if none)."""
    return next((i for i, ch in _outside_quotes(line) if ch == ";"), len(line))


def _split_args(text: str) -> list[str]:
    """A macro use's arguments: split at the commas outside brackets, parentheses and quotes."""
    text = text[:_comment_start(text)].strip()
    if not text:
        return []
    out, depth, start = [], 0, 0
    for i, ch in _outside_quotes(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def expand(source: str, filename: str, library: str | None = None) -> Expansion:
    """The plain text of ``source`` (read from ``filename``), includes and macros
    expanded; errors are in ``Expansion.errors``, the text stops at too much."""
    out = Expansion()
    expander = _Expander(out, library or library_folder())
    try:
        expander.file(source, filename, os.path.realpath(filename), ())
    except _Stop:
        pass
    return out
