"""Load a program: an assembled image (``.mvb``) or an assembly source.

Above both image.py and assembler.py, so neither imports the other's user;
the assembler (and Lark) is imported only when the file is a source, so
running an ``.mvb`` image never pays for the parser.
"""

from __future__ import annotations

from .container import read_program_file
from .image import Image, image_from_bytes, is_image_bytes


def load_program(path: str) -> Image:
    """An image file or an assembly source, whichever ``path`` holds (read once)."""
    data = read_program_file(path)
    if is_image_bytes(data):
        return image_from_bytes(data, f"image '{path}'")
    from .assembler import assemble, decode_source   # only for a source: Lark is slow to import
    return assemble(decode_source(data, path), path)
