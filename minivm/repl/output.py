"""One text stream for the session's messages and the guest's console bytes."""

from __future__ import annotations

import codecs
import sys

from ..errors import show


class Output:
    """The session's text and the guest's console, in the order they happen.

    The guest may leave a line unfinished (``out 0x01, r1`` with no newline);
    the session's next message then starts on a fresh line, and the newline
    the guest prints next is not doubled.
    """

    def __init__(self, stream=None):
        self._stream = stream
        self.at_line_start = True
        self._broke_guest_line = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def text(self, message: str = "") -> None:
        """One of the session's messages. Every string from a file is escaped
        where the message is made; as a second line of defence nothing but
        the message's own line breaks (and tabs) reaches the terminal raw."""
        message = show(message, keep="\n\t")
        if not self.at_line_start:
            self.stream.write("\n")
            self.at_line_start = True
            self._broke_guest_line = True
        self.stream.write(message if message.endswith("\n") else message + "\n")

    def guest(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if not text:
            return
        if self._broke_guest_line and text.startswith("\n"):
            text = text[1:]
        self._broke_guest_line = False
        if text:
            self.stream.write(text)
            self.at_line_start = text.endswith("\n")

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, OSError, ValueError):
            return False

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


class GuestSink:
    """The machine's console sink: guest output goes straight to the session's stream."""

    def __init__(self, output: Output):
        self._output = output

    def write(self, data: bytes) -> None:
        self._output.guest(data)

    def flush(self) -> None:
        self._output.flush()
