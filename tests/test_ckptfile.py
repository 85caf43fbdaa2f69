"""The checkpoint file (docs/contract.md, section 7; docs/formats.md) and the stores (P11).

A complete checkpoint loads and holds only the non-zero pages; anything else
- truncated, bit-flipped, foreign, newer, re-ordered or duplicated sections,
hand-made hostile msgpack, impossible machine states - is refused with a
minivm error (FormatError for the file itself), never another exception, a
hang or unbounded memory use. A checkpoint still being written cannot be
loaded. A missing or changed disk file is a DiskError on resume.

Both formats are tested: version 2 (written now: records located by an end
record and a footer, page data in which each saved page is followed by its
CRC-32, an index that is a bitmap of the saved pages; pages read on demand) and version 1 (a container of sections, read whole),
which still loads and must stay as hostile-safe. Hostile files are built
with independent writers of both layouts - version 1 here (magic, header,
[name, payload] sections, ["end", index + SHA-256]), version 2 in
tests/ckpt_raw.py - so that their checksums are right and the loader must
look at the content.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import zlib

import msgpack
import pytest

import ckpt_raw
from ckpt_files import join, split
from ckpt_raw import PAGES, bitmap_of, build_v2, index_payload, join_v2, parse_v2
from ckpt_strategies import (Config, assemble_text, close_disks, disk_pattern, final_state,
                             new_machine, write_disk)
from minivm.checkpoint import Checkpointer
from minivm.engine import DEFAULT_ENGINE, ENGINES
from minivm.resume import read_checkpoint, resume
from minivm.ckptfile import PageError, load_checkpoint
from minivm.cli import main as cli_main
from minivm.devices import BufferSink, ConsoleInput
from minivm.errors import DiskError, FormatError, MinivmError
from minivm.store import FileStore, MemoryStore

from support import bounded, run_cli, time_limit

MEMORY = 64 * 1024

SAMPLE = """
        out 0x11, on_timer
        out 0x10, 50
        mov r1, 11
        mov r2, 22
        mov r3, -1
        mov r4, 0x12345678
        st r4, [0x3000]         ; page 3: non-zero
        mov r5, 0
        st r5, [0x4000]         ; page 4: touched, but all zero
        st r4, [0x5000]         ; page 5: non-zero ...
        st r5, [0x5000]         ; ... then zero again
        ckpt
        add r1, r1, r2
        out 0x01, r1
        out 0x00, 10
        out 0x10, 0
        halt
on_timer:
        iret
.data
greeting: .asciz "data page"
"""

DISK_SAMPLE = """
        mov r1, 0x61626364
        st r1, [0x2000]
        out 0x20, 3
        out 0x21, 0x2000
        out 0x22, 1
        out 0x23, 2             ; a write in flight at the checkpoint
        out 0x20, 7
        out 0x21, 0x3000
        out 0x22, 1
        out 0x23, 1             ; and a read
        ckpt
loop:   in r2, 0x24
        beq r2, 0, done
        wait
        jmp loop
done:   ld r3, [0x3000]
        out 0x01, r3
        out 0x00, 10
        halt
"""


def take(source: str, folder, *, disk: bool = False, mode: str = "cow", store=None,
         memory: int = MEMORY, engine: str = DEFAULT_ENGINE):
    image = assemble_text(source, "sample.asm")
    folder.mkdir(parents=True, exist_ok=True)
    disk_path = write_disk(folder / "disk.img", disk_pattern()) if disk else None
    config = Config(memory_size=memory, disk_content=disk_pattern() if disk else None,
                    engine=engine)
    machine = new_machine(image, config, disk_path)
    reports = []
    cp = Checkpointer(machine, store or FileStore(str(folder / "ck")), mode=mode,
                      report=reports.append)
    stop = machine.run(100_000)
    cp.finish_all()
    assert stop.reason == "halt", stop
    final = final_state(machine, stop)
    close_disks(machine)
    assert len(cp.jobs) == 1, f"the ckpt instruction took {len(cp.jobs)} checkpoints: {reports}"
    (job,) = cp.jobs
    assert job.status == "complete", job.progress()
    return image, job, final, disk_path


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    image, job, final, _ = take(SAMPLE, folder)
    with open(job.location, "rb") as f:
        data = f.read()
    return image, job, final, data


def as_version(data: bytes, version: int) -> bytes:
    """A real checkpoint (written as version 2) in ``version``'s layout."""
    return data if version == 2 else join(*split(data), version=1)


@pytest.fixture(scope="module")
def disk_sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk-sample")
    image, job, final, disk_path = take(DISK_SAMPLE, folder, disk=True)
    return image, job, final, disk_path


# --- an independent reader and writer of the container layout -----------------------------

MAGIC = msgpack.packb("minivm-checkpoint")


