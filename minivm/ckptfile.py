"""The checkpoint file: what a checkpoint holds and how it is laid out.

A checkpoint is a file of kind ``checkpoint`` (the magic and header of every
minivm container, container.py). Version 2, written since minivm 0.2, is a
stream the writer appends to while the guest runs, and a reader opens from
its end::

    "minivm-checkpoint"  {"version": 2, "name": ..., "tick": ...}
    ["image", bin]  ["state", bin]          msgpack records, as in a container
    page data                               each saved page and its CRC-32, in page order
    ["disk", bin]  ["meta", bin]  ["index", bin]
    ["end", {"sections": [[name, offset, length, sha256], ...],
             "pages": [offset, length, count], "header": sha256}]
    footer: 8 bytes "MVCKEND2" + the end record's offset (u64, little-endian)

``image``   the program image (so a checkpoint resumes on its own)
``state``   CPU and device state saved at P2: registers, timer, console,
            interrupt controller, disk queue with every in-flight request
``disk``    the checkpointed disk chain (P10): for each file, top first, its
            path (absolute, and relative to the checkpoint) and fingerprint;
            or nil when no disk is attached
``meta``    tick, pc, name, how it was taken and the measured stop window
            (``pause_us``); written last, once the pause is known
``index``   a bitmap of the saved pages (bit *i* of byte *i* // 8 = page
            *i* is saved): the *rank* of page *n* (how many saved pages come
            before it) says where it is, ``offset + rank * 4100``, without
            reading any other page; every bitmap is a valid index

Only non-zero pages are saved, each followed by the CRC-32 of its bytes
(u32, little-endian). The magic and header, and every record, have their
SHA-256 in the end record,
checked when it is read; every page its CRC-32, checked when the page is
read (lazily, on the guest's first access: resume.py). Version 1
(a msgpack stream of sections with ``pages`` chunks and one digest over the
whole file) still loads, through :func:`load_checkpoint_v1`.

Loading validates every field: the ``state`` section against the machine's
declarations (machine.MACHINE_STATE, state.py), the same that restore uses.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack

from .container import (MAX_FILE_BYTES, check_format_version, describe_msgpack_error, magic_of,
                        open_untrusted, pack, read_container, unpack_bounded)
from .devices import MAX_INFLIGHT
from .errors import FormatError, OutOfMemory, show
from .disks import MAX_CHAIN, valid_fingerprint
from .image import Image
from .machine import MACHINE_STATE
from .memory import PAGE_SIZE
from .state import MAX_TICK, Limits, StateError, show as show_value, show_int

CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_VERSION = 2
#: Version-1 files: the most sections (the container reader takes a section
#: index of at most 4096 entries, container.read_container) ...
MAX_SECTIONS = 4096
#: ... of which all but meta, image, state and disk may be ``pages`` chunks.
MAX_PAGES_SECTIONS = MAX_SECTIONS - 4
FOOTER = struct.Struct("<8sQ")
FOOTER_MAGIC = b"MVCKEND2"
#: Version 2: the records a file has, each exactly once.
RECORDS = ("image", "state", "disk", "meta", "index")
#: ... and the records it may have, at most once: ``parent``, in an
#: incremental checkpoint (the checkpoint it is a delta of).
OPTIONAL_RECORDS = ("parent",)
#: The longest chain of incremental checkpoints (a file and its parents), as
#: for disk overlays (disks.MAX_CHAIN).
MAX_PARENTS = MAX_CHAIN
#: The most bytes of the end record (it lists six records).
MAX_END_BYTES = 4096
#: The most bytes of all records together (the page data is not counted: it
#: is never read whole). As for a whole version-1 file.
MAX_RECORD_BYTES = MAX_FILE_BYTES
#: Pages read at a time by an eager load.
EAGER_CHUNK_PAGES = 256
#: A saved page's CRC-32 follows it in the page data.
CRC = struct.Struct("<I")
#: Where each saved page is: ``rank * STRIDE`` into the page data.
STRIDE = PAGE_SIZE + CRC.size
#: Bitmap bytes per precomputed rank (4096 pages).
RANK_BLOCK = 512


@dataclass
class Checkpoint:
    meta: dict
    image: Image
    state: dict
    disk: dict | None
    pages: Mapping = field(default_factory=dict)   # page index -> bytes (SavedPages for v2)
    source: str = ""
    file_size: int = 0
    path: str | None = None        # the file it was read from, if any
    format_version: int = CHECKPOINT_VERSION
    #: an incremental checkpoint's parent record (path, relpath, size,
    #: end_sha256, name, tick), None for a standalone file
    parent: dict | None = None
    #: this file's own identity, as a child records it: size and end_sha256
    identity: dict | None = None
    #: the pages this file itself holds (``pages`` is the whole chain's once
    #: resume.read_checkpoint has followed the parents)
    own_pages: Mapping | None = None
    #: the parents, nearest first, once followed (resume.read_checkpoint)
    parents: list = field(default_factory=list)

    @property
    def tick(self) -> int:
        return self.state["cpu"]["tick"]

    @property
    def pc(self) -> int:
        return self.state["cpu"]["pc"]

    @property
    def memory_size(self) -> int:
        return self.state["memory_size"]


class CheckpointWriter:
    """Writes one checkpoint (version 2) into a store's sink, as it is saved:
    image and state first, then each page as the saver reaches it (no page is
    gathered with others), then disk, meta, the index and the end record."""

    def __init__(self, sink, header: dict, memory_size: int, sparse_index: bool = False):
        self._sink = sink
        # an incremental checkpoint's index lists its few pages (4 bytes each)
        # when that is shorter than the bitmap, which grows with the memory
        self._listed: list[int] | None = [] if sparse_index else None
        self.bytes_written = 0
        self._records: list[list] = []
        self._pages_at: int | None = None   # where the page data starts
        self._pages_bytes = 0
        self._bitmap = bytearray((-(-memory_size // PAGE_SIZE) + 7) // 8)
        self._last = -1                     # the last page written
        self._count = 0
        head = magic_of(CHECKPOINT_KIND) + pack({"version": CHECKPOINT_VERSION, **header})
        self._header_digest = hashlib.sha256(head).digest()
        self._write(head)

    def _write(self, chunk) -> None:
        self._sink.write(chunk)
        self.bytes_written += len(chunk)

    def record(self, name: str, payload: bytes) -> None:
        """One record (image, state, disk, meta, index), its payload as given."""
        if self._pages_at is not None and name in ("image", "state"):
            raise ValueError(f"the {name} record must come before the pages")
        if name not in ("image", "state") and self._pages_at is None:
            self._pages_at = self.bytes_written        # no pages: an empty page area
        record = pack([name, payload])
        self._records.append([name, self.bytes_written, len(record),
                              hashlib.sha256(payload).digest()])
        self._write(record)

    def image(self, image: Image) -> None:
        self.record("image", image.to_bytes_payload())

    def state(self, state: dict) -> None:
        self.record("state", pack(state))

    def page(self, index: int, data) -> None:
        """One saved page (bytes-like: the original page object itself, not a
        copy); pages come in ascending order, each a full page but the last
        page of a memory whose size is not a multiple of 4096."""
        if self._pages_at is None:
            self._pages_at = self.bytes_written
        elif len(self._records) > 2:
            raise ValueError("pages come before the disk, meta and index records")
        if index <= self._last:
            raise ValueError(f"page {index} after page {self._last}")
        self._bitmap[index >> 3] |= 1 << (index & 7)     # (IndexError: outside memory)
        if self._listed is not None:
            self._listed.append(index)
            if 4 * len(self._listed) >= len(self._bitmap):
                self._listed = None                      # the bitmap is as short
        self._write(data)
        self._write(CRC.pack(zlib.crc32(data)))
        self._pages_bytes += len(data) + CRC.size
        self._last = index
        self._count += 1

    @property
    def pages_written(self) -> int:
        return self._count

    def disk(self, disk: dict | None) -> None:
        self.record("disk", pack(disk))

    def parent(self, parent: dict) -> None:
        """An incremental checkpoint's parent: the file whose pages this one's
        index does not hold (parent_record)."""
        self.record("parent", pack(parent))

    def meta(self, meta: dict) -> None:
        self.record("meta", pack(meta))

    def finish(self) -> None:
        if self._listed is not None:
            index = {"list": b"".join(i.to_bytes(4, "little") for i in self._listed)}
        else:
            index = {"bitmap": bytes(self._bitmap)}
        self.record("index", pack(index))
        end_at = self.bytes_written
        end = pack_end(self._records, [self._pages_at, self._pages_bytes, self._count],
                       self._header_digest)
        self._write(end)
        self._write(FOOTER.pack(FOOTER_MAGIC, end_at))
        #: what a child checkpoint records of this file (file_identity)
        self.identity = {"size": self.bytes_written,
                         "end_sha256": hashlib.sha256(end).hexdigest()}


def pack_end(records: list[list], pages: list[int], header: bytes) -> bytes:
    """The end record: where each record is (with its SHA-256), the page data,
    and the SHA-256 of the magic and header."""
    return pack(["end", {"sections": records, "pages": pages, "header": header}])


def _bad(what: str, why: str) -> FormatError:
    return FormatError(f"{what} is not a valid checkpoint: {why}")


# --- where a checkpoint's bytes come from ------------------------------------------------

class FileSource:
    """A checkpoint file, open for reading for as long as its pages may be
    needed (a lazily resumed machine reads them on first access). Reads are
    ``pread`` calls on the descriptor opened first: a file replaced or
    deleted meanwhile is still the file that was opened, and one truncated
    meanwhile gives a short read, reported as a clean error (a memory
    mapping would raise SIGBUS instead, and kill the process)."""

    def __init__(self, path: str, what: str):
        self.what = what
        fd, self.size = open_untrusted(path, what)
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or a FormatError."""
        if not self._closer.alive:      # never a descriptor number another file now has
            raise FormatError(f"{self.what} was closed (its pages were all read, or it was "
                              "resumed with --eager); open it again to read it")
        chunks = []
        want = length
        try:
            while want:
                chunk = os.pread(self._fd, want, offset)
                if not chunk:
                    raise FormatError(
                        f"{self.what} is shorter than when it was opened ({self.size} bytes): "
                        "it was truncated or is being rewritten; nothing was read past its end")
                chunks.append(chunk)
                offset += len(chunk)
                want -= len(chunk)
        except MemoryError:
            raise OutOfMemory(self.what, length) from None
        except OSError as exc:
            raise FormatError(f"{self.what} cannot be read: {exc.strerror}") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        self._closer()


