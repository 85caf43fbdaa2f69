"""The golden checkpoints: a file written by any released checkpoint format
version still loads and resumes to the run it was taken from.

``tests/data/checkpoints/v<N>/`` holds real checkpoints written by the minivm
that introduced format version N (``make_golden.py`` there made them; they
are never regenerated), each with ``<name>.json``: the options to resume it
with, and the console output, exit status, final tick, pc, registers and
digests of memory and disk the resumed run must end with. Every test works on
a copy of the folder in tmp_path whose files have new modification times, as
a ``git clone`` gives them (resume writes its overlay into a store folder, and
nothing is ever written into tests/data). The resume goes through what users
use: ``read_checkpoint`` + ``resume``, and ``minivm resume``; both engines.
See docs/testing.md, "Golden checkpoints".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from minivm.ckptfile import CHECKPOINT_VERSION
from minivm.engine import ENGINES
from minivm.resume import read_checkpoint
from support import run_cli, time_limit

GOLDEN = Path(__file__).resolve().parent / "data" / "checkpoints"
MAX_FOLDER_BYTES = 200_000

_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
sys.modules["make_golden"] = make_golden     # its dataclasses look themselves up
_spec.loader.exec_module(make_golden)


def version_folders() -> dict[int, Path]:
    return {int(p.name[1:]): p for p in GOLDEN.glob("v*")
            if p.is_dir() and p.name[1:].isdigit()}


CASES = sorted(path for folder in version_folders().values() for path in folder.glob("*.json"))


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def cloned(path: Path, tmp_path: Path) -> Path:
    """A copy of the case's folder with new mtimes; returns the copy's folder."""
    copy = tmp_path / path.parent.name
    make_golden.copy_as_cloned(path.parent, copy)
    return copy


def folder_digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("eager", [False, True], ids=["lazy", "eager"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_resume_ends_as_recorded(path, engine, eager, tmp_path):
    """read_checkpoint + resume (lazy and eager), run to the end: output, exit
    status, tick, pc, registers, memory and disk are the recorded ones."""
    record = load(path)
    folder = cloned(path, tmp_path)
    with time_limit(120, f"resuming {case_id(path)}"):
        seen = make_golden.observe_resume(folder, record, engine, tmp_path / "store", eager)
    expected = record["expect"]
    assert set(expected) >= {"stop", "exit_status", "tick", "pc", "regs", "output_latin1",
                             "memory_sha256", "disk_sha256"}
    for key, value in expected.items():
        assert seen[key] == value, (f"{case_id(path)} ({engine}): the resumed run ends with "
                                    f"{key} {seen[key]!r}, recorded {value!r}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_minivm_resume_prints_as_recorded(path, engine, tmp_path):
    """``minivm resume`` with the recorded options prints the recorded output
    and exits with the recorded status; the disk files, copied with new mtimes,
    are found unchanged; the golden folder itself is not written."""
    record = load(path)
    before = folder_digest(path.parent)
    folder = cloned(path, tmp_path)
    done = make_golden.cli_resume(folder, record, engine, tmp_path / "store")
    stderr = done.stderr.decode()
    assert done.stdout.decode("latin-1") == record["expect"]["output_latin1"], stderr
    assert done.returncode == record["expect"]["exit_status"], stderr
    assert "error" not in stderr and "CHANGED" not in stderr, stderr
    assert folder_digest(folder) == before, "resume wrote beside the checkpoint"
    assert folder_digest(path.parent) == before


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_minivm_inspect_reads_it(path, tmp_path):
    record = load(path)
    folder = cloned(path, tmp_path)
    options = [[]] + ([["--verify-disk"]] if record["checkpoint_holds"]["disk_chain"] else [])
    for extra in options:
        done = run_cli("inspect", record["checkpoint"], *extra, cwd=folder)
        assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
        text = done.stdout.decode()
        assert f"tick {record['checkpoint_holds']['tick']}" in text, text
        assert "CHANGED" not in text and "missing" not in text, text


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_loaded_checkpoint_holds_what_was_recorded(path, tmp_path):
    """The loader reads what the writer saved: tick, pc, memory size, the
    saved pages and the disk chain."""
    holds = load(path)["checkpoint_holds"]
    ckpt = read_checkpoint(str(cloned(path, tmp_path) / load(path)["checkpoint"]))
    assert (ckpt.tick, ckpt.pc, ckpt.memory_size) == \
        (holds["tick"], holds["pc"], holds["memory_size"])
    assert len(ckpt.pages) == len(holds["pages"])
    assert sorted(ckpt.pages) == holds["pages"]
    assert ckpt.meta["name"] == holds["name"]
    chain = [entry["kind"] for entry in ckpt.disk["chain"]] if ckpt.disk else None
    assert chain == holds["disk_chain"]


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_golden_file_is_of_its_folders_version(path):
    version = int(path.parent.name[1:])
    record = load(path)
    assert record["format_version"] == version
    header = make_golden.header_of(path.parent / record["checkpoint"])
    assert header["version"] == version, (f"{case_id(path)} is a file of format version "
                                          f"{header['version']}, in the folder of {version}")
    ckpt = read_checkpoint(str(path.parent / record["checkpoint"]))
    if hasattr(ckpt, "format_version"):         # the loader's own word, where it gives it
        assert ckpt.format_version == version


def test_a_golden_folder_for_every_format_version():
    """Bumping CHECKPOINT_VERSION needs the golden files of the new version:
    run tests/data/checkpoints/make_golden.py, and commit the folder."""
    folders = version_folders()
    missing = [v for v in range(1, CHECKPOINT_VERSION + 1) if v not in folders]
    assert not missing, (f"no golden checkpoints of format version(s) {missing}: run "
                         "'python tests/data/checkpoints/make_golden.py' and commit "
                         f"tests/data/checkpoints/v{CHECKPOINT_VERSION}/")
    assert max(folders) <= CHECKPOINT_VERSION, \
        f"golden files of format {max(folders)}, newer than this minivm's {CHECKPOINT_VERSION}"
    for version, folder in folders.items():
        assert list(folder.glob("*.json")), f"{folder.name} holds no golden checkpoint"


@pytest.mark.parametrize("version", sorted(version_folders()))
def test_golden_folder_lists_its_files_and_is_small(version):
    folder = version_folders()[version]
    listed = set()
    for path in folder.glob("*.json"):
        record = load(path)
        assert path.name in record["files"] and record["checkpoint"] in record["files"]
        assert not listed & set(record["files"]), f"{path.name} shares files with another case"
        listed |= set(record["files"])
    present = {p.name for p in folder.iterdir()}
    assert present == listed, (f"files not listed by any case: {sorted(present - listed)}; "
                               f"listed but absent: {sorted(listed - present)}")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < MAX_FOLDER_BYTES, f"{folder.name} is {size} bytes"
