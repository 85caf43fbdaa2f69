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

from .ckptfile import (FOOTER, FOOTER_MAGIC, MAX_PARENTS, ChainPages, Checkpoint,
                       CheckpointWriter, FileSource, SavedPages, file_identity, open_checkpoint,
                       pack_end, parent_record, read_end)
from .container import AtomicFile, pack, read_container, read_file_capped, write_atomically
from .disks import (Overlay, check_identity, close_chain, describe_chain, identify, locate,
                    open_disk, same_record)
from .errors import DiskError, FormatError, MinivmError, OutOfMemory, show
from .engine import DEFAULT_ENGINE
from .machine import Machine
from .store import CheckpointStore, StoreError


def read_checkpoint(path: str, follow: bool = True) -> Checkpoint:
    """Open and validate a checkpoint file. A version-2 file stays open (its
    pages are read on demand, ``ckpt.pages``); nothing but its records is read.

    An incremental checkpoint holds only the pages written since its parent:
    with ``follow`` (the default), each parent is found, checked against the
    identity the child recorded and opened too, and ``ckpt.pages`` is the
    whole chain's (ckptfile.ChainPages: a page is read from the nearest file
    that holds it, on demand); ``ckpt.own_pages`` stays the file's own."""
    what = f"checkpoint '{show(path)}'"
    ckpt = open_checkpoint(FileSource(path, what), what)
    ckpt.path = os.path.abspath(path)
    if follow and ckpt.parent is not None:
        follow_parents(ckpt)
    return ckpt


class ParentError(FormatError):
    """An incremental checkpoint's parent cannot be used (missing, changed,
    unreadable, or the chain loops or is too long)."""


def locate_parent(child: Checkpoint) -> str:
    """Where the parent a child records is now: beside the child (its relative
    path, then its name), else at its recorded absolute path (disks.locate)."""
    record = child.parent
    base = os.path.dirname(child.path) if child.path else os.getcwd()
    return locate(base, record["relpath"], record["path"])


def open_parent(child: Checkpoint) -> Checkpoint:
    """The parent of an incremental checkpoint, found, checked against the
    identity the child recorded (O(1): size and the SHA-256 of its end
    record) and validated; not followed further."""
    record = child.parent
    path = locate_parent(child)
    whose = f"the parent of {child.source}"
    if not os.path.exists(path):
        raise ParentError(
            f"{child.source} is an incremental checkpoint: it holds only the pages written "
            f"since its parent {show(record['name'])}, and that parent "
            f"'{show(record['path'])}' is missing (looked for '{show(path)}'); keep the "
            "chain's files together, or 'minivm export' a standalone copy where the chain "
            "is complete")
    what = f"checkpoint '{show(path)}' ({whose})"
    source = FileSource(path, what)
    try:
        found = {"size": source.size}
        if source.size == record["size"]:
            try:
                found = file_identity(source, what)
            except FormatError:
                pass
        if found != {"size": record["size"], "end_sha256": record["end_sha256"]}:
            how = ("its size differs" if found["size"] != record["size"]
                   else "its end record's SHA-256 differs")
            raise ParentError(
                f"{child.source} is an incremental checkpoint of '{show(path)}', but that file "
                f"has changed or been replaced since the child was taken ({how}): it is "
                "not the parent the child's pages complete, so resuming would not "
                "reproduce the run")
        parent = open_checkpoint(source, what)
    except BaseException:
        source.close()
        raise
    parent.path = os.path.abspath(path)
    if parent.memory_size != child.memory_size:
        raise ParentError(f"{what} has a memory of {parent.memory_size} bytes, its child "
                          f"{child.memory_size}: it cannot be its parent")
    return parent