class BytesSource:
    """A checkpoint held in memory (the memory store's quick checkpoints)."""

    def __init__(self, data: bytes, what: str):
        self.what = what
        self._data = memoryview(data)
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise FormatError(f"{self.what} ends early")
        return bytes(self._data[offset:offset + length])

    def close(self) -> None:
        pass


class PageError(FormatError):
    """A saved page cannot be read back (the file changed or was truncated
    after it was opened, or is corrupt)."""


class SavedPages(Mapping):
    """The pages of a version-2 checkpoint: page index -> bytes, read from the
    file on demand. ``len``, ``in`` and iteration (the page numbers,
    ascending) read no page; each ``[index]`` reads one page and checks its
    CRC-32. The bitmap says which pages are saved; a page's rank (saved pages
    before it) is a precomputed count per 4096 pages plus a count of the bits
    before it in its own block."""

    def __init__(self, source, offset: int, bitmap: bytes, count: int, memory_size: int):
        self.source = source
        self._offset = offset
        self._bitmap = bitmap
        self._count = count
        self._memory_size = memory_size
        ranks, total = [], 0
        for start in range(0, len(bitmap), RANK_BLOCK):
            ranks.append(total)
            total += int.from_bytes(bitmap[start:start + RANK_BLOCK], "little").bit_count()
        self._ranks = ranks

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        bitmap = self._bitmap
        for match in re.finditer(rb"[^\x00]", bitmap):
            at = match.start()
            byte = bitmap[at]
            for bit in range(8):
                if byte >> bit & 1:
                    yield at * 8 + bit

    def __contains__(self, index) -> bool:
        return (type(index) is int and 0 <= index < len(self._bitmap) * 8
                and self._bitmap[index >> 3] >> (index & 7) & 1 == 1)

    def _rank(self, index: int) -> int:
        bitmap = self._bitmap
        block = index >> 12                  # 4096 pages: RANK_BLOCK bytes
        at = index >> 3
        before = int.from_bytes(bitmap[block * RANK_BLOCK:at], "little").bit_count()
        return self._ranks[block] + before + (bitmap[at] & ((1 << (index & 7)) - 1)).bit_count()

    def _length(self, index: int) -> int:
        return min(PAGE_SIZE, self._memory_size - index * PAGE_SIZE)

    def __getitem__(self, index: int) -> bytes:
        if index not in self:
            raise KeyError(index)
        length = self._length(index)
        record = self._read(self._offset + self._rank(index) * STRIDE, length + CRC.size)
        return self._check(index, record, length)

    def _read(self, offset: int, length: int) -> bytes:
        try:
            return self.source.read(offset, length)
        except PageError:
            raise
        except FormatError as exc:          # truncated, unreadable, closed: a page is lost
            raise PageError(str(exc)) from None

    def _check(self, index: int, record: bytes, length: int) -> bytes:
        data = record[:length]
        if zlib.crc32(data) != CRC.unpack_from(record, length)[0]:
            raise PageError(f"{self.source.what}: saved page {index} fails its checksum: the "
                            "file is corrupt, or changed after it was opened; nothing of it "
                            "was used")
        return data

    def chunks(self, pages: int = EAGER_CHUNK_PAGES):
        """(index, bytes) for every saved page, in order, read ``pages`` at a time."""
        numbers = iter(self)
        at = self._offset
        while True:
            batch = [n for _, n in zip(range(pages), numbers)]
            if not batch:
                return
            lengths = [self._length(n) for n in batch]
            block = self._read(at, sum(lengths) + CRC.size * len(batch))
            pos = 0
            for index, length in zip(batch, lengths):
                yield index, self._check(index, block[pos:pos + length + CRC.size], length)
                pos += length + CRC.size
            at += pos


