"""Fuzz tests (issue 6): untrusted programs, images and checkpoints never crash minivm.

Every input either works or is refused with a clean :class:`MinivmError`
(``AssemblyError`` with ``file:line:col``, ``FormatError``, ``DiskError``);
never another exception, a hang or unbounded memory. Targets:

* the assembler on random text and on mutated copies of ``programs/*.asm``;
* the image loader (``image_from_bytes``) on mutated and hand-crafted images,
  and the interpreter on every image the loader accepts;
* the checkpoint loader (``read_checkpoint``), ``inspect``'s report and
  ``resume`` (on both engines) on mutated checkpoints of both formats:
  truncated, bit-flipped, byte-inserted, section- or record-reordered, and
  with their sections' contents mutated and the digests recomputed, so the
  corruption reaches the field validators (version 1: the ``pages``
  sections too; version 2: the page index and the end record too);
* hand-crafted hostile msgpack: huge declared lengths, deep nesting, a wrong
  type in every field, out-of-range values;
* the interpreter on random valid programs built from ``isa.SHAPES``.

Size: the Hypothesis profile decides the number of examples per target
(tests/conftest.py): 40 in CI. For a long run::

    MINIVM_HYPOTHESIS=long python -m pytest tests/test_fuzz.py     # 10,000 each
    MINIVM_EXAMPLES=2000 python -m pytest tests/test_fuzz.py       # any number
"""

from __future__ import annotations

import copy
import io
import os
import resource
import tempfile
import traceback
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpt_raw
from ckpt_files import join, split
from ckpt_raw import PAGES, build_v2, join_v2, parse_v2
from ckpt_strategies import close_disks
from minivm import isa
from minivm.assembler import AssemblyError, assemble, assemble_file
from minivm.errors import show
from minivm.checkpoint import Checkpointer
from minivm.resume import read_checkpoint, resume
from minivm.ckptfile import load_checkpoint
from minivm.engine import ENGINES
from minivm.container import ContainerWriter, pack, read_container
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import open_disk
from minivm.errors import FormatError, MinivmError
from minivm.image import IMAGE_KIND, IMAGE_VERSION, Image, image_from_bytes
from minivm.machine import Machine
from minivm.report import describe_checkpoint
from minivm.store import FileStore, MemoryStore
from support import Hang, bounded, run_cli, time_limit

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_PATHS = sorted((ROOT / "programs").glob("*.asm"))
SOURCES = [p.read_text() for p in PROGRAM_PATHS]
MAX_TICKS = 2000
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


# --- shared helpers --------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def assert_clean(exc: MinivmError) -> str:
    """A user-facing message: non-empty, no traceback, not a repr of an internal error."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} with an empty message"
    assert "Traceback" not in text
    assert len(text) < 4000, f"message of {len(text)} characters"
    return text


def container_bytes(kind: str, header: dict, sections) -> bytes:
    """A well-formed container (digests computed) with exactly these sections."""
    buf = io.BytesIO()
    writer = ContainerWriter(buf, kind, header)
    for name, payload in sections:
        writer.section(name, payload)
    writer.finish()
    return buf.getvalue()


def split_container(data: bytes, kind: str, version: int):
    container = read_container(data, kind, version, "seed")
    return container.header, list(container.sections)


def image_bytes(image: Image) -> bytes:
    return container_bytes(IMAGE_KIND, {"version": IMAGE_VERSION},
                           [("image", image.to_bytes_payload())])


# --- seeds: real images and checkpoints ---------------------------------------------------------

SEED_IMAGES = [assemble(src, str(path)) for src, path in zip(SOURCES, PROGRAM_PATHS)]
SEED_IMAGE_BYTES = [image_bytes(img) for img in SEED_IMAGES]


def _make_checkpoint(folder: Path, program: str, *, disk: bool, schedule=()) -> Path:
    """Run a program with a Checkpointer and return its first checkpoint file."""
    folder.mkdir(parents=True, exist_ok=True)
    image = assemble_file(str(ROOT / "programs" / program))
    disk_layer = None
    if disk:
        disk_path = folder / "disk.img"
        disk_path.write_bytes(bytes((i * 7) & 0xFF for i in range(64 * 1024)))
        disk_layer = open_disk(str(disk_path))
    machine = Machine(image, disk=disk_layer, console_sink=BufferSink(),
                      console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")), schedule=list(schedule))
    machine.run(5_000_000)
    cp.finish_all()
    close_disks(machine)
    assert cp.jobs and all(job.status == "complete" for job in cp.jobs)
    return Path(cp.jobs[0].location)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Real checkpoints: one with DMA in flight, the timer running and a disk
    (checkpoint_demo at its ckpt), one with no disk (sieve at tick 300)."""
    base = tmp_path_factory.mktemp("fuzz-seeds")
    with_disk = _make_checkpoint(base / "demo", "checkpoint_demo.asm", disk=True)
    no_disk = _make_checkpoint(base / "sieve", "sieve.asm", disk=False, schedule=[300])
    return [(p, p.read_bytes()) for p in (with_disk, no_disk)]


#: Both checkpoint formats: every seed is written as version 2 (what minivm
#: writes); tests/ckpt_files.py gives it in version 1's layout too.
VERSIONS = (1, 2)


def as_version(seed: bytes, version: int) -> bytes:
    return seed if version == 2 else join(*split(seed), version=1)


def checkpoint_bytes(header: dict, sections, version: int) -> bytes:
    """(header, sections) in version 1's vocabulary, digests right, written as
    ``version`` (version 2: the pages payloads must be real page lists; written
    by tests/ckpt_raw.py, which sizes the index for any state, a hostile
    memory size too, where the real writer cannot make a bitmap)."""
    if version == 2:
        return join_v2(header, sections)
    return join(header, sections, version=version)


