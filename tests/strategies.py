"""Hypothesis strategies for minivm: random valid programs and expressions.

Import from other tests::

    from strategies import programs, expressions, MAX_TICKS

* :func:`programs` draws assembly source text (``str``) of a valid program
  that always terminates within :data:`MAX_TICKS` ticks.
* :func:`expressions` draws ``(text, value)``: an assembler integer expression
  and its exact value under docs/isa.md, section 2 (C precedence, ``/`` and ``%``
  truncating toward zero, no wrapping); the value may lie outside the 32-bit
  range, in which case the assembler must reject it.

Nothing here imports minivm: the strategies are pure text generators, so they
can test any component (assembler, interpreter, disassembler, checkpoints).
"""

from __future__ import annotations

from hypothesis import strategies as st

MASK = 0xFFFF_FFFF
#: Upper bound on the ticks any program from :func:`programs` runs.
MAX_TICKS = 20_000

#: Registers that hold random values (r11..r15 have fixed jobs, see below).
VALUE_REGS = tuple(f"r{i}" for i in range(11))
SCRATCH = "r11"      # made non-zero right before it is used as a divisor
COUNTER = "r12"      # loop counter, only written by loop heads and tails
BASE = "r13"         # points into the middle of the scratch buffer
TARGET = "r14"       # holds a code address for `jmp r14` / `call r14`
# r15 (sp) is only changed by balanced push/pop and call/ret.

BUF_SIZE = 64        # bytes in the scratch buffer `buf`
BASE_OFFSET = 32     # BASE = buf + BASE_OFFSET

ALU_OPS = ("add", "sub", "mul", "and", "or", "xor", "shl", "shr", "sar")
BRANCH_OPS = ("beq", "bne", "blt", "ble", "bgt", "bge")

_SPECIAL_VALUES = (0, 1, 2, -1, -2, 31, 32, 33, 0x7FFFFFFF, -0x80000000, 0x80000000,
                   0xFFFFFFFF, 0xFFFF, 0x10000, 255, 256)

imm32 = st.one_of(
    st.integers(-(1 << 31), MASK),
    st.sampled_from(_SPECIAL_VALUES),
    st.integers(-20, 20),
)


# --- small text helpers ------------------------------------------------------------

_CHAR_ESCAPES = {10: r"\n", 9: r"\t", 13: r"\r", 0: r"\0", 92: "\\\\", 39: r"\'"}


def _char_literal(value: int) -> str | None:
    if value in _CHAR_ESCAPES:
        return f"'{_CHAR_ESCAPES[value]}'"
    if 32 <= value < 127:
        return f"'{chr(value)}'"
    return None


def _number(draw, value: int, *, allow_char: bool = True) -> str:
    """``value`` written in one of the literal forms (decimal, hex, binary, char)."""
    magnitude, sign = abs(value), "-" if value < 0 else ""
    forms = ["dec", "hex", "HEX", "bin"]
    if allow_char and not sign and _char_literal(magnitude) is not None:
        forms.append("char")
    form = draw(st.sampled_from(forms))
    if form == "dec":
        body = str(magnitude)
    elif form == "hex":
        body = hex(magnitude)
    elif form == "HEX":
        body = "0X" + format(magnitude, "X")
    elif form == "bin":
        body = bin(magnitude)
    else:
        body = _char_literal(magnitude)
    return sign + body


def _case(draw, word: str) -> str:
    """Mnemonics, directives and registers are case-insensitive (docs/isa.md, section 2)."""
    return draw(st.sampled_from([word, word, word, word.upper()]))


class _Ctx:
    """What has been generated so far: label counter, equ constants, subroutines."""

    def __init__(self, allow_faults: bool):
        self.allow_faults = allow_faults
        self.labels = 0
        self.equs: dict[str, int] = {}
        self.subs: list[str] = []

    def label(self, stem: str = "L") -> str:
        self.labels += 1
        return f"{stem}{self.labels}"


def _reg(draw, regs=VALUE_REGS) -> str:
    return _case(draw, draw(st.sampled_from(regs)))