class ChainPages(Mapping):
    """The pages of an incremental checkpoint and its parents (nearest first):
    page *i* is the nearest file's that holds it, read on demand. Like
    SavedPages, ``len``, ``in`` and iteration read no page: they use the
    union of the files' bitmaps, computed once."""

    def __init__(self, layers: list):
        self.layers = layers                    # SavedPages, the child first
        self.source = layers[0].source          # for messages (memory.Memory.fetch)
        union = 0
        for layer in layers:
            union |= int.from_bytes(layer._bitmap, "little")
        self._union = union
        self._bitmap = union.to_bytes(len(layers[0]._bitmap), "little")
        self._count = union.bit_count()

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        return SavedPages.__iter__(self)

    def __contains__(self, index) -> bool:
        return SavedPages.__contains__(self, index)

    def __getitem__(self, index: int) -> bytes:
        for layer in self.layers:
            if index in layer:
                return layer[index]
        raise KeyError(index)

    def chunks(self, pages: int = EAGER_CHUNK_PAGES):
        """(index, bytes) for every page of the chain, in order: each file's
        pages read in big reads, the nearest file's copy of a page kept."""
        taken = 0
        for layer in self.layers:
            mine = int.from_bytes(layer._bitmap, "little") & ~taken
            taken |= mine
            for index, data in layer.chunks(pages):
                if mine >> index & 1:
                    yield index, data

    def close(self) -> None:
        for layer in self.layers:
            layer.source.close()


