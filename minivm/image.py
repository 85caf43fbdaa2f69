"""The bytecode image: what the assembler produces and the machine loads.

An image holds the encoded code (``(opcode, a, b, c)`` per instruction, see
isa.py), the initial data bytes, the entry point, a source map (file, line
and text of each instruction) and the symbol table. It is saved as a
versioned container (container.py) and validated field by field on load, so a
hand-made image can never give the interpreter an opcode or operand it does
not expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import isa
from .container import (is_container, pack, read_container, read_file_capped,
                        unpack_bounded, write_atomically)
from .errors import FormatError, OutOfMemory, show

IMAGE_KIND = "image"
IMAGE_VERSION = 1
MAX_CODE = 1 << 20        # instructions
MAX_DATA = 64 << 20       # bytes of initial data
MAX_TEXT = 4096           # characters in the source file's name, a source line, a symbol
#: A symbol's name as the assembler spells one (grammar.lark NAME), and the
#: names it refuses because they are registers: a name outside this set would
#: make a listing that does not reassemble, or reassembles to another program.
SYMBOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
REGISTER_LIKE = re.compile(r"(?i)(r\d+|sp)")
#: The values an ``.equ`` may have (the assembler's 32-bit range).
MIN_EQU, MAX_EQU = -(1 << 31), (1 << 32) - 1

_FIELD_LIMIT = {isa.REG: isa.NUM_REGS - 1, isa.BASE: isa.ZERO_REG,
                isa.IMM: isa.WORD_MASK, isa.OFFSET: isa.WORD_MASK,
                isa.TARGET: isa.WORD_MASK, isa.PORT: isa.WORD_MASK}


@dataclass
class Image:
    code: list[tuple[int, int, int, int]]
    data: bytes = b""
    entry: int = 0
    source_file: str = "<unknown>"
    lines: list[int] = field(default_factory=list)        # per instruction
    texts: list[str] = field(default_factory=list)        # per instruction
    symbols: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (section, value)
    #: A program with ``.include``: every file its code came from (the main
    #: one first) and, per instruction, the index of its file in ``files``;
    #: both empty when all the code is from ``source_file``.
    files: list[str] = field(default_factory=list)
    file_ids: list[int] = field(default_factory=list)
    #: ``[path, sha256]`` of each included file, for the assembly cache (program.py).
    includes: list[list[str]] = field(default_factory=list)

    def file_of(self, pc: int) -> str:
        """The source file the instruction at ``pc`` was written in (raw)."""
        if self.file_ids and 0 <= pc < len(self.file_ids):
            return self.files[self.file_ids[pc]]
        return self.source_file

    def location(self, pc: int) -> str:
        """``file:line`` of the instruction at ``pc`` (or a note why not), for
        messages: the file's name is escaped (errors.show), as it comes from a file."""
        if 0 <= pc < len(self.lines):
            return f"{show(self.file_of(pc))}:{self.lines[pc]}"
        return f"{show(self.source_file)}: pc {pc} is outside the code"

    def source_text(self, pc: int) -> str:
        """The source line as stored (raw: escape it with errors.show to print it)."""
        return self.texts[pc] if 0 <= pc < len(self.texts) else ""

    def code_labels(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name, (section, value) in self.symbols.items():
            if section == "text":
                out.setdefault(value, []).append(name)
        return out

    def same_program(self, other: "Image") -> bool:
        """Equal code, data and entry: what a round trip must preserve."""
        return (self.code == other.code and self.data == other.data
                and self.entry == other.entry)

    # --- serialisation ------------------------------------------------------
    def to_dict(self) -> dict:
        return {"code": [list(ins) for ins in self.code], "data": bytes(self.data),
                "entry": self.entry, "source_file": self.source_file,
                "lines": list(self.lines), "texts": list(self.texts),
                "symbols": [[n, s, v] for n, (s, v) in sorted(self.symbols.items())],
                **({"files": list(self.files), "file_ids": list(self.file_ids)}
                   if self.files else {}),
                **({"includes": [list(x) for x in self.includes]} if self.includes else {})}

    def to_bytes_payload(self) -> bytes:
        return pack(self.to_dict())

    @classmethod
    def from_dict(cls, d, what: str = "the image") -> "Image":
        return _validate(d, what)

    def save(self, path: str) -> None:
        write_atomically(path, IMAGE_KIND, {"version": IMAGE_VERSION},
                         [("image", self.to_bytes_payload())])


def is_image_bytes(data: bytes) -> bool:
    return is_container(data, IMAGE_KIND)


def image_from_bytes(data: bytes, what: str) -> Image:
    try:
        container = read_container(data, IMAGE_KIND, IMAGE_VERSION, what)
        payload = container.only("image")
        return Image.from_dict(unpack_bounded(payload, what), what)
    except MemoryError:
        raise OutOfMemory(what, len(data)) from None


def load_image(path: str) -> Image:
    what = f"image file '{show(path)}'"
    return image_from_bytes(read_file_capped(path, what), what)


def _bad(what: str, why: str) -> FormatError:
    return FormatError(f"{what} is not a valid minivm image: {why}")


def _validate(d, what: str) -> Image:
    if not isinstance(d, dict):
        raise _bad(what, "its image section is not a map")
    code = d.get("code")
    if not isinstance(code, list) or not code:
        raise _bad(what, "it has no code")
    if len(code) > MAX_CODE:
        raise _bad(what, f"it has {len(code)} instructions, more than the limit of {MAX_CODE}")
    decoded = []
    nops = len(isa.OPCODES)
    for pc, ins in enumerate(code):
        if (not isinstance(ins, list) or len(ins) != 4
                or not all(type(x) is int for x in ins)):
            raise _bad(what, f"instruction {pc} is not four integers")
        op = ins[0]
        if not 0 <= op < nops:
            raise _bad(what, f"instruction {pc} has unknown opcode {op}")
        kinds = isa.OPCODES[op].fields
        for i, value in enumerate(ins[1:]):
            limit = _FIELD_LIMIT[kinds[i]] if i < len(kinds) else 0
            if not 0 <= value <= limit:
                raise _bad(what, f"instruction {pc} ({isa.OPCODES[op].mnemonic}) has "
                                 f"operand {i + 1} = {value}, outside 0..{limit}")
        decoded.append(tuple(ins))
    data = d.get("data", b"")
    if not isinstance(data, bytes) or len(data) > MAX_DATA:
        raise _bad(what, "its data is not bytes or is too large")
    entry = d.get("entry", 0)
    if type(entry) is not int or not 0 <= entry < len(code):
        raise _bad(what, f"its entry point {entry!r} is outside the code")
    source_file = d.get("source_file", "<unknown>")
    lines = d.get("lines", [])
    texts = d.get("texts", [])
    if not isinstance(source_file, str) or len(source_file) > MAX_TEXT:
        raise _bad(what, "its source file name is not a string")
    if (not isinstance(lines, list) or len(lines) != len(code)
            or not all(type(x) is int and x >= 0 for x in lines)):
        raise _bad(what, "its source map does not match its code")
    if (not isinstance(texts, list) or len(texts) != len(code)
            or not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in texts)):
        raise _bad(what, "its source text does not match its code")
    symbols = _validate_symbols(d.get("symbols", []), len(decoded), len(data), what)
    files, file_ids, includes = _validate_files(d, len(code), what)
    return Image(decoded, data, entry, source_file, lines, texts, symbols,
                 files, file_ids, includes)


