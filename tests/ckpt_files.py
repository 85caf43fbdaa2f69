"""Checkpoint files taken apart and put back together, for tests that make
hostile or edited files from real ones.

Both formats are presented in one vocabulary, that of version 1: a header
and a list of ``(name, payload)`` sections named meta, image, state, pages
and disk, where a ``pages`` payload is msgpack ``[[index, bytes], ...]``.
:func:`join` writes such a list as a file of either version: version 1 (the
sections as they are, in a container) or version 2 (records with their
digests, the pages as page data and a bitmap index; ckptfile.CheckpointWriter).
"""

from __future__ import annotations

import io

import msgpack

from minivm.ckptfile import (CHECKPOINT_KIND, BytesSource, CheckpointWriter, _header_version,
                             read_end)
from minivm.container import ContainerWriter, pack, read_container


def split(data: bytes) -> tuple[dict, list[tuple[str, bytes]]]:
    """A checkpoint file (version 1 or 2) as (header, sections), version-1 style."""
    source = BytesSource(data, "seed")
    if _header_version(source, "seed") == 1:
        container = read_container(data, CHECKPOINT_KIND, 1, "seed")
        return container.header, list(container.sections)
    header = msgpack.Unpacker(raw=False)
    header.feed(data)
    header.skip()
    head = header.unpack()
    _, records, (pages_at, _, _), _ = read_end(source, "seed")
    payloads = {}
    for name, (offset, length, _) in records.items():
        payloads[name] = msgpack.unpackb(data[offset:offset + length], raw=False)[1]
    bitmap = msgpack.unpackb(payloads["index"], raw=False)["bitmap"]
    numbers = [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1]
    memory_size = msgpack.unpackb(payloads["state"], raw=False)["memory_size"]
    pages, offset = [], pages_at
    for number in numbers:
        length = min(4096, memory_size - number * 4096)
        pages.append([number, data[offset:offset + length]])
        offset += length + 4                  # each page is followed by its CRC-32
    return head, [("meta", payloads["meta"]), ("image", payloads["image"]),
                  ("state", payloads["state"]), ("pages", pack(pages)),
                  ("disk", payloads["disk"])]


def join(header: dict, sections, version: int = 2) -> bytes:
    """Write (header, sections) as a file of ``version``. Version 2 needs the
    ``pages`` payloads to be real page lists (hostile page payloads need
    version 1); every other payload is written as given."""
    buf = io.BytesIO()
    if version == 1:
        writer = ContainerWriter(buf, CHECKPOINT_KIND, {**header, "version": 1})
        for name, payload in sections:
            writer.section(name, payload)
        writer.finish()
        return buf.getvalue()
    rest = {k: v for k, v in header.items() if k != "version"}
    by_name = {}
    for name, payload in sections:
        by_name.setdefault(name, []).append(payload)
    try:
        memory_size = msgpack.unpackb(by_name["state"][0], raw=False)["memory_size"]
    except Exception:               # a hostile state: size the bitmap for 1 MiB
        memory_size = 1 << 20
    writer = CheckpointWriter(buf, rest, memory_size)
    for name in ("image", "state"):
        for payload in by_name.get(name, []):
            writer.record(name, payload)
    for payload in by_name.get("pages", []):
        for index, data in msgpack.unpackb(payload, raw=False):
            writer.page(index, data)
    for name in ("disk", "meta"):
        for payload in by_name.get(name, []):
            writer.record(name, payload)
    writer.finish()
    return buf.getvalue()


def edit(data: bytes, fn, version: int = 2) -> bytes:
    """``data`` with ``fn(name, tree)`` applied to each section's decoded tree
    (changed in place, or a new tree returned), written as ``version``."""
    header, sections = split(data)
    out = []
    for name, payload in sections:
        tree = msgpack.unpackb(payload, raw=False)
        result = fn(name, tree)
        out.append((name, pack(tree if result is None else result)))
    return join(header, out, version)
