"""The assembler: source text -> :class:`~minivm.image.Image`.

Three small stages, in the manner of Lark's own examples (before them, a
source with ``.include`` or ``.macro`` is expanded into one plain text by
asm_source.py, and the messages and the image's source map are put back
into the real files afterwards; the words of the messages are in
asm_hints.py):

1. The source is read one line at a time (the grammar never spans lines):
   a line of the common shapes by ``_fast_line``, plain regular expressions;
   any other line by ``grammar.lark`` + Lark's LALR parser on that line
   alone. Syntax errors become diagnostics with the line, a caret and the
   expected tokens in words (``match_examples``); the source shown under a
   message is escaped (``errors.show``).
2. :class:`_ToStatements`, a Transformer, turns Lark's tree of a line into
   plain statements (labels, instructions, directives) with positions, the
   same statements ``_fast_line`` makes.
3. Two passes: :meth:`_Assembler.layout` assigns every label its address and
   checks sections, as the statements are read; :meth:`_Assembler.encode`
   evaluates expressions (C precedence, exact integers, checked to 32 bits)
   and encodes each instruction through the shape table in isa.py.

Time and memory are linear in the source (benchmarks/assembler_scale.py);
the limits are in docs/isa.md, "Limits".

Every error carries ``file:line:col``; all of them are collected and raised
together as one :class:`AssemblyError`, never as a traceback.
"""

from __future__ import annotations

import difflib
import heapq
import re
import struct
import sys
from dataclasses import dataclass, field
from functools import lru_cache, partial
import os


from . import isa
from .container import MAX_PROGRAM_BYTES, read_program_file
from .asm_hints import (DIRECTIVE_ALIASES, DIRECTIVES, EXAMPLES, HANDLER_PORTS, LABEL_THEN_WORD,
                        MEMORY_HINTS, OPERAND_START, ORDER_HINTS, TARGETED, describe_token,
                        in_words, missing_colon, wrong_section)
from .asm_source import expand, library_folder, uses_expansion
from .errors import MinivmError, show
from .image import MAX_CODE, MAX_DATA, Image

MIN_VALUE = -(1 << 31)
MAX_VALUE = (1 << 32) - 1
#: Expressions are computed exactly, then checked against 32 bits; these two
#: guards only stop absurd inputs (e.g. .equ chains that square a value again
#: and again) from taking unbounded time and memory. Documented in docs/isa.md.
MAX_INTERMEDIATE_BITS = 4096
MAX_SHIFT = 4096
MAX_DEPTH = 200           # nesting of an expression, counting .equ names it uses
MAX_ERRORS = 20
#: A source is at most as long as a program file may be (container.py): the
#: assembler's time and memory grow linearly with it (benchmarks/assembler_scale.py).
MAX_SOURCE = MAX_PROGRAM_BYTES
MAX_SUGGEST = 10_000      # "did you mean": only among this many names or fewer
REGISTER_LIKE = re.compile(r"(?i)^(r\d+|sp)$")


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int


@dataclass(slots=True)
class Diagnostic:
    pos: Pos
    message: str
    hint: object = None           # () -> the message's end ("; did you mean ..."), only if reported
    #: the file ``pos`` is in, once the report has placed it there (through
    #: .include and .macro: the real file); None: the file assembled
    file: str | None = None


class _Errors:
    """The first MAX_ERRORS errors by position, the rest counted, not kept:
    a program with a million mistakes holds twenty diagnostics, and the
    costly part of a message (the "did you mean" search) is done for those
    alone. Ties at one position keep the order in which they were found,
    literals' errors (``rank`` 0) before the passes' (``rank`` 1), as when
    the whole tree was transformed before the first pass."""

    def __init__(self):
        self._heap: list = []     # (-line, -column, -rank, -seq, diag): the largest on top
        self._seq = 0

    def add(self, diag: Diagnostic, rank: int = 1) -> None:
        self._seq += 1
        item = (-diag.pos.line, -diag.pos.column, -rank, -self._seq, diag)
        if len(self._heap) < MAX_ERRORS:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def __bool__(self) -> bool:
        return self._seq > 0

    def reported(self) -> list[Diagnostic]:
        out = [item[-1] for item in sorted(self._heap, reverse=True)]
        for diag in out:
            if diag.hint is not None:
                diag.message += diag.hint()
                diag.hint = None
        return out


class _Sink:
    """``append`` for the Transformer's list of errors, into an :class:`_Errors`."""

    def __init__(self, errors: _Errors, rank: int):
        self.errors, self.rank = errors, rank

    def append(self, diag: Diagnostic) -> None:
        self.errors.add(diag, self.rank)


class AssemblyError(MinivmError):
    """One or more errors in a program; ``str()`` is the full report."""

    def __init__(self, filename: str, source: str, diagnostics: list[Diagnostic],
                 contexts: dict | None = None, expansion=None):
        self.filename = filename
        self.diagnostics = diagnostics
        lines = source.split("\n")           # as Lark counts lines; not splitlines()
        parts = []
        for diag in diagnostics:
            context = (contexts or {}).get(id(diag)) or _caret(lines, diag.pos)
            where, via = f"{filename}:{diag.pos.line}", ()
            if expansion is not None and 1 <= diag.pos.line <= len(expansion.origins):
                # through .include and .macro: the real file and line, and how it got here
                origin = expansion.origins[diag.pos.line - 1]
                where, via = expansion.where(diag.pos.line), origin.via
                if not context:
                    context = _caret([expansion.original(diag.pos.line)], Pos(1, diag.pos.column))
                # the diagnostic says what the report says: that file, that line
                diag.file = expansion.files[origin.file]
                diag.pos = Pos(origin.line, diag.pos.column)
            notes = "".join(f"  {step}\n" for step in via)
            parts.append(f"{where}:{diag.pos.column}: error: {diag.message}\n{context}{notes}")
        super().__init__("\n".join(parts).rstrip("\n"))