def with_record(seed: bytes, name: str, payload: bytes, raw: bytes | None = None) -> bytes:
    """A version-2 seed with record ``name``'s payload replaced (its digest
    right), or its bytes in the file replaced by ``raw``: any record,
    the page index too."""
    layout = parse_v2(seed)
    items = [item if item == PAGES or item[0] != name else
             (name, payload) if raw is None else (name, item[1], raw)
             for item in layout.items()]
    return build_v2(layout.header, items, layout.pages)


def exercise_checkpoint(data: bytes, folder: Path, *, inspect: bool = True,
                        run: bool = True, engines=ENGINES) -> str:
    """Load a possibly hostile checkpoint, then describe it (`minivm inspect`)
    and/or resume and run it, on each of ``engines`` (both engines must end
    the same way).

    Returns how far it got; anything but a clean MinivmError fails the test.
    The file is written beside the seed so that its disk chain resolves.
    """
    path = folder / "fuzz-input.mvc"
    path.write_bytes(data)
    # time_limit only detects a hang (generous, so a loaded host cannot trip it).
    with time_limit(60 * len(engines), "loading, inspecting and resuming a checkpoint"):
        try:
            ckpt = read_checkpoint(str(path))
        except MinivmError as exc:
            assert_clean(exc)
            return "refused by the loader"
        if inspect:
            try:
                describe_checkpoint(ckpt)               # `minivm inspect`
            except MinivmError as exc:
                assert_clean(exc)
        if not run:
            return "described"
        outcomes = {engine: _resume_and_run(str(path), engine) for engine in engines}
    assert len(set(outcomes.values())) == 1, f"the engines disagree: {outcomes}"
    return outcomes[engines[0]]


def _resume_and_run(path: str, engine: str) -> str:
    ckpt = read_checkpoint(path)            # its own (a lazy resume reads from it)
    with tempfile.TemporaryDirectory() as store:
        try:
            machine, _ = resume(ckpt, FileStore(store), console_sink=BufferSink(),
                                console_input=ConsoleInput(b""), engine=engine)
        except MinivmError as exc:
            assert_clean(exc)
            return "refused by resume"
        try:
            stop = machine.run(MAX_TICKS)
        except MinivmError as exc:
            assert_clean(exc)
            return "stopped with an error"
        finally:
            close_disks(machine)
    assert stop.reason in ("halt", "fault", "limit"), stop
    return "resumed"


def exercise_image(data: bytes) -> str:
    with time_limit(60, "loading and running an image"):
        try:
            image = image_from_bytes(data, "image 'fuzz.mvb'")
        except MinivmError as exc:
            assert_clean(exc)
            return "refused"
        assert isinstance(image, Image)
        try:
            machine = Machine(image, memory_size=64 * 1024, console_sink=BufferSink(),
                              console_input=ConsoleInput(b"xyz"))
        except MinivmError as exc:
            assert_clean(exc)
            return "does not fit"
        stop = machine.run(MAX_TICKS)
        assert stop.reason in ("halt", "fault", "limit"), stop
        if stop.reason == "fault":
            assert f"(pc {machine.pc}," in str(stop.detail)
    return "ran"


# --- 1. the assembler -------------------------------------------------------------------------

def check_assemble(text: str, filename: str = "fuzz.asm") -> Image | AssemblyError:
    """Assemble untrusted text: an Image, or an AssemblyError whose every
    diagnostic has a position that its report names; never anything else."""
    # Only a hang detector (generous, so a loaded host cannot trip it): no
    # assertion here may depend on how fast the host is.
    with time_limit(60, "assembling"):
        try:
            result = assemble(text, filename)
        except AssemblyError as exc:
            result = exc
    if isinstance(result, AssemblyError):
        report = str(result)
        assert result.diagnostics, "an AssemblyError without diagnostics"
        nlines = text.count("\n") + 2
        for diag in result.diagnostics:
            # a diagnostic is placed where the report places it: in the file
            # assembled, or (diag.file) in a file it includes
            where = diag.file or filename
            if where == filename:
                assert 1 <= diag.pos.line <= nlines, diag
            assert diag.pos.line >= 1 and diag.pos.column >= 1, diag
            assert f"{show(where)}:{diag.pos.line}:{diag.pos.column}" in report, report
        assert "Traceback" not in report
    else:
        assert isinstance(result, Image) and result.code
    return result


ASM_TOKENS = (
    ["nop", "halt", "mov", "add", "div", "mod", "shl", "sar", "ld", "ldb", "st", "stb",
     "beq", "bge", "jmp", "call", "ret", "push", "pop", "in", "out", "ei", "di", "iret",
     "wait", "ckpt", "r0", "r1", "r15", "r16", "sp", "SP", "R3",
     ".text", ".data", ".equ", ".word", ".byte", ".ascii", ".asciz", ".space", ".align",
     ".entry", ".bogus", "x", "x:", "loop:", "_a.b", "0", "1", "-1", "0x", "0x1F",
     "0b101", "0b", "4294967295", "4294967296", "-2147483649", "99999999999999999999",
     "'A'", "'\\n'", "'\\x'", "''", "'ab'", "\"s\"", "\"\\\"\"", "\"unterminated",
     "+", "-", "*", "/", "%", "&", "|", "^", "~", "<<", ">>", "(", ")", "[", "]", ",",
     ":", ";", "; comment", " ", "  ", "\t", "\n", "\n", "\n", "\r\n", "\r", "\x00",
     "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff", "é", "λ", "😀"])

