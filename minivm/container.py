"""The on-disk container shared by images and checkpoints.

A container is a msgpack stream::

    "minivm-<kind>"                      magic (a msgpack string)
    {"version": N, ...header...}
    [name, payload]  ...                 sections; payload is msgpack bytes
    ["end", {"sections": [[name, size, sha256], ...], "digest": sha256}]

The trailer lists a SHA-256 of every section and one over every byte before
it, so a truncated, bit-flipped or re-ordered file is refused before any
section is decoded. Files are untrusted: every unpack is bounded
(``max_buffer_size`` and friends), the whole file is size-capped before it
is read, and nothing but plain data is ever built (no pickle, no ext types).
Files are written atomically: temp file, fsync, rename, fsync of the folder.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO

import msgpack

from .errors import FormatError, MinivmError, OutOfMemory, show

#: Largest file the loader will read at all (a checkpoint of 4 GiB of touched
#: memory would be larger, but is far beyond classroom use; see docs).
MAX_FILE_BYTES = 1 << 30
#: Buffer of a file being written (a checkpoint's pages are written 4 KiB at
#: a time: one system call per 256 of them, not per two).
WRITE_BUFFER = 1 << 20
#: Largest program file (an image or an assembly source) minivm will read.
MAX_PROGRAM_BYTES = 64 << 20


def magic_of(kind: str) -> bytes:
    return msgpack.packb("minivm-" + kind)


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_bounded(data: bytes, what: str, *, max_items: int = 1 << 22):
    """Decode one msgpack object from untrusted bytes."""
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, use_list=True,
        max_buffer_size=max(len(data), 1),
        max_array_len=max_items, max_map_len=max_items,
        max_str_len=len(data), max_bin_len=len(data), max_ext_len=0)
    try:
        unpacker.feed(data)
        obj = unpacker.unpack()
        extra = unpacker.tell() != len(data)
    except MemoryError:
        raise OutOfMemory(what, len(data)) from None
    except (msgpack.OutOfData, ValueError, TypeError, msgpack.ExtraData,
            msgpack.FormatError, msgpack.StackError) as exc:
        raise FormatError(f"{what} is corrupt: {describe_msgpack_error(exc)}") from None
    if extra:
        raise FormatError(f"{what} is corrupt: unexpected bytes after its data")
    return obj


def describe_msgpack_error(exc: Exception) -> str:
    if isinstance(exc, msgpack.OutOfData):
        return "it ends too early (truncated)"
    if isinstance(exc, msgpack.StackError):
        return "its data is nested too deeply"
    text = str(exc) or type(exc).__name__
    return show(text[:200])


class ContainerWriter:
    """Writes a container section by section, atomically on :meth:`commit`.

    Sections may be added over time (a checkpoint's pages are written while
    the guest runs); the file only appears under its final name, complete,
    once :meth:`commit` has fsynced it.
    """

    def __init__(self, sink: BinaryIO, kind: str, header: dict):
        self._sink = sink
        self._digest = hashlib.sha256()
        self._index: list[list] = []
        self.bytes_written = 0
        self._write(magic_of(kind))
        self._write(pack(header))

    def _write(self, chunk: bytes) -> None:
        self._sink.write(chunk)
        self._digest.update(chunk)
        self.bytes_written += len(chunk)

    def section(self, name: str, payload: bytes) -> None:
        self._index.append([name, len(payload), hashlib.sha256(payload).digest()])
        self._write(pack([name, payload]))

    def finish(self) -> None:
        trailer = pack(["end", {"sections": self._index,
                                "digest": self._digest.digest()}])
        self._sink.write(trailer)
        self.bytes_written += len(trailer)


@dataclass
class Container:
    kind: str
    header: dict
    sections: list[tuple[str, bytes]] = field(default_factory=list)

    def only(self, name: str) -> bytes:
        found = [p for n, p in self.sections if n == name]
        if len(found) != 1:
            raise FormatError(f"the {self.kind} file has {len(found)} '{name}' sections, expected 1")
        return found[0]

    def all(self, name: str) -> list[bytes]:
        return [p for n, p in self.sections if n == name]


def is_container(data: bytes, kind: str) -> bool:
    return data.startswith(magic_of(kind))


def check_format_version(header: object, version: int, what: str) -> int:
    """The format version of a file whose unpacked header is ``header``, if
    this minivm (which writes ``version``) reads it; else a FormatError."""
    if not isinstance(header, dict) or type(header.get("version")) is not int:
        raise FormatError(f"{what} is corrupt: its header has no format version")
    file_version = header["version"]
    if file_version > version:
        raise FormatError(
            f"{what} was written by a newer minivm (format {file_version}; "
            f"this minivm reads format {version} and older); upgrade minivm to load it")
    if file_version < 1:
        raise FormatError(f"{what} is corrupt: format version {file_version} is not valid")
    return file_version


def read_container(data: bytes, kind: str, version: int, what: str) -> Container:
    """Parse and verify a container of ``kind``; ``what`` names it in errors."""
    magic = magic_of(kind)
    if not data.startswith(magic):
        if not data:
            raise FormatError(f"{what} is empty")
        for other in ("image", "checkpoint", "overlay"):
            if other != kind and data.startswith(magic_of(other)):
                raise FormatError(f"{what} is a minivm {other} file, not a {kind} file")
        raise FormatError(f"{what} is not a minivm {kind} file (no 'minivm-{kind}' magic at its start)")
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, use_list=True,
        max_buffer_size=max(len(data), 1), max_array_len=4096, max_map_len=256,
        max_str_len=4096, max_bin_len=len(data), max_ext_len=0)
    unpacker.feed(data)
    try:
        unpacker.skip()  # magic
        header = unpacker.unpack()
        check_format_version(header, version, what)
        sections: list[tuple[str, bytes]] = []
        while True:
            start = unpacker.tell()
            item = unpacker.unpack()
            if (not isinstance(item, list) or len(item) != 2
                    or not isinstance(item[0], str)):
                raise FormatError(f"{what} is corrupt: a section has the wrong shape")
            name, payload = item
            if name == "end":
                _verify_trailer(data, start, payload, sections, what)
                if unpacker.tell() != len(data):
                    raise FormatError(f"{what} is corrupt: unexpected bytes after its end marker")
                return Container(kind, header, sections)
            if not isinstance(payload, bytes):
                raise FormatError(f"{what} is corrupt: section '{show(name)}' is not binary data")
            sections.append((name, payload))
    except msgpack.OutOfData:
        raise FormatError(f"{what} is incomplete: it ends before its end marker "
                          "(truncated, or still being written)") from None
    except MemoryError:
        raise OutOfMemory(what, len(data)) from None
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError,
            msgpack.ExtraData) as exc:
        raise FormatError(f"{what} is corrupt: {describe_msgpack_error(exc)}") from None


def _verify_trailer(data, end_offset, trailer, sections, what) -> None:
    if (not isinstance(trailer, dict) or not isinstance(trailer.get("sections"), list)
            or not isinstance(trailer.get("digest"), bytes)):
        raise FormatError(f"{what} is corrupt: its end marker has the wrong shape")
    if hashlib.sha256(data[:end_offset]).digest() != trailer["digest"]:
        raise FormatError(f"{what} is corrupt: its checksum does not match its contents")
    index = trailer["sections"]
    if len(index) != len(sections):
        raise FormatError(f"{what} is corrupt: its section index does not match its sections")
    for entry, (name, payload) in zip(index, sections):
        if (not isinstance(entry, list) or len(entry) != 3 or entry[0] != name
                or entry[1] != len(payload)
                or entry[2] != hashlib.sha256(payload).digest()):
            raise FormatError(f"{what} is corrupt: section '{show(name)}' fails its checksum")


def read_file_capped(path: str, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a whole untrusted file, refusing one larger than ``limit``.

    Only regular files are read (a FIFO would block, /dev/zero never ends),
    and never more than the size the file system reports plus one byte (a
    /proc file that reports 0 bytes but streams forever is refused at once).
    """
    fd, size = open_untrusted(path, what)
    with os.fdopen(fd, "rb") as f:
        if size > limit:
            raise FormatError(f"{what} is {size} bytes, more than the {limit}-byte "
                              "limit for files minivm will load")
        try:
            data = f.read(size + 1)
        except MemoryError:
            raise OutOfMemory(what, size) from None
        except OSError as exc:
            raise FormatError(f"{what} cannot be read: {exc.strerror}") from None
    if len(data) != size:
        raise FormatError(f"{what} changed size while being read")
    return data