def _validate_files(d: dict, ncode: int, what: str) -> tuple[list, list, list]:
    """The optional source files of a program with includes (``files``, a file
    index per instruction, and the included files' digests)."""
    files, file_ids, includes = d.get("files", []), d.get("file_ids", []), d.get("includes", [])
    if (not isinstance(files, list) or len(files) > MAX_CODE
            or not all(isinstance(f, str) and len(f) <= MAX_TEXT for f in files)):
        raise _bad(what, "its list of source files is not a list of names")
    if files and (not isinstance(file_ids, list) or len(file_ids) != ncode
                  or not all(type(i) is int and 0 <= i < len(files) for i in file_ids)):
        raise _bad(what, "its source files do not match its code")
    if not files and file_ids:
        raise _bad(what, "it gives source files per instruction but no files")
    if (not isinstance(includes, list) or len(includes) > MAX_CODE
            or not all(isinstance(x, list) and len(x) == 2
                       and all(isinstance(y, str) and len(y) <= MAX_TEXT for y in x)
                       for x in includes)):
        raise _bad(what, "its list of included files is malformed")
    return files, file_ids, includes


def _validate_symbols(raw, ncode: int, ndata: int, what: str) -> dict[str, tuple[str, int]]:
    """The symbol table, each name spelled as the assembler spells one and each
    value where its section allows (a code label at an instruction or just after
    the last, a data label inside the data or at its end, an .equ in 32 bits),
    so that the disassembly of every image the loader accepts reassembles to it."""
    if not isinstance(raw, list):
        raise _bad(what, "its symbol table is not a list")
    bounds = {"text": (0, ncode), "data": (0, ndata), "equ": (MIN_EQU, MAX_EQU)}
    symbols: dict[str, tuple[str, int]] = {}
    for entry in raw:
        if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str)
                or not isinstance(entry[1], str) or entry[1] not in bounds
                or type(entry[2]) is not int):
            raise _bad(what, "its symbol table has a malformed entry")
        name, section, value = entry
        if (len(name) > MAX_TEXT or not SYMBOL_NAME.fullmatch(name)
                or REGISTER_LIKE.fullmatch(name)):
            raise _bad(what, f"symbol '{show(name[:80])}' is not a name the assembler "
                             "accepts (a letter or '_', then letters, digits, '_' and '.'; "
                             "not a register name)")
        if name in symbols:
            raise _bad(what, f"symbol '{name}' is defined twice")
        lo, hi = bounds[section]
        if not lo <= value <= hi:
            raise _bad(what, f"symbol '{name}' ({section}) has value {value}, outside "
                             f"{lo}..{hi}")
        symbols[name] = (section, value)
    return symbols
