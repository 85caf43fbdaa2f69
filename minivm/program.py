"""Load a program: an assembled image (``.mvb``) or an assembly source.

Above both image.py and assembler.py, so neither imports the other's user;
the assembler (and Lark) is imported only when the file is a source, so
running an ``.mvb`` image never pays for the parser.

An assembled source is also kept in a cache, as CPython keeps compiled
modules in ``__pycache__``: the next run of the same file with the same
contents loads the image and never imports Lark (``minivm run
programs/hello.asm`` then starts as fast as running an ``.mvb``). The cache
is a folder of ``.mvb`` files, one per source path, named by a digest of
the path and one of the source's bytes, minivm's version and the size and
time of the assembler's own files (so an edited checkout never gets a stale
image). A source with ``.include`` has its included files' digests in its
image (``Image.includes``): a cached image is used only while each of them
still has those bytes. The cache's folder is
``$MINIVM_ASM_CACHE`` if set (``off`` turns it off), else
``$XDG_CACHE_HOME/minivm/asm`` or ``~/.cache/minivm/asm``. It is only ever
a shortcut: a cache file that is missing, unreadable or damaged (images are
digested containers) means the source is assembled again, a folder that
cannot be written means nothing is kept, and no failure of the cache is
ever an error.
"""

from __future__ import annotations

import hashlib
import os

from .version import __version__
from .container import read_program_file
from .errors import MinivmError
from .image import Image, image_from_bytes, is_image_bytes, load_image

CACHE_ENV = "MINIVM_ASM_CACHE"
#: What an image depends on besides its source: a change to any of these
#: files (a new minivm, or an edited checkout) is a different cache entry.
_ASSEMBLER_FILES = ("assembler.py", "asm_hints.py", "asm_source.py", "grammar.lark", "isa.py",
                    "image.py", "container.py")


def load_program(path: str) -> Image:
    """An image file or an assembly source, whichever ``path`` holds (read once)."""
    data = read_program_file(path)
    if is_image_bytes(data):
        return image_from_bytes(data, f"image '{path}'")
    cached = _cache_path(path, data)
    if cached is not None:
        image = _read_cached(cached, path)
        if image is not None:
            return image
    from .assembler import assemble, decode_source   # only for a source: Lark is slow to import
    image = assemble(decode_source(data, path), path)
    if cached is not None:
        _write_cached(cached, image)
    return image


def cache_folder() -> str | None:
    """Where assembled sources are kept, or None when the cache is off."""
    folder = os.environ.get(CACHE_ENV)
    if folder is not None:
        return None if folder.strip().lower() in ("", "off", "0", "no") else folder
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minivm", "asm")


def _cache_path(path: str, data: bytes) -> str | None:
    folder = cache_folder()
    if folder is None:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        stamps = [os.stat(os.path.join(here, name)) for name in _ASSEMBLER_FILES]
    except OSError:
        return None
    tool = "\0".join(f"{s.st_size}:{s.st_mtime_ns}" for s in stamps)
    who = hashlib.sha256(path.encode("utf-8", "surrogateescape"))
    what = hashlib.sha256(f"{__version__}\0{tool}\0".encode() + data)
    return os.path.join(folder, f"{who.hexdigest()[:32]}-{what.hexdigest()[:32]}.mvb")


def _read_cached(cached: str, path: str) -> Image | None:
    try:
        image = load_image(cached)
    except (OSError, MinivmError):          # missing, unreadable or damaged: assemble
        return None
    if image.source_file != path or not _includes_unchanged(image):
        return None
    return image


def _includes_unchanged(image: Image) -> bool:
    """Whether every file the source included still has the bytes it had
    (the cache's key is the main file alone: an edited include, or a
    library file, is a different program)."""
    for included, digest in image.includes:
        try:
            data = read_program_file(included)
        except (OSError, MinivmError):
            return False
        if hashlib.sha256(data).hexdigest() != digest:
            return False
    return True


def _write_cached(cached: str, image: Image) -> None:
    folder, name = os.path.split(cached)
    prefix = name.split("-", 1)[0] + "-"
    try:
        os.makedirs(folder, exist_ok=True)
        image.save(cached)
        for other in os.listdir(folder):     # the same path's older contents
            if other.startswith(prefix) and other != name and other.endswith(".mvb"):
                os.unlink(os.path.join(folder, other))
    except (OSError, MinivmError):
        pass                                 # a cache that cannot be written is no cache