# --- loading -------------------------------------------------------------------------------

def load_checkpoint(data: bytes, what: str) -> Checkpoint:
    """A checkpoint from its bytes (any version). A valid file the host has
    no memory for is :class:`OutOfMemory`, never a corrupt file."""
    return open_checkpoint(BytesSource(data, what), what)


def open_checkpoint(source, what: str) -> Checkpoint:
    """Open and validate a checkpoint from a source (FileSource, BytesSource).
    Version 2 reads only the records (never the page data: pages are read on
    demand through ``ckpt.pages``); version 1 is read whole."""
    try:
        version, header_end = _read_header(source, what)
        if version == 1:
            if source.size > MAX_FILE_BYTES:
                raise FormatError(f"{what} is {source.size} bytes, more than the "
                                  f"{MAX_FILE_BYTES}-byte limit for files minivm will load")
            ckpt = load_checkpoint_v1(source.read(0, source.size), what)
            source.close()
            return ckpt
        return _load_v2(source, header_end, what)
    except MemoryError:
        raise OutOfMemory(what, source.size) from None


def is_checkpoint_file(path: str) -> bool:
    """Whether the file at ``path`` begins with a checkpoint's magic bytes
    (whatever its name; a missing or unreadable file is not one)."""
    magic = magic_of(CHECKPOINT_KIND)
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _header_version(source, what: str) -> int:
    """The format version from the header at the start, checked as every
    container's is (magic, kind, newer than this minivm)."""
    return _read_header(source, what)[0]


