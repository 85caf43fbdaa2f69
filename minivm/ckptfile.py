"""The checkpoint file: what a checkpoint holds and how it is laid out.

A checkpoint is a file of kind ``checkpoint`` (the magic and header of every
minivm container, container.py). Version 2, written since minivm 0.2, is a
stream the writer appends to while the guest runs, and a reader opens from
its end::

    "minivm-checkpoint"  {"version": 2, "name": ..., "tick": ...}
    ["image", bin]  ["state", bin]          msgpack records, as in a container
    page data                               raw pages, back to back, in page order
    ["disk", bin]  ["meta", bin]  ["index", bin]
    ["end", {"sections": [[name, offset, length, sha256], ...],
             "pages": [offset, length, count]}]
    footer: 8 bytes "MVCKEND2" + the end record's offset (u64, little-endian)

``image``   the program image (so a checkpoint resumes on its own)
``state``   CPU and device state saved at P2: registers, timer, console,
            interrupt controller, disk queue with every in-flight request
``disk``    the checkpointed disk chain (P10): for each file, top first, its
            path (absolute, and relative to the checkpoint) and fingerprint;
            or nil when no disk is attached
``meta``    tick, pc, name, how it was taken and the measured stop window
            (``pause_us``); written last, once the pause is known
``index``   the saved pages: their numbers (u32, ascending) and a CRC-32 of
            each, so a reader finds page *n* at ``offset + rank * 4096``
            without reading any other page

Only non-zero pages are saved. Every record has its SHA-256 in the end
record, checked when it is read; every page its CRC-32, checked when the
page is read (lazily, on the guest's first access: resume.py). Version 1
(a msgpack stream of sections with ``pages`` chunks and one digest over the
whole file) still loads, through :func:`load_checkpoint_v1`.

Loading validates every field: the ``state`` section against the machine's
declarations (machine.MACHINE_STATE, state.py), the same that restore uses.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
import os
import stat
import struct
import sys
import weakref
import zlib
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack

from .container import (MAX_FILE_BYTES, describe_msgpack_error, magic_of, pack, read_container,
                        unpack_bounded)
from .devices import MAX_INFLIGHT
from .errors import FormatError, OutOfMemory, show
from .disks import MAX_CHAIN, valid_fingerprint
from .image import Image
from .machine import MACHINE_STATE
from .memory import PAGE_SIZE
from .state import Limits, StateError, show as show_value, show_int

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
#: The most bytes of the end record (it lists five records).
MAX_END_BYTES = 4096
#: The most bytes of all records together (the page data is not counted: it
#: is never read whole). As for a whole version-1 file.
MAX_RECORD_BYTES = MAX_FILE_BYTES
#: Pages read at a time by an eager load.
EAGER_CHUNK_PAGES = 256


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

    @property
    def tick(self) -> int:
        return self.state["cpu"]["tick"]

    @property
    def pc(self) -> int:
        return self.state["cpu"]["pc"]

    @property
    def memory_size(self) -> int:
        return self.state["memory_size"]


def _le_bytes(values: array) -> bytes:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _le_array(data: bytes) -> array:
    values = array("I")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


class CheckpointWriter:
    """Writes one checkpoint (version 2) into a store's sink, as it is saved:
    image and state first, then each page as the saver reaches it (no page is
    gathered with others), then disk, meta, the index and the end record."""

    def __init__(self, sink, header: dict):
        self._sink = sink
        self.bytes_written = 0
        self._records: list[list] = []
        self._pages_at: int | None = None   # where the page data starts
        self._pages_bytes = 0
        self._numbers = array("I")
        self._crcs = array("I")
        self._write(magic_of(CHECKPOINT_KIND))
        self._write(pack({"version": CHECKPOINT_VERSION, **header}))

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
        if self._numbers and index <= self._numbers[-1]:
            raise ValueError(f"page {index} after page {self._numbers[-1]}")
        self._write(data)
        self._pages_bytes += len(data)
        self._numbers.append(index)
        self._crcs.append(zlib.crc32(data))

    @property
    def pages_written(self) -> int:
        return len(self._numbers)

    def disk(self, disk: dict | None) -> None:
        self.record("disk", pack(disk))

    def meta(self, meta: dict) -> None:
        self.record("meta", pack(meta))

    def finish(self) -> None:
        self.record("index", pack({"pages": _le_bytes(self._numbers),
                                    "crc32": _le_bytes(self._crcs)}))
        end_at = self.bytes_written
        self._write(pack_end(self._records, [self._pages_at, self._pages_bytes,
                                             len(self._numbers)]))
        self._write(FOOTER.pack(FOOTER_MAGIC, end_at))


def pack_end(records: list[list], pages: list[int]) -> bytes:
    """The end record: where each record is (with its SHA-256) and the page data."""
    return pack(["end", {"sections": records, "pages": pages}])


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
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):   # before open: a FIFO blocks there
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
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            self.close()
            raise FormatError(f"{what} is not a regular file")
        self.size = info.st_size

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or a FormatError."""
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
    file on demand. ``len`` and iteration (the page numbers, ascending) read
    no page; each ``[index]`` reads one page and checks its CRC-32."""

    def __init__(self, source, offset: int, numbers: array, crcs: array, memory_size: int):
        self.source = source
        self._offset = offset
        self._numbers = numbers
        self._crcs = crcs
        self._memory_size = memory_size

    def __len__(self) -> int:
        return len(self._numbers)

    def __iter__(self):
        return iter(self._numbers)

    def _rank(self, index: int) -> int:
        numbers = self._numbers
        rank = bisect.bisect_left(numbers, index)
        return rank if rank < len(numbers) and numbers[rank] == index else -1

    def __contains__(self, index) -> bool:
        return type(index) is int and self._rank(index) >= 0

    def count_in(self, start: int, stop: int) -> list[int]:
        """The saved page numbers in [start, stop)."""
        numbers = self._numbers
        return list(numbers[bisect.bisect_left(numbers, start):bisect.bisect_left(numbers, stop)])

    def _length(self, index: int) -> int:
        return min(PAGE_SIZE, self._memory_size - index * PAGE_SIZE)

    def __getitem__(self, index: int) -> bytes:
        rank = self._rank(index) if type(index) is int else -1
        if rank < 0:
            raise KeyError(index)
        data = self.source.read(self._offset + rank * PAGE_SIZE, self._length(index))
        self._check(index, rank, data)
        return data

    def _check(self, index: int, rank: int, data: bytes) -> None:
        if zlib.crc32(data) != self._crcs[rank]:
            raise PageError(f"{self.source.what}: saved page {index} fails its checksum: the "
                            "file is corrupt, or changed after it was opened; nothing of it "
                            "was used")

    def chunks(self, pages: int = EAGER_CHUNK_PAGES):
        """(index, bytes) for every saved page, in order, read ``pages`` at a time."""
        numbers = self._numbers
        for first in range(0, len(numbers), pages):
            last = min(first + pages, len(numbers))
            start = self._offset + first * PAGE_SIZE
            lengths = [self._length(numbers[r]) for r in range(first, last)]
            block = self.source.read(start, sum(lengths))
            pos = 0
            for rank, length in zip(range(first, last), lengths):
                data = block[pos:pos + length]
                self._check(numbers[rank], rank, data)
                yield numbers[rank], data
                pos += length


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
        version = _header_version(source, what)
        if version == 1:
            if source.size > MAX_FILE_BYTES:
                raise FormatError(f"{what} is {source.size} bytes, more than the "
                                  f"{MAX_FILE_BYTES}-byte limit for files minivm will load")
            ckpt = load_checkpoint_v1(source.read(0, source.size), what)
            source.close()
            return ckpt
        return _load_v2(source, what)
    except MemoryError:
        raise OutOfMemory(what, source.size) from None


def _header_version(source, what: str) -> int:
    """The format version from the header at the start, checked as every
    container's is (magic, kind, newer than this minivm)."""
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
    if not isinstance(header, dict) or type(header.get("version")) is not int:
        raise FormatError(f"{what} is corrupt: its header has no format version")
    version = header["version"]
    if version > CHECKPOINT_VERSION:
        raise FormatError(
            f"{what} was written by a newer minivm (format {version}; this minivm reads "
            f"format {CHECKPOINT_VERSION} and older); upgrade minivm to load it")
    if version < 1:
        raise FormatError(f"{what} is corrupt: format version {version} is not valid")
    return version