def _imm(draw, ctx: _Ctx, value=None) -> str:
    """An immediate operand: a literal, an .equ name, or a small expression."""
    if value is None:
        value = draw(imm32)
    choice = draw(st.integers(0, 9))
    if choice == 0 and ctx.equs:
        name = draw(st.sampled_from(sorted(ctx.equs)))
        return name
    if choice == 1 and 0 <= value < (1 << 31):
        # an expression with the same value, to exercise the expression parser
        k = draw(st.integers(0, 100))
        return f"({_number(draw, value + k)} - {k})"
    return _number(draw, value)


def _src(draw, ctx: _Ctx) -> str:
    return _reg(draw) if draw(st.booleans()) else _imm(draw, ctx)


def _port(draw, port: int) -> str:
    return draw(st.sampled_from([f"0x{port:02x}", str(port), bin(port)]))


# --- straight-line instructions -------------------------------------------------------

def _mem_operand(draw, width: int) -> str:
    """An in-bounds operand for the scratch buffer (any alignment)."""
    top = BUF_SIZE - width
    form = draw(st.integers(0, 3))
    if form == 0:        # [BASE + k] / [BASE]
        k = draw(st.integers(0, top - BASE_OFFSET))
        return f"[{BASE}]" if k == 0 else f"[{BASE} + {k}]"
    if form == 1:        # [BASE - k]
        k = draw(st.integers(1, BASE_OFFSET))
        return f"[{BASE} - {k}]"
    k = draw(st.integers(0, top))
    if form == 2:        # [buf + k]
        return "[buf]" if k == 0 else f"[buf + {k}]"
    return f"[buf+{k}]"


def _straight(draw, ctx: _Ctx) -> list[str]:
    """A few instructions with no control flow, no faults (unless allowed)."""
    kind = draw(st.sampled_from(
        ["alu", "alu", "alu", "divmod", "mov", "unary", "load", "store", "stack",
         "out", "nop"] + (["faulty"] if ctx.allow_faults else [])))
    if kind == "alu":
        op = _case(draw, draw(st.sampled_from(ALU_OPS)))
        return [f"{op} {_reg(draw)}, {_reg(draw)}, {_src(draw, ctx)}"]
    if kind == "divmod":
        op = _case(draw, draw(st.sampled_from(["div", "mod"])))
        rd, rs = _reg(draw), _reg(draw)
        if draw(st.booleans()):
            divisor = draw(imm32.filter(lambda v: v & MASK != 0))
            return [f"{op} {rd}, {rs}, {_number(draw, divisor)}"]
        rt = _reg(draw)
        return [f"or {SCRATCH}, {rt}, 1", f"{op} {rd}, {rs}, {SCRATCH}"]
    if kind == "mov":
        return [f"{_case(draw, 'mov')} {_reg(draw)}, {_src(draw, ctx)}"]
    if kind == "unary":
        op = _case(draw, draw(st.sampled_from(["not", "neg"])))
        return [f"{op} {_reg(draw)}, {_reg(draw)}"]
    if kind == "load":
        op = draw(st.sampled_from(["ld", "ldb"]))
        return [f"{_case(draw, op)} {_reg(draw)}, {_mem_operand(draw, 4 if op == 'ld' else 1)}"]
    if kind == "store":
        op = draw(st.sampled_from(["st", "stb"]))
        return [f"{_case(draw, op)} {_reg(draw)}, {_mem_operand(draw, 4 if op == 'st' else 1)}"]
    if kind == "stack":
        n = draw(st.integers(1, 3))
        pushes = [f"push {_src(draw, ctx)}" for _ in range(n)]
        pops = [f"pop {_reg(draw)}" for _ in range(n)]
        return pushes + pops
    if kind == "out":
        port = draw(st.sampled_from([0, 1]))
        return [f"{_case(draw, 'out')} {_port(draw, port)}, {_src(draw, ctx)}"]
    if kind == "nop":
        return ["nop"]
    # kind == "faulty": may stop the program with a fault, never loops forever
    what = draw(st.integers(0, 3))
    if what == 0:
        return [f"{draw(st.sampled_from(['div', 'mod']))} {_reg(draw)}, {_reg(draw)}, {_reg(draw)}"]
    if what == 1:
        return [f"{draw(st.sampled_from(['ld', 'ldb']))} {_reg(draw)}, [{_reg(draw)}]"]
    if what == 2:
        return [f"out {draw(st.sampled_from(['0x02', '0x99', '0x12']))}, {_reg(draw)}"]
    return ["div r11, r11, 0"]