def open_untrusted(path: str, what: str) -> tuple[int, int]:
    """Open an untrusted file for reading: (descriptor, size). Only a regular
    file, checked before the open (a FIFO blocks there) and after it (the
    path may have changed); every failure is one FormatError naming ``what``."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise FormatError(f"{what} is not a regular file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FormatError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise FormatError(f"{what} is a directory, not a file") from None
    except PermissionError:
        raise FormatError(f"{what} cannot be read: permission denied") from None
    except OSError as exc:
        raise FormatError(f"{what} cannot be read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FormatError(f"{what} is not a regular file")
    return fd, info.st_size


def read_program_file(path: str) -> bytes:
    """The bytes of a program file, an image or a source, refused as any
    untrusted file is (:func:`read_file_capped`), the path first in the message."""
    try:
        return read_file_capped(path, f"'{show(path)}'", limit=MAX_PROGRAM_BYTES)
    except FormatError as exc:
        raise MinivmError(f"{show(path)}: cannot load the program: {exc}") from None


class AtomicFile:
    """A temp file beside ``path`` that replaces it only on :meth:`commit`."""

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        fd, self.temp_path = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)        # mkstemp makes 0600; a saved file is a normal file
        self.file = os.fdopen(fd, "wb", buffering=WRITE_BUFFER)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp_path, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def abort(self) -> None:
        """Drop the temp file. Never raises: it runs after a failure (a full
        disk makes even the close's flush fail)."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass


def check_output_target(path: str, option: str, example: str) -> None:
    """Before a long run whose result goes to ``path``: its folder must exist
    and be writable, and it must not be a folder, so that the run is not lost
    to a typo at its end (``option`` names the flag in the error, ``example``
    is a file name to suggest)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MinivmError(f"{option} '{show(path)}' is a folder: give a file name, e.g. "
                          f"'{show(os.path.join(path, example))}'")
    if not os.path.isdir(folder):
        raise MinivmError(f"{option} '{show(path)}': the folder '{show(folder)}' does not exist")
    if not os.access(folder, os.W_OK):
        raise MinivmError(f"{option} '{show(path)}': the folder '{show(folder)}' is not writable")


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through an :class:`AtomicFile`; an
    I/O failure is one :class:`MinivmError` line and leaves no partial file."""
    try:
        out = AtomicFile(path)
    except OSError as exc:
        raise MinivmError(f"cannot write '{show(path)}': {exc.strerror}") from None
    try:
        out.file.write(text.encode())
        out.commit()
    except OSError as exc:
        out.abort()
        raise MinivmError(f"cannot write '{show(path)}': {exc.strerror}") from None


def fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str, kind: str, header: dict,
                     sections: list[tuple[str, bytes]]) -> None:
    out = AtomicFile(path)
    try:
        writer = ContainerWriter(out.file, kind, header)
        for name, payload in sections:
            writer.section(name, payload)
        writer.finish()
        out.commit()
    except BaseException:
        out.abort()
        raise