asm_soup = st.lists(st.sampled_from(ASM_TOKENS), max_size=80).map("".join)
any_text = st.text(max_size=400)
control_text = st.text(alphabet=st.characters(max_codepoint=0x3000,
                                              blacklist_categories=("Cs",)), max_size=200)


@FUZZ
@given(st.one_of(any_text, control_text, asm_soup))
def test_assembler_random_text(text):
    check_assemble(text)


@st.composite
def mutated_programs(draw):
    """A program from programs/ with a few random edits."""
    text = draw(st.sampled_from(SOURCES))
    chars = st.one_of(st.characters(blacklist_categories=("Cs",)),
                      st.sampled_from(list(",:;[]()+-*/%&|^~<>'\"\\\n\t .0x1rR")))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "swap", "dup", "cut"]))
        n = len(text)
        if kind == "insert":
            i = draw(st.integers(0, n))
            text = text[:i] + draw(st.text(alphabet=chars, min_size=1, max_size=8)) + text[i:]
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
        elif kind == "replace" and n:
            i = draw(st.integers(0, n - 1))
            text = text[:i] + draw(chars) + text[i + 1:]
        elif kind in ("swap", "dup"):
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            text = "\n".join(lines)
        elif kind == "cut":
            text = text[:draw(st.integers(0, n))]
    return text


@FUZZ
@given(mutated_programs())
def test_assembler_mutated_programs(text):
    check_assemble(text)


@st.composite
def deep_expressions(draw):
    """Long and deeply nested expressions, .equ chains: the assembler's recursion."""
    n = draw(st.integers(1, 3000))
    kind = draw(st.sampled_from(["neg", "not", "sum", "paren", "equ", "mixed"]))
    if kind == "neg":
        return f"mov r1, {'-' * n}1\nhalt\n"
    if kind == "not":
        return f"mov r1, {'~' * n}1\nhalt\n"
    if kind == "sum":
        return "mov r1, " + "+".join(["1"] * n) + "\nhalt\n"
    if kind == "paren":
        return f"mov r1, {'(' * n}1{')' * n}\nhalt\n"
    if kind == "equ":
        return ("".join(f".equ a{i}, a{i + 1} + 1\n" for i in range(n))
                + f".equ a{n}, 0\nmov r1, a0\nhalt\n")
    return "mov r1, " + "".join(draw(st.lists(st.sampled_from(["-", "~", "(", "1+", "2*"]),
                                              min_size=n, max_size=n))) + "1" + "\nhalt\n"


@FUZZ
@given(deep_expressions())
def test_assembler_deep_expressions(text):
    check_assemble(text)


# Minimal inputs found by the fuzzers above (see docs/reliability.md).
@pytest.mark.parametrize("text", [
    pytest.param("mov r1, " + "-" * 1000 + "1\nhalt\n", id="1000-unary-minus"),
    pytest.param("mov r1, " + "~" * 1000 + "1\nhalt\n", id="1000-unary-not"),
    pytest.param("mov r1, " + "+".join(["1"] * 1000) + "\nhalt\n", id="sum-of-1000-terms"),
    pytest.param("".join(f".equ a{i}, a{i + 1}\n" for i in range(1000))
                 + ".equ a1000, 1\nmov r1, a0\nhalt\n", id="equ-chain-of-1000"),
])
def test_assembler_long_expressions_regression(text):
    """Found by test_assembler_deep_expressions: a 1000-term expression (or a
    chain of 1000 .equ) must assemble or give an AssemblyError, not a
    RecursionError / lark VisitError (a traceback from `minivm run`)."""
    check_assemble(text)


# --- 2. the image loader ------------------------------------------------------------------------

HOSTILE_PATHS = ["/etc/passwd", "../../../../etc/passwd", "/dev/zero", "/dev/null", "/",
                 ".", "", "\x00", "/proc/self/pagemap", "/proc/self/mem", "-", "~"]
HOSTILE_INTS = [-1, 0, 1, 15, 16, 17, 255, 256, 511, 512, 4095, 4096, 4097, 1 << 20,
                (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, -(1 << 63),
                (1 << 64) - 1]

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(HOSTILE_INTS),
    st.integers(-(1 << 63), (1 << 64) - 1), st.floats(), st.text(max_size=16),
    st.binary(max_size=48), st.sampled_from(HOSTILE_PATHS))
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)


def tree_paths(obj, prefix=(), depth=0):
    """Paths to every node of a msgpack tree (long lists: first, second and last)."""
    yield prefix
    if depth > 8:
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from tree_paths(value, prefix + (key,), depth + 1)
    elif isinstance(obj, list):
        indexes = range(len(obj)) if len(obj) <= 6 else (0, 1, len(obj) - 1)
        for i in indexes:
            yield from tree_paths(obj[i], prefix + (i,), depth + 1)


