"""The assembler: source text -> :class:`~minivm.image.Image`.

Three small stages, in the manner of Lark's own examples:

1. ``grammar.lark`` + Lark's LALR parser (``propagate_positions``) give a
   parse tree; syntax errors become diagnostics with the line, a caret and
   the expected tokens in words (``match_examples``); the source shown
   under a message is escaped (``errors.show``).
2. :class:`_ToStatements`, a Transformer, turns the tree into plain
   statements (labels, instructions, directives) with positions.
3. Two passes: :meth:`_Assembler.layout` assigns every label its address and
   checks sections; :meth:`_Assembler.encode` evaluates expressions (C
   precedence, exact integers, checked to 32 bits) and encodes each
   instruction through the shape table in isa.py.

Every error carries ``file:line:col``; all of them are collected and raised
together as one :class:`AssemblyError`, never as a traceback.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache, partial
from importlib import resources

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import isa
from .container import read_program_file
from .errors import MinivmError, show
from .image import MAX_DATA, Image

MIN_VALUE = -(1 << 31)
MAX_VALUE = (1 << 32) - 1
#: Expressions are computed exactly, then checked against 32 bits; these two
#: guards only stop absurd inputs (e.g. .equ chains that square a value again
#: and again) from taking unbounded time and memory. Documented in docs/isa.md.
MAX_INTERMEDIATE_BITS = 4096
MAX_SHIFT = 4096
MAX_DEPTH = 200           # nesting of an expression, counting .equ names it uses
MAX_ERRORS = 20
REGISTER_LIKE = re.compile(r"(?i)^(r\d+|sp)$")


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


@dataclass
class Diagnostic:
    pos: Pos
    message: str


class AssemblyError(MinivmError):
    """One or more errors in a program; ``str()`` is the full report."""

    def __init__(self, filename: str, source: str, diagnostics: list[Diagnostic],
                 contexts: dict | None = None):
        self.filename = filename
        self.diagnostics = diagnostics
        lines = source.splitlines()
        parts = []
        for diag in diagnostics:
            context = (contexts or {}).get(id(diag)) or _caret(lines, diag.pos)
            parts.append(f"{filename}:{diag.pos.line}:{diag.pos.column}: error: "
                         f"{diag.message}\n{context}")
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
def _parser() -> Lark:
    grammar = resources.files("minivm").joinpath("grammar.lark").read_text()
    # cache=True: Lark stores the built LALR tables in a temp file keyed by the
    # grammar's hash, which halves the start-up time of `minivm run`.
    return Lark(grammar, parser="lalr", propagate_positions=True,
                maybe_placeholders=True, cache=True, start=["start", "expr_start"])


def _parse_source(text: str):
    return _parser().parse(text, start="start")


_TOKEN_WORDS = {
    "REGISTER": "a register", "NAME": "a name", "NUMBER": "a number",
    "CHAR": "a character literal", "STRING": "a string",
    "DIRECTIVE": "a directive", "_NL": "the end of the line",
    "COMMA": "','", "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'",
    "COLON": "':'", "ADD_OP": "'+' or '-'", "MUL_OP": "'*', '/' or '%'",
    "SHIFT_OP": "'<<' or '>>'", "BAND": "'&'", "BOR": "'|'", "BXOR": "'^'",
    "BNOT": "'~'", "$END": "the end of the file",
}
_EXPRESSION_START = {"NUMBER", "NAME", "CHAR", "LPAR", "ADD_OP", "BNOT"}
_BINARY_OPS = {"ADD_OP", "MUL_OP", "SHIFT_OP", "BAND", "BOR", "BXOR"}

# Typical mistakes, recognised by the parser state they fail in.
_EXAMPLES = {
    "missing ',' between operands": [
        "mov r1 r2\n", "mov r1 5\n", "add r1, r2 r3\n", "out 1 r2\n",
        "beq r1, r2 loop\n", "mov r1 [r2]\n"],
    "a memory operand is [reg], [reg + expr], [reg - expr] or [expr]": [
        "ld r1, [r2 r3]\n", "ld r1, [r2 * 4]\n", "ld r1, [r2, 4]\n", "ld r1, [r2 << 1]\n"],
    "missing ']' to close the memory operand": [
        "ld r1, [r2\n", "ld r1, [r2 + 4\n", "ld r1, [4\n"],
    "missing ')'": ["mov r1, (1 + 2\n", "mov r1, (5\n"],
    "an operator is missing its right-hand operand": [
        "mov r1, 1 +\n", "mov r1, 2 *\n", "mov r1, 1 <<\n", "mov r1, 1 |\n"],
    "an operand is missing after ','": ["mov r1,\n", "add r1, r2,\n", ".word 1,\n"],
    "a line starts with a label, a mnemonic or a directive": [
        "5\n", "5: nop\n", "[r1]\n", ",\n"],
}


def _in_words(expected) -> str:
    names = set(expected)
    words = []
    if names & _EXPRESSION_START == _EXPRESSION_START or {"NUMBER", "NAME"} <= names:
        names -= _EXPRESSION_START
        words.append("an expression")
    if names >= _BINARY_OPS:
        names -= _BINARY_OPS
        words.append("an operator")
    words += sorted(_TOKEN_WORDS.get(n, repr(n)) for n in names)
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    if token.type == "$END":
        return "end of file"
    return f"'{show(token)}'"


def _parse_error(exc: UnexpectedInput, text: str) -> tuple[Diagnostic, str]:
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
                       f"{_in_words(exc.allowed or ())}")
    else:
        assert isinstance(exc, UnexpectedToken)
        token = exc.token
        message = f"unexpected {_describe_token(token)}; expected {_in_words(exc.expected)}"
        if token.type == "NAME" and exc.expected and "RSQB" in exc.expected and \
                REGISTER_LIKE.match(str(token)):
            message += " (an offset cannot be a register)"
    if isinstance(exc, UnexpectedToken):
        hint = exc.match_examples(_parse_source, _EXAMPLES, use_accepts=True)
        if hint:
            message = f"{hint}: {message}"
    # the context Lark's get_context(text, span=60) gives, but shown escaped
    at = exc.pos_in_stream or 0
    before = text[max(at - 60, 0):at].rsplit("\n", 1)[-1]
    after = text[at:at + 60].split("\n", 1)[0]
    if after.endswith("\r"):
        after = after[:-1]
    return Diagnostic(pos, message), _pointing(before, after)


# --- stage 2: the tree as statements -----------------------------------------

@dataclass
class Num:
    value: int
    pos: Pos


@dataclass
class Name:
    name: str
    pos: Pos


@dataclass
class BinOp:
    op: str
    left: object
    right: object
    pos: Pos


@dataclass
class UnOp:
    op: str
    operand: object
    pos: Pos


@dataclass
class Deref:
    """``[expr]`` in a REPL expression: the word of memory at that address."""
    operand: object
    pos: Pos


@dataclass
class Reg:
    index: int
    pos: Pos


@dataclass
class Mem:
    base: int | None          # None for [expr]
    terms: list               # [(sign, expr)]
    pos: Pos


@dataclass
class Str:
    data: bytes
    pos: Pos


@dataclass
class Statement:
    kind: str                 # "label" | "instruction" | "directive"
    name: str
    args: list
    pos: Pos
    line_text: str = ""


def _pos(node) -> Pos:
    if isinstance(node, Token):
        return Pos(node.line, node.column)
    return Pos(node.line, node.column)


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


class _ToStatements(Transformer_NonRecursive):
    """Parse tree -> list of :class:`Statement` (one list per source line).

    Non-recursive, so a deeply nested expression cannot overflow Python's
    stack; :meth:`_Assembler.evaluate` then refuses nesting beyond MAX_DEPTH.
    """

    def __init__(self, lines: list[str]):
        super().__init__()
        self._lines = lines
        self.errors: list[Diagnostic] = []

    def start(self, lines):
        return [stmt for line in lines for stmt in line]

    @v_args(meta=True)
    def line(self, meta, children):
        text = self._lines[meta.line - 1].strip() if getattr(meta, "line", None) else ""
        out = []
        for child in children:
            if child is not None:
                child.line_text = text
                out.append(child)
        return out

    def label(self, children):
        (name,) = children
        return Statement("label", str(name), [], _pos(name))

    def instruction(self, children):
        name, operands = children
        return Statement("instruction", str(name).lower(), operands or [], _pos(name))

    def directive(self, children):
        name, arguments = children
        return Statement("directive", str(name).lower(), arguments or [], _pos(name))

    def operands(self, children):
        return list(children)

    arguments = operands

    def register(self, children):
        (token,) = children
        return Reg(_register_index(str(token)), _pos(token))

    @v_args(meta=True)
    def mem_reg(self, meta, children):
        base, sign, expr = children
        terms = [] if sign is None else [(str(sign), expr)]
        return Mem(_register_index(str(base)), terms, Pos(meta.line, meta.column))

    @v_args(meta=True)
    def mem_abs(self, meta, children):
        return Mem(None, [("+", children[0])], Pos(meta.line, meta.column))

    def _quoted(self, token) -> str | None:
        """The unescaped body of a string or character literal; None (and the
        error recorded) for an unknown escape."""
        try:
            return _unescape(str(token)[1:-1], _pos(token))
        except _LiteralError as exc:
            self.errors.append(Diagnostic(exc.pos, exc.message))
            return None

    def string(self, children):
        (token,) = children
        text = self._quoted(token)
        return Str((text or "").encode("utf-8"), _pos(token))

    def number(self, children):
        (token,) = children
        text = str(token)
        base = {"0x": 16, "0X": 16, "0b": 2, "0B": 2}.get(text[:2], 10)
        return Num(int(text[2:] if base != 10 else text, base), _pos(token))

    def char(self, children):
        (token,) = children
        pos = _pos(token)
        text = self._quoted(token)
        if text is None:
            return Num(0, pos)
        if len(text) != 1:
            self.errors.append(Diagnostic(pos, "a character literal holds exactly one character"))
            return Num(0, pos)
        return Num(ord(text), pos)

    def name(self, children):
        (token,) = children
        return Name(str(token), _pos(token))

    def binop(self, children):
        left, op, right = children
        return BinOp(str(op), left, right, _pos(op))

    def unop(self, children):
        op, operand = children
        return UnOp(str(op), operand, _pos(op))

    @v_args(meta=True)
    def deref(self, meta, children):
        return Deref(children[0], Pos(meta.line, meta.column))

    def expr_start(self, children):
        return children[0]


# --- stage 3: two passes -------------------------------------------------------

class _Fail(Exception):
    """Raised inside a pass to record one diagnostic and skip the statement."""

    def __init__(self, pos: Pos, message: str):
        self.diagnostic = Diagnostic(pos, message)


@dataclass
class _Symbol:
    section: str              # "text" | "data" | "equ"
    value: int | None
    pos: Pos
    expr: object = None       # for .equ, evaluated on first use


_DATA_DIRECTIVES = {".word", ".byte", ".ascii", ".asciz", ".space", ".align"}
_DIRECTIVES = _DATA_DIRECTIVES | {".text", ".data", ".equ", ".entry"}

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
    statements: list
    symbols: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    instructions: list = field(default_factory=list)   # Statement per pc
    data_items: list = field(default_factory=list)     # (offset, Statement)
    data_size: int = 0
    entry: Statement | None = None
    _evaluating: set = field(default_factory=set)

    def fail(self, exc: _Fail) -> None:
        self.errors.append(exc.diagnostic)

    # pass 1 -------------------------------------------------------------------
    def layout(self) -> None:
        section = "text"
        for stmt in self.statements:
            try:
                if stmt.kind == "label":
                    where = len(self.instructions) if section == "text" else self.data_size
                    self.define(stmt.name, _Symbol(section, where, stmt.pos))
                elif stmt.kind == "instruction":
                    if section != "text":
                        raise _Fail(stmt.pos, f"instruction '{stmt.name}' in the .data section; "
                                              "put instructions after .text")
                    if stmt.name not in isa.MNEMONICS:
                        hint = _suggest(stmt.name, isa.MNEMONICS)
                        if not hint and not stmt.args:
                            hint = " (a label needs a ':' after its name)"
                        raise _Fail(stmt.pos, f"unknown mnemonic '{stmt.name}'{hint}")
                    self.instructions.append(stmt)
                else:
                    section = self.directive_layout(stmt, section)
            except _Fail as exc:
                self.fail(exc)

    def define(self, name: str, symbol: _Symbol) -> None:
        if REGISTER_LIKE.match(name):
            raise _Fail(symbol.pos, f"'{name}' is a register name and cannot be a label or .equ name")
        if name in self.symbols:
            first = self.symbols[name].pos
            raise _Fail(symbol.pos, f"'{name}' is already defined at line {first.line}")
        self.symbols[name] = symbol

    def directive_layout(self, stmt: Statement, section: str) -> str:
        name, args = stmt.name, stmt.args
        if name not in _DIRECTIVES:
            raise _Fail(stmt.pos, f"unknown directive '{name}'" + _suggest(name, _DIRECTIVES))
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
                raise _Fail(stmt.pos, f".entry is already given at line {self.entry.pos.line}")
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
            raise _Fail(name.pos, f"undefined name '{name.name}'" + _suggest(name.name, self.symbols))
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
        for stmt in self.instructions:
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
            for i, arg in enumerate(args):
                v = self.value(arg) & isa.WORD_MASK
                data[offset + 4 * i: offset + 4 * i + 4] = v.to_bytes(4, "little")
        elif name == ".byte":
            for i, arg in enumerate(args):
                v = self.evaluate(arg)
                if not -128 <= v <= 255:
                    raise _Fail(arg.pos, f".byte value {v} does not fit in a byte (-128 .. 255)")
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
        fields += [0] * (3 - len(fields))
        return (opcode, *fields)

    def wrong_kind(self, stmt, index, kind, operand) -> _Fail:
        if isinstance(operand, Name) and re.fullmatch(r"(?i)r\d+", operand.name):
            return _Fail(operand.pos, f"'{operand.name}' is not a register "
                                      "(registers are r0..r15 and sp)")
        return _Fail(operand.pos, f"operand {index} of '{stmt.name}' must be "
                                  f"{_OPERAND_WORDS[kind]}, not {_kind_of(operand)}")

    def memory_operand(self, mem: Mem) -> list[int]:
        total = 0
        for sign, expr in mem.terms:
            if isinstance(expr, (Reg, Mem)):
                raise _Fail(mem.pos, "a memory operand is [reg], [reg + expr], [reg - expr] or [expr]")
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


def _suggest(word: str, choices) -> str:
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
    builder = _ToStatements([text])
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

def assemble(source: str, filename: str = "<source>") -> Image:
    """Assemble ``source``; raises :class:`AssemblyError` listing every error."""
    text = source if source.endswith("\n") else source + "\n"
    lines = text.split("\n")
    try:
        tree = _parse_source(text)
    except UnexpectedInput as exc:
        diag, context = _parse_error(exc, text)
        raise AssemblyError(filename, text, [diag], {id(diag): context}) from None
    builder = _ToStatements(lines)
    statements = builder.transform(tree)
    asm = _Assembler(filename, statements)
    asm.errors.extend(builder.errors)
    asm.layout()
    if not asm.instructions and not asm.errors:
        asm.errors.append(Diagnostic(Pos(1, 1), "the program has no instructions "
                                                "(a program needs at least one, e.g. 'halt')"))
    image = asm.encode()
    if asm.errors:
        errors = sorted(asm.errors, key=lambda d: (d.pos.line, d.pos.column))
        if len(errors) > MAX_ERRORS:
            errors = errors[:MAX_ERRORS]
        raise AssemblyError(filename, text, errors)
    return image


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
