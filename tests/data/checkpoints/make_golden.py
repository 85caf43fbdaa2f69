"""Write the golden checkpoints of the current checkpoint format version.

    python tests/data/checkpoints/make_golden.py [--force]

Run by hand, once per released format version: it writes
``tests/data/checkpoints/v<N>/``, N being ``minivm.ckptfile.CHECKPOINT_VERSION``
of the working tree, and refuses to touch a folder that exists (``--force``
replaces it: only for the version still being developed; a folder of a
released version is never regenerated, since the point of it is that files
written by that release still resume). ``tests/test_golden.py`` resumes every
file of every folder and compares the run with what is recorded here.

Each case (CASES below) is a small guest program from ``src/``, run for real
with ``minivm run`` (the working tree's, in a subprocess); one checkpoint
of the run is kept. A checkpoint with a disk is brought out through
``minivm export``, which records each disk file's whole-file SHA-256, so
that the copies in a fresh ``git clone`` (new mtimes) are verified in full
instead of refused (docs/formats.md, "Disk identity"). The folder gets, per
case: ``<name>.mvc`` (the checkpoint), ``<name>.asm`` (its source, as it
was), its disk files and its console input if any, and ``<name>.json``:
what a resume must reproduce.

The recorded expectations are not taken on trust: before anything is
written, the script checks that resuming the exported checkpoint (through
``read_checkpoint`` and ``resume``, and through ``minivm resume``, on every
engine) continues exactly the run the checkpoint was taken from (its console
output after the checkpoint, exit status), and ends in the state of a run of
the same program without any checkpointer (tick, pc, registers, every byte
of memory and of the disk). The json then records that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))           # the working tree's minivm

import msgpack  # noqa: E402

import minivm  # noqa: E402
from minivm.ckptfile import CHECKPOINT_VERSION  # noqa: E402
from minivm.devices import BufferSink, ConsoleInput  # noqa: E402
from minivm.disks import close_chain, open_disk  # noqa: E402
from minivm.engine import ENGINES  # noqa: E402
from minivm.machine import Machine  # noqa: E402
from minivm.memory import parse_size  # noqa: E402
from minivm.program import load_program  # noqa: E402
from minivm.resume import read_checkpoint, resolve_disk_chain, resume  # noqa: E402
from minivm.store import FileStore  # noqa: E402

SOURCES = HERE / "src"
MAX_TICKS = 10_000_000          # every case halts long before: a hang guard
#: A modification time no file of a fresh copy has by accident (2001-09-09):
#: copies of the golden files get it, as a clone gives them new ones.
CLONED_MTIME_NS = 1_000_000_000 * 10**9
DISK_LATENCY, DISK_PER_BLOCK = 100, 10      # minivm run's defaults


def dma_disk() -> bytes:
    """16 blocks; block b: the text 'disk block b, as created', a NUL, then a
    pattern of non-zero bytes that differs from block to block."""
    blocks = []
    for b in range(16):
        text = f"disk block {b}, as created\n".encode() + b"\0"
        blocks.append(text + bytes(((b * 37 + i * 11 + 1) & 0xFF) or 1
                                   for i in range(512 - len(text))))
    return b"".join(blocks)


@dataclass
class Case:
    name: str
    what: str                   # what the case exercises, recorded in its json
    mem: str
    run_options: list = field(default_factory=list)    # more options of `minivm run`
    take: str = "ckpt-0001"     # which checkpoint of the run is kept
    disk: bytes | None = None   # initial contents of <name>-disk.img
    input: bytes | None = None  # the original run's console input
    holds: dict = field(default_factory=dict)   # what the checkpoint must hold (see `what`)

    @property
    def disk_name(self) -> str:
        return f"{self.name}-disk.img"


CASES = [
    Case("timer", "a plain program checkpointed mid-run by --checkpoint-at (a host "
                  "checkpoint): the timer running, its interrupt handler set, three timer "
                  "interrupts pending with interrupts disabled; console output before and "
                  "after the checkpoint; a non-zero exit status",
         mem="64K", run_options=["--checkpoint-at", "3500"],
         holds={"origin": "host", "pending_interrupts": 3}),
    Case("dma", "a disk attached and four DMA requests in flight at the checkpoint (two "
                "writes, two reads; a write that makes a disk COW fault); the run's second "
                "checkpoint, so its disk is a chain: the overlay ckpt-0001.cow on the raw "
                "dma-disk.img; exported, so each disk file has a whole-file SHA-256; after "
                "it, a store into the page the reads land in (P7) and a new read into it (P6)",
         mem="64K", take="ckpt-0002", disk=dma_disk(),
         holds={"disk_chain": ["overlay", "raw"], "requests_in_flight": 4}),
    Case("sparse", "a memory of 77777 bytes (not a multiple of 4096: the last page is 4049 "
                   "bytes) with non-zero pages spread out (0, 5, 11, 12, 18), a word "
                   "straddling two pages, the stack at the top of memory with sp not a "
                   "multiple of 4, the checkpoint taken three calls deep",
         mem="77777", holds={"memory_size": 77777, "pages": [0, 5, 11, 12, 18]}),
    Case("input", "console input consumed before the checkpoint (the first line); the "
                  "resumed run gets the rest of the input with --input",
         mem="64K", input=b"Hello, golden files\nsecond line\nthird: 123\n",
         holds={"input_consumed": 20}),
]


# --- what a run and a resume are seen to do (shared with tests/test_golden.py) ---------------

def final_of(machine: Machine, stop) -> dict:
    """What a finished run shows: how it stopped, its output, the CPU, and a
    digest of every byte of memory and of the disk as the guest sees it."""
    disk = machine.disk.backing
    return {
        "stop": stop.reason,
        "exit_status": machine.regs[0] & 0xFF if stop.reason == "halt" else None,
        "tick": machine.tick,
        "pc": machine.pc,
        "regs": list(machine.regs[:16]),
        "output_latin1": bytes(machine.console.sink.data).decode("latin-1"),
        "memory_sha256": hashlib.sha256(
            machine.memory.read_bytes(0, machine.memory.size)).hexdigest(),
        "disk_sha256": (hashlib.sha256(disk.read_blocks(0, disk.block_count)).hexdigest()
                        if disk is not None else None),
    }


def resume_input(folder: Path, case: dict) -> bytes:
    return (folder / case["input_file"]).read_bytes() if case.get("input_file") else b""


def observe_resume(folder: Path, case: dict, engine: str, store_folder: Path,
                   eager: bool = False) -> dict:
    """Resume a case's checkpoint the way ``minivm resume`` does (read_checkpoint,
    resolve_disk_chain, resume; ``eager``: --eager) and run it to the end;
    returns final_of()."""
    ckpt = read_checkpoint(str(folder / case["checkpoint"]))
    chain = resolve_disk_chain(ckpt) if ckpt.disk is not None else None
    machine, _ = resume(ckpt, FileStore(str(store_folder)), chain=chain,
                        console_sink=BufferSink(),
                        console_input=ConsoleInput(resume_input(folder, case)), engine=engine,
                        eager=eager)
    try:
        return final_of(machine, machine.run(MAX_TICKS))
    finally:
        close_chain(machine.disk.backing)


def cli(*args: str, cwd: Path, input: bytes = b"") -> subprocess.CompletedProcess:
    """``python -m minivm ARGS`` of the working tree."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "minivm", *args], input=input,
                          capture_output=True, cwd=cwd, env=env, timeout=300)


