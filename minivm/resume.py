"""Resume: rebuild a machine from a checkpoint file.

The rules are in docs/contract.md (sections 5-6) and docs/protocol.md.

* :func:`read_checkpoint` loads and validates a checkpoint file;
* :func:`resolve_disk_chain` finds each file of the checkpointed disk chain
  and checks it against its fingerprint (P10); :func:`open_chain` opens it,
  read-only;
* :func:`resume` rebuilds the machine, with a fresh overlay on top of the
  checkpointed disk so the checkpoint can be resumed again;
* :func:`export_checkpoint` copies a checkpoint and its disk chain into a
  folder, to be taken to another machine.

The protocol that writes checkpoints is in checkpoint.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from .ckptfile import (FOOTER, FOOTER_MAGIC, Checkpoint, FileSource, SavedPages,
                       open_checkpoint, pack_end, read_end)
from .container import AtomicFile, pack, read_container, read_file_capped, write_atomically
from .disks import (Overlay, check_identity, close_chain, describe_chain, identify, locate,
                    open_disk, same_record)
from .errors import DiskError, FormatError, MinivmError, OutOfMemory, show
from .engine import DEFAULT_ENGINE
from .machine import Machine
from .store import CheckpointStore, StoreError


def read_checkpoint(path: str) -> Checkpoint:
    """Open and validate a checkpoint file. A version-2 file stays open (its
    pages are read on demand, ``ckpt.pages``); nothing but its records is read."""
    what = f"checkpoint '{show(path)}'"
    ckpt = open_checkpoint(FileSource(path, what), what)
    ckpt.path = os.path.abspath(path)
    return ckpt


def resolve_disk_chain(ckpt: Checkpoint, disk_override: str | None = None,
                       allow_changed: bool = False, verify: bool = False) -> list[dict]:
    """Where each file of the checkpointed disk chain is, checked against its
    fingerprint; returns the entries, top first, each with a 'resolved' path,
    'status' (unchanged / CHANGED) and 'checked' (how it was told, or why it
    differs). Nothing is opened for writing. The check reads O(1) of each file
    (disks.check_identity); ``verify`` adds the whole-file SHA-256 where the
    checkpoint recorded one (--verify-disk).

    Paths come from an untrusted file, so each is checked to be a regular
    file before it is read, and a file whose fingerprint does not match is
    refused unless ``allow_changed``.
    """
    chain = ckpt.disk["chain"]
    base = os.path.dirname(ckpt.path) if ckpt.path else os.getcwd()
    top = chain[0]
    top_path = disk_override or locate(base, top["relpath"], top["path"])
    if not os.path.exists(top_path):
        raise DiskError(f"the checkpoint's disk '{show(top['path'])}' is missing (looked for "
                        f"'{show(top_path)}'); if it moved, give its new place with --disk")
    found = describe_chain(top_path)
    if len(found) != len(chain):
        raise DiskError(f"the checkpoint's disk is a chain of {len(chain)} file(s), but "
                        f"'{show(top_path)}' leads to {len(found)}")
    resolved = []
    above = None                       # the entry above this one in the chain, as found
    for expected, actual in zip(chain, found):
        same, how = check_identity(actual["path"], expected["fingerprint"], verify)
        status = "unchanged"
        if not same and _committed_into(above, expected, actual["path"], verify):
            # The overlay above was committed into this file: the file changed,
            # but only in groups the overlay holds, so the chain reads the same.
            status = (f"committed into from {show(os.path.basename(above['path']))}; "
                      "the chain reads the same")
        elif not same:
            if not allow_changed:
                raise DiskError(
                    f"disk file '{show(actual['path'])}' has changed since the checkpoint was taken "
                    f"({how}); resuming on it would not "
                    "reproduce the run (--allow-changed-disk resumes anyway)")
            status = "CHANGED"
        resolved.append({**expected, "resolved": actual["path"], "status": status,
                         "checked": how})
        above = actual
    return resolved


def _committed_into(above: dict | None, expected: dict, path: str, verify: bool) -> bool:
    """Whether the file below ``above`` (an entry of describe_chain) is what a
    commit of ``above`` made of the file the checkpoint recorded: ``above``
    was made on exactly that file and notes the file's fingerprint now as
    ``committed_as``. (``above`` itself was checked against its own recorded
    fingerprint first, which a commit does not change.)"""
    return (above is not None and above["kind"] == "overlay"
            and same_record(above.get("parent_fingerprint"), expected["fingerprint"])
            and above.get("committed_as") is not None
            and check_identity(path, above["committed_as"], verify)[0])


def open_chain(chain: list[dict]):
    """Open a checkpoint's disk chain, as resolve_disk_chain found it, for
    reading only: the one way every path (resume, the REPL's restore and
    diff) opens a checkpointed disk. The caller closes it (disks.close_chain)."""
    return open_disk(chain[0]["resolved"], verify=False, writable=False)


def export_checkpoint(ckpt: Checkpoint, folder: str) -> list[str]:
    """Copy a checkpoint and every file of its disk chain into ``folder``, flat,
    so the folder can be taken to another machine and resumed there (resume
    finds each file by its name beside the checkpoint). Returns the paths written.

    The disk files are checked in full (whole-file SHA-256, where the
    checkpoint recorded one), and the exported checkpoint records each copy
    with its whole-file SHA-256: there, ``--verify-disk`` verifies every
    file in full, and a copy whose mtime was not kept is verified in full
    instead of refused (docs/formats.md, "Disk identity")."""
    sources = [ckpt.path]
    chain = []
    if ckpt.disk is not None:
        chain = resolve_disk_chain(ckpt, verify=True)
        sources += [entry["resolved"] for entry in chain]
    names = [os.path.basename(p) for p in sources]
    if len(set(names)) != len(names):
        raise MinivmError("two files of this checkpoint have the same name; export cannot "
                          "put them side by side")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise MinivmError(f"cannot create '{show(folder)}': {exc.strerror}") from None
    targets = [os.path.join(folder, name) for name in names]
    for target in targets:
        if os.path.exists(target):
            raise MinivmError(f"'{show(target)}' already exists; export will not overwrite it")
    for source, target in zip(sources, targets):
        try:
            shutil.copy2(source, target)
        except OSError as exc:
            raise MinivmError(f"cannot copy '{show(source)}' to '{show(target)}': "
                              f"{exc.strerror}") from None
    if chain:
        _record_copies(ckpt, targets[0], chain, targets[1:])
    return targets


def _record_copies(ckpt: Checkpoint, target: str, chain: list[dict], copies: list[str]) -> None:
    """Rewrite the exported checkpoint's disk section: each file as the copy
    it is now, with its whole-file SHA-256 (read from the copy, compared with
    the one the checkpoint recorded, if any). Every other section is kept
    byte for byte."""
    entries = []
    for entry, copy in zip(chain, copies):
        record = identify(copy, full=True)
        recorded = entry["fingerprint"].get("sha256")
        if recorded and recorded != record["sha256"]:
            raise DiskError(f"disk file '{show(entry['resolved'])}' has changed since the "
                            "checkpoint was taken (its SHA-256 differs, verified in full); "
                            "export refuses to carry it")
        entries.append({"path": os.path.abspath(copy), "relpath": os.path.basename(copy),
                        "kind": entry["kind"], "fingerprint": record})
    disk = pack({**ckpt.disk, "chain": entries})
    if ckpt.format_version == 1:
        what = f"checkpoint '{show(target)}'"
        container = read_container(read_file_capped(target, what), "checkpoint", 1, what)
        sections = [(name, disk if name == "disk" else payload)
                    for name, payload in container.sections]
        write_atomically(target, "checkpoint", container.header, sections)
    else:
        _append_disk_record(target, disk)


def _append_disk_record(path: str, disk: bytes) -> None:
    """Give a version-2 copy a new disk record: the file up to its end record,
    then the new record and an end record that points at it (the old disk
    record stays in the file, unreferenced). Written to a temp file, renamed
    over ``path`` once complete."""
    what = f"checkpoint '{show(path)}'"
    source = FileSource(path, what)
    out = AtomicFile(path)
    try:
        end_at, records, pages, header = read_end(source, what)
        offset = 0
        while offset < end_at:
            chunk = source.read(offset, min(end_at - offset, 1 << 20))
            out.file.write(chunk)
            offset += len(chunk)
        record = pack(["disk", disk])
        entries = [[name, *place] for name, place in records.items() if name != "disk"]
        entries.append(["disk", end_at, len(record), hashlib.sha256(disk).digest()])
        out.file.write(record)
        out.file.write(pack_end(entries, pages, header))
        out.file.write(FOOTER.pack(FOOTER_MAGIC, end_at + len(record)))
        out.commit()
    except BaseException:
        out.abort()
        raise
    finally:
        source.close()


def resume(ckpt: Checkpoint, store: CheckpointStore, *, disk_override: str | None = None,
           console_sink=None, console_input=None, group_blocks: int | None = None,
           engine: str = DEFAULT_ENGINE, chain: list[dict] | None = None, eager: bool = False):
    """Rebuild the machine a checkpoint describes. Returns (machine, overlay path or None).

    The checkpointed disk is never written: a fresh overlay on top of it takes
    the resumed run's writes, so the same checkpoint can be resumed again.

    Memory is lazy by default (a version-2 file): the machine starts at once,
    and each page is read from the file on the guest's first access to it
    (memory.Memory.attach_saved); the file stays open meanwhile. ``eager``
    reads every saved page first, in big sequential reads, and closes the file
    (for a file about to be moved or deleted). Version-1 files are always
    loaded whole.
    """
    disk_layer = None
    overlay_path = None
    if ckpt.disk is None:
        if disk_override:
            raise MinivmError("this checkpoint was taken with no disk attached; --disk cannot "
                              "be used when resuming it")
    else:
        if chain is None:
            chain = resolve_disk_chain(ckpt, disk_override)
        base = open_chain(chain)
        try:
            seq = store.next_sequence()
            overlay_path = store.overlay_path(f"resume-{seq:04d}")
            if overlay_path is None:
                raise StoreError("resuming a checkpoint with a disk needs a folder for the "
                                 "overlay")
            disk_layer = Overlay.create(overlay_path, base,
                                        group_blocks or ckpt.disk.get("group_blocks", 8),
                                        parent_fingerprint=base.fingerprint())
        except BaseException:
            close_chain(base)
            raise
    state = ckpt.state
    try:
        machine = Machine(ckpt.image, memory_size=ckpt.memory_size, disk=disk_layer,
                          console_sink=console_sink, console_input=console_input,
                          load_data=False, engine=engine)
        machine.restore_state(state)
        pages = ckpt.pages
        if isinstance(pages, SavedPages) and not eager:
            machine.memory.attach_saved(pages)
        else:
            for index, data in (pages.chunks() if isinstance(pages, SavedPages)
                                else pages.items()):
                machine.memory.load_page(index, data)
            machine.memory.pages_loaded = len(pages)
            if isinstance(pages, SavedPages):
                pages.source.close()
    except (ValueError, MinivmError, MemoryError) as exc:
        if disk_layer is not None:
            close_chain(disk_layer)
            os.unlink(disk_layer.path)
        if isinstance(exc, MemoryError):
            raise OutOfMemory(ckpt.source, ckpt.file_size) from None
        if isinstance(exc, (FormatError, OutOfMemory)):
            raise
        raise FormatError(f"{ckpt.source} is not a valid checkpoint: {exc}") from None
    return machine, overlay_path
