"""Disk identity in O(1) (issue 13, docs/formats.md "Disk identity"): a
checkpoint recognises its disk files without reading them; the whole-file
SHA-256 is the explicit full check (--verify-disk, export)."""

from __future__ import annotations

import os
import shutil

import pytest

from minivm import disks
from minivm.disks import (DiskError, check_identity, create_raw_disk, identify, open_disk,
                          Overlay)
from minivm.resume import export_checkpoint, read_checkpoint, resolve_disk_chain
from minivm.store import FileStore

from support import run_cli  # noqa: E402



def _checkpointed(tmp_path, size=1 << 20):
    """A run with a disk that takes one checkpoint: (checkpoint path, disk path)."""
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), size)
    with open(disk, "r+b") as f:            # content, so that samples mean something
        f.write(os.urandom(size if size <= 1 << 20 else 1 << 20))
    src = tmp_path / "p.asm"
    src.write_text(".text\n    ckpt\n    halt\n")
    proc = run_cli("run", str(src), "--disk", str(disk), "--checkpoint-dir",
                   str(tmp_path / "ck"), input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    return tmp_path / "ck" / "ckpt-0001.mvc", disk


def test_a_byte_written_through_the_file_is_detected(tmp_path):
    ckpt_path, disk = _checkpointed(tmp_path)
    ckpt = read_checkpoint(str(ckpt_path))
    assert [e["status"] for e in resolve_disk_chain(ckpt)] == ["unchanged"]
    with open(disk, "r+b") as f:             # one byte, same size, not a sampled block
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(DiskError, match="has changed since the checkpoint"):
        resolve_disk_chain(ckpt)


def test_a_replaced_file_is_detected(tmp_path):
    ckpt_path, disk = _checkpointed(tmp_path)
    ckpt = read_checkpoint(str(ckpt_path))
    data = bytearray(disk.read_bytes())
    data[5000] ^= 1
    os.unlink(disk)
    disk.write_bytes(bytes(data))          # a new file (new inode, new mtime)
    with pytest.raises(DiskError, match="has changed since the checkpoint"):
        resolve_disk_chain(ckpt)


def test_restored_mtime_needs_the_full_check(tmp_path):
    """A change whose mtime is put back (os.utime): the default check cannot
    tell it from a copy (it says so: inode or ctime differ); the full check,
    on an exported checkpoint (which records each file's SHA-256), finds it."""
    ckpt_path, _ = _checkpointed(tmp_path)
    exported = tmp_path / "exp"
    export_checkpoint(read_checkpoint(str(ckpt_path)), str(exported))
    ckpt = read_checkpoint(str(exported / "ckpt-0001.mvc"))
    disk = exported / "disk.img"
    assert resolve_disk_chain(ckpt, verify=True)[0]["checked"] == "verified in full (SHA-256)"
    stamp = os.stat(disk)
    with open(disk, "r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 1]))
    os.utime(disk, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    entry = resolve_disk_chain(ckpt)[0]                     # the default check: fooled
    assert entry["status"] == "unchanged" and "ctime differ" in entry["checked"]
    with pytest.raises(DiskError, match="SHA-256 differs"):
        resolve_disk_chain(ckpt, verify=True)
    proc = run_cli("inspect", "--verify-disk", str(exported / "ckpt-0001.mvc"))
    assert proc.returncode == 0 and b"CHANGED since the checkpoint" in proc.stdout, proc.stdout
    proc = run_cli("resume", "--verify-disk", str(exported / "ckpt-0001.mvc"),
                   "--checkpoint-dir", str(tmp_path / "r"), input=b"")
    assert proc.returncode == 2 and b"SHA-256 differs" in proc.stderr, proc.stderr


def test_an_overlay_written_by_minivm_changes_its_content_id(tmp_path):
    raw = tmp_path / "d.img"
    create_raw_disk(str(raw), 1 << 20)
    base = open_disk(str(raw), writable=False)
    top = Overlay.create(str(tmp_path / "t.cow"), base, 8, parent_fingerprint=base.fingerprint())
    top.write_blocks(0, bytes(4096))
    top.close()
    recorded = identify(str(tmp_path / "t.cow"))
    again = open_disk(str(tmp_path / "t.cow"))               # opened for writing, not written
    again.close()
    assert check_identity(str(tmp_path / "t.cow"), recorded)[0]
    again = open_disk(str(tmp_path / "t.cow"))
    again.write_blocks(0, b"\1" * 4096)                        # same size, new content
    again.close()
    ok, how = check_identity(str(tmp_path / "t.cow"), recorded)
    assert not ok and "content ID" in how


def test_the_default_check_reads_o1_bytes_of_a_4_gib_disk(tmp_path):
    """Counted, not timed: identifying and checking a 4 GiB sparse disk
    reads the same few blocks as a 1 MiB one."""
    counts = {}
    for size in (1 << 20, 4 << 30):
        path = tmp_path / f"d{size}.img"
        create_raw_disk(str(path), size)
        before = disks.bytes_read
        record = identify(str(path))
        assert check_identity(str(path), record)[0]
        counts[size] = disks.bytes_read - before
    assert counts[4 << 30] == counts[1 << 20] <= 2 * (disks.SAMPLE_COUNT + 1) * 4096


def test_a_checkpoint_with_a_4_gib_disk_reads_o1_of_it(tmp_path, monkeypatch):
    """The whole run + checkpoint + resume check: no whole-file hash of the raw disk."""
    full = []
    real = disks.fingerprint_file
    def spy(path, *a, **k):
        full.append(os.path.basename(path))
        return real(path, *a, **k)
    monkeypatch.setattr(disks, "fingerprint_file", spy)
    from minivm import cli
    disk = tmp_path / "big.img"
    create_raw_disk(str(disk), 4 << 30)
    src = tmp_path / "p.asm"
    src.write_text(".text\n    ckpt\n    halt\n")
    before = disks.bytes_read
    assert cli.main(["run", str(src), "--disk", str(disk), "--checkpoint-dir",
                     str(tmp_path / "ck")]) == 0
    ckpt = read_checkpoint(str(tmp_path / "ck" / "ckpt-0001.mvc"))
    resolve_disk_chain(ckpt)
    assert "big.img" not in full
    assert disks.bytes_read - before < 1 << 20


def test_old_records_are_verified_the_old_way(tmp_path):
    """A record of a minivm before 0.13, {size, sha256}: compared by the whole file."""
    raw = tmp_path / "d.img"
    create_raw_disk(str(raw), 1 << 16)
    old = disks.fingerprint_file(str(raw))
    assert disks.valid_fingerprint(old)
    ok, how = check_identity(str(raw), old)
    assert ok and "older minivm" in how
    with open(raw, "r+b") as f:
        f.write(b"x")
    assert not check_identity(str(raw), old)[0]


def test_a_commit_keeps_the_overlay_identity(tmp_path):
    """committed_as stays outside the overlay's identity (docs/reliability.md)."""
    raw = tmp_path / "d.img"
    create_raw_disk(str(raw), 1 << 16)
    base = open_disk(str(raw))
    top = Overlay.create(str(tmp_path / "t.cow"), base, 8, parent_fingerprint=identify(str(raw)))
    base.park()
    top.write_blocks(0, b"\2" * 4096)
    recorded = identify(str(tmp_path / "t.cow"))
    disks.commit_overlay(top)[1].close()
    top.close()
    assert check_identity(str(tmp_path / "t.cow"), recorded, full=True)[0]
    assert not check_identity(str(raw), top.header["parent_fingerprint"])[0]
    assert check_identity(str(raw), top.header["committed_as"])[0]