def parse(data: bytes):
    """(header, [(name, payload, start, end)], trailer start) of a valid file."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    assert unpacker.unpack() == "minivm-checkpoint"
    header = unpacker.unpack()
    sections = []
    while True:
        start = unpacker.tell()
        name, payload = unpacker.unpack()
        if name == "end":
            return header, sections, start
        sections.append((name, payload, start, unpacker.tell()))


def build(header: dict, sections, *, magic: bytes = MAGIC) -> bytes:
    """A container with a correct index and digest around arbitrary sections."""
    out = magic + msgpack.packb(header, use_bin_type=True)
    index = []
    for name, payload in sections:
        out += msgpack.packb([name, payload], use_bin_type=True)
        index.append([name, len(payload), hashlib.sha256(payload).digest()])
    trailer = ["end", {"sections": index, "digest": hashlib.sha256(out).digest()}]
    return out + msgpack.packb(trailer, use_bin_type=True)


def sections_of(data: bytes) -> tuple[dict, list]:
    """header and [(name, payload)] of a valid file of either version, in the
    version-1 vocabulary (tests/ckpt_files.split)."""
    header, sections = split(data)
    return header, list(sections)


def decoded(data: bytes) -> tuple[dict, dict]:
    """header and {name: decoded payload} (pages: list of chunks)."""
    header, sections = sections_of(data)
    out = {"pages": []}
    for name, payload in sections:
        value = msgpack.unpackb(payload, raw=False)
        if name == "pages":
            out["pages"].append(value)
        else:
            out[name] = value
    return header, out


def rebuild(header: dict, parts: dict, order=("meta", "image", "state", "pages", "disk"),
            version: int = 1) -> bytes:
    """Version 1: the independent container writer; version 2: ckpt_raw.join_v2,
    independent too, and able to write a hostile state (its index sized for
    the pages when the memory size is not 1 .. 4 GiB)."""
    sections = []
    for name in order:
        if name == "pages":
            sections += [("pages", msgpack.packb(chunk, use_bin_type=True))
                         for chunk in parts["pages"]]
        elif name in parts:
            sections.append((name, msgpack.packb(parts[name], use_bin_type=True)))
    if version == 2:
        return join_v2(header, sections)
    return build({**header, "version": 1}, sections)


REFUSE_MEGABYTES = 16         # the sample's memory is 64 KiB; its file a few KiB


def refused(data: bytes, tmp_path, name: str = "bad.mvc", *, error=FormatError) -> str:
    """Loading (and resuming, on each engine) ``data`` must raise ``error``;
    returns its message, which must be one line."""
    path = tmp_path / name
    path.write_bytes(data)
    messages = []
    for engine in ENGINES:
        # bounded memory, not host time: a hostile size field must not make the loader allocate
        with bounded(f"refusing {name}", megabytes=REFUSE_MEGABYTES), \
                pytest.raises(MinivmError) as info:
            ckpt = read_checkpoint(str(path))
            machine, _ = resume(ckpt, FileStore(str(tmp_path / f"resumed-{engine}")),
                                console_sink=BufferSink(), console_input=ConsoleInput(b""),
                                engine=engine)
            try:
                machine.run(10_000)     # accepted: whatever it does must stay a guest matter
            finally:
                close_disks(machine)
        assert isinstance(info.value, error), \
            f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
        message = str(info.value)
        assert message and "Traceback" not in message and "\n" not in message, message
        messages.append(message)
    return messages[0]


# --- a complete checkpoint ---------------------------------------------------------------------

def test_complete_checkpoint_loads(sample):
    image, job, final, data = sample
    ckpt = read_checkpoint(job.location)
    assert ckpt.image.same_program(image)
    assert ckpt.tick == 12 and ckpt.pc == 12        # right after the ckpt (instruction 11)
    regs = ckpt.state["cpu"]["regs"]
    assert regs[1:6] == [11, 22, 0xFFFFFFFF, 0x12345678, 0]
    assert regs[15] == MEMORY                       # sp: nothing pushed
    assert ckpt.memory_size == MEMORY
    assert ckpt.disk is None
    assert ckpt.state["timer"]["period"] == 50
    assert ckpt.meta["name"] == "ckpt-0001" and ckpt.meta["origin"] == "ckpt"
    assert final.output == b"33\n"


def test_only_non_zero_pages_are_stored(sample):
    _, job, _, data = sample
    ckpt = read_checkpoint(job.location)
    assert sorted(ckpt.pages) == [0, 3], "pages 4 and 5 are all zero: they must not be stored"
    page0 = bytearray(4096)
    page0[:10] = b"data page\0"
    assert ckpt.pages[0] == bytes(page0)
    page3 = bytearray(4096)
    page3[:4] = (0x12345678).to_bytes(4, "little")
    assert ckpt.pages[3] == bytes(page3)
    # and the file is about two pages big, not 64 KiB of memory
    assert len(data) < 2 * 4096 + 4096


# --- damaged files -------------------------------------------------------------------------------

def offsets(n: int, count: int = 400) -> list[int]:
    """Every offset in the first and last 300 bytes, a stride in between."""
    middle = range(300, max(300, n - 300), max(1, (n - 600) // count))
    return sorted(set(range(min(n, 300))) | set(middle) | set(range(max(0, n - 300), n)))


@pytest.mark.parametrize("version", [1, 2])
def test_truncated_files_are_refused(sample, tmp_path, version):
    _, _, _, data = sample
    data = as_version(data, version)
    with time_limit(60, "refusing truncated files"):
        for n in offsets(len(data)):
            with pytest.raises(FormatError):
                load_checkpoint(data[:n], f"truncated at {n}")
    message = refused(data[:len(data) // 2], tmp_path)
    assert "bad.mvc" in message


@pytest.mark.parametrize("version", [1, 2])
def test_single_bit_flips_are_refused(sample, version):
    """Version 1: every flip is refused (one digest over the whole file).
    Version 2: refused when the file is opened (the header too: its SHA-256
    is in the end record), except in the page data, which is not read then:
    reading the flipped page (its bytes or its CRC-32) is a PageError, and
    the other pages read back as saved."""
    _, _, _, data = sample
    data = as_version(data, version)
    original = load_checkpoint(data, "original")
    layout = parse_v2(data) if version == 2 else None
    accepted = []
    for i in offsets(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 1 << (i % 8)
        try:
            ckpt = load_checkpoint(bytes(damaged), f"flipped at {i}")
        except FormatError as exc:
            assert "\n" not in str(exc)
            continue
        if layout is None:
            accepted.append(i)
        elif i in range(*layout.regions["page data"]):
            hit = [n for n, _ in layout.pages if i in range(*layout.saved_region(n))]
            for n in ckpt.pages:
                if n in hit:
                    with pytest.raises(PageError, match=f"flipped at {i}: saved page {n} "):
                        ckpt.pages[n]
                else:
                    assert ckpt.pages[n] == original.pages[n]
        else:
            accepted.append(i)
    assert not accepted, f"bit flips at offsets {accepted[:10]} were not detected"


def test_foreign_files_are_refused(tmp_path, sample, disk_sample):
    image, _, _, _ = sample
    image.save(str(tmp_path / "program.mvb"))
    (tmp_path / "random.bin").write_bytes(random.Random(7).randbytes(5000))
    (tmp_path / "empty.mvc").write_bytes(b"")
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "state": {"pc": 0}}))
    (tmp_path / "folder.mvc").mkdir()
    _, job, _, _ = disk_sample
    overlay = os.path.join(os.path.dirname(job.location), "ckpt-0001.cow")
    not_ours = ("not a minivm checkpoint", "not a checkpoint")
    cases = {"program.mvb": ("image",), "random.bin": not_ours, "empty.mvc": ("empty",),
             "state.json": not_ours, "folder.mvc": ("directory", "not a regular file"),
             "missing.mvc": ("does not exist", "no such", "missing")}
    for name, words in cases.items():
        with pytest.raises(FormatError) as info:
            read_checkpoint(str(tmp_path / name))
        message = str(info.value)
        assert name in message and any(w in message for w in words), message
    with pytest.raises(FormatError) as info:
        read_checkpoint(overlay)
    assert "overlay" in str(info.value)
    for name in ("program.mvb", "random.bin", "state.json"):
        for command in ("resume", "inspect"):
            result = run_cli(command, str(tmp_path / name), cwd=tmp_path)
            assert result.returncode == 2
            assert b"Traceback" not in result.stderr
            assert result.stderr.startswith(b"minivm: error:"), result.stderr


def v2_with_header(data: bytes, header) -> bytes:
    """A real version-2 file with another header (any value), every offset and
    digest right (the end record's SHA-256 of the header too)."""
    layout = parse_v2(data)
    return build_v2(header, layout.items(), layout.pages)


def test_newer_format_version_is_refused(sample, tmp_path):
    _, _, _, data = sample
    header, sections = sections_of(data)
    assert header["version"] == 2
    v1_header = {**header, "version": 1}
    # laid out as version 1 or 2, a header saying 3 is a newer minivm's
    for newer in (build({**header, "version": 3}, sections),
                  v2_with_header(data, {**header, "version": 3})):
        message = refused(newer, tmp_path)
        assert "written by a newer minivm (format 3" in message
    # a header that does not say how the file is laid out
    message = refused(build({**header, "version": 2}, sections), tmp_path)
    assert "newer minivm" not in message
    message = refused(v2_with_header(data, v1_header), tmp_path)
    assert "newer minivm" not in message
    for version in (0, -1, "1", "2", None, 2 ** 40, 1.0, True):
        refused(build({**header, "version": version}, sections), tmp_path)
        refused(v2_with_header(data, {**header, "version": version}), tmp_path)
    refused(build([1, 2, 3], sections), tmp_path)
    refused(v2_with_header(data, [1, 2, 3]), tmp_path)
    refused(v2_with_header(data, {"name": "ckpt-0001"}), tmp_path)


def test_reordered_or_duplicated_sections_are_refused(sample, tmp_path):
    """Version 1 (sections in a container: order and count matter); version 2's
    records are tested in test_v2_missing_or_duplicated_records_are_refused."""
    _, _, _, data = sample
    data = as_version(data, 1)
    header, sections, end = parse(data)
    names = [s[0] for s in sections]
    assert names[:3] == ["meta", "image", "state"] and names[-1] == "disk"
    # raw edits: the index and digest in the trailer no longer match
    (_, _, a0, a1), (_, _, b0, b1) = sections[0], sections[2]
    swapped = data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]
    assert len(swapped) == len(data)
    refused(swapped, tmp_path)
    duplicated = data[:end] + data[a0:a1] + data[end:]
    refused(duplicated, tmp_path)
    dropped = data[:b0] + data[b1:]
    refused(dropped, tmp_path)
    # consistent files, but with a section twice or missing
    plain = [(n, p) for n, p, _, _ in sections]
    for twice in ("meta", "image", "state", "disk"):
        payload = next(p for n, p in plain if n == twice)
        message = refused(build(header, plain + [(twice, payload)]), tmp_path)
        assert twice in message
    for missing in ("meta", "image", "state", "disk"):
        refused(build(header, [(n, p) for n, p in plain if n != missing]), tmp_path)
    pages = [(n, p) for n, p in plain if n == "pages"]
    assert pages
    message = refused(build(header, plain[:-1] + pages + plain[-1:]), tmp_path)
    assert "twice" in message


# --- hostile msgpack -----------------------------------------------------------------------------

HOSTILE_BLOBS = {
    "bin of 4 GiB": b"\xc6\xff\xff\xff\xff",
    "str of 2 GiB": b"\xdb\x7f\xff\xff\xff",
    "array of 2^32 items": b"\xdd\xff\xff\xff\xff",
    "map of 2^32 items": b"\xdf\xff\xff\xff\xff",
    "deep nesting": b"\x91" * 200_000 + b"\xc0",
    "deep nesting, short": b"\x91" * 4000 + b"\xc0",
    "an ext type": msgpack.packb(msgpack.ExtType(1, b"x" * 10)),
    "text, not bytes": msgpack.packb(["meta", "text, not bytes"]),
    "one item": msgpack.packb(["meta"]),
    "a map": msgpack.packb({"meta": b""}, use_bin_type=True),
    "a number for a name": msgpack.packb([1, b""], use_bin_type=True),
}