def tree_get(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def tree_set(obj, path, value):
    """A copy of ``obj`` with the node at ``path`` replaced (or deleted if value is DELETE)."""
    if not path:
        return value
    obj = copy.deepcopy(obj)
    parent = tree_get(obj, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


DELETE = object()


@st.composite
def mutated_tree(draw, obj):
    """``obj`` with 1-3 random edits: replace, delete, nudge an int, resize a blob or list."""
    for _ in range(draw(st.integers(1, 3))):
        paths = list(tree_paths(obj))
        path = draw(st.sampled_from(paths))
        node = tree_get(obj, path)
        kind = draw(st.sampled_from(["replace", "replace", "delete", "nudge", "resize"]))
        if kind == "delete" and path:
            obj = tree_set(obj, path, DELETE)
        elif kind == "nudge" and type(node) is int:
            value = node + draw(st.sampled_from([-4097, -4096, -2, -1, 1, 2, 4096, 1 << 32]))
            if -(1 << 63) <= value < 1 << 64:
                obj = tree_set(obj, path, value)
        elif kind == "resize" and isinstance(node, (bytes, list)):
            size = draw(st.sampled_from([0, 1, len(node) - 1, len(node) + 1, 2 * len(node)]))
            grown = (node * 3)[:max(size, 0)] if node else node
            obj = tree_set(obj, path, grown)
        else:
            obj = tree_set(obj, path, draw(hostile_values))
    return obj


@st.composite
def mutated_bytes(draw, data: bytes):
    """Truncation, bit flips, inserted or deleted bytes, swapped chunks."""
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "swap",
                                     "overwrite"]))
        if kind == "truncate":
            data = data[:draw(st.integers(0, max(n - 1, 0)))]
        elif kind == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1:]
        elif kind == "insert":
            i = draw(st.integers(0, n))
            data = data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            data = data[:i] + data[i + draw(st.integers(1, 64)):]
        elif kind == "swap" and n > 2:
            i, j = sorted(draw(st.lists(st.integers(0, n), min_size=3, max_size=3)))[:2]
            k = min(n, j + (j - i))
            data = data[:i] + data[j:k] + data[i:j] + data[k:]
        elif kind == "overwrite" and n:
            i = draw(st.integers(0, n - 1))
            patch = draw(st.sampled_from([b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
                                          b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                                          b"\xc9\xff\xff\xff\xff\x01", b"\xc1", b"\xd4\x01\x00"]))
            data = data[:i] + patch + data[i + len(patch):]
    return data


@st.composite
def mutated_images(draw):
    data = draw(st.sampled_from(SEED_IMAGE_BYTES))
    if draw(st.booleans()):
        return draw(mutated_bytes(data))
    # Mutate the decoded image and recompute the digests: reaches the validator.
    header, sections = split_container(data, IMAGE_KIND, IMAGE_VERSION)
    tree = msgpack.unpackb(sections[0][1], raw=False)
    return container_bytes(IMAGE_KIND, header, [("image", pack(draw(mutated_tree(tree))))])


@FUZZ
@given(mutated_images())
def test_image_loader_mutated(data):
    exercise_image(data)


@st.composite
def random_images(draw):
    """Images made up from scratch: random code tuples, fields of any type."""
    code = draw(st.lists(st.lists(st.one_of(st.integers(0, len(isa.OPCODES) + 1),
                                            st.sampled_from(HOSTILE_INTS)),
                                  min_size=4, max_size=4), min_size=1, max_size=12))
    image = {"code": code, "data": draw(st.binary(max_size=64)),
             "entry": draw(st.integers(-1, len(code))),
             "source_file": "fuzz.asm", "lines": list(range(1, len(code) + 1)),
             "texts": ["?"] * len(code), "symbols": []}
    return container_bytes(IMAGE_KIND, {"version": IMAGE_VERSION}, [("image", pack(image))])


@FUZZ
@given(random_images())
def test_image_loader_random_code(data):
    exercise_image(data)


# --- 3. the checkpoint loader, inspect and resume ------------------------------------------------

SECTION_NAMES = ("meta", "image", "state", "pages", "disk")


@st.composite
def mutated_checkpoints(draw, seed: bytes):
    """A mutated copy of a real (version-2) checkpoint, in either format."""
    version = draw(st.sampled_from(VERSIONS))
    kinds = ["bytes", "tree", "tree", "sections"] + (["index", "end"] if version == 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(mutated_bytes(as_version(seed, version)))
    if kind == "index":
        # the page index (its digest right): the map and its bitmap mutated, or
        # saved pages moved to other page numbers (a valid index of as many
        # pages: the file loads, the pages land elsewhere in memory)
        index = msgpack.unpackb(parse_v2(seed).records["index"], raw=False)
        if draw(st.booleans()):
            return with_record(seed, "index", pack(draw(mutated_tree(index))))
        bits = bytearray(index["bitmap"])
        for _ in range(draw(st.integers(1, 3))):
            saved = [i for i in range(len(bits) * 8) if bits[i >> 3] >> (i & 7) & 1]
            if not saved or len(saved) == len(bits) * 8:
                break
            old = draw(st.sampled_from(saved))
            new = draw(st.integers(0, len(bits) * 8 - 1).filter(lambda i: i not in saved))
            bits[old >> 3] &= ~(1 << (old & 7))
            bits[new >> 3] |= 1 << (new & 7)
        return with_record(seed, "index", pack({**index, "bitmap": bytes(bits)}))
    if kind == "end":
        # the end record (every record's digest right): offsets, lengths,
        # digests, names, the page data's place mutated
        layout = parse_v2(seed)
        end_at, end_stop = layout.regions["end record"]
        end = msgpack.unpackb(seed[end_at:end_stop], raw=False)[1]
        mutated = draw(mutated_tree(end))
        return build_v2(layout.header, layout.items(), layout.pages, edit_end=lambda _: mutated)
    header, sections = split(seed)
    # version 2 has no pages payload to mutate: its pages stay real pages
    mutable = [i for i, (name, _) in enumerate(sections) if version == 1 or name != "pages"]
    if kind == "tree":
        # Mutate the contents of one or two sections, recompute the digests.
        for _ in range(draw(st.integers(1, 2))):
            i = draw(st.sampled_from(mutable))
            name, payload = sections[i]
            tree = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            sections[i] = (name, pack(draw(mutated_tree(tree))))
        if draw(st.booleans()):
            header = draw(mutated_tree(header))
            if not isinstance(header, dict):
                header = {"version": version}
        if version == 2:
            return checkpoint_bytes(header, sections, 2)
        return checkpoint_bytes({**header, "version": 1}, sections, 1)
    if version == 2:
        # Whole records: the v2 items (records and the page data) reordered,
        # dropped, duplicated, renamed, or a foreign record added.
        layout = parse_v2(seed)
        items = layout.items()
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["permute", "drop", "dup", "rename", "foreign"]))
            if op == "permute":
                items = draw(st.permutations(items))
            elif op == "drop" and items:
                items.pop(draw(st.integers(0, len(items) - 1)))
            elif op == "dup" and items:
                items.insert(draw(st.integers(0, len(items))),
                             items[draw(st.integers(0, len(items) - 1))])
            elif op == "rename" and items:
                i = draw(st.integers(0, len(items) - 1))
                if items[i] != PAGES:
                    items[i] = (draw(st.sampled_from(ckpt_raw.RECORD_NAMES + ("end", "", "x"))),
                                items[i][1])
            elif op == "foreign":
                items.insert(draw(st.integers(0, len(items))),
                             (draw(st.sampled_from(ckpt_raw.RECORD_NAMES)),
                              draw(st.binary(max_size=32))))
        return build_v2(layout.header, items, layout.pages)
    # Whole sections: reorder, drop, duplicate, rename, add a foreign one.
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["permute", "drop", "dup", "rename", "foreign"]))
        if op == "permute":
            sections = draw(st.permutations(sections))
        elif op == "drop" and sections:
            sections.pop(draw(st.integers(0, len(sections) - 1)))
        elif op == "dup" and sections:
            sections.insert(draw(st.integers(0, len(sections))),
                            sections[draw(st.integers(0, len(sections) - 1))])
        elif op == "rename" and sections:
            i = draw(st.integers(0, len(sections) - 1))
            sections[i] = (draw(st.sampled_from(SECTION_NAMES + ("end", "", "x"))),
                           sections[i][1])
        elif op == "foreign":
            sections.insert(draw(st.integers(0, len(sections))),
                            (draw(st.sampled_from(SECTION_NAMES)), draw(st.binary(max_size=32))))
    return checkpoint_bytes({**header, "version": 1}, sections, 1)