def _caret(lines: list[str], pos: Pos) -> str:
    """The source line and a caret under ``pos`` (same shape as Lark's)."""
    if not 1 <= pos.line <= len(lines) or not lines[pos.line - 1].strip():
        return ""
    text = lines[pos.line - 1].rstrip("\r")
    col = max(pos.column - 1, 0)
    start, end = 0, len(text)
    if len(text) > 100:                     # a window around the column, as Lark does
        start, end = max(col - 40, 0), col + 40
    return _pointing(text[start:col], text[col:end])


def _pointing(before: str, after: str) -> str:
    """The text either side of a column, shown escaped (errors.show), and a
    caret under the column: the padding copies the tabs, so it lines up."""
    before, after = show(before, keep="\t"), show(after, keep="\t")
    pad = "".join("\t" if ch == "\t" else " " for ch in before)
    return f"{before}{after}\n{pad}^\n"


# --- stage 1: parsing ---------------------------------------------------------

@lru_cache(maxsize=1)
def _parser():
    from lark import Lark       # imported the first time a line needs Lark
    # beside this module (package data); importlib.resources would cost more
    # start-up time than the rest of this function
    with open(os.path.join(os.path.dirname(__file__), "grammar.lark"), encoding="utf-8") as f:
        grammar = f.read()
    # cache=True: Lark stores the built LALR tables in a temp file keyed by the
    # grammar's hash, which halves the start-up time of `minivm run`.
    return Lark(grammar, parser="lalr", propagate_positions=True,
                maybe_placeholders=True, cache=True, start=["start", "expr_start"])


def _parse_source(text: str):
    return _parser().parse(text, start="start")


