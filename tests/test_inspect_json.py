"""``minivm inspect --json`` and ``--pages`` (minivm/report.py, issue 13).

``--json`` prints one JSON object whose keys docs/formats.md ("inspect
--json") lists; these tests pin the keys and their types on real
checkpoints (no disk, a disk unchanged, CHANGED, MISSING, committed into,
both engines), that strings from a hostile file arrive as JSON escapes
(ASCII only, no control character), and that a bad file is the usual
one-line error with nothing on stdout. ``--pages`` lists exactly the saved
pages, reading them one at a time; the summary (text or JSON) reads none,
and checks each disk file once.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from ckpt_strategies import close_disks, disk_pattern, write_disk
from minivm import cli
from minivm.assembler import assemble
from minivm.checkpoint import Checkpointer
from minivm.devices import BufferSink, ConsoleInput
from minivm.disks import open_disk
from minivm.engine import ENGINES
from minivm.machine import Machine
from minivm.memory import PAGE_SIZE
from minivm.report import (DISK_STATUSES, checkpoint_json, describe_checkpoint, index_ranges,
                           page_indexes, page_lines)
from minivm.resume import read_checkpoint
from minivm.store import FileStore
from support import PROGRAMS, run_cli
from test_commit_chain import GUEST
from test_hostile_numbers import make_seed, patched
from test_hostile_strings import EVIL, EVIL_NAME

#: Every key ``inspect --json`` prints, with its JSON type(s) (docs/formats.md).
SCHEMA = {
    "format_version": int, "file": str, "file_size": int, "name": (str, type(None)),
    "origin": (str, type(None)), "mode": (str, type(None)), "minivm": (str, type(None)),
    "created": (int, float, type(None)), "pause_us": (int, float, type(None)),
    "p8_drained": (int, float, type(None)), "tick": int, "pc": int, "program": str,
    "line": (int, type(None)), "line_file": str, "source_line": str, "instructions": int, "data_bytes": int,
    "halted": bool, "interrupts_enabled": bool, "pending_interrupts": int, "regs": list,
    "memory_size": int, "page_size": int, "pages": int, "timer": dict, "inflight": int,
    "console_input_consumed": int, "disk": (list, type(None)), "disk_error": (str, type(None)),
    "reads_not_landed": list, "parent": type(None),
}
DISK_ENTRY = {"path": str, "resolved": (str, type(None)), "kind": str, "status": str,
              "detail": str, "fingerprint": dict, "parent": type(None)}


def inspect(*args: str) -> tuple[int, str, str]:
    """``minivm inspect ARGS`` in-process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["inspect", *args])
    return status, out.getvalue(), err.getvalue()


def inspect_json(path, *more: str) -> dict:
    status, out, err = inspect(str(path), "--json", *more)
    assert status == 0 and err == "", err
    assert out.endswith("}\n") and out.count("\n") == 1, out
    return json.loads(out)


def assert_schema(doc: dict) -> None:
    assert set(SCHEMA) <= set(doc), set(SCHEMA) - set(doc)
    for key, kind in SCHEMA.items():
        assert isinstance(doc[key], kind), (key, doc[key])
    for key in ("halted", "interrupts_enabled"):          # bool is an int, not vice versa
        assert type(doc[key]) is bool
    assert all(type(r) is int for r in doc["regs"]) and len(doc["regs"]) == 16
    assert set(doc["timer"]) == {"period", "next_fire", "handler"}
    assert doc["parent"] is None
    for entry in doc["disk"] or []:
        assert set(DISK_ENTRY) <= set(entry), entry
        for key, kind in DISK_ENTRY.items():
            assert isinstance(entry[key], kind), (key, entry[key])
        assert entry["status"] in DISK_STATUSES, entry


