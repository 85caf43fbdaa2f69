"""Small text helpers for command lines: argument splitting, counts, escapes."""

from __future__ import annotations

import re

from ..errors import MinivmError


class CommandError(MinivmError):
    """A bad command line: printed as one line, the session goes on."""


def split_args(text: str) -> list[str]:
    """Split on spaces outside (), [] and quotes: ``x (buf + 4) 16`` is two arguments."""
    args, current, depth, quote = [], "", 0, None
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch in "([":
            depth += 1
            current += ch
        elif ch in ")]":
            depth -= 1
            current += ch
        elif ch.isspace() and depth <= 0:
            if current:
                args.append(current)
            current = ""
        else:
            current += ch
    if current:
        args.append(current)
    return args


def strip_comment(text: str) -> str:
    """Source text without its ``;`` comment (quotes respected)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            return text[:i].rstrip()
    return text.rstrip()


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unescape(text: str) -> bytes:
    """``input`` text: C escapes \\n \\t \\r \\0 \\\\ \\" \\xHH; the rest as UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt].encode()
                i += 2
                continue
            if nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            raise CommandError(f"unknown escape '\\{nxt}' (use \\n \\t \\r \\0 \\\\ \\\" or \\xHH)")
        out += ch.encode()
        i += 1
    return bytes(out)


def parse_count(text: str, what: str, usage: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f"'{text}' is not a number; usage: {usage}") from None
    if value < 1:
        raise CommandError(f"{what} must be at least 1; usage: {usage}")
    return value