def _parse_error(exc, text: str) -> tuple[Diagnostic, str]:
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken
    pos = Pos(exc.line if exc.line > 0 else 1, exc.column if exc.column > 0 else 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            message = "unterminated string: a string ends with '\"' on the same line"
        elif char == "'":
            message = ("bad character literal: it holds exactly one character or escape, "
                       "like 'A' or '\\n'")
        else:
            message = (f"unexpected character '{show(char)}'; expected "
                       f"{in_words(exc.allowed or ())}")
    else:
        assert isinstance(exc, UnexpectedToken)
        token = exc.token
        message = f"unexpected {describe_token(token)}; expected {in_words(exc.expected)}"
        if token.type == "NAME" and exc.expected and "RSQB" in exc.expected and \
                REGISTER_LIKE.match(str(token)):
            message += " (an offset cannot be a register)"
    at = exc.pos_in_stream or 0
    if isinstance(exc, UnexpectedToken):
        start = text.rfind("\n", 0, at) + 1
        line = text[start:].split("\n", 1)[0]
        colon = LABEL_THEN_WORD.match(line)
        hint = missing_colon(line)
        if hint is not None:          # 'loop add r1, r1, 1': point where the ':' goes
            message, at = hint, start + colon.end(1)
            pos = Pos(pos.line, colon.end(1) + 1)
        elif exc.token.type in OPERAND_START and "COMMA" in (exc.expected or ()):
            message = f"missing ',' between operands: {message}"   # 'beq r1, 0 loop'
        else:
            hint = exc.match_examples(_parse_source, EXAMPLES, use_accepts=True)
            if hint:
                message = f"{hint}: {message}"
    # the context Lark's get_context(text, span=60) gives, but shown escaped
    before = text[max(at - 60, 0):at].rsplit("\n", 1)[-1]
    after = text[at:at + 60].split("\n", 1)[0]
    if after.endswith("\r"):
        after = after[:-1]
    return Diagnostic(pos, message), _pointing(before, after)


# --- stage 2: the tree as statements -----------------------------------------

@dataclass(slots=True)
class Num:
    value: int
    pos: Pos


@dataclass(slots=True)
class Name:
    name: str
    pos: Pos


@dataclass(slots=True)
class BinOp:
    op: str
    left: object
    right: object
    pos: Pos


@dataclass(slots=True)
class UnOp:
    op: str
    operand: object
    pos: Pos


@dataclass(slots=True)
class Deref:
    """``[expr]`` in a REPL expression: the word of memory at that address."""
    operand: object
    pos: Pos


@dataclass(slots=True)
class Reg:
    index: int
    pos: Pos


@dataclass(slots=True)
class Mem:
    base: int | None          # None for [expr]
    terms: list               # [(sign, expr)]
    pos: Pos


@dataclass(slots=True)
class Str:
    data: bytes
    pos: Pos


@dataclass(slots=True)
class Statement:
    kind: str                 # "label" | "instruction" | "directive"
    name: str
    args: list
    pos: Pos
    line_text: str = ""


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


class _LiteralError(Exception):
    def __init__(self, message: str, pos: Pos):
        self.message, self.pos = message, pos


def _unescape(body: str, pos: Pos) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise _LiteralError(
                    f"unknown escape '\\{show(nxt)}' (known: \\n \\t \\r \\0 \\\\ \\' \\\")",
                    Pos(pos.line, pos.column + 1 + i))
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _register_index(text: str) -> int:
    text = text.lower()
    return isa.SP if text == "sp" else int(text[1:])


@lru_cache(maxsize=1)
def _statements_class():
    """The Transformer class, made on first use: then only Lark's lines import Lark."""
    from lark import v_args
    from lark.visitors import Transformer_NonRecursive
    class _ToStatements(Transformer_NonRecursive):
        """Parse tree -> list of :class:`Statement` (one list per source line).

        Non-recursive, so a deeply nested expression cannot overflow Python's
        stack; :meth:`_Assembler.evaluate` then refuses nesting beyond MAX_DEPTH.
        """

        def __init__(self, errors=None):
            super().__init__()
            self.errors = [] if errors is None else errors     # a list, or a _Sink
            self.offset = 0           # added to Lark's line numbers (one line parsed at a time)
            self.text = ""            # the source line being transformed

        def _at(self, node) -> Pos:
            return Pos(node.line + self.offset, node.column)

        def start(self, lines):
            return [stmt for line in lines for stmt in line]

        def line(self, children):
            text = self.text.strip()
            out = []
            for child in children:
                if child is not None:
                    if child.kind == "instruction":
                        child.line_text = text
                    out.append(child)
            return out

        def label(self, children):
            (name,) = children
            return Statement("label", str(name), (), self._at(name))

        def instruction(self, children):
            name, operands = children
            return Statement("instruction", str(name).lower(), operands or (), self._at(name))

        def directive(self, children):
            name, arguments = children
            return Statement("directive", str(name).lower(), arguments or (), self._at(name))

        def operands(self, children):
            return list(children)

        arguments = operands

        def register(self, children):
            (token,) = children
            return Reg(_register_index(str(token)), self._at(token))

        @v_args(meta=True)
        def mem_reg(self, meta, children):
            base, sign, expr = children
            terms = [] if sign is None else [(str(sign), expr)]
            return Mem(_register_index(str(base)), terms, self._at(meta))

        @v_args(meta=True)
        def mem_abs(self, meta, children):
            return Mem(None, [("+", children[0])], self._at(meta))

        def _quoted(self, token) -> str | None:
            """The unescaped body of a string or character literal; None (and the
            error recorded) for an unknown escape."""
            try:
                return _unescape(str(token)[1:-1], self._at(token))
            except _LiteralError as exc:
                self.errors.append(Diagnostic(exc.pos, exc.message))
                return None

        def string(self, children):
            (token,) = children
            text = self._quoted(token)
            return Str((text or "").encode("utf-8"), self._at(token))

        def number(self, children):
            (token,) = children
            text = str(token)
            base = {"0x": 16, "0X": 16, "0b": 2, "0B": 2}.get(text[:2], 10)
            return Num(int(text[2:] if base != 10 else text, base), self._at(token))

        def char(self, children):
            (token,) = children
            pos = self._at(token)
            text = self._quoted(token)
            if text is None:
                return Num(0, pos)
            if len(text) != 1:
                self.errors.append(Diagnostic(pos, "a character literal holds exactly one character"))
                return Num(0, pos)
            return Num(ord(text), pos)

        def name(self, children):
            (token,) = children
            return Name(str(token), self._at(token))

        def binop(self, children):
            left, op, right = children
            return BinOp(str(op), left, right, self._at(op))

        def unop(self, children):
            op, operand = children
            return UnOp(str(op), operand, self._at(op))

        @v_args(meta=True)
        def deref(self, meta, children):
            return Deref(children[0], self._at(meta))

        def expr_start(self, children):
            return children[0]


    # --- stage 2b: one line at a time -------------------------------------------
    #

    return _ToStatements


def _ToStatements(errors=None):
    """A new Transformer (see _statements_class) recording into ``errors``."""
    return _statements_class()(errors)


# The grammar is line by line: no token spans a newline, and the parser is in
# the same state at the start of every line after the first. So the source is
# read one line at a time: a line of the common shapes (labels, a mnemonic or
# directive, operands that are registers, numbers, names and [reg +- term])
# by _fast_line, plain regular expressions and no parse tree; any other line
# by Lark alone, on that line. Both give the same statements, positions
# included (tests/test_assembler_scale.py compares them line by line), and a
# syntax error is Lark's, word for word, since Lark parses that line.

_WS = "[ \t\f\r]*"
_NAME = "[A-Za-z_][A-Za-z0-9_.]*"
_NUMBER = "0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+"
_REGISTER = "(?i:r1[0-5]|r[0-9]|sp)"
_BLANKS = " \t\f\r"
_HEAD = re.compile(rf"((?:{_WS}{_NAME}{_WS}:)*){_WS}"
                   rf"(?:(\.[A-Za-z_][A-Za-z0-9_]*|{_NAME})(?=[{_BLANKS}]|$))?")
_LABEL = re.compile(rf"{_WS}({_NAME}){_WS}:")
_REGISTER_RE = re.compile(_REGISTER)
_NUMBER_RE = re.compile(_NUMBER)
_NAME_RE = re.compile(_NAME)
_NEGATIVE_RE = re.compile(rf"-{_WS}({_NUMBER})")
_MEM_RE = re.compile(rf"\[{_WS}(?:({_REGISTER}){_WS}(?:([+-]){_WS}({_NUMBER}|{_NAME}){_WS})?"
                     rf"|({_NUMBER}|{_NAME}){_WS})\]")
_STRING_LINE = re.compile(rf"((?:{_WS}{_NAME}{_WS}:)*){_WS}(\.[A-Za-z_][A-Za-z0-9_]*)"
                          rf"[{_BLANKS}]+{_WS}(\"(?:\\[^\n]|[^\\\"\n])*\"){_WS}(?:;.*)?\Z")
_PACKED = {".byte", ".word"}      # directives whose plain numbers are kept as ints
_PACKED_STEP = re.compile(rf"{_WS}(-?)({_NUMBER}){_WS}(,|\Z)")


def _number(text: str) -> int:
    base = {"0x": 16, "0X": 16, "0b": 2, "0B": 2}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


def _term(text: str, pos: Pos):
    """A number or a name, as the Transformer makes them."""
    if _NUMBER_RE.fullmatch(text):
        return Num(_number(text), pos)
    return Name(text, pos)


def _fast_line(line: str, lineno: int, pack: bool = True):
    """The statements of ``line``, or None when the line is not one of the
    shapes this reads (Lark then parses it). With ``pack``, a plain number
    (or minus a number) in .byte and .word is kept as an int without a
    position (:func:`_item_pos` finds it again for an error message)."""
    if '"' in line or "'" in line:
        return _string_line(line, lineno)
    cut = line.find(";")
    body = line if cut < 0 else line[:cut]
    head = _HEAD.match(body)
    out = []
    if head.group(1):
        for label in _LABEL.finditer(head.group(1)):
            out.append(Statement("label", label.group(1), (), Pos(lineno, label.start(1) + 1)))
    word = head.group(2)
    rest = body[head.end():]
    if word is None:
        return out if not rest.strip(_BLANKS) else None
    pos = Pos(lineno, head.start(2) + 1)
    if not rest.strip(_BLANKS):
        args = ()
    elif pack and word.lower() in _PACKED and (args := _packed_numbers(rest)) is not None:
        pass
    else:
        instruction = word[0] != "."
        packed = pack and word.lower() in _PACKED
        args = []
        at, stop = head.end(), len(body)
        while at <= stop:                 # one item at a time: no list of all the pieces
            comma = body.find(",", at)
            if comma < 0:
                comma = stop
            piece = body[at:comma]
            item = piece.strip(_BLANKS)
            if not item:
                return None
            column = at + len(piece) - len(piece.lstrip(_BLANKS)) + 1
            at = comma + 1
            if instruction and _REGISTER_RE.fullmatch(item):
                args.append(Reg(_register_index(item), Pos(lineno, column)))
            elif _NUMBER_RE.fullmatch(item):
                value = _number(item)
                args.append(value if packed else Num(value, Pos(lineno, column)))
            elif _NAME_RE.fullmatch(item):
                args.append(Name(item, Pos(lineno, column)))
            elif instruction and item[0] == "[":
                mem = _MEM_RE.fullmatch(item)
                if mem is None:
                    return None
                if mem.group(4) is not None:
                    terms = [("+", _term(mem.group(4), Pos(lineno, column + mem.start(4))))]
                    base = None
                else:
                    base = _register_index(mem.group(1))
                    terms = [] if mem.group(2) is None else \
                        [(mem.group(2), _term(mem.group(3), Pos(lineno, column + mem.start(3))))]
                args.append(Mem(base, terms, Pos(lineno, column)))
            elif negative := _NEGATIVE_RE.fullmatch(item):
                value = _number(negative.group(1))
                args.append(-value if packed else UnOp(
                    "-", Num(value, Pos(lineno, column + negative.start(1))), Pos(lineno, column)))
            else:
                return None
    if word[0] == ".":
        out.append(Statement("directive", sys.intern(word.lower()), args, pos))
    else:
        out.append(Statement("instruction", sys.intern(word.lower()), args, pos, line.strip()))
    return out


def _string_line(line: str, lineno: int):
    """A directive with one string argument (``msg: .asciz "Hello\\n"``), as
    the Transformer makes it; None for any other line with a quote, or a
    string with a bad escape (Lark then reads the line and the error is the
    Transformer's)."""
    match = _STRING_LINE.match(line)
    if match is None:
        return None
    out = [Statement("label", label.group(1), (), Pos(lineno, label.start(1) + 1))
           for label in _LABEL.finditer(match.group(1))]
    token = Pos(lineno, match.start(3) + 1)
    try:
        text = _unescape(match.group(3)[1:-1], token)
    except _LiteralError:
        return None
    out.append(Statement("directive", sys.intern(match.group(2).lower()),
                         [Str(text.encode("utf-8"), token)], Pos(lineno, match.start(2) + 1)))
    return out


def _packed_numbers(rest: str) -> list | None:
    """The values of a data line that holds only (minus) numbers, or None."""
    out, at, step = [], 0, _PACKED_STEP.match
    while True:
        item = step(rest, at)
        if item is None:
            return None
        out.append(-_number(item[2]) if item[1] else _number(item[2]))
        if not item[3]:
            return out
        at = item.end()


def _item_pos(stmt: "Statement", index: int) -> Pos:
    """Where argument ``index`` of a packed .byte/.word statement is: the
    line is read again (only for an error message)."""
    again = _fast_line(stmt.line_text, stmt.pos.line, pack=False)
    return again[-1].args[index].pos


class _SyntaxError(Exception):
    def __init__(self, diagnostic: Diagnostic, context: str):
        self.diagnostic, self.context = diagnostic, context


def _lark_line(line: str, lineno: int, builder) -> list:
    """The statements of one line, parsed by Lark. After the first line, a
    blank line goes first, so that the parser is in the state it has after a
    line (the hints of match_examples depend on it), as in a whole file."""
    from lark.exceptions import UnexpectedInput
    prefix = "\n" if lineno > 1 else ""
    text = prefix + line + "\n"
    try:
        tree = _parse_source(text)
    except UnexpectedInput as exc:
        diag, context = _parse_error(exc, text)
        diag.pos = Pos(diag.pos.line + lineno - 1 - len(prefix), diag.pos.column)
        raise _SyntaxError(diag, context) from None
    builder.offset = lineno - 1 - len(prefix)
    builder.text = line
    return builder.transform(tree)


def _statements(text: str, errors):
    """Every statement of ``text`` (which ends with a newline), in order, one
    line's worth at a time: the caller lays each out as it comes, so that only
    what the second pass needs stays in memory."""
    start, lineno, end = 0, 0, len(text)
    builder = None
    while start < end:
        stop = text.find("\n", start)
        line = text[start:stop]
        start = stop + 1
        lineno += 1
        found = _fast_line(line, lineno)
        if found is None:
            if builder is None:          # the first line the fast reader leaves to Lark
                builder = _ToStatements(errors)
            found = _lark_line(line, lineno, builder)
        elif found and found[-1].kind == "directive" and found[-1].name in _PACKED:
            found[-1].line_text = line        # kept for _item_pos
        yield from found


# --- stage 3: two passes -------------------------------------------------------

class _Fail(Exception):
    """Raised inside a pass to record one diagnostic and skip the statement."""

    def __init__(self, pos: Pos, message: str, hint=None):
        self.diagnostic = Diagnostic(pos, message, hint)


@dataclass(slots=True)
class _Symbol:
    section: str              # "text" | "data" | "equ"
    value: int | None
    pos: Pos
    expr: object = None       # for .equ, evaluated on first use


_OPERAND_WORDS = {"reg": "a register", "src": "a register or an expression",
                  "mem": "a memory operand like [r1], [r1 + 4] or [label]",
                  "expr": "an expression"}


def _kind_of(operand) -> str:
    if isinstance(operand, Reg):
        return "a register"
    if isinstance(operand, Mem):
        return "a memory operand"
    return "an expression"


@dataclass
class _Assembler:
    filename: str
    symbols: dict = field(default_factory=dict)
    errors: _Errors = field(default_factory=_Errors)
    instructions: list = field(default_factory=list)   # Statement per pc
    data_items: list = field(default_factory=list)     # (offset, Statement)
    data_size: int = 0
    entry: Statement | None = None
    too_much_code: bool = False
    _evaluating: set = field(default_factory=set)
    place: object = lambda line: f"line {line}"     # a line in messages (asm_source.Expansion.where)
    library: str | None = None                      # where .include <name> looks
    macros: dict = field(default_factory=dict)      # macro name -> where defined (Expansion.macros)

    def fail(self, exc: _Fail) -> None:
        self.errors.add(exc.diagnostic)

    # pass 1 -------------------------------------------------------------------
    def layout(self, statements) -> None:
        section = "text"
        for stmt in statements:
            try:
                if stmt.kind == "label":
                    where = len(self.instructions) if section == "text" else self.data_size
                    self.define(stmt.name, _Symbol(section, where, stmt.pos))
                elif stmt.kind == "instruction":
                    if section != "text":
                        raise _Fail(stmt.pos, f"instruction '{stmt.name}' in the .data section; "
                                              "put instructions after .text")
                    if stmt.name not in isa.MNEMONICS and stmt.name in self.macros:
                        raise _Fail(stmt.pos, f"macro '{stmt.name}' is used before it is "
                                              f"defined (at {self.macros[stmt.name]}); "
                                              "define a macro above its first use")
                    if stmt.name not in isa.MNEMONICS:
                        raise _Fail(stmt.pos, f"unknown mnemonic '{stmt.name}'",
                                    hint=partial(_mnemonic_hint, stmt.name, bool(stmt.args),
                                                 stmt.line_text))
                    if len(self.instructions) >= MAX_CODE:
                        if not self.too_much_code:        # said once; the rest are dropped
                            self.too_much_code = True
                            raise _Fail(stmt.pos, f"the program has more than {MAX_CODE} "
                                                  "instructions, the limit of an image")
                        continue
                    self.instructions.append(stmt)
                else:
                    section = self.directive_layout(stmt, section)
            except _Fail as exc:
                self.fail(exc)

    def define(self, name: str, symbol: _Symbol) -> None:
        if REGISTER_LIKE.match(name):
            raise _Fail(symbol.pos, f"'{name}' is a register name and cannot be a label or .equ name")
        if name in self.symbols:
            first = self.place(self.symbols[name].pos.line)
            if first == self.place(symbol.pos.line):    # the same line read twice
                raise _Fail(symbol.pos, f"'{name}' is defined a second time by this line: "
                                        "its file is included twice (include it once)")
            raise _Fail(symbol.pos, f"'{name}' is already defined at {first}")
        self.symbols[name] = symbol

    def directive_layout(self, stmt: Statement, section: str) -> str:
        name, args = stmt.name, stmt.args
        if name not in DIRECTIVES:
            hint = (partial(str, f"; minivm uses {DIRECTIVE_ALIASES[name]}")
                    if name in DIRECTIVE_ALIASES else partial(_suggest, name, DIRECTIVES))
            raise _Fail(stmt.pos, f"unknown directive '{name}'", hint=hint)
        if name in (".text", ".data"):
            self.expect_args(stmt, 0)
            return name[1:]
        if name == ".equ":
            self.expect_args(stmt, 2, "a name and a value, like .equ SIZE, 64")
            target, expr = args
            if not isinstance(target, Name):
                raise _Fail(stmt.pos, ".equ needs a name first, like .equ SIZE, 64")
            self.check_expr(expr)
            self.define(target.name, _Symbol("equ", None, target.pos, expr))
            return section
        if name == ".entry":
            self.expect_args(stmt, 1, "a code label")
            if self.entry is not None:
                raise _Fail(stmt.pos, f".entry is already given at {self.place(self.entry.pos.line)}")
            self.check_expr(args[0])
            self.entry = stmt
            return section
        if section != "data":
            raise _Fail(stmt.pos, f"data directive '{name}' in the .text section; "
                                  "put data after .data")
        if name in (".word", ".byte"):
            if not args:
                raise _Fail(stmt.pos, f"{name} needs at least one value")
            for arg in args:
                self.check_expr(arg)
            size = len(args) * (4 if name == ".word" else 1)
        elif name in (".ascii", ".asciz"):
            self.expect_args(stmt, 1, "one string")
            if not isinstance(args[0], Str):
                raise _Fail(stmt.pos, f"{name} needs a string in double quotes")
            size = len(args[0].data) + (name == ".asciz")
        elif name == ".space":
            self.expect_args(stmt, 1, "a byte count")
            size = self.early_value(args[0], ".space")
            if size < 0:
                raise _Fail(stmt.pos, f".space needs a count of 0 or more, got {size}")
        else:  # .align
            self.expect_args(stmt, 1, "an alignment")
            align = self.early_value(args[0], ".align")
            if align < 1:
                raise _Fail(stmt.pos, f".align needs a positive alignment, got {align}")
            size = -self.data_size % align
        if self.data_size + size > MAX_DATA:
            raise _Fail(stmt.pos, f"the data section would grow past {MAX_DATA} bytes")
        self.data_items.append((self.data_size, stmt))
        self.data_size += size
        return section

    def expect_args(self, stmt: Statement, count: int, what: str = "") -> None:
        if len(stmt.args) != count:
            need = f"{count} argument{'s' if count != 1 else ''}" + (f" ({what})" if what else "")
            raise _Fail(stmt.pos, f"{stmt.name} takes {need}, got {len(stmt.args)}")

    def check_expr(self, arg) -> None:
        if isinstance(arg, (Reg, Mem, Str)):
            raise _Fail(arg.pos, f"expected an expression here, got {_kind_of(arg) if not isinstance(arg, Str) else 'a string'}")

    def early_value(self, expr, directive: str) -> int:
        """Evaluate during layout: only names defined above may be used."""
        self.check_expr(expr)
        return self.value(expr, early=directive)

    # expressions ----------------------------------------------------------------
    def value(self, expr, early: str | None = None, depth: int = 0) -> int:
        result = _evaluate(expr, partial(self.lookup, early=early), depth=depth)
        if not MIN_VALUE <= result <= MAX_VALUE:
            raise _Fail(expr.pos, f"value {result} does not fit in 32 bits "
                                  f"(allowed: {MIN_VALUE} .. {MAX_VALUE})")
        return result

    def evaluate(self, expr, early: str | None = None, depth: int = 0) -> int:
        return _evaluate(expr, partial(self.lookup, early=early), depth=depth)
    def lookup(self, name: Name, early: str | None, depth: int = 0) -> int:
        symbol = self.symbols.get(name.name)
        if symbol is None:
            if REGISTER_LIKE.match(name.name):
                if re.fullmatch(r"(?i)r\d+", name.name) and int(name.name[1:]) > 15:
                    raise _Fail(name.pos, f"'{name.name}' is not a register (registers are r0..r15 and sp)")
                raise _Fail(name.pos, f"register '{name.name}' cannot be used inside an expression")
            if early:
                raise _Fail(name.pos, f"'{name.name}' is not defined before this {early}; "
                                      f"{early} can only use names defined above it")
            raise _Fail(name.pos, f"undefined name '{name.name}'",
                        hint=partial(_undefined_hint, name.name, self.symbols, self.library))
        if symbol.section != "equ":
            return symbol.value
        if symbol.value is None:
            if name.name in self._evaluating:
                raise _Fail(name.pos, f".equ '{name.name}' is defined in terms of itself")
            self._evaluating.add(name.name)
            try:
                symbol.value = self.value(symbol.expr, early, depth + 1)
            finally:
                self._evaluating.discard(name.name)
        return symbol.value

    # pass 2 ---------------------------------------------------------------------
    def encode(self) -> Image:
        code, lines, texts = [], [], []
        statements = self.instructions
        for pc, stmt in enumerate(statements):
            statements[pc] = None         # the code grows as the statements go
            try:
                code.append(self.encode_instruction(stmt))
            except _Fail as exc:
                self.fail(exc)
                code.append((isa.NOP, 0, 0, 0))
            lines.append(stmt.pos.line)
            texts.append(stmt.line_text)
        data = bytearray(self.data_size)
        for offset, stmt in self.data_items:
            try:
                self.encode_data(stmt, data, offset)
            except _Fail as exc:
                self.fail(exc)
        entry = 0
        if self.entry is not None:
            try:
                entry = self.encode_entry(self.entry, len(code))
            except _Fail as exc:
                self.fail(exc)
        symbols = {}
        for name, sym in self.symbols.items():
            if sym.section == "equ":
                try:
                    symbols[name] = ("equ", self.lookup(Name(name, sym.pos), None))
                except _Fail as exc:
                    self.fail(exc)
            else:
                symbols[name] = (sym.section, sym.value)
        return Image(code, bytes(data), entry, self.filename, lines, texts, symbols)

    def encode_entry(self, stmt: Statement, ncode: int) -> int:
        expr = stmt.args[0]
        if isinstance(expr, Name):
            sym = self.symbols.get(expr.name)
            if sym is not None and sym.section == "data":
                raise _Fail(expr.pos, f".entry needs a code label; '{expr.name}' is a data label")
        entry = self.value(expr)
        if not 0 <= entry < max(ncode, 1):
            raise _Fail(expr.pos, f".entry {entry} is outside the code (0 .. {ncode - 1})")
        return entry

    def encode_data(self, stmt: Statement, data: bytearray, offset: int) -> None:
        name, args = stmt.name, stmt.args
        if name == ".word":
            if all(type(arg) is int for arg in args) and \
                    MIN_VALUE <= min(args) and max(args) <= MAX_VALUE:
                data[offset:offset + 4 * len(args)] = struct.pack(
                    f"<{len(args)}I", *[arg & isa.WORD_MASK for arg in args])
                return
            for i, arg in enumerate(args):
                if type(arg) is int and not MIN_VALUE <= arg <= MAX_VALUE:
                    raise _Fail(_item_pos(stmt, i), f"value {arg} does not fit in 32 bits "
                                                    f"(allowed: {MIN_VALUE} .. {MAX_VALUE})")
                v = self.value(arg) & isa.WORD_MASK
                data[offset + 4 * i: offset + 4 * i + 4] = v.to_bytes(4, "little")
        elif name == ".byte":
            if all(type(arg) is int for arg in args) and -128 <= min(args) and max(args) <= 255:
                data[offset:offset + len(args)] = bytes([arg & 0xFF for arg in args])
                return
            for i, arg in enumerate(args):
                v = self.evaluate(arg)
                if not -128 <= v <= 255:
                    where = _item_pos(stmt, i) if type(arg) is int else arg.pos
                    raise _Fail(where, f".byte value {v} does not fit in a byte (-128 .. 255)")
                data[offset + i] = v & 0xFF
        elif name in (".ascii", ".asciz"):
            blob = args[0].data
            data[offset:offset + len(blob)] = blob

    def encode_instruction(self, stmt: Statement) -> tuple:
        shapes = isa.SHAPES[stmt.name]
        operands = stmt.args
        kinds, reg_op, imm_op = shapes[0]
        if len(operands) != len(kinds):
            count = len(kinds)
            raise _Fail(stmt.pos, f"'{stmt.name}' takes {count} operand{'s' if count != 1 else ''}"
                                  f" ({isa.USAGE[stmt.name]}), got {len(operands)}")
        opcode = reg_op
        fields: list[int] = []
        for i, (kind, operand) in enumerate(zip(kinds, operands), start=1):
            if kind == "reg":
                if not isinstance(operand, Reg):
                    raise self.wrong_kind(stmt, i, kind, operand)
                fields.append(operand.index)
            elif kind == "src":
                if isinstance(operand, Reg):
                    fields.append(operand.index)
                elif isinstance(operand, Mem):
                    raise self.wrong_kind(stmt, i, kind, operand)
                else:
                    opcode = imm_op
                    fields.append(self.value(operand) & isa.WORD_MASK)
            elif kind == "mem":
                if not isinstance(operand, Mem):
                    raise self.wrong_kind(stmt, i, kind, operand)
                fields += self.memory_operand(operand)
            else:  # expr
                if isinstance(operand, (Reg, Mem)):
                    raise self.wrong_kind(stmt, i, kind, operand)
                fields.append(self.value(operand) & isa.WORD_MASK)
            if i == len(kinds) and stmt.name in TARGETED and not isinstance(operand, Reg):
                self.check_section(operand, "data", stmt.name)
        if stmt.name == "out" and opcode == imm_op:           # out 0x11, handler
            port = HANDLER_PORTS.get(self.value(operands[0]))
            if port is not None:
                self.check_section(operands[1], "data", f"out {port}")
        fields += [0] * (3 - len(fields))
        return (opcode, *fields)

    def wrong_kind(self, stmt, index, kind, operand) -> _Fail:
        if isinstance(operand, Name) and re.fullmatch(r"(?i)r\d+", operand.name):
            return _Fail(operand.pos, f"'{operand.name}' is not a register "
                                      "(registers are r0..r15 and sp)")
        message = (f"operand {index} of '{stmt.name}' must be "
                   f"{_OPERAND_WORDS[kind]}, not {_kind_of(operand)}")
        if index == 1 and stmt.name in ORDER_HINTS:       # out r1, 0x00
            message += ORDER_HINTS[stmt.name]
        elif isinstance(operand, Mem) and stmt.name in MEMORY_HINTS:   # mov r1, [msg]
            message += MEMORY_HINTS[stmt.name]
        return _Fail(operand.pos, message)

    def check_section(self, expr, wrong: str, where: str) -> None:
        """A label of section ``wrong`` named in ``expr`` is an error: a data
        label as a jump target, a code label in a memory operand. (A label
        as a plain value, ``mov r1, loop`` or ``.word loop``, stays legal.)"""
        stack = [expr]
        while stack:
            node = stack.pop()
            if isinstance(node, Name):
                sym = self.symbols.get(node.name)
                if sym is not None and sym.section == wrong:
                    raise _Fail(node.pos, wrong_section(node.name, sym, where))
            elif isinstance(node, BinOp):
                stack += (node.left, node.right)
            elif isinstance(node, UnOp):
                stack.append(node.operand)

    def memory_operand(self, mem: Mem) -> list[int]:
        total = 0
        for sign, expr in mem.terms:
            if isinstance(expr, (Reg, Mem)):
                raise _Fail(mem.pos, "a memory operand is [reg], [reg + expr], [reg - expr] or [expr]")
            self.check_section(expr, "text", "memory")
            v = self.evaluate(expr)
            total += -v if sign == "-" else v
        if not MIN_VALUE <= total <= MAX_VALUE:
            raise _Fail(mem.pos, f"memory offset {total} does not fit in 32 bits")
        base = isa.ZERO_REG if mem.base is None else mem.base
        return [base, total & isa.WORD_MASK]


def _evaluate(expr, lookup, deref=None, depth: int = 0, max_shift: int = MAX_SHIFT) -> int:
    """The value of an expression tree (C operators, C division).
    ``lookup(name, depth=depth)`` gives a Name's value (the assembler passes a
    partial: no extra Python frame per .equ level); ``deref(address)`` the
    value of ``[expr]`` (REPL expressions only)."""
    if depth > MAX_DEPTH:
        raise _Fail(getattr(expr, "pos", Pos(1, 1)),
                    f"expression is nested too deeply (more than {MAX_DEPTH} levels, "
                    "counting the .equ names it uses)")
    if type(expr) is int:               # a packed .byte/.word item
        return expr
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Name):
        return lookup(expr, depth=depth)
    if isinstance(expr, UnOp):
        v = _evaluate(expr.operand, lookup, deref, depth + 1, max_shift)
        return {"-": -v, "+": v, "~": ~v}[expr.op]
    if isinstance(expr, BinOp):
        a = _evaluate(expr.left, lookup, deref, depth + 1, max_shift)
        b = _evaluate(expr.right, lookup, deref, depth + 1, max_shift)
        result = _binary(expr, a, b, max_shift)
        if result.bit_length() > MAX_INTERMEDIATE_BITS:
            raise _Fail(expr.pos, "intermediate value is far too large")
        return result
    if isinstance(expr, Deref) and deref is not None:
        return deref(_evaluate(expr.operand, lookup, deref, depth + 1, max_shift))
    raise _Fail(getattr(expr, "pos", Pos(1, 1)), f"expected an expression, got {_kind_of(expr)}")