def run_to_checkpoint(folder: Path, engine: str, disk: bool) -> Path:
    """``minivm run`` on ``engine``: with a disk, programs/checkpoint_demo.asm
    (DMA in flight at its ``ckpt``), without, programs/sieve.asm checkpointed
    at tick 3000. Returns the checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    args = ["--engine", engine, "--checkpoint-dir", str(folder / "ck")]
    if disk:
        (folder / "disk.img").write_bytes(bytes((i * 7) & 0xFF for i in range(64 * 1024)))
        args = ["run", str(PROGRAMS / "checkpoint_demo.asm"), "--disk",
                str(folder / "disk.img"), *args]
    else:
        args = ["run", str(PROGRAMS / "sieve.asm"), "--checkpoint-at", "3000", *args]
    out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(args) == 0, err.getvalue()
    return folder / "ck" / "ckpt-0001.mvc"


@pytest.fixture(scope="module", params=ENGINES)
def runs(request, tmp_path_factory):
    """For each engine, the checkpoint of a run without a disk and one with."""
    base = tmp_path_factory.mktemp(f"inspect-json-{request.param}")
    return {"engine": request.param,
            "plain": run_to_checkpoint(base / "plain", request.param, disk=False),
            "disk": run_to_checkpoint(base / "disk", request.param, disk=True)}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """test_commit_chain's guest: three checkpoints, ckpt-0003 on a chain of
    three files (ckpt-0002.cow, ckpt-0001.cow, disk.img)."""
    folder = tmp_path_factory.mktemp("inspect-json-chain")
    disk_path = write_disk(folder / "disk.img", disk_pattern())
    machine = Machine(assemble(GUEST, "chain.asm"), memory_size=64 * 1024,
                      disk=open_disk(disk_path, writable=True), console_sink=BufferSink(),
                      console_input=ConsoleInput(b""))
    cp = Checkpointer(machine, FileStore(str(folder / "ck")))
    assert machine.run(5_000_000).reason == "halt"
    cp.finish_all()
    close_disks(machine)
    assert [job.status for job in cp.jobs] == ["complete"] * 3
    return folder


# --- keys and types -------------------------------------------------------------------------

def test_json_without_a_disk(runs):
    path = runs["plain"]
    doc = inspect_json(path)
    assert_schema(doc)
    ckpt = read_checkpoint(str(path))
    assert doc["disk"] is None and doc["disk_error"] is None and doc["reads_not_landed"] == []
    assert doc["format_version"] == getattr(ckpt, "format_version", 1)
    assert (doc["tick"], doc["pc"], doc["name"]) == (ckpt.tick, ckpt.pc, ckpt.meta["name"])
    assert doc["pages"] == len(ckpt.pages) and doc["memory_size"] == ckpt.memory_size
    assert doc["file"] == str(path.resolve()) and doc["file_size"] == path.stat().st_size
    assert doc["pause_us"] == ckpt.meta.get("pause_us")
    assert doc["mode"] == ckpt.meta["mode"] and doc["origin"] == ckpt.meta["origin"]
    assert doc["regs"] == list(ckpt.state["cpu"]["regs"])
    assert doc["inflight"] == len(ckpt.state["disk"]["queue"])


def test_json_is_the_same_on_both_engines(runs, tmp_path):
    """The checkpoint a run takes does not depend on the engine, and neither
    does what --json says of it (apart from when and where it was written)."""
    doc = inspect_json(runs["disk"])
    other = "interp" if runs["engine"] != "interp" else "blocks"
    again = inspect_json(run_to_checkpoint(tmp_path / other, other, disk=True))
    varying = {"file", "file_size", "created", "pause_us", "disk"}   # paths
    assert {k: v for k, v in doc.items() if k not in varying} == \
           {k: v for k, v in again.items() if k not in varying}


def test_json_with_an_unchanged_disk(runs):
    doc = inspect_json(runs["disk"])
    assert_schema(doc)
    [entry] = doc["disk"]
    disk = str(runs["disk"].parent.parent / "disk.img")
    assert entry["kind"] == "raw" and entry["path"] == disk and entry["resolved"] == disk
    assert entry["status"] == "unchanged" and entry["detail"], entry
    assert doc["disk_error"] is None
    assert doc["inflight"] > 0                  # checkpoint_demo has DMA in flight


def test_json_with_a_changed_disk(runs, tmp_path):
    work = shutil.copytree(runs["disk"].parent.parent, tmp_path / "w", copy_function=shutil.copy2)
    with open(work / "disk.img", "r+b") as f:
        f.write(b"\xff" * 512)
    st = os.stat(work / "disk.img")
    os.utime(work / "disk.img", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    doc = inspect_json(work / "ck" / "ckpt-0001.mvc")
    assert_schema(doc)
    [entry] = doc["disk"]
    assert entry["status"] == "CHANGED" and entry["resolved"] == str(work / "disk.img"), entry
    assert "differ" in entry["detail"], entry
    status, text, _ = inspect(str(work / "ck" / "ckpt-0001.mvc"))
    assert status == 0 and "CHANGED since the checkpoint" in text


def test_json_with_a_missing_disk(runs, tmp_path):
    # a run of its own: a copy would find the original disk at its recorded path
    path = run_to_checkpoint(tmp_path / "w", runs["engine"], disk=True)
    os.unlink(tmp_path / "w" / "disk.img")
    doc = inspect_json(path)
    assert_schema(doc)
    [entry] = doc["disk"]
    assert entry["status"] == "MISSING" and entry["resolved"] is None, entry
    assert "missing" in doc["disk_error"], doc["disk_error"]


def test_json_with_verify_disk(runs):
    """--json and --verify-disk combine: the full check's result is the detail."""
    plain = inspect_json(runs["disk"])["disk"][0]
    full = inspect_json(runs["disk"], "--verify-disk")["disk"][0]
    assert full["status"] == "unchanged" and "SHA-256" in full["detail"], full
    assert full["detail"] != plain["detail"]


