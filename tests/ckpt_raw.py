"""An independent reader and writer of the version-2 checkpoint layout, for
tests that build hostile files whose checksums are right (so that the loader
must look at the content), including what tests/ckpt_files.py cannot express
through the real writer: a record missing or listed twice, an index that
disagrees with the end record or the page data, an end record or a footer
that points anywhere.

The layout (minivm/ckptfile.py)::

    magic  header  records...  page data  records...  end record  footer

A file is described by its ``items`` in file order: ``(name, payload)`` for
a record, ``(name, payload, raw)`` for one whose bytes in the file are
``raw`` (listed in the end record with ``payload``'s SHA-256), bytes for
filler no record lists, :data:`PAGES` for the place of the page data.
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
PAGES = "<page data>"
RECORD_NAMES = ("image", "state", "disk", "meta", "index")


def packb(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def index_payload(numbers, crcs=None, pages=None) -> bytes:
    """The ``index`` record: page numbers (u32 LE) and a CRC-32 of each page."""
    if crcs is None:
        crcs = [zlib.crc32(data) for _, data in pages]
    return packb({"pages": b"".join(n.to_bytes(4, "little") for n in numbers),
                  "crc32": b"".join(c.to_bytes(4, "little") for c in crcs)})


@dataclass
class Layout:
    """A version-2 file taken apart: payloads, pages and where everything is."""
    header: dict
    records: dict                       # name -> payload (bytes)
    pages: list                         # [(index, bytes)], in file order
    regions: dict = field(default_factory=dict)   # region name -> (start, stop)

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

    def page_region(self, index: int) -> tuple[int, int]:
        start = self.regions["page data"][0]
        for number, data in self.pages:
            if number == index:
                return start, start + len(data)
            start += len(data)
        raise KeyError(index)


def parse_v2(data: bytes) -> Layout:
    """A valid version-2 file as a :class:`Layout` (read from its footer)."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    assert unpacker.unpack() == "minivm-checkpoint"
    header = unpacker.unpack()
    header_end = unpacker.tell()
    tag, end_at = FOOTER.unpack(data[-FOOTER.size:])
    assert tag == FOOTER_MAGIC
    name, end = msgpack.unpackb(data[end_at:-FOOTER.size], raw=False)
    assert name == "end"
    regions = {"header": (len(MAGIC), header_end)}
    records = {}
    for name, offset, length, digest in end["sections"]:
        rec_name, payload = msgpack.unpackb(data[offset:offset + length], raw=False)
        assert rec_name == name and hashlib.sha256(payload).digest() == digest
        records[name] = payload
        regions[f"{name} record"] = (offset, offset + length)
    pages_at, pages_len, count = end["pages"]
    index = msgpack.unpackb(records["index"], raw=False)
    numbers = [int.from_bytes(index["pages"][i:i + 4], "little")
               for i in range(0, len(index["pages"]), 4)]
    memory_size = msgpack.unpackb(records["state"], raw=False)["memory_size"]
    pages, offset = [], pages_at
    for number in numbers:
        length = min(PAGE, memory_size - number * PAGE)
        pages.append((number, data[offset:offset + length]))
        offset += length
    assert offset == pages_at + pages_len and len(numbers) == count
    regions["page data"] = (pages_at, pages_at + pages_len)
    regions["end record"] = (end_at, len(data) - FOOTER.size)
    regions["footer"] = (len(data) - FOOTER.size, len(data))
    return Layout(header, records, pages, regions)


def build_v2(header, items, pages, *, edit_end=None, footer=None) -> bytes:
    """A version-2 file: magic, ``header`` (any value), ``items`` in order
    (each record packed as ``[name, payload]``, its SHA-256 in the end
    record), the raw ``pages`` at :data:`PAGES`, the end record (after
    ``edit_end(end)``, which may change it in place or return a new one) and
    the footer (``footer(end_at)`` -> bytes, if given). An end record given
    as bytes is written as it is."""
    out = bytearray(MAGIC + packb(header))
    entries = []
    pages_at, pages_len = len(out), 0
    for item in items:
        if item == PAGES:
            pages_at = len(out)
            for _, data in pages:
                out += data
            pages_len = len(out) - pages_at
            continue
        if isinstance(item, bytes):
            out += item
            continue
        name, payload, *raw = item
        record = raw[0] if raw else packb([name, payload])
        entries.append([name, len(out), len(record), hashlib.sha256(payload).digest()])
        out += record
    end = {"sections": entries, "pages": [pages_at, pages_len, len(pages)]}
    if edit_end is not None:
        end = edit_end(end) or end
    end_at = len(out)
    out += end if isinstance(end, bytes) else packb(["end", end])
    out += footer(end_at) if footer is not None else FOOTER.pack(FOOTER_MAGIC, end_at)
    return bytes(out)


def rebuild_v2(layout: Layout, **options) -> bytes:
    """``layout`` written again (the same bytes as the writer's, for a real file)."""
    return build_v2(layout.header, layout.items(), layout.pages, **options)