def _straight_run(draw, ctx: _Ctx, max_pieces: int) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, max_pieces))):
        lines += _straight(draw, ctx)
    return lines


def _call(draw, ctx: _Ctx) -> list[str]:
    name = draw(st.sampled_from(ctx.subs))
    if draw(st.booleans()):
        return [f"{_case(draw, 'call')} {name}"]
    return [f"mov {TARGET}, {name}", f"call {TARGET}"]


def _body(draw, ctx: _Ctx) -> list[str]:
    """Straight-line code, possibly with calls to (leaf) subroutines."""
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        if ctx.subs and draw(st.integers(0, 3)) == 0:
            lines += _call(draw, ctx)
        else:
            lines += _straight(draw, ctx)
    return lines


# --- blocks with control flow ------------------------------------------------------------

def _loop(draw, ctx: _Ctx) -> list[str]:
    """A counted loop on COUNTER; the body never writes COUNTER."""
    top = ctx.label("loop")
    n = draw(st.integers(0, 12))
    body = _body(draw, ctx)
    if draw(st.booleans()):       # count down; runs max(n, 1) times
        head = [f"mov {COUNTER}, {n}"]
        tail = [f"sub {COUNTER}, {COUNTER}, 1",
                f"{draw(st.sampled_from(['bgt', 'BGT']))} {COUNTER}, 0, {top}"]
    else:                         # count up; runs max(n, 1) times
        head = [f"mov {COUNTER}, 0"]
        tail = [f"add {COUNTER}, {COUNTER}, 1",
                f"blt {COUNTER}, {_number(draw, n, allow_char=False)}, {top}"]
    if draw(st.booleans()):
        return head + [f"{top}:"] + body + tail
    return head + [f"{top}: {body[0]}"] + body[1:] + tail


def _forward_branch(draw, ctx: _Ctx) -> list[str]:
    skip = ctx.label("skip")
    op = _case(draw, draw(st.sampled_from(BRANCH_OPS)))
    cond = f"{op} {_reg(draw)}, {_src(draw, ctx)}, {skip}"
    return [cond] + _body(draw, ctx) + [f"{skip}:"]


def _forward_jump(draw, ctx: _Ctx) -> list[str]:
    over = ctx.label("over")
    dead = _straight_run(draw, ctx, 2)
    if draw(st.booleans()):
        jump = [f"{_case(draw, 'jmp')} {over}"]
    else:
        jump = [f"mov {TARGET}, {over}", f"jmp {TARGET}"]
    return jump + dead + [f"{over}: nop"]


def _block(draw, ctx: _Ctx) -> list[str]:
    kind = draw(st.sampled_from(["straight", "straight", "loop", "branch", "jump", "call"]))
    if kind == "loop":
        return _loop(draw, ctx)
    if kind == "branch":
        return _forward_branch(draw, ctx)
    if kind == "jump":
        return _forward_jump(draw, ctx)
    if kind == "call" and ctx.subs:
        return _call(draw, ctx)
    return _straight_run(draw, ctx, 3)


def _data_chunk(draw, ctx: _Ctx) -> list[str]:
    """Some extra initialised data, with labels, in a .data section."""
    lines = [_case(draw, ".data")]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["word", "byte", "ascii", "asciz", "space", "align"]))
        label = f"{ctx.label('d')}: " if draw(st.booleans()) else ""
        if kind == "word":
            values = draw(st.lists(imm32, min_size=1, max_size=4))
            lines.append(f"{label}.word " + ", ".join(_number(draw, v) for v in values))
        elif kind == "byte":
            values = draw(st.lists(st.integers(-128, 255), min_size=1, max_size=6))
            lines.append(f"{label}.byte " + ", ".join(_number(draw, v) for v in values))
        elif kind in ("ascii", "asciz"):
            pieces = list("abcXYZ 019;,:[]'") + ["\\n", "\\t", "\\0", "\\\\", '\\"', "\\'"]
            text = "".join(draw(st.lists(st.sampled_from(pieces), max_size=8)))
            lines.append(f'{label}.{kind} "{text}"')
        elif kind == "space":
            lines.append(f"{label}.space {draw(st.integers(0, 20))}")
        else:
            lines.append(f"{label}.align {draw(st.sampled_from([1, 2, 4, 8, 16]))}")
    lines.append(_case(draw, ".text"))
    return lines