def test_json_on_a_chain_of_three_files(chain):
    doc = inspect_json(chain / "ck" / "ckpt-0003.mvc")
    assert_schema(doc)
    assert [(os.path.basename(e["path"]), e["kind"], e["status"]) for e in doc["disk"]] == [
        ("ckpt-0002.cow", "overlay", "unchanged"), ("ckpt-0001.cow", "overlay", "unchanged"),
        ("disk.img", "raw", "unchanged")]


def test_json_after_a_commit(chain, tmp_path):
    """After committing ckpt-0001.cow into disk.img: for ckpt-0002 (on top of
    that overlay) disk.img was committed into, for ckpt-0001 it CHANGED."""
    work = shutil.copytree(chain, tmp_path / "w")
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli.main(["disk", "commit", str(work / "ck" / "ckpt-0001.cow")]) == 0
    two = inspect_json(work / "ck" / "ckpt-0002.mvc")
    assert [e["status"] for e in two["disk"]] == ["unchanged", "committed-into"], two["disk"]
    assert "committed into from ckpt-0001.cow" in two["disk"][1]["detail"]
    one = inspect_json(work / "ck" / "ckpt-0001.mvc")
    assert [e["status"] for e in one["disk"]] == ["CHANGED"], one["disk"]


def test_each_disk_file_is_checked_once(chain, monkeypatch):
    """The double check noticed in review: inspect resolved the chain (one
    check per file) and then checked each file again for its line."""
    import minivm.report as report
    import minivm.resume as resume
    calls = []
    for module in (report, resume):
        real = module.check_identity
        monkeypatch.setattr(module, "check_identity",
                            lambda p, *a, real=real: calls.append(p) or real(p, *a))
    ckpt = read_checkpoint(str(chain / "ck" / "ckpt-0003.mvc"))
    text = describe_checkpoint(ckpt)
    assert sorted(map(os.path.basename, calls)) == ["ckpt-0001.cow", "ckpt-0002.cow",
                                                    "disk.img"], calls
    assert text.count("present, unchanged") == 3, text
    calls.clear()
    checkpoint_json(ckpt)
    assert len(calls) == 3, calls


# --- strings from a hostile file ------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A checkpoint whose metadata strings hold EVIL, on a disk named EVIL_NAME."""
    base = tmp_path_factory.mktemp("inspect-json-hostile")
    seed = make_seed(base / "run", disk_name=EVIL_NAME)

    def edit(name, tree):
        if name == "meta":
            tree.update(name=EVIL, origin=EVIL, mode=EVIL, minivm=EVIL, p8_drained=EVIL,
                        created=float("nan"), pause_us=[EVIL])
        elif name == "image":
            tree["source_file"] = f"/src/{EVIL}.asm"
            tree["texts"] = [f"{t} ; {EVIL}" for t in tree["texts"]]
    return patched(seed, seed.parent / "evil.mvc", edit)


