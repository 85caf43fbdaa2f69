"""The checkpoint file: what a checkpoint holds and how it is laid out.

A checkpoint is a container (container.py) of kind ``checkpoint`` with the
sections, in the order they are written while the guest keeps running (P4):

``meta``    tick, pc, name, how and when it was taken (a map)
``image``   the program image (so a checkpoint resumes on its own)
``state``   CPU and device state saved at P2: registers, timer, console,
            interrupt controller, disk queue with every in-flight request
``pages``   one or more chunks of ``[[index, bytes], ...]``: only the
            non-zero pages of the original memory
``disk``    the checkpointed disk chain (P10): for each file, top first, its
            path (absolute, and relative to the checkpoint) and fingerprint;
            or nil when no disk is attached

Loading validates every field: the ``state`` section against the machine's
declarations (machine.MACHINE_STATE, state.py), the same that restore uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .container import MAX_FILE_BYTES, ContainerWriter, pack, read_container, unpack_bounded
from .devices import MAX_INFLIGHT
from .errors import FormatError, OutOfMemory, show
from .disks import MAX_CHAIN, valid_fingerprint
from .image import Image
from .machine import MACHINE_STATE
from .memory import PAGE_SIZE
from .state import Limits, StateError, show as show_value, show_int

CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_VERSION = 1
#: The most sections a checkpoint file may have: the container reader takes a
#: section index of at most 4096 entries (container.read_container).
MAX_SECTIONS = 4096
#: The most ``pages`` sections: all but meta, image, state and disk.
MAX_PAGES_SECTIONS = MAX_SECTIONS - 4
#: The fewest pages the writer puts in a ``pages`` section (all but the last
#: hold at least this many), so that even a file of MAX_FILE_BYTES has no more
#: than MAX_PAGES_SECTIONS of them, however the background save is paced.
PAGES_PER_SECTION = 256
assert MAX_FILE_BYTES // (PAGES_PER_SECTION * PAGE_SIZE) + 1 <= MAX_PAGES_SECTIONS


@dataclass
class Checkpoint:
    meta: dict
    image: Image
    state: dict
    disk: dict | None
    pages: dict[int, bytes] = field(default_factory=dict)
    source: str = ""
    file_size: int = 0
    path: str | None = None        # the file it was read from, if any

    @property
    def tick(self) -> int:
        return self.state["cpu"]["tick"]

    @property
    def pc(self) -> int:
        return self.state["cpu"]["pc"]

    @property
    def memory_size(self) -> int:
        return self.state["memory_size"]


class CheckpointWriter:
    """Writes one checkpoint, section by section, into a store's sink."""

    def __init__(self, sink, header: dict):
        self._container = ContainerWriter(sink, CHECKPOINT_KIND,
                                          {"version": CHECKPOINT_VERSION, **header})

    @property
    def bytes_written(self) -> int:
        return self._container.bytes_written

    def meta(self, meta: dict) -> None:
        self._container.section("meta", pack(meta))

    def image(self, image: Image) -> None:
        self._container.section("image", image.to_bytes_payload())

    def state(self, state: dict) -> None:
        self._container.section("state", pack(state))

    def pages(self, pages: list[tuple[int, bytes]]) -> None:
        self._container.section("pages", pack([[i, data] for i, data in pages]))

    def disk(self, disk: dict | None) -> None:
        self._container.section("disk", pack(disk))

    def finish(self) -> None:
        self._container.finish()


def _bad(what: str, why: str) -> FormatError:
    return FormatError(f"{what} is not a valid checkpoint: {why}")


def load_checkpoint(data: bytes, what: str) -> Checkpoint:
    """Parse and validate a checkpoint file's bytes. A valid file the host has
    no memory for is :class:`OutOfMemory`, never a corrupt file."""
    try:
        return _load_checkpoint(data, what)
    except MemoryError:
        raise OutOfMemory(what, len(data)) from None


def _load_checkpoint(data: bytes, what: str) -> Checkpoint:
    container = read_container(data, CHECKPOINT_KIND, CHECKPOINT_VERSION, what)
    meta = unpack_bounded(container.only("meta"), what)
    if not isinstance(meta, dict):
        raise _bad(what, "its meta section is not a map")
    image = Image.from_dict(unpack_bounded(container.only("image"), what), what)
    state = unpack_bounded(container.only("state"), what)
    if not isinstance(state, dict):
        raise _bad(what, "its state section is not a map")
    disk = unpack_bounded(container.only("disk"), what)
    _check_disk(disk, what)
    _check_state(image, state, disk, what)
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
    return Checkpoint(meta, image, state, disk, pages, what, len(data))


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
