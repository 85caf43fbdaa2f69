"""An independent reader and writer of the version-2 checkpoint layout, for
tests that build hostile files whose checksums are right (so that the loader
must look at the content), including what tests/ckpt_files.py cannot express
through the real writer: a record missing or listed twice, an index that
disagrees with the memory size, the end record or the page data, a page
whose CRC-32 is wrong, an end record or a footer that points anywhere.

Nothing here imports minivm: the layout is written down again from
docs/formats.md (section 3), and tests/test_ckptfile.py checks that a real
file the writer wrote, taken apart and written again here, is that file
byte for byte (a file ``minivm export`` rewrote is not: it appends records,
and :meth:`Layout.items` gives the writer's order)::

    magic  header  image  state  page data  disk  meta  index  end record  footer

``index`` is a map ``{"bitmap": bytes}``: bit *i* % 8 of byte *i* // 8 is set
when page *i* of memory is saved; exactly ceil(pages / 8) bytes. The page
data is each saved page (4096 bytes, the last page of a memory whose size is
not a multiple of 4096 shorter) followed by its CRC-32 (u32, little-endian),
in page order: page *n* is at ``pages offset + rank * 4100``, *rank* being
the number of saved pages before it. The end record lists each record
(name, offset, length, SHA-256 of its payload), the page data (offset,
length, count) and the SHA-256 of the magic and header.

A file is described by its ``items`` in file order: ``(name, payload)`` for
a record, ``(name, payload, raw)`` for one whose bytes in the file are
``raw`` (listed in the end record with ``payload``'s SHA-256), bytes for
filler no record lists, :data:`PAGES` for the place of the page data. Its
``pages`` are ``(number, bytes)``, or ``(number, bytes, crc)`` for a page
written with another CRC-32; the number is not written (the bitmap, in the
index record, says which pages are saved), and the end record counts them.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field

import msgpack

MAGIC = msgpack.packb("minivm-checkpoint")
FOOTER = struct.Struct("<8sQ")
FOOTER_MAGIC = b"MVCKEND2"
PAGE = 4096
CRC = struct.Struct("<I")
STRIDE = PAGE + CRC.size            # where each saved page is: rank * STRIDE
PAGES = "<page data>"
MAX_MEMORY = 1 << 32
RECORD_NAMES = ("image", "state", "disk", "meta", "index")


def packb(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def pages_in(memory_size: int) -> int:
    """Pages of a memory of ``memory_size`` bytes (the last one may be short)."""
    return -(-memory_size // PAGE)


def bitmap_of(numbers, memory_size: int | None = None, *, length: int | None = None) -> bytes:
    """The bitmap with the bits of ``numbers`` set: ``length`` bytes, or as
    many as a memory of ``memory_size`` needs (grown to hold every number
    when one lies past them, as a hostile bitmap may)."""
    numbers = list(numbers)
    if length is None:
        length = (pages_in(memory_size) + 7) // 8 if memory_size is not None else 0
        if numbers:
            length = max(length, max(numbers) // 8 + 1)
    bits = bytearray(length)
    for n in numbers:
        bits[n >> 3] |= 1 << (n & 7)
    return bytes(bits)


def numbers_of(bitmap: bytes) -> list[int]:
    """The page numbers whose bits are set, ascending."""
    return [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1]


def index_payload(bitmap: bytes) -> bytes:
    """The ``index`` record's payload."""
    return packb({"bitmap": bitmap})


def page_data(pages) -> bytes:
    """The page data: each page, then its CRC-32 (or the one given)."""
    out = bytearray()
    for number, data, *crc in pages:
        out += data
        out += CRC.pack(crc[0] if crc else zlib.crc32(data))
    return bytes(out)


@dataclass
class Layout:
    """A version-2 file taken apart: payloads, pages and where everything is."""
    header: dict
    records: dict                       # name -> payload (bytes)
    pages: list                         # [(index, bytes)], in page order
    memory_size: int = 0
    regions: dict = field(default_factory=dict)   # region name -> (start, stop)

    @property
    def bitmap(self) -> bytes:
        return msgpack.unpackb(self.records["index"], raw=False)["bitmap"]

    def items(self, **replace) -> list:
        """The file's items in the order the writer writes them, with payloads
        replaced by name (``index=None`` drops a record)."""
        out = []
        for name in ("image", "state", PAGES, "disk", "meta", "index"):
            if name == PAGES:
                out.append(PAGES)
                continue
            payload = replace.get(name, self.records[name])
            if payload is not None:
                out.append((name, payload))
        return out

    def saved_region(self, index: int) -> tuple[int, int]:
        """Where saved page ``index`` and its CRC-32 are in the file."""
        start = self.regions["page data"][0]
        for number, data in self.pages:
            if number == index:
                return start, start + len(data) + CRC.size
            start += len(data) + CRC.size
        raise KeyError(index)

    def page_region(self, index: int) -> tuple[int, int]:
        """Where the bytes of saved page ``index`` are (without its CRC-32)."""
        start, stop = self.saved_region(index)
        return start, stop - CRC.size

    def crc_region(self, index: int) -> tuple[int, int]:
        """Where the CRC-32 of saved page ``index`` is."""
        _, stop = self.saved_region(index)
        return stop - CRC.size, stop


