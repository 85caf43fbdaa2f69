"""The checkpoint file (docs/contract.md, section 7; docs/formats.md) and the stores (P11).

A complete checkpoint loads and holds only the non-zero pages; anything else
- truncated, bit-flipped, foreign, newer, re-ordered or duplicated sections,
hand-made hostile msgpack, impossible machine states - is refused with a
minivm error (FormatError for the file itself), never another exception, a
hang or unbounded memory use. A checkpoint still being written cannot be
loaded. A missing or changed disk file is a DiskError on resume.

Both formats are tested: version 2 (written now: records located by an end
record and a footer, raw page data, a page index with a CRC-32 per page;
pages read on demand) and version 1 (a container of sections, read whole),
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

import msgpack
import pytest

import ckpt_raw
from ckpt_files import join, split
from ckpt_raw import PAGES, build_v2, index_payload, parse_v2
from ckpt_strategies import (Config, assemble_text, close_disks, disk_pattern, final_state,
                             new_machine, write_disk)
from minivm.checkpoint import Checkpointer
from minivm.engine import ENGINES
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
         memory: int = MEMORY):
    image = assemble_text(source, "sample.asm")
    folder.mkdir(parents=True, exist_ok=True)
    disk_path = write_disk(folder / "disk.img", disk_pattern()) if disk else None
    config = Config(memory_size=memory, disk_content=disk_pattern() if disk else None)
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
    """Version 1: the independent container writer; version 2: ckpt_files.join."""
    sections = []
    for name in order:
        if name == "pages":
            sections += [("pages", msgpack.packb(chunk, use_bin_type=True))
                         for chunk in parts["pages"]]
        elif name in parts:
            sections.append((name, msgpack.packb(parts[name], use_bin_type=True)))
    if version == 2:
        return join(header, sections, version=2)
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


def same_checkpoint(a, b) -> bool:
    """Two loaded checkpoints hold the same machine (every page read and compared)."""
    return (a.state == b.state and a.meta == b.meta and a.disk == b.disk
            and a.image.same_program(b.image) and list(a.pages) == list(b.pages)
            and all(a.pages[i] == b.pages[i] for i in a.pages))


@pytest.mark.parametrize("version", [1, 2])
def test_single_bit_flips_are_refused(sample, version):
    """Version 1: every flip is refused (one digest over the whole file).
    Version 2: refused when the file is opened, except in the page data,
    which is not read then: reading the flipped page is a PageError (the other
    pages read back as saved), and in the header's name and tick, which
    nothing reads (test_v2_header_bit_flips_are_refused): the checkpoint
    loaded is then exactly the original one, never different data."""
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
            hit = [n for n, _ in layout.pages if i in range(*layout.page_region(n))]
            for n in ckpt.pages:
                if n in hit:
                    with pytest.raises(PageError, match=f"flipped at {i}: saved page {n} "):
                        ckpt.pages[n]
                else:
                    assert ckpt.pages[n] == original.pages[n]
        elif i in range(*layout.regions["header"]):
            assert same_checkpoint(ckpt, original), f"a flip at {i} changed what loads"
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
    """A real version-2 file with another header (any value), every offset right."""
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


def test_checkpoint_being_saved_is_not_loadable(tmp_path):
    image = assemble_text(MANY_PAGES, "many.asm")
    machine = new_machine(image, Config(memory_size=1 << 20), None)
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


def test_checkpoints_taken_while_one_is_saving_are_all_kept(tmp_path):
    """Each checkpoint is its own, complete file, even when it is taken while an
    earlier one is still being saved in the background (here: no disk attached,
    so no overlay file claims the name first)."""
    image = assemble_text(SAMPLE.replace("ckpt", "ckpt\n        ckpt\n        ckpt"), "three.asm")
    machine = new_machine(image, Config(memory_size=MEMORY), None)
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
def test_memory_store_round_trip(source, disk, tmp_path):
    _, file_job, file_final, _ = take(source, tmp_path / "file", disk=disk)
    store = MemoryStore(overlay_folder=str(tmp_path / "mem-overlays"))
    image, mem_job, mem_final, _ = take(source, tmp_path / "mem", disk=disk, store=store)
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
                            console_input=ConsoleInput(b""))
        results.append(final_state(machine, machine.run(100_000)))
        close_disks(machine)
    assert results[0].differences(results[1], skip=()) == []
    assert results[0].differences(file_final) == []
    with pytest.raises(MinivmError):
        store.load("ckpt-0009")