def follow_parents(ckpt: Checkpoint) -> None:
    """Open every parent of an incremental checkpoint (nearest first, at most
    MAX_PARENTS), into ``ckpt.parents``, and make ``ckpt.pages`` the chain's."""
    seen = {_file_key(ckpt.path)}
    parents = []
    current = ckpt
    try:
        while current.parent is not None:
            if len(parents) + 1 >= MAX_PARENTS:
                raise ParentError(f"{ckpt.source} is an incremental checkpoint with a chain of "
                                  f"more than {MAX_PARENTS} files, the most minivm follows "
                                  "(ckptfile.MAX_PARENTS)")
            path = locate_parent(current)
            if os.path.exists(path) and _file_key(path) in seen:
                raise ParentError(f"{ckpt.source} is an incremental checkpoint whose chain of "
                                  f"parents loops: '{show(path)}' comes back in it")
            parent = open_parent(current)
            seen.add(_file_key(parent.path))
            parents.append(parent)
            current = parent
    except BaseException:
        for parent in parents:
            parent.own_pages.source.close()
        raise
    ckpt.parents = parents
    ckpt.pages = ChainPages([ckpt.own_pages] + [p.own_pages for p in parents])


def _file_key(path: str):
    try:
        info = os.stat(path)
        return (info.st_dev, info.st_ino)
    except OSError:
        return os.path.realpath(path)


def close_pages(pages) -> None:
    """Close the file(s) a checkpoint's pages are read from."""
    if isinstance(pages, ChainPages):
        pages.close()
    elif isinstance(pages, SavedPages):
        pages.source.close()


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


def export_checkpoint(ckpt: Checkpoint, folder: str, chain: bool = False) -> list[str]:
    """Copy a checkpoint and every file of its disk chain into ``folder``, flat,
    so the folder can be taken to another machine and resumed there (resume
    finds each file by its name beside the checkpoint). Returns the paths written.

    An incremental checkpoint (one with a parent) is written as a standalone
    file, every page of its chain merged in and no parent; with ``chain``, the
    checkpoint and all its parents are copied instead, each naming its parent
    beside it.

    The disk files are checked in full (whole-file SHA-256, where the
    checkpoint recorded one), and the exported checkpoint records each copy
    with its whole-file SHA-256: there, ``--verify-disk`` verifies every
    file in full, and a copy whose mtime was not kept is verified in full
    instead of refused (docs/formats.md, "Disk identity")."""
    if ckpt.parent is not None and (chain or not ckpt.parents):
        if not ckpt.parents:
            follow_parents(ckpt)
    if ckpt.parent is not None:
        return _export_incremental(ckpt, folder, chain)
    sources = [ckpt.path]
    chain = []
    if ckpt.disk is not None:
        chain = resolve_disk_chain(ckpt, verify=True)
        sources += [entry["resolved"] for entry in chain]
    targets = _prepare_folder(folder, [os.path.basename(p) for p in sources])
    for source, target in zip(sources, targets):
        try:
            shutil.copy2(source, target)
        except OSError as exc:
            raise MinivmError(f"cannot copy '{show(source)}' to '{show(target)}': "
                              f"{exc.strerror}") from None
    if chain:
        _record_copies(ckpt, targets[0], chain, targets[1:])
    return targets


def _prepare_folder(folder: str, names: list[str]) -> list[str]:
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
    return targets


def _copy(source: str, target: str) -> None:
    try:
        shutil.copy2(source, target)
    except OSError as exc:
        raise MinivmError(f"cannot copy '{show(source)}' to '{show(target)}': "
                          f"{exc.strerror}") from None