def parse_v2(data: bytes) -> Layout:
    """A valid version-2 file as a :class:`Layout` (read from its footer;
    every record's SHA-256 and every page's CRC-32 checked)."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    assert unpacker.unpack() == "minivm-checkpoint"
    header = unpacker.unpack()
    header_end = unpacker.tell()
    tag, end_at = FOOTER.unpack(data[-FOOTER.size:])
    assert tag == FOOTER_MAGIC
    name, end = msgpack.unpackb(data[end_at:-FOOTER.size], raw=False)
    assert name == "end" and sorted(end) == ["header", "pages", "sections"]
    assert hashlib.sha256(data[:header_end]).digest() == end["header"]
    regions = {"header": (len(MAGIC), header_end)}
    records = {}
    for name, offset, length, digest in end["sections"]:
        rec_name, payload = msgpack.unpackb(data[offset:offset + length], raw=False)
        assert rec_name == name and hashlib.sha256(payload).digest() == digest
        records[name] = payload
        regions[f"{name} record"] = (offset, offset + length)
    pages_at, pages_len, count = end["pages"]
    index = msgpack.unpackb(records["index"], raw=False)
    assert sorted(index) == ["bitmap"]
    bitmap = index["bitmap"]
    memory_size = msgpack.unpackb(records["state"], raw=False)["memory_size"]
    assert len(bitmap) == (pages_in(memory_size) + 7) // 8
    numbers = numbers_of(bitmap)
    assert len(numbers) == count and (not numbers or numbers[-1] < pages_in(memory_size))
    pages, offset = [], pages_at
    for rank, number in enumerate(numbers):
        assert offset == pages_at + rank * STRIDE    # only the last page may be short
        length = min(PAGE, memory_size - number * PAGE)
        page = data[offset:offset + length]
        assert CRC.unpack_from(data, offset + length)[0] == zlib.crc32(page), number
        pages.append((number, page))
        offset += length + CRC.size
    assert offset == pages_at + pages_len
    regions["page data"] = (pages_at, pages_at + pages_len)
    regions["end record"] = (end_at, len(data) - FOOTER.size)
    regions["footer"] = (len(data) - FOOTER.size, len(data))
    return Layout(header, records, pages, memory_size, regions)


def build_v2(header, items, pages, *, edit_end=None, footer=None) -> bytes:
    """A version-2 file: magic, ``header`` (any value), ``items`` in order
    (each record packed as ``[name, payload]``, its SHA-256 in the end
    record), the ``pages`` (each with its CRC-32) at :data:`PAGES`, the end
    record (with the SHA-256 of the magic and header as written; after
    ``edit_end(end)``, which may change it in place or return a new one) and
    the footer (``footer(end_at)`` -> bytes, if given). An
    end record given as bytes is written as it is. The index is one of the
    items: it is not made to agree with ``pages`` (:func:`index_payload`)."""
    out = bytearray(MAGIC + packb(header))
    header_end = len(out)
    entries = []
    pages_at, pages_len = len(out), 0
    for item in items:
        if item == PAGES:
            pages_at = len(out)
            out += page_data(pages)
            pages_len = len(out) - pages_at
            continue
        if isinstance(item, bytes):
            out += item
            continue
        name, payload, *raw = item
        record = raw[0] if raw else packb([name, payload])
        entries.append([name, len(out), len(record), hashlib.sha256(payload).digest()])
        out += record
    end = {"sections": entries, "pages": [pages_at, pages_len, len(pages)],
           "header": hashlib.sha256(out[:header_end]).digest()}
    if edit_end is not None:
        end = edit_end(end) or end
    end_at = len(out)
    out += end if isinstance(end, bytes) else packb(["end", end])
    out += footer(end_at) if footer is not None else FOOTER.pack(FOOTER_MAGIC, end_at)
    return bytes(out)


def rebuild_v2(layout: Layout, **options) -> bytes:
    """``layout`` written again (the same bytes as the writer's, for a real file)."""
    return build_v2(layout.header, layout.items(), layout.pages, **options)


def join_v2(header, sections) -> bytes:
    """A version-2 file from ``(header, sections)`` in version 1's vocabulary
    (tests/ckpt_files.split): meta, image, state, disk and ``pages``
    payloads of ``[[index, bytes], ...]``, any of them hostile but the pages.
    The header's ``version`` becomes 2 (as ckpt_files.join). The index is
    the bitmap of the pages, sized for the state's memory size when it is
    one (1 .. 4 GiB; else just large enough for the pages): a file with a
    hostile state, but an index and page data a reader can take."""
    header = {"version": 2, **{k: v for k, v in header.items() if k != "version"}}
    by_name: dict[str, list] = {}
    for name, payload in sections:
        by_name.setdefault(name, []).append(payload)
    pages = [tuple(page) for payload in by_name.get("pages", [])
             for page in msgpack.unpackb(payload, raw=False)]
    try:
        memory_size = msgpack.unpackb(by_name["state"][0], raw=False)["memory_size"]
    except Exception:
        memory_size = None
    if type(memory_size) is not int or not 0 < memory_size <= MAX_MEMORY:
        memory_size = None
    items = [(name, payload) for name in ("image", "state") for payload in by_name.get(name, [])]
    items.append(PAGES)
    items += [(name, payload) for name in ("disk", "meta") for payload in by_name.get(name, [])]
    items.append(("index", index_payload(bitmap_of([n for n, _ in pages], memory_size))))
    return build_v2(header, items, pages)