def read_end(source, what: str):
    """A version-2 file's end record, from the footer: (its offset, the records
    by name as (offset, length, sha256), the page data as [offset, length, count])."""
    size = source.size
    if size < FOOTER.size:
        raise FormatError(f"{what} is incomplete: it ends before its end record "
                          "(truncated, or still being written)")
    tag, end_at = FOOTER.unpack(source.read(size - FOOTER.size, FOOTER.size))
    end_length = size - FOOTER.size - end_at
    if tag != FOOTER_MAGIC or not 0 < end_length <= MAX_END_BYTES:
        raise FormatError(f"{what} is incomplete or corrupt: it does not end with a valid "
                          "end record (truncated, still being written, or damaged)")
    end = unpack_bounded(source.read(end_at, end_length), what, max_items=64)
    records, pages = _check_end(end, end_at, what)
    return end_at, records, pages


def _load_v2(source, what: str) -> Checkpoint:
    size = source.size
    _, records, (pages_at, pages_bytes, page_count) = read_end(source, what)
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
    memory_size = state["memory_size"]
    numbers, crcs = _check_index(payloads["index"], page_count, memory_size, what)
    expected = len(numbers) * PAGE_SIZE
    if numbers and memory_size % PAGE_SIZE and numbers[-1] == memory_size // PAGE_SIZE:
        expected -= PAGE_SIZE - memory_size % PAGE_SIZE
    if pages_bytes != expected:
        raise _bad(what, f"its page data is {pages_bytes} bytes, but its index lists "
                         f"{len(numbers)} page(s) ({expected} bytes)")
    pages = SavedPages(source, pages_at, numbers, crcs, memory_size)
    return Checkpoint(meta, image, state, disk, pages, what, size, format_version=2)