def _binary(expr: BinOp, a: int, b: int, max_shift: int = MAX_SHIFT) -> int:
    op = expr.op
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op in ("/", "%"):
        if b == 0:
            raise _Fail(expr.pos, f"division by zero in expression ('{op}')")
        # C: truncate toward zero, the same primitives the engines' div and mod use
        return isa.trunc_div(a, b) if op == "/" else isa.trunc_mod(a, b)
    if op in ("<<", ">>"):
        if not 0 <= b <= max_shift:
            raise _Fail(expr.pos, f"shift count {b} is out of range (0 .. {max_shift})")
        return a << b if op == "<<" else a >> b
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    return a ^ b


def _mnemonic_hint(name: str, has_args: bool, line: str = "") -> str:
    colon = missing_colon(line)
    if colon is not None:
        return f"; {colon}"
    hint = _suggest(name, isa.MNEMONICS)
    if not hint and not has_args:
        hint = " (a label needs a ':' after its name)"
    return hint


def _undefined_hint(name: str, symbols, library: str | None) -> str:
    """A close name, or, for a routine of the standard library (``call putdec``
    without ``.include <putdec>``), the line that brings it in."""
    folder = library or library_folder()
    if re.fullmatch(r"\w+", name) and os.path.isfile(os.path.join(folder, name + ".asm")):
        return (f"; '{name}' is a routine of the standard library: add "
                f"'.include <{name}>' after the program's last instruction")
    return _suggest(name, symbols)


