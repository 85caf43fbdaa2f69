"""Image -> assembly text that reassembles to the same code, data, entry and symbols.

Used by ``minivm disasm``, ``--trace`` and the REPL. Code targets are shown
by label where the image has one; everything else is shown as a number, so
that reassembling gives back the same code, data, entry and symbols.

Symbol names and values are checked by the image loader (image.py) to be
what the assembler can write; the only text from the file that reaches the
listing otherwise is in comments (the title, the source file's name), shown
escaped, so that no character in it can end the comment or forge a line.
"""

from __future__ import annotations

from . import isa
from .errors import show
from .isa import BASE, IMM, OFFSET, PORT, REG, TARGET, to_signed


def _imm(value: int) -> str:
    signed = to_signed(value)
    if signed < 0:
        return str(signed)
    return str(value) if value < 0x10000 else hex(value)


def _offset_operand(base: int, offset: int) -> str:
    if base == isa.ZERO_REG:
        return f"[{_imm(offset)}]" if to_signed(offset) >= 0 else f"[{offset}]"
    reg = isa.reg_name(base)
    signed = to_signed(offset)
    if signed == 0:
        return f"[{reg}]"
    if signed < 0:
        return f"[{reg} - {-signed}]"
    return f"[{reg} + {_imm(offset)}]"


def format_instruction(image, pc: int, labels: dict[int, list[str]] | None = None) -> str:
    """One instruction as assembly text (without label or comment)."""
    op, a, b, c = image.code[pc]
    spec = isa.OPCODES[op]
    if labels is None:
        labels = image.code_labels()
    values = (a, b, c)
    parts = []
    i = 0
    while i < len(spec.fields):
        kind = spec.fields[i]
        value = values[i]
        if kind == REG:
            parts.append(isa.reg_name(value))
        elif kind == BASE:
            parts.append(_offset_operand(value, values[i + 1]))
            i += 1                          # the offset belongs to this operand
        elif kind == TARGET:
            names = labels.get(value)
            parts.append(sorted(names)[0] if names else str(value))
        elif kind == PORT:
            parts.append(f"0x{value:02x}")
        elif kind in (IMM, OFFSET):
            parts.append(_imm(value))
        i += 1
    return spec.mnemonic + (" " + ", ".join(parts) if parts else "")


def _data_lines(image) -> list[str]:
    data = image.data
    marks: dict[int, list[str]] = {}
    for name, (section, value) in image.symbols.items():
        if section == "data":
            marks.setdefault(value, []).append(name)
    cuts = sorted({0, len(data), *[v for v in marks if v <= len(data)]})
    lines = []
    for start, end in zip(cuts, cuts[1:] + [None]):
        for name in sorted(marks.get(start, [])):
            lines.append(f"{name}:")
        if end is None:
            break
        pos = start
        while pos < end:
            if data[pos] == 0:
                run = pos
                while run < end and data[run] == 0:
                    run += 1
                if run - pos >= 8:
                    lines.append(f"    .space {run - pos}")
                    pos = run
                    continue
            chunk = data[pos:min(end, pos + 16)]
            zero_at = chunk.find(bytes(8))
            if zero_at > 0:
                chunk = chunk[:zero_at]
            lines.append("    .byte " + ", ".join(f"0x{x:02x}" for x in chunk))
            pos += len(chunk)
    for value in sorted(v for v in marks if v > len(data)):
        for name in sorted(marks[value]):
            lines.append(f"{name}:  ; beyond the data (points past its end)")
    return lines


def listing(image, title: str = "") -> str:
    labels = image.code_labels()
    out = [f"; minivm disassembly{' of ' + show(title) if title else ''}: "
           f"{len(image.code)} instructions, {len(image.data)} data bytes"]
    for name, (section, value) in sorted(image.symbols.items()):
        if section == "equ":
            out.append(f".equ {name}, {value}")
    if image.entry != 0:
        names = labels.get(image.entry)
        out.append(f".entry {sorted(names)[0] if names else image.entry}")
    out.append(".text")
    width = 32
    for pc in range(len(image.code)):
        for name in sorted(labels.get(pc, [])):
            out.append(f"{name}:")
        text = "    " + format_instruction(image, pc, labels)
        out.append(f"{text:<{width}} ; {pc:>4}  {show(image.location(pc))}")
    for value in sorted(v for v in labels if v >= len(image.code)):
        for name in sorted(labels[value]):
            out.append(f"{name}:")
    data_lines = _data_lines(image)
    if data_lines:
        out.append(".data")
        out += data_lines
    return "\n".join(out) + "\n"
