"""Checkpoint stores (P11, claims 9-14): where checkpoint bytes go.

The protocol writes a checkpoint as a stream of bytes and commits it when it
is complete; a store decides where the stream lives. Two stores share one
small interface:

* :class:`FileStore` (the default): one file per checkpoint in a folder,
  written to a temp file and renamed into place only when complete, so a
  crash never leaves a half-written checkpoint under its real name;
* :class:`MemoryStore`: checkpoints kept in host memory (the REPL's quick
  checkpoints, tests), never touching the file system.
"""

from __future__ import annotations

import io
import os
import re

from .container import WRITE_BUFFER, AtomicFile, read_file_capped
from .errors import MinivmError

CHECKPOINT_SUFFIX = ".mvc"
_SEQ_RE = re.compile(r"^(?:ckpt|resume|commit)-(\d+)")


class StoreError(MinivmError):
    """The store cannot take or give a checkpoint (disk full, no such name...)."""


class PendingCheckpoint:
    """A checkpoint being written: a binary sink plus commit/abort, and
    suspend: nothing will be written for a while (between two batches of the
    background save), so a file store closes its file until the next write."""

    def __init__(self, sink, commit, abort, suspend=None):
        self.file = sink
        self._commit, self._abort, self._suspend = commit, abort, suspend

    def commit(self) -> None:
        self._commit()

    def abort(self) -> None:
        self._abort()

    def suspend(self) -> None:
        if self._suspend is not None:
            self._suspend()


class _TempFile:
    """The temp file of a checkpoint being saved, closed while it waits (between
    batches, or for the disk, P5) and reopened for appending at the next
    write: many checkpoints saving at once hold no descriptor each."""

    def __init__(self, out: AtomicFile):
        self._out = out
        self._open = True

    def write(self, data: bytes) -> int:
        if not self._open:
            fd = os.open(self._out.temp_path, os.O_WRONLY | os.O_APPEND)   # never created anew
            self._out.file = os.fdopen(fd, "ab", buffering=WRITE_BUFFER)
            self._open = True
        return self._out.file.write(data)

    def suspend(self) -> None:
        if self._open:
            self._open = False
            self._out.file.close()

    def commit(self) -> None:
        self.write(b"")                 # reopened if it was closed
        self._out.commit()


class CheckpointStore:
    """The interface both stores implement."""

    def __init__(self):
        self._reserved: set[str] = set()   # names begun here, complete or not

    def reserve(self, name: str) -> None:
        """Claim ``name`` for a checkpoint or overlay about to be written."""
        self._reserved.add(name)

    def begin(self, name: str) -> PendingCheckpoint:
        raise NotImplementedError

    def load(self, name: str) -> bytes:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def location(self, name: str) -> str:
        raise NotImplementedError

    def next_sequence(self) -> int:
        """One more than any number used by a file here or a name being written."""
        used = list(self._used_names()) + list(self._reserved)
        numbers = [int(m.group(1)) for m in map(_SEQ_RE.match, used) if m]
        return max(numbers, default=0) + 1

    def _used_names(self) -> list[str]:
        """Every name taken by a checkpoint or an overlay (for numbering)."""
        return self.names()

    def overlay_path(self, name: str) -> str | None:
        """Where a disk overlay named ``name`` should live, for stores with a folder."""
        return None


class FileStore(CheckpointStore):
    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def _ensure_folder(self) -> None:
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the checkpoint folder '{self.folder}': "
                             f"{exc.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise StoreError(f"the checkpoint folder '{self.folder}' is not writable")

    def location(self, name: str) -> str:
        return os.path.join(self.folder, name + CHECKPOINT_SUFFIX)

    def begin(self, name: str) -> PendingCheckpoint:
        self._ensure_folder()
        path = self.location(name)
        if os.path.exists(path):
            raise StoreError(f"checkpoint '{path}' already exists; minivm will not overwrite it")
        try:
            out = AtomicFile(path)
        except OSError as exc:
            raise StoreError(f"cannot write in '{self.folder}': {exc.strerror}") from None
        self.reserve(name)
        sink = _TempFile(out)
        return PendingCheckpoint(sink, sink.commit, out.abort, sink.suspend)

    def load(self, name: str) -> bytes:
        path = name if os.sep in name or name.endswith(CHECKPOINT_SUFFIX) else self.location(name)
        return read_file_capped(path, f"checkpoint '{path}'")

    def _entries(self) -> list[str]:
        try:
            return [e for e in os.listdir(self.folder) if not e.startswith(".")]
        except OSError:
            return []

    def names(self) -> list[str]:
        return sorted(e[:-len(CHECKPOINT_SUFFIX)] for e in self._entries()
                      if e.endswith(CHECKPOINT_SUFFIX))

    def _used_names(self) -> list[str]:
        return [os.path.splitext(e)[0] for e in self._entries()]

    def overlay_path(self, name: str) -> str:
        self._ensure_folder()
        self.reserve(name)
        return os.path.join(self.folder, name + ".cow")


class MemoryStore(CheckpointStore):
    def __init__(self, overlay_folder: str | None = None):
        super().__init__()
        self._blobs: dict[str, bytes] = {}
        self._begun: set[str] = set()
        self._overlay_folder = overlay_folder

    def location(self, name: str) -> str:
        return f"memory:{name}"

    def begin(self, name: str) -> PendingCheckpoint:
        if name in self._blobs or name in self._begun:
            raise StoreError(f"checkpoint '{name}' already exists in memory")
        self._begun.add(name)
        self.reserve(name)
        buffer = io.BytesIO()

        def commit():
            self._blobs[name] = buffer.getvalue()

        return PendingCheckpoint(buffer, commit, buffer.close)

    def load(self, name: str) -> bytes:
        try:
            return self._blobs[name]
        except KeyError:
            raise StoreError(f"no checkpoint named '{name}' in memory") from None

    def names(self) -> list[str]:
        return sorted(self._blobs)

    def total_bytes(self) -> int:
        return sum(map(len, self._blobs.values()))

    def _used_names(self) -> list[str]:
        used = list(self._blobs)
        if self._overlay_folder and os.path.isdir(self._overlay_folder):
            used += [os.path.splitext(e)[0] for e in os.listdir(self._overlay_folder)]
        return used

    def overlay_path(self, name: str) -> str | None:
        if self._overlay_folder is None:
            return None
        os.makedirs(self._overlay_folder, exist_ok=True)
        self.reserve(name)
        return os.path.join(self._overlay_folder, name + ".cow")