def _read_header(source, what: str) -> tuple[int, int]:
    """(format version, where the header ends)."""
    head = source.read(0, min(source.size, 4096))
    magic = magic_of(CHECKPOINT_KIND)
    if not head.startswith(magic):
        # the container reader words every foreign case (empty, another kind)
        read_container(head, CHECKPOINT_KIND, CHECKPOINT_VERSION, what)
        raise FormatError(f"{what} is not a minivm checkpoint file")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=len(head),
                                max_array_len=16, max_map_len=16, max_str_len=4096,
                                max_bin_len=0, max_ext_len=0)
    unpacker.feed(head[len(magic):])
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        raise FormatError(f"{what} is incomplete: it ends inside its header") from None
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError,
            msgpack.ExtraData) as exc:
        raise FormatError(f"{what} is corrupt: {describe_msgpack_error(exc)}") from None
    version = check_format_version(header, CHECKPOINT_VERSION, what)
    return version, len(magic) + unpacker.tell()


def read_end(source, what: str):
    """A version-2 file's end record, from the footer: (its offset, the records
    by name as (offset, length, sha256), the page data as [offset, length, count])."""
    end_at, raw = _end_bytes(source, what)
    end = unpack_bounded(raw, what, max_items=64)
    records, pages = _check_end(end, end_at, what)
    return end_at, records, pages, end[1]["header"]


def _end_bytes(source, what: str) -> tuple[int, bytes]:
    """A version-2 file's end record as bytes, found from the footer, and its offset."""
    size = source.size
    if size < FOOTER.size:
        raise FormatError(f"{what} is incomplete: it ends before its end record "
                          "(truncated, or still being written)")
    tag, end_at = FOOTER.unpack(source.read(size - FOOTER.size, FOOTER.size))
    end_length = size - FOOTER.size - end_at
    if tag != FOOTER_MAGIC or not 0 < end_length <= MAX_END_BYTES:
        raise FormatError(f"{what} is incomplete or corrupt: it does not end with a valid "
                          "end record (truncated, still being written, or damaged)")
    return end_at, source.read(end_at, end_length)


def file_identity(source, what: str) -> dict:
    """What an incremental child records of its parent, and checks in O(1):
    the file's size and the SHA-256 of its end record (which holds the
    SHA-256 of the header and of every record, and where the page data is).
    A version-1 file has none (it cannot be a parent)."""
    _, raw = _end_bytes(source, what)
    return {"size": source.size, "end_sha256": hashlib.sha256(raw).hexdigest()}