def test_hostile_container_bytes_are_refused(sample, tmp_path):
    _, _, _, data = sample
    header, sections = sections_of(data)
    name = msgpack.packb("meta")
    for version in (1, 2):
        head = MAGIC + msgpack.packb({**header, "version": version})
        cases = [
            head + b"\x92" + name + b"\xc6\xff\xff\xff\xff",          # bin of 4 GiB
            head + b"\x92" + name + b"\xdb\x7f\xff\xff\xff",          # str of 2 GiB
            head + b"\xdd\xff\xff\xff\xff",                           # array of 2^32 items
            head + b"\xdf\xff\xff\xff\xff",                           # map of 2^32 items
            head + b"\x91" * 200_000 + b"\xc0",                       # deep nesting
            MAGIC + b"\xdf\xff\xff\xff\xff",                          # huge header map
            MAGIC + b"\x81" * 100_000 + b"\xc0",                      # deeply nested header
            head + msgpack.packb(msgpack.ExtType(1, b"x" * 10)),      # an ext type
            head + msgpack.packb(["meta", "text, not bytes"]),
            head + msgpack.packb(["meta"]),
            head + msgpack.packb({"meta": b""}, use_bin_type=True),
            head + msgpack.packb([1, b""], use_bin_type=True),
        ]
        for i, case in enumerate(cases):
            refused(case, tmp_path, f"hostile{i}.mvc")
    # version 2 reads from the end: the same bytes where the footer and the end
    # record point, with every offset and digest right
    layout = parse_v2(data)
    for i, (what, blob) in enumerate(HOSTILE_BLOBS.items()):
        as_end = build_v2(layout.header, layout.items(), layout.pages, edit_end=lambda _: blob)
        refused(as_end, tmp_path, f"end{i}.mvc")
        for record in ckpt_raw.RECORD_NAMES:
            items = [item if item == PAGES or item[0] != record else (record, item[1], blob)
                     for item in layout.items()]
            refused(build_v2(layout.header, items, layout.pages), tmp_path,
                    f"record{i}-{record}.mvc")


HOSTILE_PAYLOADS = {
    "array of 2^32 items": b"\xdd\xff\xff\xff\xff",
    "bin of 4 GiB": b"\xc6\xff\xff\xff\xff",
    "str of 2 GiB": b"\xdb\x7f\xff\xff\xff",
    "map of 2^32 items": b"\xdf\xff\xff\xff\xff",
    "deep nesting": b"\x91" * 200_000 + b"\xc0",
    "deep maps": b"\x81\xa1k" * 50_000 + b"\xc0",
    "ext type": msgpack.packb(msgpack.ExtType(5, b"abc")),
    "integer keys": msgpack.packb({1: 2}),
    "trailing bytes": msgpack.packb({}) + b"\x00",
    "nothing": b"",
    "not msgpack": b"\xc1\xc1\xc1",
}