def _check_end(end, end_at: int, what: str):
    """The end record: where each record and the page data are; each inside
    the file, none overlapping another."""
    shape = FormatError(f"{what} is corrupt: its end record has the wrong shape")
    if (not isinstance(end, list) or len(end) != 2 or end[0] != "end"
            or not isinstance(end[1], dict)):
        raise shape
    sections, pages = end[1].get("sections"), end[1].get("pages")
    if (not isinstance(sections, list) or not isinstance(pages, list) or len(pages) != 3
            or not all(type(v) is int and v >= 0 for v in pages)):
        raise shape
    records = {}
    for entry in sections:
        if (not isinstance(entry, list) or len(entry) != 4 or entry[0] not in RECORDS
                or type(entry[1]) is not int or type(entry[2]) is not int
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


def _check_index(payload: bytes, page_count: int, memory_size: int, what: str):
    index = unpack_bounded(payload, what, max_items=4)
    if (not isinstance(index, dict) or not isinstance(index.get("pages"), bytes)
            or not isinstance(index.get("crc32"), bytes)
            or len(index["pages"]) % 4 or len(index["pages"]) != len(index["crc32"])):
        raise _bad(what, "its page index is malformed")
    numbers, crcs = _le_array(index["pages"]), _le_array(index["crc32"])
    if len(numbers) != page_count:
        raise _bad(what, f"its index lists {len(numbers)} page(s), its end record {page_count}")
    if not all(map(operator.lt, numbers, itertools.islice(numbers, 1, None))):
        raise _bad(what, "its page index is not in ascending order (a page saved twice, "
                         "or out of order)")
    pages_in_memory = -(-memory_size // PAGE_SIZE)
    if numbers and numbers[-1] >= pages_in_memory:
        raise _bad(what, f"saved page {numbers[-1]} is outside memory "
                         f"({memory_size} bytes, {pages_in_memory} pages)")
    return numbers, crcs


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