def _suggest(word: str, choices) -> str:
    if len(choices) > MAX_SUGGEST:       # difflib looks at every name: 5 s for a million
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


# --- entry points ---------------------------------------------------------------

class ExpressionError(MinivmError):
    """An expression that does not parse or cannot be evaluated: one line."""


_CLOSERS = {"(": ")", "[": "]"}


def _unclosed(text: str) -> list[str]:
    """The '(' and '[' still open at the end of ``text`` (character literals skipped)."""
    stack = []
    for token in re.findall(r"'(?:\\.|[^'\\])'|[\[\]()]", text):
        if token in _CLOSERS:
            stack.append(token)
        elif token in ")]" and stack:
            stack.pop()
    return stack


def parse_expression(text: str):
    """The tree of one expression as the REPL writes it (``expr_start`` in
    grammar.lark): the assembler's operators and literals, names (registers
    too) and ``[expr]`` memory reads. Raises :class:`ExpressionError`."""
    if not text.strip():
        raise ExpressionError("an address or value is missing")
    semicolon = re.search(r"""^(?:'(?:\\.|[^'\\])'|[^';])*;""", text)
    if semicolon:                        # ';' starts a comment in assembly, not here
        raise ExpressionError(f"cannot read '{text[semicolon.end() - 1:].strip()}' in '{text}' "
                              "(give a number, label, register or expression like 'buf+4')")
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput
    try:
        tree = _parser().parse(text, start="expr_start")
    except UnexpectedCharacters as exc:
        raise ExpressionError(f"cannot read '{text[exc.pos_in_stream:].strip()}' in '{text}' "
                              "(give a number, label, register or expression like 'buf+4')") \
            from None
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        at_end = token is None or token.type == "$END"
        opened = _unclosed(text if at_end else text[:token.start_pos])
        if opened:
            raise ExpressionError(f"missing '{_CLOSERS[opened[-1]]}' in '{text}'") from None
        if at_end:
            raise ExpressionError(f"'{text}' ends too early") from None
        raise ExpressionError(f"unexpected '{token}' in '{text}'") from None
    builder = _ToStatements()
    expr = builder.transform(tree)
    if builder.errors:
        raise ExpressionError(builder.errors[0].message)
    return expr