@st.composite
def programs(draw, allow_faults: bool = False, max_blocks: int = 12) -> str:
    """Assembly source of a random valid program that terminates.

    The program mixes straight-line ALU operations on r0..r10 with random
    32-bit immediates (decimal, hex, binary, character literals, ``.equ``
    names and small expressions), ``div``/``mod`` by non-zero divisors,
    loads and stores (words unaligned too) into a 64-byte buffer ``buf``
    through ``[r13 ± k]`` and ``[buf + k]``, balanced push/pop groups,
    counted loops on r12 (at most 12 iterations, not nested), forward
    branches and jumps (by label or through r14), calls to leaf subroutines
    (by label or through r14), ``out 0x00``/``out 0x01`` prints, comments,
    labels alone or sharing a line, mixed-case mnemonics, extra ``.data``
    chunks between code and sometimes an ``.entry`` with the subroutines
    placed first. It ends by printing a newline, then every register (r0..r14
    and sp, signed decimal, each followed by a space), a newline and ``halt``,
    so the last line of the output is the final register state.

    Guarantees with ``allow_faults=False``: it assembles, never faults, and
    halts within :data:`MAX_TICKS` ticks with the default 1 MiB of memory.
    With ``allow_faults=True`` it may also divide by a register that can be
    zero, load through an arbitrary register, or use a wrong or unknown port,
    so it may stop with a fault instead, but it still stops within
    :data:`MAX_TICKS` (loads cannot corrupt return addresses).

    ``max_blocks`` is the most top-level blocks (straight runs, loops,
    branches, jumps, calls); the worst case is about 1,320 ticks per block,
    so the :data:`MAX_TICKS` bound holds for the default of 12.
    """
    ctx = _Ctx(allow_faults)
    lines: list[str] = [f"; generated program (allow_faults={allow_faults})"]
    equ_after: list[str] = []
    for i in range(draw(st.integers(0, 3))):
        name = f"K{i}"
        value = draw(imm32)
        ctx.equs[name] = value
        line = f".equ {name}, {_number(draw, value)}"
        # an .equ may be used before its definition
        (equ_after if draw(st.booleans()) else lines).append(line)

    subs_first = draw(st.booleans())
    ctx.subs = [f"sub{i}" for i in range(draw(st.integers(0, 3)))]
    subroutines: list[str] = []
    for name in ctx.subs:
        inner = _Ctx(allow_faults)
        inner.equs = ctx.equs
        body = _straight_run(draw, inner, 4)
        subroutines += [f"{name}:"] + body + [_case(draw, "ret")]

    main: list[str] = [f"mov {BASE}, buf + {BASE_OFFSET}"]
    for _ in range(draw(st.integers(1, max_blocks))):
        main += _block(draw, ctx)
        if draw(st.integers(0, 7)) == 0:
            main += _data_chunk(draw, ctx)
    main.append("out 0x00, 10")      # the register dump is the last line
    for i in range(16):
        name = "sp" if i == 15 else f"r{i}"
        main += [f"out 0x01, {name}", "out 0x00, ' '"]
    main += ["out 0x00, '\\n'", _case(draw, "halt")]

    if subs_first and ctx.subs:
        lines += [".entry main"] + subroutines + ["main:"] + main
    else:
        lines += main + subroutines
    lines += [".data", f"buf: .space {BUF_SIZE}" if draw(st.booleans())
              else "buf: .word " + ", ".join(_number(draw, draw(imm32)) for _ in range(16))]
    if draw(st.booleans()):
        lines += _data_chunk(draw, ctx)
    lines += equ_after

    out = []
    for line in lines:
        indent = "" if line.endswith(":") or line.startswith(";") else "    "
        comment = "  ; note" if draw(st.integers(0, 15)) == 0 else ""
        out.append(f"{indent}{line}{comment}")
    return "\n".join(out) + "\n"


