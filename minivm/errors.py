"""Errors a user can cause, each with a message fit to print as is.

Everything a user can get wrong (a bad program, a corrupt file, a guest
fault) raises a subclass of :class:`MinivmError`; the CLI and the REPL print
its message and never a traceback.
"""


def show(text, keep: str = "") -> str:
    """A string from a file (a path, a name, a source line), fit to print in a
    message: every unprintable character is escaped as Python writes it (\\n,
    \\x1b, \\u200b), so a file cannot move the cursor or clear the terminal.
    Characters in ``keep`` stay as they are (a tab in a source line that a
    caret is drawn under)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else repr(ch)[1:-1] for ch in text)


def reason(exc: BaseException) -> str:
    """Why an operation failed, for a message: an OSError's own words
    ("No space left on device"), else the exception's text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class MinivmError(Exception):
    """An error with a user-facing, one-paragraph message."""


class FormatError(MinivmError):
    """A file (image, checkpoint, overlay) is unreadable, corrupt or foreign."""


class OutOfMemory(MinivmError):
    """The host ran out of memory for a valid file (a memory limit, a small
    machine): not the file's fault, so never reported as a corrupt file."""

    def __init__(self, what: str, size: int | None = None):
        held = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"out of memory while loading {what}{held}: the file is not known "
                         "to be bad; give minivm more memory (a higher ulimit -v, a "
                         "container's memory limit) or free some")


class DiskError(MinivmError):
    """A disk image or overlay is missing, has the wrong size, or changed."""


class GuestFault(MinivmError):
    """The guest did something the machine forbids (docs/isa.md, section 6).

    Raised with just a ``reason`` by memory and devices; the machine adds the
    pc, tick and source location before it reaches the user.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.pc: int | None = None
        self.tick: int | None = None
        self.location: str = ""
        self.source: str = ""

    def locate(self, pc: int, tick: int, location: str, source: str) -> "GuestFault":
        self.pc, self.tick, self.location, self.source = pc, tick, location, source
        self.args = (str(self),)
        return self

    def __str__(self) -> str:
        if self.pc is None:
            return f"fault: {self.reason}"
        # the location and the source line come from the image's file
        text = f"{show(self.location)}: fault: {self.reason} (pc {self.pc}, tick {self.tick})"
        if self.source:
            text += f"\n    {show(self.source, keep=chr(9))}"
        return text