@pytest.mark.parametrize("version, section",
                         [(1, name) for name in ("meta", "image", "state", "pages", "disk")]
                         + [(2, name) for name in ckpt_raw.RECORD_NAMES],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("payload", list(HOSTILE_PAYLOADS), ids=list(HOSTILE_PAYLOADS))
def test_hostile_section_payloads_are_refused(version, section, payload, sample, tmp_path):
    """A hostile payload with its checksum right, in each section (version 1:
    pages chunks too) or record (version 2: the page index too)."""
    _, _, _, data = sample
    if version == 1:
        header, sections = sections_of(as_version(data, 1))
        changed = [(n, HOSTILE_PAYLOADS[payload] if n == section else p) for n, p in sections]
        refused(build(header, changed), tmp_path)
    else:
        layout = parse_v2(data)
        refused(build_v2(layout.header, layout.items(**{section: HOSTILE_PAYLOADS[payload]}),
                         layout.pages), tmp_path)


def mutate(data: bytes, change, version: int = 2) -> bytes:
    """``data`` with its decoded parts changed, checksums right, as ``version``."""
    header, parts = decoded(data)
    change(parts)
    return rebuild(header, parts, version=version)


def _set(path, value):
    def change(parts):
        target = parts
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(path):
    def change(parts):
        target = parts
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


STATE_CASES = {
    # wrong types
    "state is a list": _set(["state"], [1, 2]),
    "meta is a number": _set(["meta"], 5),
    "cpu is text": _set(["state", "cpu"], "cpu"),
    "registers are text": _set(["state", "cpu", "regs"], ["r"] * 16),
    "registers missing": _drop(["state", "cpu", "regs"]),
    "tick is text": _set(["state", "cpu", "tick"], "12"),
    "halted is a number": _set(["state", "cpu", "halted"], 3),
    "timer missing": _drop(["state", "timer"]),
    "timer is a list": _set(["state", "timer"], []),
    "interrupts enabled is text": _set(["state", "interrupts", "enabled"], "yes"),
    "console counts are text": _set(["state", "console", "bytes_written"], "many"),
    "pages is a map": _set(["pages"], [{"0": b""}]),
    "page index is text": _set(["pages"], [[["0", bytes(4096)]]]),
    "page data is a number": _set(["pages"], [[[0, 7]]]),
    "page item is not a pair": _set(["pages"], [[[0]]]),
    "image has no code": _set(["image", "code"], []),
    "image has an unknown opcode": _set(["image", "code"], [[999, 0, 0, 0]] * 18),
    "image entry outside the code": _set(["image", "entry"], 10_000),
    # negative or impossible sizes and values
    "memory size negative": _set(["state", "memory_size"], -1),
    "memory size zero": _set(["state", "memory_size"], 0),
    "memory size beyond 4 GiB": _set(["state", "memory_size"], (1 << 32) + 4096),
    "tick negative": _set(["state", "cpu", "tick"], -5),
    "timer period negative": _set(["state", "timer", "period"], -1),
    "timer next fire negative": _set(["state", "timer", "next_fire"], -50),
    "timer handler outside the code": _set(["state", "timer", "handler"], 10_000),
    "disk handler outside the code": _set(["state", "disk", "handler"], -3),
    "disk latency negative": _set(["state", "disk", "latency"], -100),
    "queued request without a disk": _set(["state", "disk", "queue"],
                                          [[1, 1, 0, 0, 1, 0, 10, None]]),
    "queued request with negative count": _set(["state", "disk", "queue"],
                                               [[1, 1, 0, 0, -1, 0, 10, None]]),
    "pending interrupt from nowhere": _set(["state", "interrupts", "pending"],
                                           [[5, 0, 0, "keyboard"]]),
    "page of the wrong size": _set(["pages"], [[[3, bytes(4095)]]]),
    "page outside memory": _set(["pages"], [[[16, bytes(4096)]]]),
    "page index negative": _set(["pages"], [[[-1, bytes(4096)]]]),
    "page index huge": _set(["pages"], [[[1 << 40, bytes(4096)]]]),
    "page saved twice": _set(["pages"], [[[3, bytes(4096)], [3, bytes(4096)]]]),
    # registers and pc out of range
    "register 2^32": _set(["state", "cpu", "regs"], [1 << 32] + [0] * 15),
    "register negative": _set(["state", "cpu", "regs"], [-1] + [0] * 15),
    "seventeen registers": _set(["state", "cpu", "regs"], [0] * 17),
    "fifteen registers": _set(["state", "cpu", "regs"], [0] * 15),
    "pc just past the code": _set(["state", "cpu", "pc"], 18),
    "pc negative": _set(["state", "cpu", "pc"], -1),
    "pc huge": _set(["state", "cpu", "pc"], 1 << 40),
    "state version unknown": _set(["state", "version"], 99),
}


#: Cases in the ``pages`` sections exist only in version 1; version 2's page
#: index is tested in test_v2_index_disagreements_are_refused.
PAGES_CASES = [case for case in STATE_CASES if case.startswith("page")]


@pytest.mark.parametrize("version, case",
                         [(1, case) for case in STATE_CASES]
                         + [(2, case) for case in STATE_CASES if case not in PAGES_CASES],
                         ids=lambda v: str(v))
def test_impossible_contents_are_refused(version, case, sample, tmp_path):
    _, _, _, data = sample
    header, parts = decoded(data)
    assert len(parts["image"]["code"]) == 18        # the cases above assume it
    damaged = mutate(data, STATE_CASES[case], version)
    message = refused(damaged, tmp_path, error=MinivmError)
    assert "bad.mvc" in message, f"the message should name the file: {message}"
    # `minivm inspect` on it: it may describe what it can, or refuse it, but it
    # must not crash (an exception escaping main() is a traceback for the user)
    path = str(tmp_path / "bad.mvc")
    try:
        status = cli_main(["inspect", path])
    except Exception as exc:
        pytest.fail(f"'minivm inspect' of a file with {case} crashed: "
                    f"{type(exc).__name__}: {exc}")
    assert status in (0, 2)


def test_the_pages_cases_are_written_as_version_1(sample):
    """The version-1 cases above really are version-1 files (the loader's v1 path)."""
    _, _, _, data = sample
    damaged = mutate(data, STATE_CASES["page saved twice"], 1)
    assert sections_of(damaged)[0]["version"] == 1
    with pytest.raises(FormatError, match="page 3 is saved twice"):
        load_checkpoint(damaged, "x")


@pytest.mark.parametrize("version", [1, 2])
def test_hostile_file_through_the_cli(sample, tmp_path, version):
    _, _, _, data = sample
    path = tmp_path / "bad.mvc"
    path.write_bytes(mutate(data, _set(["state", "cpu", "pc"], 1 << 40), version))
    for args in (["resume", str(path)], ["resume", str(path), "--engine", "blocks"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert b"Traceback" not in result.stderr
        assert b"bad.mvc" in result.stderr and b"outside the code" in result.stderr
    result = run_cli("inspect", str(path), cwd=tmp_path)    # may describe it, never crash
    assert result.returncode in (0, 2) and b"Traceback" not in result.stderr


# --- the disk a checkpoint points to (P10) ----------------------------------------------------------

def test_missing_or_changed_disk_is_a_disk_error(disk_sample, tmp_path):
    _, job, _, disk_path = disk_sample
    ckpt = read_checkpoint(job.location)
    assert ckpt.disk["chain"][0]["path"] == os.path.abspath(disk_path)
    saved = tmp_path / "saved.img"
    shutil.copyfile(disk_path, saved)
    stamp = os.stat(disk_path)
    try:
        # changed: one byte
        with open(disk_path, "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(DiskError) as info:
            resume(ckpt, FileStore(str(tmp_path / "r1")))
        assert "changed" in str(info.value) and "disk.img" in str(info.value)
        result = run_cli("resume", job.location, cwd=tmp_path)
        assert result.returncode == 2 and b"changed" in result.stderr
        assert b"Traceback" not in result.stderr
        # changed: a different size
        shutil.copyfile(saved, disk_path)
        with open(disk_path, "ab") as f:
            f.write(bytes(512))
        with pytest.raises(DiskError):
            resume(ckpt, FileStore(str(tmp_path / "r2")))
        # missing
        os.unlink(disk_path)
        with pytest.raises(DiskError) as info:
            resume(ckpt, FileStore(str(tmp_path / "r3")))
        assert "disk.img" in str(info.value)
        result = run_cli("resume", job.location, cwd=tmp_path)
        assert result.returncode == 2 and b"Traceback" not in result.stderr
    finally:
        shutil.copyfile(saved, disk_path)
        # The default check is O(1) (docs/formats.md, "Disk identity"): it tells
        # restored content from changed content by the modification time, so
        # the restore puts that back too (as cp -p, rsync -a, tar do).
        os.utime(disk_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    # restored: it resumes again
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "r4")), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""))
    assert machine.run(100_000).reason == "halt"
    close_disks(machine)


# --- a checkpoint being saved, atomicity, names ---------------------------------------------------

MANY_PAGES = """
        mov r1, 0x10000
        mov r2, 1
touch:  st r2, [r1]             ; 200 pages of 1 MiB memory get a word
        add r1, r1, 4096
        add r2, r2, 1
        blt r2, 201, touch
        ckpt
        mov r3, 30000
spin:   sub r3, r3, 1
        bgt r3, 0, spin
        halt
"""


def test_checkpoint_being_saved_is_not_loadable(tmp_path, engine):
    image = assemble_text(MANY_PAGES, "many.asm")
    machine = new_machine(image, Config(memory_size=1 << 20, engine=engine), None)
    folder = tmp_path / "ck"
    cp = Checkpointer(machine, FileStore(str(folder)), mode="cow", pages_per_slice=1)
    while not cp.jobs:
        machine.run(1)
    (job,) = cp.jobs
    machine.run(8 * 2048)                       # a few background batches of one page
    assert job.status == "saving", job.progress()
    assert job.pages_done < 200
    assert not os.path.exists(job.location)
    with pytest.raises(FormatError):
        read_checkpoint(job.location)
    # whatever is in the folder meanwhile does not load as a checkpoint
    entries = os.listdir(folder)
    assert entries, "the checkpoint is being written somewhere in its folder"
    for entry in entries:
        with pytest.raises(FormatError):
            read_checkpoint(str(folder / entry))
    machine.run()
    cp.finish_all()
    assert job.status == "complete"
    ckpt = read_checkpoint(job.location)
    assert sorted(ckpt.pages) == list(range(16, 216))
    assert [f for f in os.listdir(folder) if not f.startswith(".")] == ["ckpt-0001.mvc"]
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


def test_checkpoints_taken_while_one_is_saving_are_all_kept(tmp_path, engine):
    """Each checkpoint is its own, complete file, even when it is taken while an
    earlier one is still being saved in the background (here: no disk attached,
    so no overlay file claims the name first)."""
    image = assemble_text(SAMPLE.replace("ckpt", "ckpt\n        ckpt\n        ckpt"), "three.asm")
    machine = new_machine(image, Config(memory_size=MEMORY, engine=engine), None)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck")), mode="cow")
    machine.run(100_000)
    cp.finish_all()
    assert [job.tick for job in cp.jobs] == [12, 13, 14]
    locations = [job.location for job in cp.jobs]
    assert len(set(locations)) == 3, f"three checkpoints saved as {sorted(set(locations))}"
    for job in cp.jobs:
        assert read_checkpoint(job.location).tick == job.tick


# --- the memory store (P11) -------------------------------------------------------------------------

@pytest.mark.parametrize("source,disk", [(SAMPLE, False), (DISK_SAMPLE, True)],
                         ids=["no-disk", "disk"])
def test_memory_store_round_trip(source, disk, tmp_path, engine):
    _, file_job, file_final, _ = take(source, tmp_path / "file", disk=disk, engine=engine)
    store = MemoryStore(overlay_folder=str(tmp_path / "mem-overlays"))
    image, mem_job, mem_final, _ = take(source, tmp_path / "mem", disk=disk, store=store,
                                        engine=engine)
    assert mem_final.differences(file_final, skip=()) == []
    assert mem_job.location == "memory:ckpt-0001"
    assert store.names() == ["ckpt-0001"]
    from_file = read_checkpoint(file_job.location)
    from_memory = load_checkpoint(store.load("ckpt-0001"), "memory checkpoint")
    assert from_memory.state == from_file.state
    assert from_memory.pages == from_file.pages
    assert from_memory.image.same_program(from_file.image)
    assert (from_memory.disk is None) == (not disk)
    results = []
    for ckpt, resume_store in ((from_file, FileStore(str(tmp_path / "resume-file"))),
                               (from_memory, MemoryStore(str(tmp_path / "resume-mem")))):
        machine, _ = resume(ckpt, resume_store, console_sink=BufferSink(),
                            console_input=ConsoleInput(b""), engine=engine)
        results.append(final_state(machine, machine.run(100_000)))
        close_disks(machine)
    assert results[0].differences(results[1], skip=()) == []
    assert results[0].differences(file_final) == []
    with pytest.raises(MinivmError):
        store.load("ckpt-0009")


# --- format 2: a real file damaged in each of its regions -------------------------------------------

V2_MEMORY = MEMORY - 1000           # the last page (15) is 3,096 bytes
V2_SAMPLE = """
        mov r4, 0x12345678
        st r4, [0x3000]         ; page 3
        mov r5, 0x0BADF00D
        st r5, [0xF000]         ; page 15, the last one, partial
        ckpt
        ld r6, [0x3000]         ; after the checkpoint the guest reads every saved page:
        ld r7, [0xF000]         ; 3, 15 and 0 (the data), in this order
        ldb r8, [greeting]
        add r1, r6, r7
        out 0x01, r1
        out 0x00, 10
        out 0x00, r8
        out 0x00, 10
        halt
.data
greeting: .asciz "data page"
"""
V2_OUTPUT = b"%d\nd\n" % (0x12345678 + 0x0BADF00D)
V2_REGIONS = ("magic", "header", "image record", "state record", "page data", "disk record",
              "meta record", "index record", "end record", "footer")


@pytest.fixture(scope="module")
def v2_sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2-sample")
    _, job, final, _ = take(V2_SAMPLE, folder, memory=V2_MEMORY)
    assert final.output == V2_OUTPUT
    with open(job.location, "rb") as f:
        data = f.read()
    layout = parse_v2(data)
    layout.regions["magic"] = (0, len(MAGIC))
    return data, layout


def resumed_run(ckpt, folder, engine: str, **options):
    """Resume ``ckpt`` on ``engine`` and run it to its end: (stop, output)."""
    machine, _ = resume(ckpt, FileStore(str(folder)), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""), engine=engine, **options)
    try:
        return machine, machine.run(10_000)
    finally:
        close_disks(machine)