def _export_incremental(ckpt: Checkpoint, folder: str, whole_chain: bool) -> list[str]:
    """export of an incremental checkpoint: a standalone file (its chain's
    pages merged), or with ``whole_chain`` every file of the chain, bottom
    first rewritten so each names its copied parent beside it."""
    files = [ckpt] + (ckpt.parents if whole_chain else [])
    disks = {}                  # each checkpoint's disk chain, as found, checked in full
    disk_sources: list[str] = []
    for c in files:
        if c.disk is not None:
            disks[id(c)] = resolve_disk_chain(c, verify=True)
            for entry in disks[id(c)]:
                if entry["resolved"] not in disk_sources:
                    disk_sources.append(entry["resolved"])
    names = [os.path.basename(c.path) for c in files] + [os.path.basename(p)
                                                         for p in disk_sources]
    targets = _prepare_folder(folder, names)
    ckpt_targets, disk_targets = targets[:len(files)], targets[len(files):]
    copy_of = dict(zip(disk_sources, disk_targets))
    for source, target in zip(disk_sources, disk_targets):
        _copy(source, target)
    identities: dict[str, dict] = {}

    def disk_payload(c: Checkpoint) -> bytes | None:
        if c.disk is None:
            return None
        entries = []
        for entry in disks[id(c)]:
            copy = copy_of[entry["resolved"]]
            if copy not in identities:
                identities[copy] = identify(copy, full=True)
            entries.append(_copied_entry(entry, copy, identities[copy]))
        return pack({**c.disk, "chain": entries})

    if not whole_chain:
        _write_standalone(ckpt, ckpt_targets[0], disk_payload(ckpt))
        return [ckpt_targets[0]] + disk_targets
    # bottom up: a parent's copy is final before its child records its identity
    below = None
    for c, target in reversed(list(zip(files, ckpt_targets))):
        _copy(c.path, target)
        replace = {}
        disk = disk_payload(c)
        if disk is not None:
            replace["disk"] = disk
        if below is not None:
            parent_target, parent = below
            what = f"checkpoint '{show(parent_target)}'"
            source = FileSource(parent_target, what)
            try:
                identity = file_identity(source, what)
            finally:
                source.close()
            replace["parent"] = pack(parent_record(parent_target, identity,
                                                   c.parent["name"], c.parent["tick"], target))
        if replace:
            _replace_records(target, replace)
        below = (target, c)
    return ckpt_targets + disk_targets


def _copied_entry(entry: dict, copy: str, record: dict) -> dict:
    recorded = entry["fingerprint"].get("sha256")
    if recorded and recorded != record["sha256"]:
        raise DiskError(f"disk file '{show(entry['resolved'])}' has changed since the "
                        "checkpoint was taken (its SHA-256 differs, verified in full); "
                        "export refuses to carry it")
    return {"path": os.path.abspath(copy), "relpath": os.path.basename(copy),
            "kind": entry["kind"], "fingerprint": record}


def _write_standalone(ckpt: Checkpoint, target: str, disk: bytes | None) -> None:
    """A checkpoint with every page of its chain and no parent: the image and
    state records byte for byte, the meta record saying what it was merged
    from, each non-zero page of the chain (the nearest file's copy)."""
    source = ckpt.own_pages.source
    what = ckpt.source
    _, records, _, _ = read_end(source, what)
    raw = {name: _record_payload(source, records[name], name, what)
           for name in ("image", "state", "disk")}
    out = AtomicFile(target)
    try:
        writer = CheckpointWriter(out.file, {"name": ckpt.meta.get("name", ""),
                                             "tick": ckpt.tick}, ckpt.memory_size)
        writer.record("image", raw["image"])
        writer.record("state", raw["state"])
        pages = ckpt.pages
        for index in pages:
            data = pages[index]
            if data.count(0) != len(data):
                writer.page(index, data)
        writer.record("disk", disk if disk is not None else raw["disk"])
        meta = {key: value for key, value in ckpt.meta.items() if key != "chain_depth"}
        meta["merged_from"] = [os.path.basename(c.path) for c in [ckpt] + ckpt.parents]
        writer.meta(meta)
        writer.finish()
        out.commit()
    except BaseException:
        out.abort()
        raise


def _record_payload(source, place, name: str, what: str) -> bytes:
    from .container import unpack_bounded
    offset, length, _ = place
    item = unpack_bounded(source.read(offset, length), what, max_items=1 << 22)
    return item[1]


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
    _replace_records(path, {"disk": disk})


def _replace_records(path: str, replace: dict) -> None:
    """Give a version-2 copy new records (``replace``: name -> payload), as
    _append_disk_record does for the disk record."""
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
        entries = [[name, *place] for name, place in records.items() if name not in replace]
        at = end_at
        for name, payload in replace.items():
            record = pack([name, payload])
            entries.append([name, at, len(record), hashlib.sha256(payload).digest()])
            out.file.write(record)
            at += len(record)
        out.file.write(pack_end(entries, pages, header))
        out.file.write(FOOTER.pack(FOOTER_MAGIC, at))
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
        lazy = isinstance(pages, (SavedPages, ChainPages))
        if lazy and not eager:
            machine.memory.attach_saved(pages)
        else:
            for index, data in (pages.chunks() if lazy else pages.items()):
                machine.memory.load_page(index, data)
            machine.memory.pages_loaded = len(pages)
            close_pages(pages)
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