def test_json_of_a_hostile_file_is_ascii_and_parses(hostile):
    proc = run_cli("inspect", str(hostile), "--json", "--pages")
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    raw = proc.stdout
    assert raw.endswith(b"}\n") and raw.count(b"\n") == 1
    assert all(0x20 <= b < 0x7F for b in raw[:-1]), "a raw control or non-ASCII byte"
    doc = json.loads(raw)
    assert_schema(doc)
    # The strings arrive as the file holds them, JSON-escaped on the way.
    assert doc["name"] == doc["origin"] == doc["mode"] == doc["minivm"] == EVIL
    assert doc["program"] == f"/src/{EVIL}.asm" and EVIL in doc["source_line"]
    assert doc["disk"][0]["path"].endswith(EVIL_NAME)
    # Numbers that are not numbers are null, not a crash nor a NaN (not JSON).
    assert doc["p8_drained"] is None and doc["created"] is None and doc["pause_us"] is None
    assert [p["index"] for p in doc["page_list"]] == sorted(read_checkpoint(str(hostile)).pages)


def test_pages_of_a_hostile_file_are_escaped(hostile):
    status, out, _ = inspect(str(hostile), "--pages")
    assert status == 0
    assert all(ch == "\n" or ch.isprintable() for ch in out), out
    assert not any(line.lstrip().startswith("FORGED") for line in out.split("\n"))


# --- --pages --------------------------------------------------------------------------------

def test_pages_lists_exactly_the_saved_pages(runs):
    path = runs["disk"]
    ckpt = read_checkpoint(str(path))
    status, out, err = inspect(str(path), "--pages")
    assert status == 0, err
    summary = describe_checkpoint(ckpt)
    assert out.startswith(summary)
    listing = out[len(summary):].splitlines()
    assert listing[0].startswith(f"  saved pages ({len(ckpt.pages)};")
    rows = [line.split() for line in listing[1:]]
    assert [int(r[0]) for r in rows] == sorted(ckpt.pages) and rows
    for row in rows:
        index = int(row[0])
        start, end = (int(x, 16) for x in row[1].split("-"))
        assert (start, end) == (index * PAGE_SIZE, index * PAGE_SIZE + PAGE_SIZE - 1)
        assert row[2] == "sha256" and len(row[3]) == 16
        data = ckpt.pages[index]
        offset = len(data) - len(data.lstrip(b"\0"))
        assert row[4] == f"+0x{offset:03x}:"
        assert bytes.fromhex("".join(row[5:])) == data[offset:offset + 8]
    doc = inspect_json(path, "--pages")
    assert [(p["index"], p["address"], p["size"]) for p in doc["page_list"]] == \
           [(i, i * PAGE_SIZE, PAGE_SIZE) for i in sorted(ckpt.pages)]


class CountingPages(Mapping):
    """A checkpoint's pages that count the pages read (``values()``,
    ``items()`` and ``get`` go through ``__getitem__`` too)."""

    def __init__(self, pages, order=None):
        self._pages, self.reads = pages, []
        self._order = list(pages) if order is None else order

    def __getitem__(self, index):
        self.reads.append(index)
        return self._pages[index]

    def __iter__(self):
        return iter(self._order)

    def __len__(self):
        return len(self._pages)


def test_the_summary_reads_no_page(runs):
    ckpt = read_checkpoint(str(runs["disk"]))
    assert len(ckpt.pages) > 1
    counting = CountingPages(ckpt.pages)
    ckpt.pages = counting
    describe_checkpoint(ckpt)
    checkpoint_json(ckpt)
    assert counting.reads == []
    lines = list(page_lines(ckpt))
    assert sorted(counting.reads) == sorted(ckpt.pages) and len(lines) == len(ckpt.pages) + 1


def test_page_indexes_in_order_without_a_copy():
    pages = CountingPages({i: b"" for i in (1, 2, 3, 7)})
    assert page_indexes(pages) is pages
    backwards = CountingPages({i: b"" for i in (1, 2, 3, 7)}, order=[7, 3, 2, 1])
    assert page_indexes(backwards) == [1, 2, 3, 7]
    assert pages.reads == backwards.reads == []
    assert index_ranges(page_indexes(backwards)) == "1-3, 7"
    # cut at the limit, the rest is never read (here: an endless iterator)
    assert index_ranges(itertools.count(0, 2), limit=10) == "0, 2, 4, 6 ..."


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint", "missing"])
def test_json_of_a_bad_file_is_an_error_not_json(runs, tmp_path, damage):
    path = tmp_path / "bad.mvc"
    if damage == "truncated":
        path.write_bytes(runs["plain"].read_bytes()[:500])
    elif damage == "not a checkpoint":
        path.write_bytes(b"hello\n" * 100)
    status, out, err = inspect(str(path), "--json")
    assert status == 2 and out == "", out
    assert err.startswith("minivm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "bad.mvc" in err