def test_v2_sample_layout(v2_sample, sample, tmp_path):
    """The file the tests below damage: every region present, in the writer's
    order, with the last page partial; each saved page at its rank times
    4,100 bytes, followed by its CRC-32; an index of one bit per page. It
    resumes to the normal end. tests/ckpt_raw.py, which the tests build
    hostile files with, writes it again byte for byte (as it does the other
    sample), so what they change is only what each of them changes."""
    data, layout = v2_sample
    spans = [layout.regions[r] for r in V2_REGIONS]
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), layout.regions
    assert [n for n, _ in layout.pages] == [0, 3, 15]
    assert len(layout.pages[-1][1]) == V2_MEMORY - 15 * 4096
    pages_at, pages_end = layout.regions["page data"]
    assert pages_end - pages_at == 3 * 4100 - 1000
    for rank, (number, page) in enumerate(layout.pages):
        start, stop = layout.page_region(number)
        assert start == pages_at + rank * 4100 and data[start:stop] == page
        assert data[stop:stop + 4] == zlib.crc32(page).to_bytes(4, "little")
    assert layout.bitmap == bytes([0b00001001, 0b10000000])      # pages 0, 3 and 15 of 16
    assert ckpt_raw.rebuild_v2(layout) == data
    assert join_v2(*split(data)) == data
    _, _, _, other = sample
    assert ckpt_raw.rebuild_v2(parse_v2(other)) == other
    assert join_v2(*split(other)) == other
    ckpt = load_checkpoint(data, "sample")
    assert ckpt.format_version == 2 and sorted(ckpt.pages) == [0, 3, 15]
    for engine in ENGINES:
        path = tmp_path / f"{engine}.mvc"
        path.write_bytes(data)
        machine, stop = resumed_run(read_checkpoint(str(path)), tmp_path / engine, engine)
        assert stop.reason == "halt" and bytes(machine.console.sink.data) == V2_OUTPUT