# --- expressions ---------------------------------------------------------------------------

#: C precedence of each binary operator (higher binds tighter).
PRECEDENCE = {"*": 10, "/": 10, "%": 10, "+": 9, "-": 9, "<<": 8, ">>": 8,
              "&": 7, "^": 6, "|": 5}
_UNARY_PREC = 11
_ATOM_PREC = 12
#: Intermediate values stay below this, far from any sane implementation limit.
_VALUE_LIMIT = 1 << 100


def c_div(a: int, b: int) -> int:
    """C division: truncates toward zero."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def c_mod(a: int, b: int) -> int:
    """C remainder: has the sign of the dividend."""
    return a - c_div(a, b) * b


def c_binary(op: str, a: int, b: int) -> int:
    """Exact value of ``a op b`` (the reference evaluator)."""
    return {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
        "/": lambda: c_div(a, b), "%": lambda: c_mod(a, b),
        "<<": lambda: a << b, ">>": lambda: a >> b,
        "&": lambda: a & b, "^": lambda: a ^ b, "|": lambda: a | b,
    }[op]()


def c_unary(op: str, a: int) -> int:
    return {"-": -a, "+": a, "~": ~a}[op]


def _space(draw) -> str:
    return draw(st.sampled_from(["", " ", " ", "  ", "\t"]))


def _wrap(draw, node, need: bool):
    prec, text, value = node
    if need or draw(st.integers(0, 5)) == 0:
        return f"({_space(draw)}{text}{_space(draw)})"
    return text


@st.composite
def _leaf(draw):
    value = draw(st.one_of(st.integers(0, 20), st.integers(0, MASK),
                           st.integers(0, (1 << 34)), st.sampled_from(_SPECIAL_VALUES)))
    if value < 0:
        return (_UNARY_PREC, "-" + _number(draw, -value), value)
    return (_ATOM_PREC, _number(draw, value), value)


@st.composite
def _tree(draw, depth: int):
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(_leaf())
    if draw(st.integers(0, 4)) == 0:
        op = draw(st.sampled_from(["-", "~"]))
        child = draw(_tree(depth - 1))
        text = _wrap(draw, child, child[0] < _UNARY_PREC)
        sep = draw(st.sampled_from(["", " "]))
        return (_UNARY_PREC, f"{op}{sep}{text}", c_unary(op, child[2]))
    op = draw(st.sampled_from(sorted(PRECEDENCE)))
    left = draw(_tree(depth - 1))
    if op in ("<<", ">>"):
        count = draw(st.integers(0, 40))
        right = (_ATOM_PREC, _number(draw, count, allow_char=False), count)
    else:
        right = draw(_tree(depth - 1))
    if op in ("/", "%") and right[2] == 0:
        op = "+"
    value = c_binary(op, left[2], right[2])
    if abs(value) >= _VALUE_LIMIT:
        op = "^"
        value = c_binary(op, left[2], right[2])
    prec = PRECEDENCE[op]
    ltext = _wrap(draw, left, left[0] < prec)
    rtext = _wrap(draw, right, right[0] <= prec)
    return (prec, f"{ltext}{_space(draw)}{op}{_space(draw)}{rtext}", value)


@st.composite
def expressions(draw, max_depth: int = 4):
    """``(text, value)``: a random integer expression and its exact value.

    Trees of ``+ - * / % & | ^ << >>`` and unary ``- ~`` over decimal, hex,
    binary and character literals, printed with only the parentheses C
    precedence needs plus some extra ones, and random spacing. Division and
    remainder by zero are never generated; shift counts are 0..40 and every
    intermediate value stays below 2^100 in magnitude. ``value`` is computed
    with C semantics on unbounded integers (``/`` and ``%`` truncate toward
    zero, ``>>`` is an arithmetic shift), so it may be outside -2^31..2^32-1.
    """
    _, text, value = draw(_tree(max_depth))
    return text, value