@FUZZ
@given(data=st.data())
def test_checkpoint_loader_mutated(seeds, data):
    """Load, resume and run 2000 ticks (on one engine, drawn)."""
    rss_before = peak_rss_mb()
    path, seed = data.draw(st.sampled_from(seeds))
    blob = data.draw(mutated_checkpoints(seed))
    engine = data.draw(st.sampled_from(ENGINES))
    exercise_checkpoint(blob, path.parent, inspect=False, engines=(engine,))
    assert peak_rss_mb() - rss_before < 512, "peak memory grew by more than 512 MB"


@FUZZ
@given(data=st.data())
def test_inspect_mutated(seeds, data):
    """Load and describe (`minivm inspect`)."""
    path, seed = data.draw(st.sampled_from(seeds))
    blob = data.draw(mutated_checkpoints(seed))
    exercise_checkpoint(blob, path.parent, run=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_seed_checkpoints_resume(seeds, version):
    """The fuzz seeds themselves load and resume, in both formats, on both
    engines (else the fuzzing tests little)."""
    for path, seed in seeds:
        assert exercise_checkpoint(as_version(seed, version), path.parent) == "resumed"


# --- hand-crafted hostile msgpack -----------------------------------------------------------------

HUGE_HEADERS = {
    "bin32-4GB": b"\xc6\xff\xff\xff\xff",
    "str32-4GB": b"\xdb\xff\xff\xff\xff",
    "array32-4G": b"\xdd\xff\xff\xff\xff",
    "map32-4G": b"\xdf\xff\xff\xff\xff",
    "ext32-4GB": b"\xc9\xff\xff\xff\xff\x01",
    "array32-4M": b"\xdd\x00\x40\x00\x00",
}
MAGIC = msgpack.packb("minivm-checkpoint")


def _hostile_files(seed: bytes, blob: bytes, version: int) -> dict[str, bytes]:
    """``blob`` placed at every level of a checkpoint file of ``version``:
    version 1 in each section; version 2 in each record (the page index
    too), as a record's bytes, and as the end record the footer points at."""
    head = pack({"version": version})
    files = {"as-header": MAGIC + blob + b"\x00" * 64,
             "as-section": MAGIC + head + blob + b"\x00" * 64,
             "as-section-payload": MAGIC + head + b"\x92\xa5state" + blob + b"\x00" * 64,
             "as-trailer": MAGIC + head + b"\x92\xa3end" + blob + b"\x00" * 64}
    if version == 1:
        header, sections = split(as_version(seed, 1))
        for name in SECTION_NAMES:
            patched = [(n, blob + b"\x00" * 16 if n == name else p) for n, p in sections]
            files[f"in-{name}-payload"] = checkpoint_bytes(header, patched, 1)
        return files
    for name in ckpt_raw.RECORD_NAMES:
        files[f"in-{name}-payload"] = with_record(seed, name, blob + b"\x00" * 16)
        files[f"as-{name}-record"] = with_record(seed, name, b"", b"\x92" + pack(name) + blob)
    layout = parse_v2(seed)
    files["as-end-record"] = build_v2(layout.header, layout.items(), layout.pages,
                                      edit_end=lambda _: blob + b"\x00" * 16)
    files["as-end-record-payload"] = build_v2(layout.header, layout.items(), layout.pages,
                                              edit_end=lambda _: b"\x92\xa3end" + blob)
    return files


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("what", list(HUGE_HEADERS))
def test_huge_declared_lengths(seeds, what, version):
    """A length header claiming gigabytes is refused at once, with bounded memory."""
    path, seed = seeds[0]
    for where, data in _hostile_files(seed, HUGE_HEADERS[what], version).items():
        with bounded("a hostile input", megabytes=200):
            with pytest.raises(FormatError) as info:
                load_checkpoint(data, "checkpoint 'hostile.mvc'")
        assert "hostile.mvc" in assert_clean(info.value), where


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("unit", [b"\x91", b"\x81\xa1k", b"\xdd\x00\x40\x00\x00"],
                         ids=["arrays", "maps", "arrays-declaring-4M"])
def test_deep_nesting(seeds, depth, unit, version):
    path, seed = seeds[0]
    blob = unit * depth + b"\xc0"
    for where, data in _hostile_files(seed, blob, version).items():
        with bounded("a hostile input", megabytes=200):
            with pytest.raises(FormatError) as info:
                load_checkpoint(data, "checkpoint 'hostile.mvc'")
        assert_clean(info.value)


@pytest.mark.parametrize("what", list(HUGE_HEADERS))
def test_image_huge_declared_lengths(what):
    blob = HUGE_HEADERS[what]
    for data in (msgpack.packb("minivm-image") + blob + bytes(32),
                 container_bytes(IMAGE_KIND, {"version": 1}, [("image", blob + bytes(16))])):
        with bounded("a hostile input", megabytes=200):
            with pytest.raises(FormatError):
                image_from_bytes(data, "image 'hostile.mvb'")


WRONG_VALUES = [None, True, -1, -(1 << 63), (1 << 64) - 1, 1 << 32, 1.5, "x", b"\x00" * 3,
                [], {}, [0] * 20, DELETE]


def _with_section(seed: bytes, version: int, section: str, payload: bytes) -> bytes:
    """A seed in ``version`` with one section's (version 2: record's) payload
    replaced, digests right."""
    if version == 2 and section == "index":
        return with_record(seed, "index", payload)
    header, sections = split(seed)
    patched = [(name, payload if name == section else p) for name, p in sections]
    return checkpoint_bytes(header, patched, version)


def _section_tree(seed: bytes, section: str):
    if section == "index":
        return msgpack.unpackb(parse_v2(seed).records["index"], raw=False)
    return msgpack.unpackb(dict(split(seed)[1])[section], raw=False)


@pytest.mark.parametrize("version, section",
                         [(1, name) for name in SECTION_NAMES]
                         + [(2, name) for name in ckpt_raw.RECORD_NAMES],
                         ids=lambda v: str(v))
def test_wrong_value_in_every_field(seeds, version, section):
    """Every field of every section (lists: first, second, last element), replaced by
    each of WRONG_VALUES or deleted, digests recomputed: load, inspect, resume, run
    (the engines in turn). Version 1: the pages sections too; version 2: the
    page index too. Lists every distinct crash (exception type and place in
    minivm) it finds."""
    outcomes: dict[str, int] = {}
    crashes: dict[tuple, str] = {}
    turn = 0
    for path, seed in seeds:
        tree = _section_tree(seed, section)
        for field_path in list(tree_paths(tree))[1:]:
            for value in WRONG_VALUES:
                blob = _with_section(seed, version, section,
                                     pack(tree_set(tree, field_path, value)))
                turn += 1
                engine = ENGINES[turn % len(ENGINES)]
                for inspect, run in ((False, True), (True, False)):
                    try:
                        outcome = exercise_checkpoint(blob, path.parent, inspect=inspect,
                                                      run=run, engines=(engine,))
                    except (Exception, Hang) as exc:
                        where = [f for f in traceback.extract_tb(exc.__traceback__)
                                 if "/minivm/" in f.filename] or [None]
                        place = (f"{Path(where[-1].filename).name}:{where[-1].lineno}"
                                 if where[-1] else "?")
                        crashes.setdefault((type(exc).__name__, place), (
                            f"{type(exc).__name__} at {place} "
                            f"({'inspect' if inspect else 'resume on ' + engine}): "
                            f"{path.name} as version {version}, "
                            f"section '{section}' field {list(field_path)} = "
                            f"{'deleted' if value is DELETE else repr(value)[:40]}: "
                            f"{str(exc)[:100]}"))
                        continue
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not crashes, f"{len(crashes)} distinct crash(es):\n" + "\n".join(crashes.values())
    if section != "meta":       # meta is informational: any value may be accepted
        assert outcomes.get("refused by the loader", 0) + outcomes.get("refused by resume", 0)


def _patched_state(seed: bytes, edit, version: int) -> bytes:
    header, sections = split(seed)
    out = []
    for name, payload in sections:
        tree = msgpack.unpackb(payload, raw=False)
        tree = edit(name, tree)
        out.append((name, pack(tree)))
    return checkpoint_bytes(header, out, version)


def _state_edit(fn):
    def edit(name, tree):
        if name == "state":
            fn(tree)
        return tree
    return edit


def _pages_edit(fn):
    def edit(name, tree):
        if name == "pages":
            fn(tree)
        return tree
    return edit


OUT_OF_RANGE_EDITS = [
    (_state_edit(lambda s: s.update(memory_size=-4096)), "memory size"),
    (_state_edit(lambda s: s.update(memory_size=(1 << 32) + 1)), "memory size"),
    (_state_edit(lambda s: s["cpu"].update(pc=-1)), "pc"),
    (_state_edit(lambda s: s["cpu"].update(pc=10 ** 6)), "pc"),
    (_state_edit(lambda s: s["cpu"].update(tick=-5)), "tick"),
    (_state_edit(lambda s: s["cpu"]["regs"].__setitem__(3, 1 << 32)), "registers"),
    (_state_edit(lambda s: s["cpu"]["regs"].__setitem__(3, -1)), "registers"),
    (_state_edit(lambda s: s["cpu"]["regs"].append(0)), "registers"),
    (_pages_edit(lambda p: p[0].__setitem__(0, 1 << 20)), "outside memory"),
    (_pages_edit(lambda p: p[0].__setitem__(0, -1)), "outside memory"),
    (_pages_edit(lambda p: p[0].__setitem__(1, p[0][1][:-1])), "bytes"),
    (_pages_edit(lambda p: p.append(list(p[0]))), "twice"),
    (_state_edit(lambda s: s["disk"]["queue"][0].__setitem__(4, -1)),
     "queue[0].count: -1 is out of range"),
    (_state_edit(lambda s: s["disk"]["queue"][0].__setitem__(3, 1 << 31)), "out of range"),
    (_state_edit(lambda s: s["disk"]["queue"][0].__setitem__(2, 1 << 20)), "outside the disk"),
    (_state_edit(lambda s: s["disk"].update(handler=10 ** 6)), "outside the code"),
    (_state_edit(lambda s: s["timer"].update(handler=-1)), "outside the code"),
    (_state_edit(lambda s: s["interrupts"].update(pending=[[0, 0, 0, "timer"]] * 70000)),
     "too many"),
]
OUT_OF_RANGE_IDS = ["memory-negative", "memory-over-4G", "pc-negative", "pc-outside-code",
                    "tick-negative", "register-2^32", "register-negative", "17-registers",
                    "page-outside-memory", "page-negative", "page-short", "page-twice",
                    "dma-count-negative", "dma-addr-outside-memory", "dma-block-outside-disk",
                    "disk-handler-outside-code", "timer-handler-negative", "70000-pending-interrupts"]


#: Edits of the pages sections: version 1 only (version 2's page index:
#: tests/test_ckptfile.py, test_v2_index_disagreements_are_refused).
@pytest.mark.parametrize("version, edit, words", [
    pytest.param(version, edit, words, id=f"{name}-v{version}")
    for version in VERSIONS
    for (edit, words), name in zip(OUT_OF_RANGE_EDITS, OUT_OF_RANGE_IDS)
    if version == 1 or not name.startswith("page-")])
def test_out_of_range_values(seeds, version, edit, words):
    path, seed = seeds[0]
    blob = _patched_state(seed, edit, version)
    for engine in ENGINES:
        with bounded("a hostile input", megabytes=200, hang_after=150):
            with pytest.raises(FormatError) as info:
                ckpt = load_checkpoint(blob, "checkpoint 'hostile.mvc'")
                ckpt.path = str(path)           # its disk chain resolves beside the seed
                with tempfile.TemporaryDirectory() as store:
                    machine, _ = resume(ckpt, FileStore(store), engine=engine)
                    close_disks(machine)
        assert words in assert_clean(info.value), str(info.value)


# Minimal inputs found by test_wrong_value_in_every_field (see docs/reliability.md).

def _hostile_checkpoint(seeds, section: str, field_path: tuple, value,
                        version: int) -> tuple[bytes, Path]:
    path, seed = seeds[0]
    header, sections = split(seed)
    patched = []
    for name, payload in sections:
        if name == section:
            payload = pack(tree_set(msgpack.unpackb(payload, raw=False), field_path, value))
        patched.append((name, payload))
    return checkpoint_bytes(header, patched, version), path


@pytest.mark.parametrize("field_path, value", [
    (("cpu", "regs"), None),
    (("cpu", "regs"), ["x"] * 16),
    (("cpu", "halted"), DELETE),
    (("interrupts",), {}),
    (("timer",), None),
    (("disk", "queue"), "x"),
    (("console",), DELETE),
], ids=["regs-nil", "regs-strings", "no-halted", "interrupts-empty-map", "timer-nil",
        "queue-string", "no-console"])
@pytest.mark.parametrize("version", VERSIONS)
def test_inspect_hostile_state_regression(seeds, field_path, value, version):
    """`minivm inspect` (report.describe_checkpoint) on a checkpoint whose state
    section has a wrong type: a clean error (or a report), never a TypeError,
    KeyError, IndexError or ValueError traceback."""
    blob, path = _hostile_checkpoint(seeds, "state", field_path, value, version)
    try:
        ckpt = load_checkpoint(blob, "checkpoint 'hostile.mvc'")
        ckpt.path = str(path)
        describe_checkpoint(ckpt)
    except MinivmError as exc:
        assert_clean(exc)


@pytest.mark.parametrize("field_path, value", [
    (("console", "input_consumed"), 1 << 40),
    (("console",), [1, 2]),
    (("cpu", "regs"), None),
], ids=["input-consumed-2^40", "console-list", "regs-nil"])
@pytest.mark.parametrize("version", VERSIONS)
def test_cli_inspect_and_repl_restore_hostile_state(seeds, tmp_path, field_path, value,
                                                    version):
    """The CLI's `inspect` and the REPL's `restore FILE` on a checkpoint whose
    state has a wrong value: a clean error, no traceback, no 'internal error'
    (the REPL's restore reads console.input_consumed before validating it and
    allocates a bytearray of that size)."""
    blob, path = _hostile_checkpoint(seeds, "state", field_path, value, version)
    evil = path.parent / f"hostile-{tmp_path.name}.mvc"
    evil.write_bytes(blob)
    proc = run_cli("inspect", str(evil), input=b"", timeout=60)
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and proc.returncode in (0, 2), err
    script = tmp_path / "cmds.txt"
    script.write_text(f"restore {evil}\n")
    proc = run_cli("repl", "--batch", str(script), input=b"", timeout=60)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert "Traceback" not in out and "internal error" not in out, out
    assert "error" in out, out


@pytest.mark.parametrize("value", [1 << 32, (1 << 64) - 1, None, 1.5, 0, -1],
                         ids=["2^32", "2^64-1", "nil", "float", "zero", "negative"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("version", VERSIONS)
def test_resume_hostile_group_blocks_regression(seeds, value, version, engine):
    """A checkpoint's disk.group_blocks is not validated by the loader; resume
    (as the REPL's `restore FILE` calls it) builds the overlay with it, and the
    first disk write then fails with MemoryError (2^32 blocks of 512 bytes),
    OverflowError or TypeError. It must be refused cleanly, in bounded memory."""
    blob, path = _hostile_checkpoint(seeds, "disk", ("group_blocks",), value, version)
    with bounded("a hostile input", megabytes=200, hang_after=150):
        try:
            ckpt = load_checkpoint(blob, "checkpoint 'hostile.mvc'")
            ckpt.path = str(path)
            with tempfile.TemporaryDirectory() as store:
                machine, _ = resume(ckpt, FileStore(store), console_sink=BufferSink(),
                                    engine=engine)
                try:
                    machine.run(MAX_TICKS)
                finally:
                    close_disks(machine)
        except MinivmError as exc:
            assert_clean(exc)


# --- 4. the interpreter on random valid programs ---------------------------------------------------

PORTS = [0x00, 0x01, 0x02, 0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26]
imm = st.one_of(st.integers(-(1 << 31), (1 << 32) - 1), st.sampled_from(HOSTILE_INTS[:-4]),
                st.integers(-8, 8))


@st.composite
def random_programs(draw):
    """Assembly text of random instructions from isa.SHAPES: random registers,
    immediates, jump targets (in and outside the code), ports and addresses."""
    n = draw(st.integers(1, 40))
    memory = draw(st.sampled_from([4096, 8192, 65536, 1 << 20]))
    lines = []
    for _ in range(n):
        mnemonic = draw(st.sampled_from(sorted(isa.SHAPES)))
        kinds, _, _ = draw(st.sampled_from(isa.SHAPES[mnemonic]))
        operands = []
        for i, kind in enumerate(kinds):
            reg = draw(st.sampled_from([f"r{i}" for i in range(16)] + ["sp"]))
            target = str(draw(st.one_of(st.integers(0, n + 1), st.sampled_from([-1, 1 << 31]))))
            if kind == "reg":
                operands.append(reg)
            elif kind == "src":
                if mnemonic in ("jmp", "call"):
                    operands.append(draw(st.sampled_from([reg, target])))
                else:
                    operands.append(draw(st.one_of(st.just(reg), imm.map(str))))
            elif kind == "mem":
                addr = draw(st.one_of(st.integers(0, memory + 8),
                                      st.sampled_from([-4, -1, memory - 4, memory - 3, memory])))
                operands.append(draw(st.sampled_from([f"[{reg}]", f"[{reg} + {addr}]",
                                                      f"[{reg} - {addr}]", f"[{addr}]"])))
            elif kind == "expr":
                if mnemonic in ("in", "out"):
                    operands.append(str(draw(st.one_of(st.sampled_from(PORTS),
                                                       st.integers(0, 0x30)))))
                else:
                    operands.append(target)
        lines.append(f"{mnemonic} {', '.join(operands)}".strip())
    return "\n".join(lines) + "\n", memory


def check_run(machine: Machine) -> str:
    with time_limit(60, "running 2000 ticks"):
        stop = machine.run(MAX_TICKS)
    assert stop.reason in ("halt", "fault", "limit"), stop
    if stop.reason == "fault":
        text = str(stop.detail)
        assert 0 <= machine.pc < len(machine.image.code), text
        assert f"(pc {machine.pc}," in text, text
        assert f"fuzz.asm:{machine.image.lines[machine.pc]}:" in text, text
    elif stop.reason == "limit":
        assert machine.tick >= MAX_TICKS
    return stop.reason


@FUZZ
@given(random_programs(), st.booleans(), st.binary(max_size=8))
def test_interpreter_random_programs(program, with_disk, console):
    source, memory = program
    image = assemble(source, "fuzz.asm")
    with tempfile.TemporaryDirectory() as folder:
        disk = None
        if with_disk:
            disk_path = os.path.join(folder, "disk.img")
            with open(disk_path, "wb") as f:
                f.truncate(16 * 512)
            disk = open_disk(disk_path)
        machine = Machine(image, memory_size=memory, disk=disk, console_sink=BufferSink(),
                          console_input=ConsoleInput(console), disk_latency=3,
                          disk_per_block=1, max_inflight=8)
        # A checkpointer too, so `ckpt` runs the protocol with random DMA around it.
        cp = Checkpointer(machine, MemoryStore(overlay_folder=os.path.join(folder, "ov")),
                          pages_per_slice=4, slice_ticks=16)
        try:
            check_run(machine)
            cp.finish_all()
            assert all(job.status == "complete" for job in cp.jobs), \
                [job.progress() for job in cp.jobs]
        finally:
            close_disks(machine)


def test_interpreter_fault_names_pc_and_line():
    """check_run's fault check can fail: a real fault carries pc and file:line."""
    machine = Machine(assemble("nop\nld r1, [0x7FFFFFFF]\nhalt\n", "fuzz.asm"),
                      console_sink=BufferSink())
    assert check_run(machine) == "fault"
    assert "fuzz.asm:2:" in str(machine.fault)