def cuts(start: int, stop: int) -> list[int]:
    """Offsets inside [start, stop): its ends and a few between."""
    return sorted({start, start + 1, (start + stop) // 2, stop - 2, stop - 1} & set(range(start, stop)))


def one_line(exc) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("region", V2_REGIONS)
def test_v2_truncated_in_every_region(v2_sample, tmp_path, region):
    """Cut inside each region (the magic, the header, each record, the page
    data, the end record, the footer): refused when the file is opened (the
    footer is gone), in memory or from a file, with a one-line message."""
    data, layout = v2_sample
    for n in cuts(*layout.regions[region]):
        with pytest.raises(FormatError) as info:
            load_checkpoint(data[:n], f"cut at {n}")
        assert f"cut at {n}" in one_line(info.value)
    n = cuts(*layout.regions[region])[2 if region != "magic" else 1]
    assert "bad.mvc" in refused(data[:n], tmp_path)


def sample_offsets(start: int, stop: int, count: int = 24) -> list[int]:
    step = max(1, (stop - start) // count)
    return sorted(set(range(start, stop, step)) | {stop - 1})


def undetected_flips(data, offsets):
    """(offset, bit) of every single-bit flip at ``offsets`` that loads; a
    refused one must name the file in a one-line message."""
    accepted = []
    for i in offsets:
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            try:
                load_checkpoint(bytes(damaged), f"flipped at {i}")
            except FormatError as exc:
                assert f"flipped at {i}" in one_line(exc)
                continue
            accepted.append((i, bit))
    return accepted


@pytest.mark.parametrize("region", [r for r in V2_REGIONS if r not in ("header", "page data")])
def test_v2_bit_flips_are_refused_on_open(v2_sample, region):
    """A flipped bit (each of the 8, at a sample of offsets) anywhere but in
    the page data is refused when the file is opened (the header, at every
    offset: test_v2_header_bit_flips_are_refused)."""
    data, layout = v2_sample
    accepted = undetected_flips(data, sample_offsets(*layout.regions[region]))
    assert not accepted, f"flips (offset, bit) {accepted[:10]} were not detected"


def test_v2_bit_flips_in_the_page_data_fault_when_the_page_is_read(v2_sample, tmp_path):
    """The page data is not read when the file is opened: a flipped bit there
    loads, and the flipped page (only it) is a PageError when read
    (``ckpt.pages[i]``), when a lazily resumed machine first touches it (both
    engines; nothing is printed: the guest never saw the page), and when an
    eager resume reads every page. A flip in a page's CRC-32 (the 4 bytes
    after it) fails that page the same way."""
    data, layout = v2_sample
    original = load_checkpoint(data, "original")
    for number, _ in layout.pages:
        start, stop = layout.page_region(number)
        for i in sample_offsets(start, stop, 8) + list(range(*layout.crc_region(number))):
            for bit in (0, 3, 7):
                damaged = bytearray(data)
                damaged[i] ^= 1 << bit
                ckpt = load_checkpoint(bytes(damaged), f"flipped at {i}")
                for n in ckpt.pages:
                    if n == number:
                        with pytest.raises(PageError) as info:
                            ckpt.pages[n]
                        assert f"flipped at {i}: saved page {n} fails its checksum" \
                            in one_line(info.value)
                    else:
                        assert ckpt.pages[n] == original.pages[n]
        damaged = bytearray(data)
        damaged[(start + stop) // 2] ^= 0x10
        path = tmp_path / f"page{number}.mvc"
        path.write_bytes(damaged)
        for engine in ENGINES:
            machine, _ = resume(read_checkpoint(str(path)), FileStore(str(tmp_path / engine)),
                                console_sink=BufferSink(), console_input=ConsoleInput(b""),
                                engine=engine)
            with pytest.raises(PageError) as info:
                machine.run(10_000)
            assert f"page{number}.mvc" in one_line(info.value)
            assert f"saved page {number} fails its checksum" in str(info.value)
            assert bytes(machine.console.sink.data) == b""
            with pytest.raises(PageError, match=f"saved page {number} "):
                resume(read_checkpoint(str(path)), FileStore(str(tmp_path / f"e-{engine}")),
                       engine=engine, eager=True)


def test_v2_header_bit_flips_are_refused(v2_sample):
    """Every bit of the header (its name and tick, which nothing else reads)
    is covered by the SHA-256 in the end record: each flip is refused when
    the file is opened, with a one-line message (before, a flipped name or
    tick loaded)."""
    data, layout = v2_sample
    accepted = undetected_flips(data, range(*layout.regions["header"]))
    assert not accepted, f"header flips (offset, bit) {accepted[:10]} were not detected"


# --- format 2: end records, indexes and footers that lie ---------------------------------------------

def v2_variant(layout, *, items=None, pages=None, **options) -> bytes:
    return build_v2(layout.header, layout.items() if items is None else items,
                    layout.pages if pages is None else pages, **options)


def entry_edit(name: str, field: int, value):
    """An end-record edit: record ``name``'s entry gets ``value`` at ``field``
    (1 offset, 2 length; a callable is given the old value)."""
    def edit(end):
        for entry in end["sections"]:
            if entry[0] == name:
                entry[field] = value(entry[field]) if callable(value) else value
    return edit


def pages_edit(field: int, value):
    """An end-record edit of the page data's [offset, length, count]."""
    def edit(end):
        old = end["pages"][field]
        end["pages"][field] = value(old) if callable(value) else value
    return edit


def test_v2_end_record_pointing_outside_the_file_is_refused(v2_sample, tmp_path):
    data, layout = v2_sample
    size = len(data)
    end_at = layout.regions["end record"][0]
    cases = {}
    for name in ckpt_raw.RECORD_NAMES:
        cases.update({
            f"{name} past the end": entry_edit(name, 1, size + 100),
            f"{name} at the end record": entry_edit(name, 1, end_at),
            f"{name} in the footer": entry_edit(name, 1, size - 8),
            f"{name} at 2^63": entry_edit(name, 1, (1 << 63) - 1),
            f"{name} at 2^64-1": entry_edit(name, 1, (1 << 64) - 1),
            f"{name} in the magic": entry_edit(name, 1, 3),
            f"{name} at -1": entry_edit(name, 1, -1),
            f"{name} over the end record": entry_edit(name, 2, lambda n: n + end_at),
            f"{name} of length 2^64-1": entry_edit(name, 2, (1 << 64) - 1),
            f"{name} of length -5": entry_edit(name, 2, -5),
            f"{name} of length 0": entry_edit(name, 2, 0),
        })
    cases.update({
        "page data past the end": pages_edit(0, size + 4096),
        "page data over the end record": pages_edit(1, lambda n: n + 100_000),
        "page data at 2^64-1": pages_edit(0, (1 << 64) - 1),
        "page data in the magic": pages_edit(0, 0),
        "page data at -1": pages_edit(0, -1),
    })
    for i, (what, edit) in enumerate(cases.items()):
        message = refused(v2_variant(layout, edit_end=edit), tmp_path, f"outside{i}.mvc")
        assert f"outside{i}.mvc" in message, (what, message)


def test_v2_negative_record_length_is_called_corrupt(v2_sample, tmp_path):
    """A record of negative length or offset, or of no length, is a corrupt
    end record (it once reached os.pread: "cannot be read: Invalid argument")."""
    data, layout = v2_sample
    for i, edit in enumerate((entry_edit("state", 2, -5), entry_edit("meta", 1, -1),
                              entry_edit("index", 2, 0))):
        message = refused(v2_variant(layout, edit_end=edit), tmp_path, f"neg{i}.mvc")
        assert "corrupt" in message and "Invalid argument" not in message, message


def test_v2_records_over_each_other_or_the_page_data_are_refused(v2_sample, tmp_path):
    data, layout = v2_sample
    image_at, image_end = layout.regions["image record"]
    state_at, state_end = layout.regions["state record"]
    pages_at, pages_end = layout.regions["page data"]
    disk_at, _ = layout.regions["disk record"]
    cases = {
        "state inside the image": entry_edit("state", 1, image_at + 10),
        "state on the image": entry_edit("state", 1, image_at),
        "image into the state": entry_edit("image", 2, lambda n: n + 1),
        "meta on the disk": entry_edit("meta", 1, disk_at),
        "state into the page data": entry_edit("state", 2, lambda n: n + 1),
        "disk inside the page data": entry_edit("disk", 1, pages_at + 4096),
        "index on the page data": entry_edit("index", 1, pages_at),
        "page data over the state": pages_edit(0, state_end - 1),
        "page data over the disk": pages_edit(1, lambda n: n + 1),
        "page data on the image": pages_edit(0, image_at),
    }
    for i, (what, edit) in enumerate(cases.items()):
        message = refused(v2_variant(layout, edit_end=edit), tmp_path, f"over{i}.mvc")
        assert f"over{i}.mvc" in message, (what, message)
    # the same record's bytes listed for two records
    def twice(end):
        image = next(e for e in end["sections"] if e[0] == "image")
        for entry in end["sections"]:
            if entry[0] == "state":
                entry[1:] = image[1:]
    refused(v2_variant(layout, edit_end=twice), tmp_path)


def test_v2_missing_or_duplicated_records_are_refused(v2_sample, tmp_path):
    data, layout = v2_sample
    for name in ckpt_raw.RECORD_NAMES:
        message = refused(v2_variant(layout, items=layout.items(**{name: None})), tmp_path)
        assert f"no '{name}' record" in message
        # two records of the name, both listed
        items = layout.items()
        at = next(i for i, item in enumerate(items) if item != PAGES and item[0] == name)
        refused(v2_variant(layout, items=items[:at + 1] + [items[at]] + items[at + 1:]),
                tmp_path)
        # one record, listed twice
        def listed_twice(end, name=name):
            end["sections"].append(list(next(e for e in end["sections"] if e[0] == name)))
        refused(v2_variant(layout, edit_end=listed_twice), tmp_path)
        # listed under another record's name (its own name inside says otherwise)
        other = "meta" if name != "meta" else "disk"
        def renamed(end, name=name, other=other):
            for entry in end["sections"]:
                if entry[0] == other:
                    entry[0] = "x"
                elif entry[0] == name:
                    entry[0] = other
            for entry in end["sections"]:
                if entry[0] == "x":
                    entry[0] = name
        message = refused(v2_variant(layout, edit_end=renamed), tmp_path)
        assert "record" in message
    # a record minivm does not know, and an end record with extra or missing fields
    extra = layout.items() + [("extra", b"")]
    refused(v2_variant(layout, items=extra[:-1] + [extra[-1]]), tmp_path)
    for edit in (lambda end: {"sections": end["sections"]},
                 lambda end: {"pages": end["pages"]}, lambda end: [end], lambda end: msgpack.packb(["end", None]),
                 lambda end: {**end, "pages": None}, lambda end: {**end, "sections": {}},
                 lambda end: {**end, "pages": end["pages"] + [0]},
                 lambda end: {**end, "pages": end["pages"][:2]},
                 lambda end: {**end, "sections": end["sections"] + [["extra", 0, 1, b""]]},
                 lambda end: {**end, "sections": [e[:3] for e in end["sections"]]},
                 lambda end: {**end, "sections": [e[:3] + [b"x" * 32] for e in end["sections"]]},
                 # the SHA-256 of the magic and header: missing, not bytes, wrong, short
                 lambda end: {k: v for k, v in end.items() if k != "header"},
                 lambda end: {**end, "header": None},
                 lambda end: {**end, "header": end["header"].hex()},
                 lambda end: {**end, "header": bytes(32)},
                 lambda end: {**end, "header": end["header"][:16]}):
        refused(v2_variant(layout, edit_end=edit), tmp_path)


def test_v2_index_disagreements_are_refused(v2_sample, tmp_path):
    """An index (its checksum right) whose bitmap is not one bit per page of
    memory (the wrong length), marks a page past the last page of memory,
    has another count of bits set than the end record's page count, or
    disagrees with the length of the page data; or is not a map with a
    bitmap. Each is refused when the file is opened. (An index that is
    unsorted or names a page twice, cases of format 2's first index, a list
    of page numbers, cannot be written as a bitmap.)"""
    data, layout = v2_sample
    (n0, p0), (n3, p3), (n15, p15) = layout.pages
    full = bytes(4096)
    pages_at = layout.regions["page data"][0]
    state = msgpack.unpackb(layout.records["state"], raw=False)

    def index_of(numbers, length=None):
        return layout.items(index=index_payload(bitmap_of(numbers, V2_MEMORY, length=length)))

    def memory_of(size):
        """The state of a smaller memory, the index as it is (2 bytes, pages 0, 3 and 15)."""
        return layout.items(state=msgpack.packb({**state, "memory_size": size},
                                                use_bin_type=True))

    cases = {
        # the bitmap's length: 2 bytes for 16 pages
        "bitmap a byte short": (index_of([0, 3], length=1), None, {},
                                "its page index has 1 bytes; a memory of 16 pages needs 2"),
        "bitmap a byte long": (index_of([0, 3, 15], length=3), None, {},
                               "its page index has 3 bytes; a memory of 16 pages needs 2"),
        "bitmap empty": (index_of([], length=0), None, {}, "its page index has 0 bytes"),
        "bitmap of 4 GiB": (index_of([0, 3, 15], length=1 << 17), None, {},
                            "its page index has 131072 bytes"),
        # a bit past the last page: a memory of 15 pages (or 9 pages and a
        # bit) keeps a bitmap of 2 bytes, whose bit 15 is outside it
        "page 15 of 15": (memory_of(15 * 4096), None, {},
                          "its page index marks page 15 as saved, outside memory "
                          "(61440 bytes, 15 pages)"),
        "page 15 of 9": (memory_of(8 * 4096 + 1), None, {},
                         "its page index marks page 15 as saved, outside memory "
                         "(32769 bytes, 9 pages)"),
        # the bits set against the end record's count
        "count one more": (None, None, {"edit_end": pages_edit(2, lambda n: n + 1)},
                           "its index lists 3 page(s), its end record 4"),
        "count one less": (None, None, {"edit_end": pages_edit(2, lambda n: n - 1)},
                           "its index lists 3 page(s), its end record 2"),
        "count 2^64-1": (None, None, {"edit_end": pages_edit(2, (1 << 64) - 1)}, "index lists"),
        "a bit more": (index_of([0, 3, 5, 15]), None, {},
                       "its index lists 4 page(s), its end record 3"),
        "a bit less": (index_of([0, 15]), None, {}, "its index lists 2 page(s), its end record 3"),
        "no bit set": (index_of([]), None, {}, "its index lists 0 page(s), its end record 3"),
        # the page data's length against the index (4,100 bytes a page, the
        # last page of memory 1,000 bytes shorter): a last page of 4,096
        # bytes, the short last page not marked, a page more or less, the
        # pages without their CRC-32s (format 2's first layout)
        "last page full": (None, [(n0, p0), (n3, p3), (n15, p15 + bytes(1000))], {},
                           "its page data is 12300 bytes, but its index lists 3 page(s) "
                           "(11300 bytes with their checksums)"),
        "the short page unmarked": (index_of([0, 3, 14]), None, {},
                                    "its page data is 11300 bytes, but its index lists 3 "
                                    "page(s) (12300 bytes with their checksums)"),
        "a page more": (None, layout.pages + [(16, full)], {"edit_end": pages_edit(2, 3)},
                        "its page data is 15400 bytes, but its index lists 3 page(s)"),
        "a page less": (None, layout.pages[:2], {"edit_end": pages_edit(2, 3)},
                        "its page data is 8200 bytes, but its index lists 3 page(s)"),
        "no CRC-32s": ([p0 + p3 + p15 if item == PAGES else item for item in layout.items()],
                       None, {"edit_end": lambda end: {**end, "pages": [pages_at, 11288, 3]}},
                       "its page data is 11288 bytes, but its index lists 3 page(s) "
                       "(11300 bytes"),
        "length one more": (layout.items()[:3] + [b"\0"] + layout.items()[3:], None,
                            {"edit_end": pages_edit(1, lambda n: n + 1)}, "page data"),
        "length one less": (None, None, {"edit_end": pages_edit(1, lambda n: n - 1)},
                            "page data"),
    }
    for i, (what, (items, pages, options, words)) in enumerate(cases.items()):
        message = refused(v2_variant(layout, items=items, pages=pages, **options), tmp_path,
                          f"index{i}.mvc")
        assert words in message and f"index{i}.mvc" in message, (what, message)
    # malformed indexes: not a map, no bitmap, a bitmap that is not bytes,
    # the index of format 2's first layout, a map over the bound of 4 items
    good = msgpack.unpackb(layout.records["index"], raw=False)
    first_layout = {"pages": b"".join(n.to_bytes(4, "little") for n in (0, 3, 15)),
                    "crc32": b"".join(zlib.crc32(p).to_bytes(4, "little") for p in (p0, p3, p15))}
    for i, index in enumerate([
            [], {}, None, good["bitmap"], [good["bitmap"]], {"Bitmap": good["bitmap"]},
            {"bitmap": None}, {"bitmap": "text"}, {"bitmap": 9}, {"bitmap": [1, 128]},
            {"bitmap": list(good["bitmap"])}, {b"bitmap": good["bitmap"]}, first_layout,
            {**good, "a": 1, "b": 2, "c": 3, "d": 4}]):
        message = refused(v2_variant(layout, items=layout.items(index=msgpack.packb(
            index, use_bin_type=True))), tmp_path, f"malformed{i}.mvc")
        assert "index" in message or "corrupt" in message, (index, message)


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_wrong_page_crc_is_a_page_error_when_read(v2_sample, tmp_path, engine):
    """A file whose page data holds a wrong CRC-32 after one page (every
    other checksum right: built so, not flipped) loads; that page, and only
    it, is a PageError when read: ``ckpt.pages[n]``, a lazily resumed
    machine's first access to it (nothing printed: the guest never saw it),
    an eager resume."""
    data, layout = v2_sample
    original = load_checkpoint(data, "original")
    for number, _ in layout.pages:
        pages = [(n, p, zlib.crc32(p) ^ 0x80000000) if n == number else (n, p)
                 for n, p in layout.pages]
        path = tmp_path / f"crc{number}.mvc"
        path.write_bytes(v2_variant(layout, pages=pages))
        ckpt = read_checkpoint(str(path))
        assert sorted(ckpt.pages) == [0, 3, 15]
        for n in ckpt.pages:
            if n == number:
                with pytest.raises(PageError) as info:
                    ckpt.pages[n]
                assert f"crc{number}.mvc" in one_line(info.value)
                assert f"saved page {n} fails its checksum" in str(info.value)
            else:
                assert ckpt.pages[n] == original.pages[n]
        machine, _ = resume(read_checkpoint(str(path)), FileStore(str(tmp_path / f"l{number}")),
                            console_sink=BufferSink(), console_input=ConsoleInput(b""),
                            engine=engine)
        try:
            with pytest.raises(PageError) as info:
                machine.run(10_000)
        finally:
            close_disks(machine)
        assert f"crc{number}.mvc" in one_line(info.value)
        assert f"saved page {number} fails its checksum" in str(info.value)
        assert bytes(machine.console.sink.data) == b""
        with pytest.raises(PageError, match=f"saved page {number} fails its checksum"):
            resume(read_checkpoint(str(path)), FileStore(str(tmp_path / f"e{number}")),
                   engine=engine, eager=True)


def test_v2_footer_that_lies_is_refused(v2_sample, tmp_path):
    data, layout = v2_sample
    end_at, end_stop = layout.regions["end record"]
    size = len(data)
    footers = {
        "magic MVCKEND1": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND1", at),
        "magic zeros": lambda at: ckpt_raw.FOOTER.pack(bytes(8), at),
        "magic lower case": lambda at: ckpt_raw.FOOTER.pack(b"mvckend2", at),
        "offset 0": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", 0),
        "offset one before": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", at - 1),
        "offset one after": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", at + 1),
        "offset at the footer": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", end_stop),
        "offset past the end": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", size + 1),
        "offset 2^64-1": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", (1 << 64) - 1),
        "offset into the page data": lambda at: ckpt_raw.FOOTER.pack(
            b"MVCKEND2", layout.regions["page data"][0]),
        "offset into the index": lambda at: ckpt_raw.FOOTER.pack(
            b"MVCKEND2", layout.regions["index record"][0]),
        "short": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", at)[:-1],
        "long": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", at) + b"\0",
        "twice": lambda at: ckpt_raw.FOOTER.pack(b"MVCKEND2", at) * 2,
        "none": lambda at: b"",
    }
    for i, (what, footer) in enumerate(footers.items()):
        message = refused(v2_variant(layout, footer=footer), tmp_path, f"footer{i}.mvc")
        assert f"footer{i}.mvc" in message, (what, message)
    for tiny in (b"", MAGIC, data[:len(MAGIC) + 8], ckpt_raw.FOOTER.pack(b"MVCKEND2", 0),
                 MAGIC + ckpt_raw.FOOTER.pack(b"MVCKEND2", 0)):
        refused(tiny, tmp_path)


# --- format 2: the file changes under a lazily resumed machine ------------------------------------------

def _truncate_at_page_data(path, layout):
    os.truncate(path, layout.page_region(3)[0] + 100)


def _truncate_to_nothing(path, layout):
    os.truncate(path, 0)


def _overwrite_page(path, layout):
    start, _ = layout.page_region(3)
    with open(path, "r+b") as f:        # in place: the same inode, the same length
        f.seek(start)
        f.write(b"\xEE" * 16)


def _overwrite_last_page(path, layout):
    _, stop = layout.page_region(15)
    with open(path, "r+b") as f:
        f.seek(stop - 4)
        f.write(b"\x00\x00\x00\x01")


def _overwrite_with_zeros(path, layout):
    start, stop = layout.regions["page data"]
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(stop - start))


CHANGES = {"truncated in the page data": _truncate_at_page_data,
           "truncated to nothing": _truncate_to_nothing,
           "a page overwritten": _overwrite_page,
           "the last page overwritten": _overwrite_last_page,
           "the page data zeroed": _overwrite_with_zeros}
TRUNCATIONS = ("truncated in the page data", "truncated to nothing")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("change", list(CHANGES))
def test_v2_file_changed_under_a_lazy_resume_faults_cleanly(v2_sample, tmp_path, engine,
                                                             change):
    """read_checkpoint, resume (lazy), then the file is truncated or a page's
    bytes are overwritten in place before the guest first touches the page:
    the run ends with a clean PageError naming the checkpoint (also
    test_v2_truncation_under_a_lazy_resume_is_a_page_error), never a crash
    and never the new bytes."""
    data, layout = v2_sample
    path = tmp_path / "live.mvc"
    path.write_bytes(data)
    ckpt = read_checkpoint(str(path))
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "r")), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""), engine=engine)
    try:
        CHANGES[change](path, layout)
        with pytest.raises(MinivmError) as info:
            machine.run(10_000)
    finally:
        close_disks(machine)
    message = one_line(info.value)
    assert str(path) in message, message
    assert isinstance(info.value, PageError), f"{type(info.value).__name__}: {message}"
    if change in TRUNCATIONS:
        assert "truncated" in message, message
    else:
        assert "fails its checksum" in message
    assert bytes(machine.console.sink.data) == b"", "the guest ran on with changed data"


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_truncation_under_a_lazy_resume_is_a_page_error(v2_sample, tmp_path, engine):
    """A page that cannot be read back because the file was truncated is a
    PageError, as one that fails its CRC-32 (it was a plain FormatError)."""
    data, layout = v2_sample
    path = tmp_path / "live.mvc"
    path.write_bytes(data)
    machine, _ = resume(read_checkpoint(str(path)), FileStore(str(tmp_path / "r")),
                        console_sink=BufferSink(), engine=engine)
    _truncate_at_page_data(path, layout)
    with pytest.raises(PageError):
        machine.run(10_000)