def cli_resume(folder: Path, case: dict, engine: str, store_folder: Path):
    return cli("resume", case["checkpoint"], "--engine", engine,
               "--checkpoint-dir", str(store_folder), *case["resume_args"], cwd=folder)


def header_of(path: Path) -> dict:
    """The header of a checkpoint file, read as docs/formats.md describes the
    container (a msgpack magic string, then the header map), not through minivm."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 20)
    with open(path, "rb") as f:
        unpacker.feed(f.read(1 << 16))
    magic = unpacker.unpack()
    if magic != "minivm-checkpoint":
        raise ValueError(f"{path} does not start with the checkpoint magic ({magic!r})")
    header = unpacker.unpack()
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a map")
    return header


def copy_as_cloned(source: Path, target: Path) -> None:
    """Copy a golden folder as ``git clone`` would give it: same bytes, new
    modification times (set to CLONED_MTIME_NS, which no recorded one is)."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            shutil.copyfile(path, target / path.name)
            os.utime(target / path.name, ns=(CLONED_MTIME_NS, CLONED_MTIME_NS))


# --- making the files ------------------------------------------------------------------------

class Refused(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Refused(message)


def reference_run(case: Case, work: Path, engine: str) -> dict:
    """The same program on a machine with no checkpointer (ckpt does nothing),
    from the same initial disk and input: what the guest must end with."""
    disk = None
    if case.disk is not None:
        path = work / f"reference-{engine}.img"
        path.write_bytes(case.disk)
        disk = open_disk(str(path))
    machine = Machine(load_program(str(work / f"{case.name}.asm")),
                      memory_size=parse_size(case.mem), disk=disk, console_sink=BufferSink(),
                      console_input=ConsoleInput(case.input or b""),
                      disk_latency=DISK_LATENCY, disk_per_block=DISK_PER_BLOCK, engine=engine)
    try:
        return final_of(machine, machine.run(MAX_TICKS))
    finally:
        close_chain(machine.disk.backing)


def make_case(case: Case, tmp: Path, out: Path) -> dict:
    """Run the case, export its checkpoint into ``out``, check that it resumes
    to the original run, and return its json record."""
    work = tmp / "work" / case.name
    work.mkdir(parents=True)
    shutil.copyfile(SOURCES / f"{case.name}.asm", work / f"{case.name}.asm")
    options = ["--mem", case.mem, *case.run_options]
    if case.disk is not None:
        (work / case.disk_name).write_bytes(case.disk)
        options += ["--disk", case.disk_name]
    if case.input is not None:
        (work / "run.input").write_bytes(case.input)
        options += ["--input", "run.input"]
    run = cli("run", f"{case.name}.asm", *options, "--checkpoint-dir", "ck",
              "--save-rate", "16", cwd=work)
    check(run.returncode in range(256) and b"error" not in run.stderr,
          f"{case.name}: minivm run failed ({run.returncode}): {run.stderr.decode()}")
    taken = work / "ck" / f"{case.take}.mvc"
    check(taken.is_file(), f"{case.name}: the run took no checkpoint {case.take}: "
                           f"{run.stderr.decode()}")

    # into the golden folder: exported (a disk) or copied (none), as <name>.mvc
    export = tmp / "export" / case.name
    if case.disk is not None:
        done = cli("export", str(taken), str(export), cwd=work)
        check(done.returncode == 0, f"{case.name}: minivm export failed: {done.stderr.decode()}")
    else:
        export.mkdir(parents=True)
        shutil.copyfile(taken, export / taken.name)
    (export / taken.name).rename(export / f"{case.name}.mvc")
    shutil.copyfile(SOURCES / f"{case.name}.asm", export / f"{case.name}.asm")
    ckpt = read_checkpoint(str(export / f"{case.name}.mvc"))
    record = {
        "name": case.name,
        "what": case.what,
        "checkpoint": f"{case.name}.mvc",
        "source": f"{case.name}.asm",
        "format_version": CHECKPOINT_VERSION,
        "minivm_version": minivm.__version__,
        "made_by": "tests/data/checkpoints/make_golden.py",
        "run": ["minivm", "run", f"{case.name}.asm", *options],
        "run_input_latin1": case.input.decode("latin-1") if case.input is not None else None,
        "input_file": None,
        "resume_args": [],
    }
    consumed = ckpt.state["console"]["input_consumed"]
    if case.input is not None:
        record["input_file"] = f"{case.name}.input"
        record["resume_args"] = ["--input", record["input_file"]]
        (export / record["input_file"]).write_bytes(case.input[consumed:])
    record["checkpoint_holds"] = {
        "name": ckpt.meta["name"], "origin": ckpt.meta["origin"], "tick": ckpt.tick,
        "pc": ckpt.pc, "memory_size": ckpt.memory_size, "pages": sorted(ckpt.pages),
        "disk_chain": [entry["kind"] for entry in ckpt.disk["chain"]] if ckpt.disk else None,
        "requests_in_flight": len(ckpt.state["disk"]["queue"]),
        "pending_interrupts": len(ckpt.state["interrupts"]["pending"]),
        "input_consumed": consumed,
        "output_before": ckpt.state["console"]["bytes_written"],
    }
    for key, value in case.holds.items():
        check(record["checkpoint_holds"][key] == value,
              f"{case.name}: the checkpoint holds {key} {record['checkpoint_holds'][key]}, "
              f"not {value}: the case no longer exercises what it says")
    record["files"] = sorted(p.name for p in export.iterdir()) + [f"{case.name}.json"]

    # what a resume must reproduce, checked against the original run
    expected = None
    for engine in ENGINES:
        reference = reference_run(case, work, engine)
        check(reference["output_latin1"].encode("latin-1") == run.stdout
              and reference["exit_status"] == run.returncode,
              f"{case.name}: a run without a checkpointer differs from minivm run")
        seen = tmp / "seen" / case.name / engine
        copy_as_cloned(export, seen)
        resumed = observe_resume(seen, record, engine, tmp / "stores" / case.name / engine)
        after = run.stdout[record["checkpoint_holds"]["output_before"]:]
        check(resumed["output_latin1"].encode("latin-1") == after,
              f"{case.name} ({engine}): the resumed output {resumed['output_latin1']!r} is not "
              f"the original's after the checkpoint {after!r}")
        for key in ("stop", "exit_status", "tick", "pc", "regs", "memory_sha256", "disk_sha256"):
            check(resumed[key] == reference[key],
                  f"{case.name} ({engine}): the resumed run ends with {key} {resumed[key]}, "
                  f"the original with {reference[key]}")
        by_cli = cli_resume(seen, record, engine, tmp / "cli" / case.name / engine)
        check(by_cli.stdout == after and by_cli.returncode == resumed["exit_status"],
              f"{case.name} ({engine}): minivm resume printed {by_cli.stdout!r} and exited "
              f"{by_cli.returncode}: {by_cli.stderr.decode()}")
        check(expected is None or expected == resumed, f"{case.name}: the engines differ")
        expected = resumed
    record["expect"] = expected
    check(header_of(export / record["checkpoint"]).get("version") == CHECKPOINT_VERSION,
          f"{case.name}: the file's header is not of version {CHECKPOINT_VERSION}")
    (export / f"{case.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    for path in export.iterdir():
        target = out / path.name
        check(not target.exists(), f"{case.name}: two cases write {path.name}")
        shutil.copy2(path, target)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true",
                        help=f"replace tests/data/checkpoints/v{CHECKPOINT_VERSION}/ if it "
                             "exists (only while that format version is unreleased)")
    args = parser.parse_args(argv)
    folder = HERE / f"v{CHECKPOINT_VERSION}"
    if folder.exists() and not args.force:
        print(f"make_golden: {folder.relative_to(ROOT)} exists; the golden files of a released "
              "format version are never regenerated (--force replaces them)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="golden-") as name:
        tmp = Path(name)
        out = tmp / folder.name
        out.mkdir()
        try:
            records = [make_case(case, tmp, out) for case in CASES]
        except Refused as exc:
            print(f"make_golden: {exc}; nothing written", file=sys.stderr)
            return 1
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(out, folder)
    total = 0
    for record in records:
        size = sum((folder / f).stat().st_size for f in record["files"])
        total += size
        print(f"{record['name']:8} {size:7} bytes  {', '.join(record['files'])}")
    print(f"wrote {folder.relative_to(ROOT)}: {len(records)} checkpoints of format version "
          f"{CHECKPOINT_VERSION} (minivm {minivm.__version__}), {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
