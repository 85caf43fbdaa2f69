"""Host files behind the virtual disk: raw images and copy-on-write overlays.

A *raw disk* is a plain image file whose size is a multiple of 512 bytes.

An *overlay* (P1, claims 1, 21, 27) is a file of its own that records only
the block groups written since it was created and reads everything else from
its parent (a raw disk or another overlay, so overlays chain). Layout::

    0 .. 4095    header: msgpack magic "minivm-overlay", then a map with the
                 format version, the parent's path and, once the parent no
                 longer changes, the parent's fingerprint (size + SHA-256)
                 and, after a commit, the fingerprint the parent has once it
                 holds this overlay (``committed_as``, outside the fingerprint)
    4096 ..      records, one per block group, in the order they were first
                 written: b"MVGR", group index (u32), CRC-32 of the data (u32),
                 then group_blocks * 512 bytes

A write that covers only part of a group not yet in the overlay first copies
the group from the parent (a disk COW fault, P3). The fingerprint lets a
checkpoint or a child overlay detect a parent that was changed or replaced
(P10). ``commit_overlay`` merges an overlay into its parent (P10, claims 3-5).

Every file below the top of a chain is opened read-only, and so is a whole
chain opened for reading (``open_disk(..., writable=False)``): a layer is
opened for writing only when its caller says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import zlib
from collections import OrderedDict

import msgpack

from .container import fsync_dir, magic_of
from .devices import BLOCK_SIZE
from .errors import DiskError, FormatError, MinivmError, reason, show

DEFAULT_GROUP_BLOCKS = 8
OVERLAY_KIND = "overlay"
OVERLAY_VERSION = 1
HEADER_SIZE = 4096
MAX_CHAIN = 4096          # overlays in one chain (one per checkpoint of a run)
#: Layers below the top (read only, "parked") that keep a descriptor open at
#: once; the others are reopened when read. Bounds the open files of a run
#: with thousands of checkpoints, whatever ``ulimit -n`` allows.
MAX_OPEN_PARKED = 32
_RECORD = struct.Struct("<4sII")
_RECORD_MAGIC = b"MVGR"


def check_regular_file(path: str, what: str) -> int:
    """Refuse anything but a regular file (a FIFO or /dev/zero would hang us)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DiskError(f"{what} '{show(path)}' does not exist") from None
    except OSError as exc:
        raise DiskError(f"{what} '{show(path)}' cannot be examined: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DiskError(f"{what} '{show(path)}' is not a regular file")
    return info.st_size


def fingerprint_file(path: str, expected_size: int | None = None) -> dict:
    """Size and SHA-256 of a whole file: the *full* check (``--verify-disk``,
    ``export``, and every fingerprint a minivm before 0.13 recorded). It reads
    the whole file, so nothing takes it by default: see :func:`identify`.

    Reads no more than the size the file system reports (a /proc file may
    report 0 and stream forever); with ``expected_size``, a file of another
    size is answered without reading it at all.

    An overlay's ``committed_as`` (the note a commit leaves in its header) is
    not part of the fingerprint: the SHA-256 is taken over the header as it
    was without it. A commit changes what the overlay's parent holds, never
    what reading through the overlay gives, so checkpoints and child overlays
    that recorded the overlay's fingerprint still match it after a commit
    (or after one that was killed or failed half-way).
    """
    size = check_regular_file(path, "disk file")
    if expected_size is not None and size != expected_size:
        return {"size": size, "sha256": ""}
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        first = _counted(f.read(min(HEADER_SIZE, size)))
        done = len(first)
        digest.update(_fingerprinted_header(first))
        while done < size and (chunk := _counted(f.read(min(1 << 20, size - done)))):
            digest.update(chunk)
            done += len(chunk)
        if done != size or f.read(1):
            raise DiskError(f"disk file '{show(path)}' changed size while being read")
    return {"size": size, "sha256": digest.hexdigest()}


# --- disk identity without reading the disk (P10) ---------------------------------------------
#
# What a checkpoint (or a child overlay) records to recognise a file of its
# disk chain, in O(1) of the file's size (docs/formats.md, "Disk identity"):
#
# * an overlay: its size and its content ID (``cid``, in the header), which
#   minivm changes on the first write after the overlay is opened; plus the
#   SHA-256 of the overlay file (what the guest wrote, never the disk's size),
#   which only the full check compares;
# * a raw disk: size, mtime_ns and a SHA-256 of SAMPLE_COUNT sampled blocks
#   (compared by default), and inode and ctime_ns (which tell the same file
#   from a copy of it, shown in the status).
#
# Records of the old form, {size, sha256} of the whole file, are compared the
# old way, by reading the whole file.

SAMPLE_COUNT = 8            # sampled 4 KiB blocks of a raw disk, spread over it
SAMPLE_BYTES = 4096

#: Bytes read by the identity and fingerprint functions (tests count them).
bytes_read = 0


def _counted(data: bytes) -> bytes:
    global bytes_read
    bytes_read += len(data)
    return data


def _sample_hash(fd: int, size: int) -> str:
    """SHA-256 of SAMPLE_COUNT blocks at fixed places (first, last, evenly
    between), with the size and each place: O(1) reads whatever the size."""
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    places = sorted({min(size - SAMPLE_BYTES, (size - SAMPLE_BYTES) * i // (SAMPLE_COUNT - 1))
                     for i in range(SAMPLE_COUNT)}) if size > SAMPLE_BYTES else [0]
    for place in places:
        data = _counted(os.pread(fd, SAMPLE_BYTES, place))
        digest.update(place.to_bytes(8, "little") + data)
    return digest.hexdigest()


def identify(path: str, full: bool = False, with_ctime: bool = True) -> dict:
    """The O(1) identity of a disk file (see above), read through a read-only
    descriptor; ``full`` adds the whole file's SHA-256 (which reads it all).
    An overlay's record always carries its SHA-256: it costs what the guest
    wrote into it. ``with_ctime=False`` leaves ctime out (a commit records
    the file it is about to rename into place: the rename changes ctime)."""
    check_regular_file(path, "disk file")
    fd = _open_rw(path, "disk file", writable=False)
    try:
        info = os.fstat(fd)
        head = _counted(os.pread(fd, HEADER_SIZE, 0))
        if head.startswith(magic_of(OVERLAY_KIND)):
            header = _parse_overlay_header(head, path)
            record = {"size": info.st_size, "cid": header.get("cid", ""),
                      "sha256": fingerprint_file(path)["sha256"]}
            return record
        record = {"size": info.st_size, "mtime_ns": info.st_mtime_ns,
                  "sample": _sample_hash(fd, info.st_size), "ino": info.st_ino}
        if with_ctime:
            record["ctime_ns"] = info.st_ctime_ns
    except OSError as exc:
        raise DiskError(f"disk file '{show(path)}' cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if full:
        record["sha256"] = fingerprint_file(path)["sha256"]
    return record


def fingerprint_kind(fp: dict) -> str:
    """'overlay' (a content ID), 'raw' (file-system identity and samples) or
    'sha256' (a whole-file SHA-256 only: an old record)."""
    if "cid" in fp:
        return "overlay"
    return "raw" if "sample" in fp else "sha256"


def check_identity(path: str, recorded: dict, full: bool = False) -> tuple[bool, str]:
    """Whether the file at ``path`` is the one ``recorded`` describes, and how
    it was told: (matches, how). Reads O(1) of the file, except for an old
    record (a SHA-256 only) or with ``full``, which read the whole file and
    compare its SHA-256 where the record has one."""
    kind = fingerprint_kind(recorded)
    size = check_regular_file(path, "disk file")
    if size != recorded["size"]:
        return False, f"its size is {size} bytes, not {recorded['size']}"
    if kind == "sha256":
        actual = fingerprint_file(path, recorded["size"])
        return (actual == recorded,
                "whole-file SHA-256 (a checkpoint of an older minivm)" if actual == recorded
                else "its SHA-256 differs")
    now = identify(path, with_ctime=True) if kind == "raw" or full else _fast_overlay(path)
    if kind == "overlay":
        if now.get("cid") != recorded["cid"]:
            return False, "its content ID differs (it was written since)"
        how = BY_CID
        if not recorded["cid"]:          # an overlay of an older minivm has none
            full = True
    else:
        if now.get("cid") is not None:
            return False, "it is an overlay, not the raw disk recorded"
        if now["sample"] != recorded["sample"]:
            return False, "its sampled blocks differ"
        if now["mtime_ns"] != recorded["mtime_ns"]:
            if "sha256" not in recorded:
                return False, "its modification time differs (it was written or replaced)"
            # A record that carries the whole file's SHA-256 (minivm export
            # writes one) is verified in full instead: a copy made without
            # keeping the mtime (scp, cp) still resumes, after one full read.
            if fingerprint_file(path, recorded["size"])["sha256"] != recorded["sha256"]:
                return False, "its modification time and its SHA-256 differ"
            return True, "verified in full (SHA-256): its modification time differs"
        same = (now["ino"] == recorded.get("ino")
                and now.get("ctime_ns") == recorded.get("ctime_ns", now.get("ctime_ns")))
        how = (BY_SAME_FILE if same else
               "size, mtime and sampled blocks; inode or ctime differ (a copy, or "
               "a change with its mtime restored: --verify-disk)")
    if not full:
        return True, how
    if "sha256" not in recorded:
        return True, how + "; no whole-file SHA-256 recorded, so not verified in full"
    actual = now["sha256"] if "sha256" in now else fingerprint_file(path)["sha256"]
    if actual != recorded["sha256"]:
        return False, "its SHA-256 differs (verified in full)"
    return True, "verified in full (SHA-256)"


BY_CID = "content ID"
BY_SAME_FILE = "same file: size, mtime, inode, ctime, sampled blocks"
#: What check_identity says when the default check found the very file recorded.
PLAIN_MATCH = (BY_CID, BY_SAME_FILE)


def _fast_overlay(path: str) -> dict:
    """An overlay's content ID and size from its header alone (4 KiB)."""
    fd = _open_rw(path, "disk file", writable=False)
    try:
        head = _counted(os.pread(fd, HEADER_SIZE, 0))
        size = os.fstat(fd).st_size
    except OSError as exc:
        raise DiskError(f"disk file '{show(path)}' cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if not head.startswith(magic_of(OVERLAY_KIND)):
        return {"size": size, "cid": None}
    return {"size": size, "cid": _parse_overlay_header(head, path).get("cid", "")}


def same_record(a: dict | None, b: dict | None) -> bool:
    """Two records name the same file content, compared without any file:
    on the keys the default check compares (and the SHA-256 where both have one)."""
    if a is None or b is None:
        return a is b
    if fingerprint_kind(a) != fingerprint_kind(b) or a["size"] != b["size"]:
        return False
    keys = {"overlay": ("cid",), "raw": ("mtime_ns", "sample"), "sha256": ("sha256",)}
    if any(a.get(k) != b.get(k) for k in keys[fingerprint_kind(a)]):
        return False
    return "sha256" not in a or "sha256" not in b or a["sha256"] == b["sha256"]


def describe_record(fp: dict) -> str:
    kind = fingerprint_kind(fp)
    if kind == "overlay":
        return f"{fp['size']} bytes, content ID {show(fp['cid'])}"
    if kind == "raw":
        extra = f", sha256 {show(fp['sha256'][:16])}..." if "sha256" in fp else ""
        return (f"{fp['size']} bytes, inode {fp.get('ino', '?')}, mtime_ns {fp['mtime_ns']}, "
                f"sampled {show(fp['sample'][:16])}...{extra}")
    return f"{fp['size']} bytes, sha256 {show(fp['sha256'][:16])}..."


def _fingerprinted_header(first: bytes) -> bytes:
    """The first HEADER_SIZE bytes of a file as its fingerprint sees them: an
    overlay header without its ``committed_as``; anything else as it is."""
    if len(first) < HEADER_SIZE or not first.startswith(magic_of(OVERLAY_KIND)):
        return first
    try:
        header = _parse_overlay_header(first, "overlay")
    except FormatError:
        return first
    if "committed_as" not in header:
        return first
    header = {k: v for k, v in header.items() if k != "committed_as"}
    try:
        return _header_block(header)
    except DiskError:
        return first


def _open_rw(path: str, what: str, writable: bool):
    """A descriptor on a disk file: read-write only when ``writable`` says so
    (no default: every caller says which it means)."""
    try:
        return os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    except FileNotFoundError:
        raise DiskError(f"{what} '{show(path)}' does not exist") from None
    except IsADirectoryError:
        raise DiskError(f"{what} '{show(path)}' is a directory, not a disk image") from None
    except PermissionError:
        if not writable:
            raise DiskError(f"{what} '{show(path)}' cannot be read (permission denied)") from None
        raise DiskError(f"{what} '{show(path)}' cannot be opened for writing (permission "
                        "denied); minivm writes to the disk image, so it must be "
                        "writable") from None
    except OSError as exc:
        raise DiskError(f"{what} '{show(path)}' cannot be opened: {exc.strerror}") from None


_open_parked: "OrderedDict[int, _Layer]" = OrderedDict()   # parked layers with an open fd


class _Layer:
    """What every disk layer file has: a descriptor, a parent (None for a raw
    image), and the chain from it down to the raw image.

    A layer that is only read from now on (below the top of a chain) can be
    *parked*: its descriptor is closed, and reopened (the same file, checked
    by device and inode) when it is next used; at most MAX_OPEN_PARKED parked
    layers are open at once, the least recently used closed first."""

    path: str
    parent: "_Layer | None"
    _writable: bool
    _fd_value: int | None = None
    _parked = False
    _file_id: tuple | None = None

    @property
    def _fd(self) -> int | None:
        if self._parked:
            return self._unpark()
        return self._fd_value

    @_fd.setter
    def _fd(self, fd: int | None) -> None:
        self._fd_value = fd

    def park(self) -> None:
        """Close the descriptor until the layer is used again (see the class)."""
        if self._parked or self._fd_value is None:
            return
        info = os.fstat(self._fd_value)
        self._file_id = (info.st_dev, info.st_ino)
        os.close(self._fd_value)
        self._fd_value = None
        self._parked = True

    def _unpark(self) -> int:
        fd = self._fd_value
        if fd is not None:
            _open_parked.move_to_end(id(self))
            return fd
        fd = _open_rw(self.path, "disk file", self._writable)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._file_id:
            os.close(fd)
            raise DiskError(f"disk file '{self.path}' was replaced while this run was "
                            "using it")
        while len(_open_parked) >= MAX_OPEN_PARKED:
            _, old = _open_parked.popitem(last=False)
            os.close(old._fd_value)
            old._fd_value = None
        self._fd_value = fd
        _open_parked[id(self)] = self
        return fd

    def chain(self) -> list:
        """This layer and every one below it, top first."""
        layers, layer = [], self
        while layer is not None:
            layers.append(layer)
            layer = layer.parent
        return layers

    def sync(self) -> None:
        if self._writable:
            os.fsync(self._fd)

    def close(self) -> None:
        _open_parked.pop(id(self), None)
        self._parked = False
        if self._fd_value is not None:
            os.close(self._fd_value)
            self._fd_value = None


def close_chain(*tops) -> None:
    """Close every layer of the disk chains under ``tops`` (None is skipped;
    a layer shared by two chains is closed once)."""
    for top in tops:
        if top is not None:
            for layer in top.chain():
                layer.close()


class RawDisk(_Layer):
    """A raw disk image file."""

    kind = "raw"

    def __init__(self, path: str, writable: bool):
        self.path = os.path.abspath(path)
        check_regular_file(path, "disk image")
        self._fd = _open_rw(path, "disk image", writable)
        self._writable = writable
        size = os.fstat(self._fd).st_size
        if size % BLOCK_SIZE:
            os.close(self._fd)
            raise DiskError(f"disk image '{show(path)}' is {size} bytes, not a multiple of "
                            f"{BLOCK_SIZE} (the block size); create one with "
                            "'minivm disk create FILE SIZE'")
        self.block_count = size // BLOCK_SIZE
        self.parent = None

    def read_blocks(self, block: int, count: int) -> bytes:
        data = os.pread(self._fd, count * BLOCK_SIZE, block * BLOCK_SIZE)
        if len(data) != count * BLOCK_SIZE:
            raise DiskError(f"disk image '{show(self.path)}' shrank while in use")
        return data

    def write_blocks(self, block: int, data: bytes) -> None:
        try:
            os.pwrite(self._fd, data, block * BLOCK_SIZE)
        except OSError as exc:
            raise DiskError(f"cannot write disk image '{show(self.path)}': {exc.strerror}") from None

    def fingerprint(self) -> dict:
        """The O(1) identity a checkpoint records (:func:`identify`)."""
        return identify(self.path)


def create_raw_disk(path: str, size: int) -> None:
    if size % BLOCK_SIZE or size < 0:
        raise DiskError(f"disk size {size} is not a multiple of {BLOCK_SIZE} bytes")
    if os.path.exists(path):
        raise DiskError(f"'{show(path)}' already exists; minivm will not overwrite it")
    try:
        with open(path, "xb") as f:
            f.truncate(size)
    except OSError as exc:
        raise DiskError(f"cannot create disk image '{show(path)}': {exc.strerror}") from None


def _relpath(target: str, start_dir: str) -> str:
    try:
        return os.path.relpath(target, start_dir)
    except ValueError:
        return target


class Overlay(_Layer):
    """A copy-on-write overlay over ``parent`` (P1, P3)."""

    kind = "overlay"

    def __init__(self, path: str, fd: int, header: dict, parent, records: dict):
        self.path = os.path.abspath(path)
        self._fd = fd
        self.header = header
        self.parent = parent
        self.group_blocks = header["group_blocks"]
        self.group_bytes = self.group_blocks * BLOCK_SIZE
        self.block_count = header["block_count"]
        self._records = records        # group index -> record slot
        self._writable = True
        self.parent_committed = False  # the parent is what a commit of this overlay made
        self.cow_faults = 0
        self.writes = 0
        self._cid_fresh = False        # the content ID changes on the first write after open

    # --- creation and opening ------------------------------------------------------
    @classmethod
    def create(cls, path: str, parent, group_blocks: int = DEFAULT_GROUP_BLOCKS,
               parent_fingerprint: dict | None = None) -> "Overlay":
        if group_blocks < 1:
            raise DiskError("the COW block group must be at least 1 block")
        header = {"version": OVERLAY_VERSION, "group_blocks": group_blocks,
                  "block_count": parent.block_count,
                  "parent_path": parent.path,
                  "parent_relpath": _relpath(parent.path, os.path.dirname(os.path.abspath(path))),
                  "parent_fingerprint": parent_fingerprint, "cid": new_cid()}
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise DiskError(f"overlay '{show(path)}' already exists; minivm will not overwrite it") from None
        except OSError as exc:
            raise DiskError(f"cannot create overlay '{show(path)}': {exc.strerror}") from None
        overlay = cls(path, fd, header, parent, {})
        overlay._write_header()
        overlay._cid_fresh = True           # a new file: its ID is already new
        return overlay

    def _write_header(self) -> None:
        os.pwrite(self._fd, _header_block(self.header, self.path), 0)

    def set_parent_fingerprint(self, fingerprint: dict) -> None:
        """The parent will not change any more: record how to recognise it.
        (An overlay opened read-only, below a resumed run, already has it:
        as its parent_fingerprint, or as its committed_as once it was committed.)"""
        recorded = self.header.get("parent_fingerprint")
        if recorded is not None and fingerprint_kind(recorded) == "sha256":
            # recorded by an older minivm: compare it the old way (reads the file)
            if check_identity(self.parent.path, recorded)[0]:
                return
        if same_record(fingerprint, recorded) or (
                recorded is not None and same_record(fingerprint, self.header.get("committed_as"))):
            return
        if not self._writable:
            raise DiskError(f"overlay '{show(self.path)}' is opened read-only, and its parent "
                            f"'{show(self.parent.path)}' no longer matches it")
        self.header["parent_fingerprint"] = fingerprint
        self._write_header()

    def reparent(self, parent, fingerprint: dict | None) -> None:
        self.parent = parent
        self.header["parent_path"] = parent.path
        self.header["parent_relpath"] = _relpath(parent.path, os.path.dirname(self.path))
        self.header["parent_fingerprint"] = fingerprint
        self._write_header()

    # --- block access ----------------------------------------------------------------
    def _slot_offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * (_RECORD.size + self.group_bytes)

    def _group_range(self, block: int, count: int):
        """Yield (group, first block in group, blocks in this piece)."""
        end = block + count
        while block < end:
            group = block // self.group_blocks
            n = min(end, (group + 1) * self.group_blocks) - block
            yield group, block, n
            block += n

    def has_group(self, group: int) -> bool:
        return group in self._records

    def read_blocks(self, block: int, count: int) -> bytes:
        out = bytearray()
        size = self.group_blocks
        for group, start, n in self._group_range(block, count):
            # Walk down the chain without recursion (a run makes one overlay per
            # checkpoint); only a layer with another group size reads for itself.
            layer = self
            while layer.kind == "overlay" and layer.group_blocks == size \
                    and group not in layer._records:
                layer = layer.parent
            if layer.kind == "overlay" and layer.group_blocks == size:
                out += layer._read_own(group, start, n)
            else:
                out += layer.read_blocks(start, n)
        return bytes(out)

    def _read_own(self, group: int, start: int, n: int) -> bytes:
        within = (start - group * self.group_blocks) * BLOCK_SIZE
        return os.pread(self._fd, n * BLOCK_SIZE,
                        self._slot_offset(self._records[group]) + _RECORD.size + within)

    def _read_group(self, group: int) -> bytearray:
        start = group * self.group_blocks
        n = min(self.group_blocks, self.block_count - start)
        data = bytearray(self.parent.read_blocks(start, n))
        data += bytes(self.group_bytes - len(data))
        return data

    def write_blocks(self, block: int, data: bytes) -> None:
        if not self._cid_fresh:
            # First write since the file was opened: a new content ID, before
            # any data changes, so a record of the old one no longer matches.
            self.header["cid"] = new_cid()
            try:
                self._write_header()
            except OSError as exc:
                raise DiskError(f"cannot write overlay '{show(self.path)}': "
                                f"{exc.strerror}") from None
            self._cid_fresh = True
        pos = 0
        self.writes += 1
        for group, start, n in self._group_range(block, len(data) // BLOCK_SIZE):
            piece = data[pos:pos + n * BLOCK_SIZE]
            pos += len(piece)
            within = (start - group * self.group_blocks) * BLOCK_SIZE
            slot = self._records.get(group)
            if slot is None:
                if n == self.group_blocks:
                    content = bytearray(piece)
                else:                        # P3: disk COW fault, copy the group first
                    content = self._read_group(group)
                    content[within:within + len(piece)] = piece
                    self.cow_faults += 1
                slot = len(self._records)
                self._write_record(slot, group, bytes(content))
                self._records[group] = slot
            else:
                offset = self._slot_offset(slot)
                old = bytearray(os.pread(self._fd, self.group_bytes, offset + _RECORD.size))
                old[within:within + len(piece)] = piece
                self._write_record(slot, group, bytes(old))

    def _write_record(self, slot: int, group: int, content: bytes) -> None:
        record = _RECORD.pack(_RECORD_MAGIC, group, zlib.crc32(content)) + content
        try:
            os.pwrite(self._fd, record, self._slot_offset(slot))
        except OSError as exc:
            raise DiskError(f"cannot write overlay '{show(self.path)}': {exc.strerror}") from None

    def groups(self) -> list[int]:
        return sorted(self._records)

    def group_data(self, group: int) -> bytes:
        slot = self._records[group]
        return os.pread(self._fd, self.group_bytes, self._slot_offset(slot) + _RECORD.size)

    def fingerprint(self) -> dict:
        """The O(1) identity a checkpoint records (:func:`identify`)."""
        return identify(self.path)



def new_cid() -> str:
    """A fresh content ID (VMware's CID): 64 random bits, in hex."""
    return os.urandom(8).hex()


def _header_block(header: dict, path: str = "") -> bytes:
    """An overlay's first HEADER_SIZE bytes for ``header``: magic, map, zero
    padding, SHA-256 of magic and map."""
    blob = magic_of(OVERLAY_KIND) + msgpack.packb(header, use_bin_type=True)
    if len(blob) > HEADER_SIZE - 36:
        raise DiskError(f"overlay '{show(path)}': parent path is too long")
    digest = hashlib.sha256(blob).digest()
    return blob + b"\0" * (HEADER_SIZE - 32 - len(blob)) + digest


def _read_overlay_header(path: str, fd: int) -> dict:
    return _parse_overlay_header(os.pread(fd, HEADER_SIZE, 0), path)


def valid_fingerprint(fp) -> bool:
    """A record of one of the forms :func:`fingerprint_kind` names, every
    field of the right type (it comes from a file)."""
    if not isinstance(fp, dict) or type(fp.get("size")) is not int or fp["size"] < 0:
        return False
    def text(key, need):
        value = fp.get(key)
        return (not need and value is None) or (isinstance(value, str) and len(value) <= 64)
    def number(key):
        return fp.get(key) is None or type(fp[key]) is int
    kind = fingerprint_kind(fp)
    if kind == "sha256":
        return isinstance(fp.get("sha256"), str) and len(fp["sha256"]) in (0, 64)
    if kind == "overlay":
        return text("cid", True) and text("sha256", False)
    return (text("sample", True) and text("sha256", False) and type(fp.get("mtime_ns")) is int
            and number("ino") and number("ctime_ns"))


_valid_fingerprint = valid_fingerprint


def _parse_overlay_header(raw: bytes, path: str) -> dict:
    what = f"overlay '{show(path)}'"
    if len(raw) < HEADER_SIZE:
        raise FormatError(f"{what} is truncated (its header is incomplete)")
    magic = magic_of(OVERLAY_KIND)
    if not raw.startswith(magic):
        raise FormatError(f"{what} is not a minivm overlay file")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=HEADER_SIZE, max_array_len=64,
                                max_map_len=64, max_str_len=HEADER_SIZE, max_bin_len=0,
                                max_ext_len=0)
    unpacker.feed(raw[len(magic):HEADER_SIZE - 32])
    try:
        header = unpacker.unpack()
        end = len(magic) + unpacker.tell()
    except (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError,
            msgpack.StackError, msgpack.ExtraData):
        raise FormatError(f"{what} has a corrupt header") from None
    if hashlib.sha256(raw[:end]).digest() != raw[HEADER_SIZE - 32:]:
        raise FormatError(f"{what} has a corrupt header (checksum mismatch)")
    if not isinstance(header, dict) or not isinstance(header.get("version"), int):
        raise FormatError(f"{what} has a corrupt header")
    if header["version"] > OVERLAY_VERSION:
        raise FormatError(f"{what} was written by a newer minivm (overlay format "
                          f"{header['version']}); upgrade minivm to open it")
    for key, kind in (("group_blocks", int), ("block_count", int), ("parent_path", str),
                      ("parent_relpath", str)):
        value = header.get(key)
        if not isinstance(value, kind) or (kind is str and ("\0" in value or not value)):
            raise FormatError(f"{what} has a corrupt header (field {key})")
    if not 1 <= header["group_blocks"] <= 4096 or not 0 <= header["block_count"] < 1 << 40:
        raise FormatError(f"{what} has a corrupt header (sizes out of range)")
    fp = header.get("parent_fingerprint")
    if fp is not None and not _valid_fingerprint(fp):
        raise FormatError(f"{what} has a corrupt header (parent fingerprint)")
    if "committed_as" in header and not _valid_fingerprint(header["committed_as"]):
        raise FormatError(f"{what} has a corrupt header (committed_as)")
    cid = header.get("cid")
    if cid is not None and not (isinstance(cid, str) and 0 < len(cid) <= 64):
        raise FormatError(f"{what} has a corrupt header (content ID)")
    return header


def _scan_records(path: str, fd: int, header: dict) -> dict:
    group_bytes = header["group_blocks"] * BLOCK_SIZE
    stride = _RECORD.size + group_bytes
    size = os.fstat(fd).st_size
    records = {}
    ngroups = -(-header["block_count"] // header["group_blocks"])
    slot = 0
    while HEADER_SIZE + (slot + 1) * stride <= size:
        blob = os.pread(fd, stride, HEADER_SIZE + slot * stride)
        magic, group, crc = _RECORD.unpack_from(blob)
        content = blob[_RECORD.size:]
        if magic != _RECORD_MAGIC or group >= ngroups or group in records \
                or zlib.crc32(content) != crc:
            raise FormatError(f"overlay '{show(path)}' is corrupt: block group record {slot} is damaged")
        records[group] = slot
        slot += 1
    # A partial record at the end is a write that a crash cut short; it was
    # never complete, so it is ignored (and overwritten by the next write).
    return records


def _peek_overlay_header(path: str) -> dict | None:
    """An overlay's header, read through a read-only descriptor; None for a
    file that is not an overlay (a raw disk)."""
    fd = _open_rw(path, "disk file", writable=False)
    try:
        if os.pread(fd, len(magic_of(OVERLAY_KIND)), 0) != magic_of(OVERLAY_KIND):
            return None
        return _read_overlay_header(path, fd)
    except OSError as exc:
        raise DiskError(f"disk file '{show(path)}' cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def describe_chain(path: str) -> list[dict]:
    """Resolve the files a disk chain names, without opening them for writing.

    Returns one entry per file, top first: path, kind and (for overlays) the
    parent fingerprint recorded in the header and ``committed_as`` (None
    unless the overlay was committed).
    """
    entries = []
    current = os.path.abspath(path)
    for _ in range(MAX_CHAIN):
        check_regular_file(current, "disk file")
        header = _peek_overlay_header(current)
        if header is None:
            entries.append({"path": current, "kind": "raw"})
            return entries
        entries.append({"path": current, "kind": "overlay",
                        "parent_fingerprint": header.get("parent_fingerprint"),
                        "committed_as": header.get("committed_as")})
        current = resolve_parent(current, header)
    raise DiskError(f"disk chain starting at '{show(path)}' is longer than {MAX_CHAIN} files")


def locate(folder: str, relpath: str, abspath: str) -> str:
    """Where a file recorded as ``relpath`` (from ``folder``) and ``abspath`` is
    now: at the same relative place (files moved together), else by its name
    in ``folder`` (files copied flat, e.g. by ``minivm export``), else at the
    recorded absolute path."""
    for candidate in (os.path.normpath(os.path.join(folder, relpath)),
                      os.path.join(folder, os.path.basename(abspath))):
        if os.path.exists(candidate):
            return candidate
    return abspath


def resolve_parent(overlay_path: str, header: dict) -> str:
    return locate(os.path.dirname(overlay_path), header["parent_relpath"], header["parent_path"])


def open_disk(path: str, verify: bool = True, writable: bool = True):
    """Open a raw disk or an overlay chain, checking each parent's fingerprint.

    Only the top file is opened for writing (when ``writable``); parents are
    read through and never written, except by a commit. Iterative, so a
    chain of thousands of overlays (one per checkpoint) opens fine.
    """
    headers = []                                  # (path, header), top first
    current = path
    while True:
        if len(headers) > MAX_CHAIN:
            raise DiskError(f"disk chain starting at '{show(path)}' is longer than {MAX_CHAIN} files")
        if not headers and not os.path.lexists(current):     # the file asked for
            raise DiskError(f"disk file '{show(path)}' does not exist (create one with "
                            f"'minivm disk create {show(path)} 64K')")
        check_regular_file(current, "disk file")
        header = _peek_overlay_header(current)
        if header is None:
            break
        headers.append((current, header))
        current = resolve_parent(os.path.abspath(current), header)
    layer = RawDisk(current, writable and not headers)
    try:
        for depth, (overlay_path, header) in enumerate(reversed(headers)):
            expected = header.get("parent_fingerprint")
            committed = False
            if verify and expected is not None:
                same = check_identity(layer.path, expected)[0]
                # A parent the overlay was committed into holds the overlay's own
                # groups on top of what it held: reading through the overlay gives
                # exactly what it gave, so the overlay (and all above it) still works.
                committed = (not same and header.get("committed_as") is not None
                             and check_identity(layer.path, header["committed_as"])[0])
                if not same and not committed:
                    raise DiskError(f"overlay '{show(overlay_path)}' was made on top of "
                                    f"'{show(layer.path)}', but that file has changed since "
                                    "(its size or contents differ); the overlay cannot be "
                                    "used on the changed file")
            if layer.block_count != header["block_count"]:
                raise DiskError(f"overlay '{show(overlay_path)}' expects a "
                                f"{header['block_count']}-block parent, but "
                                f"'{show(layer.path)}' has {layer.block_count} blocks")
            top = depth == len(headers) - 1
            layer.park()                          # read only from now on
            layer = _open_overlay_file(overlay_path, layer, writable and top)
            layer.parent_committed = committed
    except BaseException:
        close_chain(layer)
        raise
    return layer


def _open_overlay_file(path: str, parent, writable: bool) -> Overlay:
    fd = _open_rw(path, "overlay", writable)
    try:
        header = _read_overlay_header(path, fd)
        overlay = Overlay(path, fd, header, parent, _scan_records(path, fd, header))
        overlay._writable = writable
        return overlay
    except BaseException:
        os.close(fd)
        raise


def already_committed(overlay: Overlay) -> bool:
    """True when committing ``overlay`` would change nothing: its parent is the
    file an earlier commit of it made (it matches ``committed_as``, checked by
    ``open_disk``) and already holds every block group the overlay has now.
    Reads the overlay's groups from both files, so it is never a guess."""
    if not getattr(overlay, "parent_committed", False):
        return False
    for group in overlay.groups():
        start = group * overlay.group_blocks
        n = min(overlay.group_blocks, overlay.block_count - start)
        if overlay.parent.read_blocks(start, n) != overlay.group_data(group)[:n * BLOCK_SIZE]:
            return False
    return True


def commit_overlay(overlay: Overlay, progress=None):
    """Merge ``overlay`` into its parent (P10, claims 3-4), atomically.

    The parent is copied beside itself, the overlay's groups are applied to
    the copy, the copy is fsynced, its fingerprint is noted in the overlay's
    header as ``committed_as`` (fsynced), and the copy is renamed over the
    parent. What a commit changes: the parent's content (at the rename, all
    at once) and the overlay's ``committed_as``, which no fingerprint covers
    (``fingerprint_file``). So reading through the overlay, or through any
    file above it, gives the same data before, during and after the commit,
    and every checkpoint whose chain holds the overlay stays resumable; only
    the parent itself, read on its own, changes.

    A crash or an error before the rename leaves every file as it was (the
    overlay's header is put back on an error; after a crash its
    ``committed_as`` names a file that never came to be, which matches
    nothing); a crash after it leaves the parent fully committed. Running
    the same commit again is always safe. Returns (groups merged, the
    reopened parent).
    """
    if not overlay._writable:
        raise DiskError(f"overlay '{show(overlay.path)}' is opened read-only; a commit "
                        "notes its result in the overlay")
    parent = overlay.parent
    target = parent.path
    temp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.commit.tmp")
    groups = overlay.groups()
    old_header = dict(overlay.header)
    renamed = False
    try:
        shutil.copyfile(target, temp)
        merged = (RawDisk(temp, writable=True) if parent.kind == "raw"
                  else _open_overlay_file(temp, parent.parent, writable=True))
        try:
            if merged.kind == "overlay":
                # A new content ID, but the same for the same commit (running it
                # again after a crash makes the identical file).
                merged.header["cid"] = hashlib.sha256(
                    f"{merged.header.get('cid', '')}+{overlay.header.get('cid', '')}"
                    .encode()).hexdigest()[:16]
                merged._write_header()
                merged._cid_fresh = True
            for i, group in enumerate(groups):
                start = group * overlay.group_blocks
                n = min(overlay.group_blocks, overlay.block_count - start)
                merged.write_blocks(start, overlay.group_data(group)[:n * BLOCK_SIZE])
                if progress:
                    progress(i + 1, len(groups))
            merged.sync()
        finally:
            merged.close()
        # Say what the parent will be, before it is: after the rename the
        # overlay (and every file above it) is then recognised as still
        # valid on the committed parent, not refused as made on a changed one.
        # (without ctime: the rename below changes it, on most file systems)
        overlay.header["committed_as"] = identify(temp, with_ctime=False)
        overlay._write_header()
        overlay.sync()
        os.replace(temp, target)
        renamed = True
        fsync_dir(os.path.dirname(target))
    except (OSError, MinivmError) as exc:
        why = reason(exc)
        if renamed:
            raise DiskError(f"committed into '{show(target)}', but its folder could not be "
                            f"synced ({why}); a power failure now may undo the "
                            "commit: run it again") from None
        _undo_commit(overlay, old_header, temp)
        raise DiskError(f"cannot commit into '{show(target)}': {why}; "
                        "it is unchanged, and so is the overlay") from None
    parent.close()                      # its descriptor still names the old file
    reopened = (RawDisk(target, writable=False) if parent.kind == "raw"
                else _open_overlay_file(target, parent.parent, writable=False))
    return len(groups), reopened


def _undo_commit(overlay: Overlay, old_header: dict, temp: str) -> None:
    """After a commit failed before its rename: drop the copy and put the
    overlay's header back. Never raises (it runs after a failure)."""
    try:
        os.unlink(temp)
    except OSError:
        pass
    if overlay.header != old_header:
        overlay.header = old_header
        try:
            overlay._write_header()
            overlay.sync()
        except OSError:
            pass