def _replace(path, layout):
    other = path.with_name("other.mvc")
    other.write_bytes(bytes(len(path.read_bytes())))
    os.replace(other, path)


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_file_replaced_or_deleted_under_a_lazy_resume_is_still_read(v2_sample, tmp_path,
                                                                        engine):
    """A lazy resume reads the file it opened: replaced by another file or
    deleted meanwhile, the pages come from the opened one."""
    data, layout = v2_sample
    for how in (_replace, os.unlink):
        path = tmp_path / "live.mvc"
        path.write_bytes(data)
        ckpt = read_checkpoint(str(path))
        machine, _ = resume(ckpt, FileStore(str(tmp_path / f"r-{how.__name__}")),
                            console_sink=BufferSink(), console_input=ConsoleInput(b""),
                            engine=engine)
        how(path, layout) if how is _replace else how(path)
        stop = machine.run(10_000)
        close_disks(machine)
        assert stop.reason == "halt" and bytes(machine.console.sink.data) == V2_OUTPUT


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("change", list(CHANGES) + ["deleted"])
def test_v2_file_changed_after_an_eager_resume_has_no_effect(v2_sample, tmp_path, engine,
                                                             change):
    """resume(eager=True) reads every page first and closes the file: the
    same changes made after it change nothing; the run ends normally."""
    data, layout = v2_sample
    path = tmp_path / "live.mvc"
    path.write_bytes(data)
    ckpt = read_checkpoint(str(path))
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "r")), console_sink=BufferSink(),
                        console_input=ConsoleInput(b""), engine=engine, eager=True)
    if change == "deleted":
        os.unlink(path)
    else:
        CHANGES[change](path, layout)
    stop = machine.run(10_000)
    close_disks(machine)
    assert stop.reason == "halt", stop
    assert bytes(machine.console.sink.data) == V2_OUTPUT


