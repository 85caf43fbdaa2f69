"""Hostile images (issue 12): every image the loader accepts disassembles to a
listing that reassembles to the same program, and every one it refuses is
refused with a clean one-paragraph message (never a traceback).

The images here are made as an attacker would make them: the image map is
written by hand (any name, any value, any source file) and packed into a
container with its digests recomputed, so that only the loader's field
checks (image.py) stand between it and ``minivm disasm``.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, strategies as st

from minivm import isa
from minivm.assembler import AssemblyError, assemble
from minivm.container import ContainerWriter, pack
from minivm.disasm import listing
from minivm.errors import FormatError
from minivm.image import IMAGE_KIND, IMAGE_VERSION, Image, image_from_bytes

MASK = 0xFFFF_FFFF
HOSTILE_NAMES = ["", " ", "a b", "x\ny", "a\x1b[2J", "r1", "R15", "sp", "SP", "r99", "1abc",
                 ".data", "a:b", "a;b", "a,b", "é", "x" * 5000, "_ok", "ok.2", "loop", "nop",
                 "pc", "tick"]
HOSTILE_VALUES = [-1, -(1 << 31) - 1, -(1 << 31), 0, 1, 2, 7, (1 << 31) - 1, 1 << 31,
                  MASK, MASK + 1, (1 << 63) - 1, (1 << 64) - 1, -(1 << 63)]
HOSTILE_FILES = ["random.mvb", "evil\n.data\nx: .byte 1", "a\x1b]0;title\x07.asm", "x;y",
                 "\r\n", "\u202e.asm", ""]


def image_container(d: dict) -> bytes:
    buf = io.BytesIO()
    writer = ContainerWriter(buf, IMAGE_KIND, {"version": IMAGE_VERSION})
    writer.section("image", pack(d))
    writer.finish()
    return buf.getvalue()


def instruction(draw) -> list[int]:
    op = draw(st.sampled_from(isa.OPCODES))
    limits = {isa.REG: isa.NUM_REGS - 1, isa.BASE: isa.ZERO_REG}
    fields = [draw(st.one_of(st.integers(0, limits.get(kind, MASK)),
                             st.sampled_from([0, limits.get(kind, MASK)])))
              for kind in op.fields]
    return [op.code, *fields, *[0] * (3 - len(fields))]


@st.composite
def hostile_images(draw) -> dict:
    """An image map as an attacker writes it: valid code, then symbols with any
    name and any value in any section, any source file name, any source lines."""
    code = [instruction(draw) for _ in range(draw(st.integers(1, 12)))]
    data = draw(st.binary(max_size=40))
    symbols = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=6)))
        section = draw(st.sampled_from(["text", "data", "equ"]))
        value = draw(st.one_of(st.sampled_from(HOSTILE_VALUES),
                               st.integers(-2, len(code) + 2), st.integers(-2, len(data) + 2)))
        symbols.append([name, section, value])
    return {"code": code, "data": data, "entry": draw(st.integers(0, len(code) - 1)),
            "source_file": draw(st.one_of(st.sampled_from(HOSTILE_FILES), st.text(max_size=8))),
            "lines": [draw(st.integers(0, 1 << 40)) for _ in code],
            "texts": [draw(st.text(max_size=10)) for _ in code], "symbols": symbols}


def tiny(**fields) -> dict:
    """A one-instruction image map with ``fields`` replaced."""
    return {"code": [[isa.JMP_I, 0, 0, 0]], "data": b"", "lines": [1], "texts": ["jmp 0"],
            **fields}


def load(d: dict) -> Image | None:
    try:
        return image_from_bytes(image_container(d), "image 'hostile.mvb'")
    except FormatError as exc:
        text = str(exc)
        assert "\n" not in text and text.isprintable(), repr(text)
        return None


def assert_reassembles(image: Image) -> None:
    text = listing(image, "hostile\n.mvb")
    try:
        again = assemble(text, "listing.asm")
    except AssemblyError as exc:
        pytest.fail(f"the listing of an accepted image does not assemble:\n{exc}\n{text}")
    assert again.same_program(image), text
    assert again.symbols == image.symbols, text


@given(hostile_images())
def test_every_accepted_image_round_trips(d):
    """Any image the loader accepts -> disasm -> assemble -> the same program."""
    image = load(d)
    if image is not None:
        assert_reassembles(image)


@pytest.mark.parametrize("name", ["a b", "x\ny", "r1", "SP", "", "1x", "a\x1b[2J"])
def test_symbol_names_the_assembler_cannot_write_are_refused(name):
    d = tiny(symbols=[[name, "text", 0]])
    with pytest.raises(FormatError, match="is not a name the assembler accepts") as info:
        image_from_bytes(image_container(d), "image 'hostile.mvb'")
    assert str(info.value).isprintable()


@pytest.mark.parametrize("section, value", [
    ("text", -1), ("text", 2), ("data", -1), ("data", 4), ("equ", (1 << 64) - 1),
    ("equ", 1 << 32), ("equ", -(1 << 31) - 1)])
def test_symbol_values_outside_their_section_are_refused(section, value):
    d = tiny(data=b"abc", symbols=[["x", section, value]])
    with pytest.raises(FormatError, match="outside"):
        image_from_bytes(image_container(d), "image 'hostile.mvb'")


def test_data_label_at_minus_one_with_empty_data():
    """Found by the attack: an IndexError traceback in disasm."""
    d = tiny(symbols=[["x", "data", -1]])
    with pytest.raises(FormatError, match="outside 0..0"):
        image_from_bytes(image_container(d), "image 'hostile.mvb'")


def test_source_file_with_a_newline_cannot_forge_listing_lines():
    forged = "evil.asm\n.data\nforged: .byte 1, 2, 3"
    d = tiny(source_file=forged)
    image = load(d)
    assert image is not None and image.source_file == forged
    text = listing(image, forged)
    assert not any(line.startswith(("forged:", ".data")) for line in text.splitlines()), text
    assert_reassembles(image)
    assert assemble(text, "listing.asm").data == b""