def evaluate_expression(text: str, lookup, deref, *, max_shift: int = 64) -> int:
    """Parse and evaluate ``text`` with the assembler's rules (C precedence,
    division truncating toward zero). ``lookup(name)`` gives a name's value,
    ``deref(address)`` the word ``[address]`` reads; errors they raise pass
    through, the evaluator's own become :class:`ExpressionError`."""
    expr = parse_expression(text)
    try:
        return _evaluate(expr, lambda name, depth: lookup(name.name), deref, max_shift=max_shift)
    except _Fail as exc:
        message = exc.diagnostic.message
        if message.startswith("expression is nested too deeply"):
            message = "that expression is nested too deeply"
        elif message.startswith("division by zero"):
            message = f"division by zero in '{text}'"
        elif message.startswith("shift count"):
            message = message.split(" (0 ..")[0] + f" in '{text}'"
        raise ExpressionError(message) from None

def assemble(source: str, filename: str = "<source>", *, library: str | None = None) -> Image:
    """Assemble ``source``; raises :class:`AssemblyError` listing every error.
    ``.include "file"`` is read relative to the folder of ``filename``,
    ``.include <name>`` from ``library`` (default: asm_source.library_folder())."""
    if len(source) > MAX_SOURCE:
        diag = Diagnostic(Pos(1, 1), f"the source is {len(source)} characters long, "
                                     f"more than the limit of {MAX_SOURCE}")
        raise AssemblyError(filename, "", [diag], {id(diag): ""})
    expansion = None
    if uses_expansion(source):
        expansion = expand(source, filename, library)
        if expansion.errors:
            diags = [Diagnostic(Pos(line, col), message)
                     for line, col, message in expansion.errors[:MAX_ERRORS]]
            raise AssemblyError(filename, expansion.text, diags, expansion=expansion)
        source = expansion.text
    text = source if source.endswith("\n") else source + "\n"
    asm = _Assembler(filename, library=library)
    if expansion is not None:
        asm.place = expansion.where
        asm.macros = expansion.macros
    try:
        asm.layout(_statements(text, _Sink(asm.errors, 0)))
    except _SyntaxError as exc:
        raise AssemblyError(filename, text, [exc.diagnostic],
                            {id(exc.diagnostic): exc.context}, expansion) from None
    if not asm.instructions and not asm.errors:
        asm.errors.add(Diagnostic(Pos(1, 1), "the program has no instructions "
                                             "(a program needs at least one, e.g. 'halt')"))
    image = asm.encode()
    if asm.errors:
        raise AssemblyError(filename, text, asm.errors.reported(), expansion=expansion)
    if expansion is not None:
        _map_sources(image, expansion)
    return image