RESUME_THEN_CKPT = V2_SAMPLE.replace("""        ld r6, [0x3000]         ; after""", """        mov r9, 0
spin:   add r9, r9, 1
        blt r9, 50, spin
        ckpt                    ; the resumed machine checkpoints before it touches a page
        ld r6, [0x3000]         ; after""")


@pytest.fixture(scope="module")
def resume_then_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume-then-ckpt")
    image = assemble_text(RESUME_THEN_CKPT, "again.asm")
    machine = new_machine(image, Config(memory_size=V2_MEMORY), None)
    cp = Checkpointer(machine, FileStore(str(folder / "ck")), mode="cow")
    assert machine.run(100_000).reason == "halt"
    cp.finish_all()
    assert bytes(machine.console.sink.data) == V2_OUTPUT
    with open(cp.jobs[0].location, "rb") as f:
        return f.read()


def _checkpoint_after_truncation(data, tmp_path, engine, mode):
    """Resume lazily with a Checkpointer, truncate the file in the page data,
    run: the new checkpoint needs pages the machine never read."""
    path = tmp_path / "live.mvc"
    path.write_bytes(data)
    layout = parse_v2(data)
    machine, _ = resume(read_checkpoint(str(path)), FileStore(str(tmp_path / "r")),
                        console_sink=BufferSink(), console_input=ConsoleInput(b""),
                        engine=engine)
    cp = Checkpointer(machine, FileStore(str(tmp_path / "ck2")), mode=mode)
    os.truncate(path, layout.page_region(3)[0] + 10)
    with pytest.raises(MinivmError) as info:
        machine.run(100_000)
        cp.finish_all()
    return path, machine, cp, info.value


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["cow", "stop-copy", "precopy"])
def test_v2_checkpoint_of_a_lazy_machine_whose_file_was_truncated(resume_then_ckpt, tmp_path,
                                                                  engine, mode):
    """A lazily resumed machine takes a checkpoint, which must read the pages
    it never touched from the file it was resumed from; that file was
    truncated: a clean error naming that file, not a crash, no output."""
    path, machine, cp, error = _checkpoint_after_truncation(resume_then_ckpt, tmp_path,
                                                            engine, mode)
    assert str(path) in one_line(error) and "truncated" in str(error)
    assert bytes(machine.console.sink.data) == b""
    assert not os.path.exists(tmp_path / "ck2" / "ckpt-0001.mvc")


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_cow_checkpoint_that_cannot_read_its_source_fails_cleanly(resume_then_ckpt,
                                                                      tmp_path, engine):
    """The run stops at the guest's first access to a lost page; the checkpoint
    it took is still saving (cow: in the background), and ends as every run's
    does, with finish_all (the CLI and the REPL call it when a run ends, by
    error too): it fails, reported, and leaves no temp file."""
    _, _, cp, _ = _checkpoint_after_truncation(resume_then_ckpt, tmp_path, engine, "cow")
    cp.finish_all()
    assert [job.status for job in cp.jobs] == ["failed"]
    assert "truncated" in cp.jobs[0].error
    assert not [n for n in os.listdir(tmp_path / "ck2") if n.endswith(".tmp")]


def test_v2_pages_of_a_closed_checkpoint_are_not_read_from_another_file(v2_sample, tmp_path):
    """A Checkpoint whose file an eager resume closed refuses to read a page,
    even when its old descriptor number now belongs to another file (it once
    read that file, and the page CRC called the checkpoint corrupt)."""
    data, _ = v2_sample
    path = tmp_path / "ck.mvc"
    path.write_bytes(data)
    ckpt = read_checkpoint(str(path))
    machine, _ = resume(ckpt, FileStore(str(tmp_path / "r")), console_sink=BufferSink(),
                        eager=True)
    other = tmp_path / "other.bin"
    other.write_bytes(random.Random(1).randbytes(len(data)))
    fd = os.open(other, os.O_RDONLY)
    # the number the checkpoint had, now another file's (the open() above, which takes
    # the lowest free number, may already have been given it)
    number = getattr(ckpt.pages.source, "_fd", None)
    reused = type(number) is int and number >= 0 and number != fd
    if reused:
        os.dup2(fd, number)
    try:
        with pytest.raises(MinivmError) as info:
            ckpt.pages[3]
        assert "corrupt" not in str(info.value) and "checksum" not in str(info.value)
    finally:
        os.close(fd)
        if reused:
            os.close(number)