def _load_v2(source, header_end: int, what: str) -> Checkpoint:
    size = source.size
    _, records, (pages_at, pages_bytes, page_count), header = read_end(source, what)
    if hashlib.sha256(source.read(0, header_end)).digest() != header:
        raise FormatError(f"{what} is corrupt: its header fails its checksum")
    payloads = {}
    for name, (offset, length, digest) in records.items():
        item = unpack_bounded(source.read(offset, length), what, max_items=1 << 22)
        if (not isinstance(item, list) or len(item) != 2 or item[0] != name
                or not isinstance(item[1], bytes)):
            raise FormatError(f"{what} is corrupt: its '{name}' record is not where its end "
                              "record says")
        if hashlib.sha256(item[1]).digest() != digest:
            raise FormatError(f"{what} is corrupt: its '{name}' record fails its checksum")
        payloads[name] = item[1]
    meta, image, state, disk = _decode_records(payloads, what)
    parent = None
    if "parent" in payloads:
        parent = unpack_bounded(payloads["parent"], what, max_items=64)
        _check_parent(parent, state["cpu"]["tick"], what)
    memory_size = state["memory_size"]
    bitmap = _check_index(payloads["index"], page_count, memory_size, what)
    expected = page_count * STRIDE
    last = -(-memory_size // PAGE_SIZE) - 1
    if memory_size % PAGE_SIZE and bitmap[last >> 3] >> (last & 7) & 1:
        expected -= PAGE_SIZE - memory_size % PAGE_SIZE      # the short last page is saved
    if pages_bytes != expected:
        raise _bad(what, f"its page data is {pages_bytes} bytes, but its index lists "
                         f"{page_count} page(s) ({expected} bytes with their checksums)")
    pages = SavedPages(source, pages_at, bitmap, page_count, memory_size)
    identity = file_identity(source, what)
    return Checkpoint(meta, image, state, disk, pages, what, size, format_version=2,
                      parent=parent, identity=identity, own_pages=pages)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _check_parent(parent, tick: int, what: str) -> None:
    """An incremental checkpoint's parent record: where the parent is
    (``path``, absolute, and ``relpath``, from the child's folder), its
    identity (``size``, ``end_sha256``), and its ``name`` and ``tick``."""
    if not isinstance(parent, dict):
        raise _bad(what, "its parent record is not a map")
    for key in ("path", "relpath"):
        value = parent.get(key)
        if not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value:
            raise _bad(what, f"its parent record has no valid '{key}'")
    size = parent.get("size")
    if type(size) is not int or not 0 < size <= 1 << 40:
        raise _bad(what, f"its parent record's size {show_value(size)} is not a file size")
    digest = parent.get("end_sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise _bad(what, "its parent record has no valid 'end_sha256'")
    name = parent.get("name")
    if not isinstance(name, str) or len(name) > 4096:
        raise _bad(what, "its parent record has no valid 'name'")
    # the parent's tick may be later than the child's: a checkpoint taken after
    # going back in time (REPL time travel) completes the one taken before it
    ptick = parent.get("tick")
    if type(ptick) is not int or not 0 <= ptick <= MAX_TICK:
        raise _bad(what, f"its parent's tick {show_value(ptick)} is not a tick")


def parent_record(parent_path: str, identity: dict, name: str, tick: int,
                  child_path: str) -> dict:
    """What an incremental checkpoint at ``child_path`` records of its parent."""
    folder = os.path.dirname(os.path.abspath(child_path))
    try:
        rel = os.path.relpath(parent_path, folder)
    except ValueError:
        rel = parent_path
    return {"path": os.path.abspath(parent_path), "relpath": rel, "size": identity["size"],
            "end_sha256": identity["end_sha256"], "name": name, "tick": tick}


def _check_end(end, end_at: int, what: str):
    """The end record: where each record and the page data are; each inside
    the file, none overlapping another."""
    shape = FormatError(f"{what} is corrupt: its end record has the wrong shape")
    if (not isinstance(end, list) or len(end) != 2 or end[0] != "end"
            or not isinstance(end[1], dict)):
        raise shape
    sections, pages = end[1].get("sections"), end[1].get("pages")
    if (not isinstance(sections, list) or not isinstance(pages, list) or len(pages) != 3
            or not all(type(v) is int and v >= 0 for v in pages)
            or not isinstance(end[1].get("header"), bytes)):
        raise shape
    records = {}
    for entry in sections:
        if (not isinstance(entry, list) or len(entry) != 4
                or entry[0] not in RECORDS + OPTIONAL_RECORDS
                or type(entry[1]) is not int or type(entry[2]) is not int
                or entry[1] < 0 or entry[2] <= 0
                or not isinstance(entry[3], bytes) or entry[0] in records):
            raise shape
        records[entry[0]] = (entry[1], entry[2], entry[3])
    missing = [name for name in RECORDS if name not in records]
    if missing:
        raise FormatError(f"{what} is corrupt: it has no '{missing[0]}' record")
    if sum(length for _, length, _ in records.values()) > MAX_RECORD_BYTES:
        raise FormatError(f"{what} has records of more than {MAX_RECORD_BYTES} bytes in all, "
                          "the most minivm will read")
    spans = sorted([(offset, offset + length) for offset, length, _ in records.values()]
                   + [(pages[0], pages[0] + pages[1])])
    if spans[0][0] < len(magic_of(CHECKPOINT_KIND)) or spans[-1][1] > end_at or any(
            a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise FormatError(f"{what} is corrupt: its end record places records outside the "
                          "file or over each other")
    return records, pages


def _decode_records(payloads: dict, what: str):
    """meta, image, state and disk, decoded and validated (both versions)."""
    meta = unpack_bounded(payloads["meta"], what)
    if not isinstance(meta, dict):
        raise _bad(what, "its meta section is not a map")
    image = Image.from_dict(unpack_bounded(payloads["image"], what), what)
    state = unpack_bounded(payloads["state"], what)
    if not isinstance(state, dict):
        raise _bad(what, "its state section is not a map")
    disk = unpack_bounded(payloads["disk"], what)
    _check_disk(disk, what)
    _check_state(image, state, disk, what)
    return meta, image, state, disk


def _check_index(payload: bytes, page_count: int, memory_size: int, what: str) -> bytes:
    """The index's bitmap: one bit per page of memory, no bit set past the
    last page, as many set as the end record counts."""
    index = unpack_bounded(payload, what, max_items=4)
    pages_in_memory = -(-memory_size // PAGE_SIZE)
    if isinstance(index, dict) and isinstance(index.get("list"), bytes) and len(index) == 1:
        index = {"bitmap": _listed_bitmap(index["list"], page_count, pages_in_memory, what)}
    if not isinstance(index, dict) or not isinstance(index.get("bitmap"), bytes):
        raise _bad(what, "its page index is malformed")
    bitmap = index["bitmap"]
    if len(bitmap) != (pages_in_memory + 7) // 8:
        raise _bad(what, f"its page index has {len(bitmap)} bytes; a memory of "
                         f"{pages_in_memory} pages needs {(pages_in_memory + 7) // 8}")
    bits = int.from_bytes(bitmap, "little")
    if bits >> pages_in_memory:
        raise _bad(what, f"its page index marks page {bits.bit_length() - 1} as saved, "
                         f"outside memory ({memory_size} bytes, {pages_in_memory} pages)")
    if bits.bit_count() != page_count:
        raise _bad(what, f"its index lists {bits.bit_count()} page(s), its end record "
                         f"{page_count}")
    return bitmap


def _listed_bitmap(listed: bytes, page_count: int, pages_in_memory: int, what: str) -> bytes:
    """The bitmap of an index given as a list: page numbers, 4 bytes each
    (unsigned, little-endian), strictly increasing, inside memory."""
    if len(listed) % 4 or len(listed) // 4 != page_count:
        raise _bad(what, f"its page index lists {len(listed) / 4:g} page(s), its end record "
                         f"{page_count}")
    bitmap = bytearray((pages_in_memory + 7) // 8)
    prev = -1
    for (index,) in struct.iter_unpack("<I", listed):
        if index <= prev or index >= pages_in_memory:
            raise _bad(what, f"its page index lists page {index} "
                             + ("out of order" if index <= prev else
                                f"outside memory ({pages_in_memory} pages)"))
        bitmap[index >> 3] |= 1 << (index & 7)
        prev = index
    return bytes(bitmap)


def load_checkpoint_v1(data: bytes, what: str) -> Checkpoint:
    """A version-1 checkpoint: a container with meta, image, state, disk and
    ``pages`` chunks of ``[[index, bytes], ...]``, read whole."""
    container = read_container(data, CHECKPOINT_KIND, CHECKPOINT_VERSION, what)
    if container.header["version"] != 1:
        raise FormatError(f"{what} is corrupt: its header says format "
                          f"{container.header['version']}, but it is laid out as format 1")
    meta, image, state, disk = _decode_records(
        {name: container.only(name) for name in ("meta", "image", "state", "disk")}, what)
    memory_size = state["memory_size"]
    page_count = -(-memory_size // PAGE_SIZE)
    pages: dict[int, bytes] = {}
    chunks = container.all("pages")
    if len(chunks) > MAX_PAGES_SECTIONS:
        raise _bad(what, f"it has {len(chunks)} pages sections, more than the "
                         f"{MAX_PAGES_SECTIONS} a checkpoint may have")
    for chunk in chunks:
        items = unpack_bounded(chunk, what)
        if not isinstance(items, list):
            raise _bad(what, "a pages section is not a list")
        for item in items:
            if (not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int
                    or not isinstance(item[1], bytes)):
                raise _bad(what, "a saved page is malformed")
            index, blob = item
            if not 0 <= index < page_count:
                raise _bad(what, f"saved page {index} is outside memory "
                                 f"({memory_size} bytes, {page_count} pages)")
            expected = min(PAGE_SIZE, memory_size - index * PAGE_SIZE)
            if len(blob) != expected:
                raise _bad(what, f"saved page {index} has {len(blob)} bytes, expected {expected}")
            if index in pages:
                raise _bad(what, f"page {index} is saved twice")
            pages[index] = blob
    return Checkpoint(meta, image, state, disk, pages, what, len(data), format_version=1)


def _check_state(image: Image, state: dict, disk, what: str) -> None:
    """Validate the saved state against the declarations that restore uses.

    The disk itself is not opened here (resume finds and checks it), so
    queued requests are checked against the disk's size only on resume; they
    do need the checkpoint to have a disk."""
    limits = Limits(code_size=len(image.code), disk_attached=disk is not None)
    try:
        values = MACHINE_STATE.validate(state, limits)
        _check_schedule(values)
    except StateError as exc:
        raise _bad(what, str(exc)) from None
    if len(image.data) > state["memory_size"]:
        raise _bad(what, f"the program's data ({len(image.data)} bytes) does not fit in its "
                         f"memory size ({state['memory_size']} bytes)")


def _check_schedule(values: dict) -> None:
    """What a real run keeps at every instruction boundary, where checkpoints
    are taken: nothing scheduled lies in the past (the boundary fires every
    event that is due before the guest runs on), and nothing pending was raised
    in the future. A file that breaks this would make the restored machine
    catch up on events one by one (a timer of period 1 and a tick of 10^12)."""
    tick = values["cpu"]["tick"]
    next_fire = values["timer"]["next_fire"]
    if next_fire is not None and next_fire < tick:
        raise StateError("timer.next_fire", f"{show_int(next_fire)} is before the "
                         f"checkpoint's tick {show_int(tick)} (a run fires every due event)")
    for i, r in enumerate(values["disk"]["queue"]):
        if r["done"] < tick:
            raise StateError(f"disk.queue[{i}].done", f"request {r['id']} completes at tick "
                             f"{show_int(r['done'])}, before the checkpoint's tick "
                             f"{show_int(tick)} (a run completes every due request)")
    for i, p in enumerate(values["interrupts"]["pending"]):
        if p["tick"] > tick:
            raise StateError(f"interrupts.pending[{i}].tick", f"raised at tick "
                             f"{show_int(p['tick'])}, after the checkpoint's tick "
                             f"{show_int(tick)}")


def _check_disk(disk, what: str) -> None:
    if disk is None:
        return
    if not isinstance(disk, dict) or not isinstance(disk.get("chain"), list) \
            or not disk["chain"] or len(disk["chain"]) > MAX_CHAIN:
        raise _bad(what, "its disk section is malformed")
    group = disk.get("group_blocks")
    if type(group) is not int or not 1 <= group <= 4096:
        raise _bad(what, f"its disk COW group size {show_value(group)} is not 1 .. 4096 blocks")
    for key in ("reads_not_landed", "writes_not_done"):
        ids = disk.get(key, [])
        if not isinstance(ids, list) or len(ids) > MAX_INFLIGHT \
                or not all(type(i) is int for i in ids):
            raise _bad(what, f"its disk section's '{key}' is malformed")
    seen: set[str] = set()
    for entry in disk["chain"]:
        if not isinstance(entry, dict):
            raise _bad(what, "a disk chain entry is malformed")
        for key in ("path", "relpath", "kind"):
            if not isinstance(entry.get(key), str) or len(entry[key]) > 4096 \
                    or "\0" in entry[key] or not entry[key]:
                raise _bad(what, f"a disk chain entry has no valid '{key}'")
        if entry["path"] in seen:
            # a real chain never holds a file twice; one named 4,096 times
            # would be read (and hashed) 4,096 times
            raise _bad(what, f"its disk chain names '{show(entry['path'])}' more than once")
        seen.add(entry["path"])
        if entry["kind"] not in ("raw", "overlay"):
            raise _bad(what, f"disk kind '{show(entry['kind'])}' is unknown")
        fp = entry.get("fingerprint")
        if not valid_fingerprint(fp) or fp.get("sha256") == "":
            raise _bad(what, "a disk chain entry has no valid fingerprint")


def chain_entry(layer, fingerprint: dict, checkpoint_path: str | None) -> dict:
    folder = os.path.dirname(os.path.abspath(checkpoint_path)) if checkpoint_path else os.getcwd()
    try:
        rel = os.path.relpath(layer.path, folder)
    except ValueError:
        rel = layer.path
    return {"path": layer.path, "relpath": rel, "kind": layer.kind, "fingerprint": fingerprint}