def _map_sources(image: Image, expansion) -> None:
    """The image's source map through the expansion: each instruction's real
    file and line (the plain text's line numbers mean nothing to a user); a
    macro's instructions are on the line that uses the macro."""
    places = [expansion.origins[line - 1].placed() for line in image.lines]
    image.lines = [line for _, line in places]
    if len(expansion.files) > 1:
        image.files = list(expansion.files)
        image.file_ids = [file for file, _ in places]
    image.includes = [list(x) for x in expansion.digests]


def decode_source(raw: bytes, path: str) -> str:
    """A source file's bytes as text; not UTF-8 is an error that points at the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line_end = raw.find(b"\n", exc.start)
        line_bytes = raw[line_start:line_end if line_end >= 0 else len(raw)]
        line = raw[:exc.start].count(b"\n") + 1
        column = len(raw[line_start:exc.start].decode("utf-8", "replace")) + 1
        text = line_bytes.decode("utf-8", "replace").rstrip("\r")
        caret = _caret([text], Pos(1, column)) or "(the line is blank)\n"
        raise MinivmError(f"{path}:{line}:{column}: error: the file is not UTF-8 text "
                          f"(byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"is this a binary file?\n{caret}".rstrip("\n")) from None


def assemble_file(path: str) -> Image:
    """Read (container.read_program_file: capped, regular files only) and assemble."""
    return assemble(decode_source(read_program_file(path), path), path)
