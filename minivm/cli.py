"""The ``minivm`` command line (docs/contract.md, section 8).

Every user error ends here as one message on stderr and a non-zero exit
status, never a traceback. Exit statuses: ``halt`` gives ``r0 & 0xFF``;
2 = bad input (program, file, option); 3 = the guest faulted; 4 = stopped by
``--max-steps``; 130 = interrupted (Ctrl-C). Heavy modules (prompt_toolkit)
are imported only by the commands that need them, so ``minivm run`` starts
fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import MinivmError, show

EXIT_USAGE = 2
EXIT_FAULT = 3
EXIT_LIMIT = 4
EXIT_INTERRUPTED = 130


def _note(message: str) -> None:
    sys.stdout.flush()
    # strings from files are escaped where a message is made; this is the
    # second line of defence: only the message's own line breaks stay raw
    print(f"minivm: {show(message, keep=chr(10) + chr(9))}", file=sys.stderr, flush=True)


# --- shared option groups ----------------------------------------------------------------

def _nonneg_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = _nonneg_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


def _tick_list(text: str) -> list[int]:
    try:
        ticks = [int(part, 0) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a list of ticks (give e.g. 1000 or 1000,5000)") from None
    if not ticks or any(t < 0 for t in ticks):
        raise argparse.ArgumentTypeError(f"'{text}' must list ticks of 0 or more")
    return ticks


def _add_execution_options(p: argparse.ArgumentParser) -> None:
    from .modes import COW, MODES
    p.add_argument("--input", metavar="FILE",
                   help="console input for port 0x02 (default: standard input)")
    p.add_argument("--max-steps", type=_positive_int, metavar="N",
                   help="stop the guest after N ticks (instructions) with an error")
    p.add_argument("--checkpoint-dir", default="checkpoints", metavar="DIR",
                   help="where checkpoints and disk overlays go (default: ./checkpoints)")
    p.add_argument("--checkpoint-at", type=_tick_list, default=[], metavar="T[,T...]",
                   help="take a checkpoint when the clock reaches each tick T "
                        "(costs the guest no tick)")
    p.add_argument("--checkpoint-mode", choices=MODES, default=COW,
                   help="cow: stop briefly and save in the background (default); "
                        "stop-copy: save everything while stopped (baseline); "
                        "precopy: copy memory in rounds while the guest runs, then stop "
                        "to copy the last dirty pages (docs/protocol.md)")
    p.add_argument("--save-rate", type=_positive_int, default=None, metavar="PAGES",
                   help="save exactly PAGES pages per background batch (every 2,048 "
                        "ticks at most), so the save's progress is the same on any host; "
                        "default: adapt to the host's speed (about 15%% of its time), "
                        "or $MINIVM_SAVE_RATE if set")
    p.add_argument("--checkpoint-store", choices=("file", "memory"), default="file",
                   help="where checkpoints go (P11): file, one .mvc file each in "
                        "--checkpoint-dir (default); memory, kept in host memory and "
                        "gone when the run ends (to measure the protocol without file "
                        "writes; disk overlays still go to --checkpoint-dir)")
    p.add_argument("--incremental", action="store_true",
                   help="after the first checkpoint of this run, each checkpoint file "
                        "stores only the pages written since the previous one and names "
                        "it as its parent (resume follows the chain; 'minivm export' "
                        "makes a standalone copy)")
    p.add_argument("--cow-group", type=_positive_int, default=8, metavar="BLOCKS",
                   help="disk COW block group size in 512-byte blocks (default 8)")
    p.add_argument("--trace", action="store_true",
                   help="print every instruction executed to stderr")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout when the run ends (stop reason, "
                        "exit status, ticks, output, registers, fault, checkpoints; "
                        "docs/formats.md); the guest's output goes into it, not to stdout")
    p.add_argument("--timeline", metavar="FILE.svg",
                   help="after the run, draw the checkpoints' timeline as an SVG picture (its folder "
                        "is checked before the run)")
    _add_engine_option(p)


def _add_engine_option(p: argparse.ArgumentParser) -> None:
    from .engine import DEFAULT_ENGINE, ENGINES
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help="blocks (the default): hot code compiled to Python functions; "
                        "interp: one instruction at a time, the reference the tests "
                        "hold blocks to (same output, ticks and state)")


def _add_resume_memory_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eager", action="store_true",
                   help="read every saved memory page before the first instruction, and "
                        "close the checkpoint file (by default pages are read on the "
                        "guest's first access to each, and the file stays open meanwhile: "
                        "use --eager if it is about to be moved or deleted)")
    p.add_argument("--lazy", action="store_true",
                   help="read each saved page on the guest's first access to it (the "
                        "default). With --eager or --lazy given, the run's summary "
                        "reports the time to the first instruction and the pages read by "
                        "the end (--json always does)")


def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mem", default="1M", metavar="SIZE",
                   help="memory size, e.g. 64K, 1M, 4G (default 1M)")
    p.add_argument("--disk", metavar="FILE", help="raw disk image (size a multiple of 512)")
    p.add_argument("--disk-latency", type=_delay, default=100, metavar="TICKS",
                   help="ticks every disk request takes (default 100, at most 2^24)")
    p.add_argument("--disk-per-block", type=_delay, default=10, metavar="TICKS",
                   help="extra ticks per block transferred (default 10, at most 2^24)")
    p.add_argument("--max-inflight", type=_positive_int, default=1024, metavar="N",
                   help="most disk requests in flight at once, up to 65536; one more is "
                        "a guest fault (default 1024; saved in checkpoints)")
    p.add_argument("--max-inflight-bytes", default="64M", metavar="SIZE",
                   help="most bytes the disk requests in flight may move at once, up to "
                        "256M; more is a guest fault (default 64M; saved in checkpoints)")


def _delay(text: str) -> int:
    from .devices import MAX_DELAY
    value = _nonneg_int(text)
    if value > MAX_DELAY:
        raise argparse.ArgumentTypeError(f"'{text}' is more than the limit of {MAX_DELAY} ticks")
    return value


#: ``minivm repl PROG``: what PROG may be (minivm/repl/frontend.py, open_start).
REPL_PROGRAM_HELP = ("a program (.asm source or .mvb image) to load, or a checkpoint file to "
                     "restore (known by its contents, whatever its name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivm",
        description="A tiny bytecode machine with a checkpoint/resume protocol built in.",
        epilog="Run 'minivm COMMAND --help' for a command's options. "
               "Example: minivm run programs/hello.asm")
    parser.add_argument("--version", action="version", version=f"minivm {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="assemble (if needed) and run a program",
                       description="Run a program: an .asm source file or an assembled image. "
                                   "A source is assembled once and its image kept in a cache "
                                   "(~/.cache/minivm/asm, or $MINIVM_ASM_CACHE; "
                                   "MINIVM_ASM_CACHE=off turns it off), so later runs of the "
                                   "same file start faster.")
    p.add_argument("program", help="program.asm or program.mvb")
    _add_machine_options(p)
    _add_execution_options(p)

    p = sub.add_parser("asm", help="assemble a program into a bytecode image",
                       description="Assemble PROG.asm into a bytecode image.")
    p.add_argument("source")
    p.add_argument("-o", "--output", metavar="PROG.mvb",
                   help="output image (default: the source name with .mvb)")

    p = sub.add_parser("disasm", help="print an image as assembly that reassembles to it",
                       description="Print a listing of an image (or source) that "
                                   "reassembles to the same code, data, entry and "
                                   "symbols (only the debug sections, file name and "
                                   "source lines, then describe the listing).")
    p.add_argument("program")

    p = sub.add_parser("resume", help="continue a run from a checkpoint",
                       description="Rebuild the machine saved in a checkpoint and continue. "
                                   "Disk writes go to a fresh overlay, so the checkpointed "
                                   "disk stays as it was.")
    p.add_argument("checkpoint")
    p.add_argument("--disk", metavar="FILE",
                   help="where the checkpointed disk is now, if it moved")
    p.add_argument("--allow-changed-disk", action="store_true",
                   help="resume even if a disk file no longer matches the checkpoint")
    p.add_argument("--verify-disk", action="store_true",
                   help="also compare each disk file's whole-file SHA-256, where the "
                        "checkpoint recorded one (reads the whole disk; see docs/formats.md)")
    _add_resume_memory_options(p)
    _add_execution_options(p)

    from .labcli import add_parser as add_compare_parser
    add_compare_parser(sub, _add_engine_option)

    p = sub.add_parser("inspect", help="show what a checkpoint holds",
                       description="Print a readable summary of a checkpoint file. The "
                                   "summary reads no memory page (it needs only the "
                                   "file's index); --pages reads them one at a time.")
    p.add_argument("checkpoint")
    p.add_argument("--verify-disk", action="store_true",
                   help="also compare each disk file's whole-file SHA-256, where the "
                        "checkpoint recorded one (reads the whole disk)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead (its keys: docs/formats.md, "
                        "'inspect --json')")
    p.add_argument("--pages", action="store_true",
                   help="also list every saved page: index, addresses, SHA-256 and "
                        "first non-zero bytes (with --json: a 'page_list' key)")

    p = sub.add_parser("disk", help="create, describe or commit disk files",
                       description="Disk image tools.")
    disk_sub = p.add_subparsers(dest="disk_command", metavar="ACTION")
    q = disk_sub.add_parser("create", help="create a zero-filled raw disk image")
    q.add_argument("file")
    q.add_argument("size", help="size in bytes, with K, M or G (a multiple of 512)")
    q = disk_sub.add_parser("info", help="describe a raw image or an overlay chain")
    q.add_argument("file")
    q = disk_sub.add_parser("commit", help="merge an overlay into its parent (P10)")
    q.add_argument("overlay")

    p = sub.add_parser("repl", help="interactive debugger and checkpoint console",
                       description="An interactive debugger with checkpoints. "
                                   "Type 'help' at the prompt.")
    p.add_argument("program", nargs="?", help=REPL_PROGRAM_HELP)
    _add_machine_options(p)
    p.add_argument("--batch", metavar="FILE",
                   help="run the commands in FILE, echoing them, then exit")
    p.add_argument("--history-budget", metavar="SIZE", default=None,
                   help="host memory the time-travel history may use, e.g. 256M (default: "
                        "the guest's touched memory + 64M; old snapshots are thinned to fit)")
    p.add_argument("--no-history", action="store_true",
                   help="do not record the run: no goto/reverse-step ('history on' at the "
                        "prompt starts recording)")
    _add_engine_option(p)

    p = sub.add_parser("export", help="copy a checkpoint and its disk files into a folder",
                       description="Copy a checkpoint and every file of its disk chain into "
                                   "FOLDER, so that the folder can be taken to another "
                                   "machine and resumed there with 'minivm resume'. An "
                                   "incremental checkpoint (taken with --incremental) is "
                                   "written as one standalone file, every page of its "
                                   "chain merged in, unless --chain is given.")
    p.add_argument("checkpoint")
    p.add_argument("folder")
    p.add_argument("--chain", action="store_true",
                   help="for an incremental checkpoint: copy it and all its parents "
                        "(each naming its parent beside it) instead of merging them "
                        "into one standalone file")

    _add_demo_parser(sub)

    p = sub.add_parser("bench", help="measure the interpreter against a bare Python loop",
                       description="Run the benchmark workloads and print rates and ratios.")
    p.add_argument("--quick", action="store_true", help="a shorter run")
    return parser


def _add_demo_parser(sub) -> None:
    """``minivm demo [NAME]`` and its options."""
    p = sub.add_parser("demo", help="list or run the classroom demos",
                       description="Without NAME, list the demos. With NAME, run it: a "
                                   "scripted REPL session that pauses at each step so a "
                                   "presenter can talk it through: Enter goes on, b back, r "
                                   "replays, a number jumps, p opens the REPL, q quits.")
    p.add_argument("name", nargs="?")
    p.add_argument("--no-pause", action="store_true",
                   help="run straight through (the default when not at a terminal)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="where the demo's checkpoints and disk go (default: a fresh "
                        "temporary folder)")
    p.add_argument("--no-color", action="store_true",
                   help="no colour (also: the NO_COLOR environment variable; never when piped)")
    p.add_argument("--pictures", metavar="DIR", help="also write the demo's pictures (SVG) in DIR")
    _add_engine_option(p)


def _version() -> str:
    from .version import __version__
    return __version__


# --- helpers ------------------------------------------------------------------------------

def _sink(args):
    """The guest's console: stdout, or a buffer for --json."""
    from .devices import BufferSink, StreamSink
    return BufferSink() if args.json else StreamSink(sys.stdout.buffer)


def _console_input(path: str | None):
    from .devices import ConsoleInput
    if path is None:
        return ConsoleInput(stream=sys.stdin.buffer)
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise MinivmError(f"cannot read the input file '{path}': {exc.strerror}") from None
    return ConsoleInput(stream=stream)


def _execute(machine, args, checkpointer, overlay_note: str | None, resumed=None) -> int:
    from .interrupts_guard import SigintGuard
    if args.timeline:                          # before the run, not after it
        from .container import check_output_target
        check_output_target(args.timeline, "--timeline", "timeline.svg")
    if args.trace:
        machine.trace = lambda line: print(show(line), file=sys.stderr)   # the source file's name
    with SigintGuard(machine):
        try:
            stop = machine.run(args.max_steps)
        finally:
            machine.console.sink.flush()
            if checkpointer is not None:
                checkpointer.finish_all()
    if checkpointer is not None:
        _summarise_checkpoints(checkpointer, overlay_note)
    elif overlay_note:
        _note(overlay_note)
    if resumed is not None:                    # minivm resume: how the resume went
        resumed.finish(machine)
        if resumed.announce:
            _note(resumed.line())
    status = _report_stop(machine, stop, args)     # a fault first: it may be why ...
    if args.timeline:
        _write_timeline(checkpointer, args.timeline)   # ... no timeline could be drawn
    if args.json:
        from .api import result_of
        result = result_of(machine, stop.reason, checkpointer)
        if resumed is not None:
            result.resume = resumed.to_dict()
        print(result.to_json())
    return status


def _report_stop(machine, stop, args) -> int:
    """Say why the run stopped, unless it halted; returns the exit status."""
    if stop.reason == "halt":
        return machine.regs[0] & 0xFF
    if stop.reason == "fault":
        print(str(stop.detail), file=sys.stderr)
        return EXIT_FAULT
    location = machine.image.location(machine.pc)
    if stop.reason == "limit":
        _note(f"stopped by --max-steps {args.max_steps} at tick {machine.tick}, pc "
              f"{machine.pc} ({location}): the guest had not halted")
        return EXIT_LIMIT
    _note(f"interrupted at tick {machine.tick}, pc {machine.pc} ({location})")
    return EXIT_INTERRUPTED


def _write_timeline(checkpointer, path: str) -> None:
    from .container import write_text_atomically
    from .timeline import timeline_svg
    if not checkpointer.jobs:
        _note(f"no checkpoint was taken, so no timeline was written to {path}")
        return
    write_text_atomically(path, timeline_svg(checkpointer))
    _note(f"timeline of {len(checkpointer.jobs)} checkpoint(s) written to {path}")


def _summarise_checkpoints(checkpointer, overlay_note: str | None) -> None:
    for job in checkpointer.jobs:
        if job.status == "complete":
            delta = (f" (incremental: {job.pages_saved} page(s) written since "
                     f"{job.parent.name}, {job.bytes_written} bytes)" if job.incremental else "")
            _note(f"checkpoint {job.name} at tick {job.tick} -> {job.location}{delta}")
            if job.precopy is not None:
                _note(f"  asked for at tick {job.precopy.tick}; {job.precopy.describe()}")
    from .store import MemoryStore
    store = checkpointer.store
    if isinstance(store, MemoryStore) and store.names():       # --checkpoint-store memory
        _note(f"{len(store.names())} checkpoint(s), {store.total_bytes()} bytes, were kept in "
              "host memory (--checkpoint-store memory) and are gone now that the run ends")
    top = checkpointer.machine.disk.backing
    if top is not None and top.kind == "overlay" and checkpointer.jobs and top.groups():
        _note(f"disk writes since the last checkpoint are in {os.path.relpath(top.path)}; "
              f"'minivm disk commit {os.path.relpath(top.path)}' merges them into its parent")
    elif overlay_note:
        _note(overlay_note)


def _make_checkpointer(machine, args, lazy: bool = False):
    """The run's Checkpointer; with ``lazy``, None when the run cannot take
    a checkpoint (no ``ckpt`` in the program, no --checkpoint-at, no
    --timeline), so that such a run never loads the checkpoint code."""
    from . import isa
    if lazy and not (args.checkpoint_at or args.timeline
                     or any(ins[0] == isa.CKPT for ins in machine.image.code)):
        return None
    from .checkpoint import Checkpointer
    from .store import FileStore, MemoryStore
    store = (MemoryStore(args.checkpoint_dir) if args.checkpoint_store == "memory"
             else FileStore(args.checkpoint_dir))
    return Checkpointer(machine, store, mode=args.checkpoint_mode,
                        group_blocks=args.cow_group, schedule=args.checkpoint_at,
                        pages_per_slice=args.save_rate, report=_note,
                        incremental=args.incremental)


# --- commands --------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .devices import check_inflight_limits
    from .program import load_program
    from .machine import Machine
    from .memory import parse_size
    image = load_program(args.program)
    memory_size = parse_size(args.mem, "memory size")
    max_inflight_bytes = parse_size(args.max_inflight_bytes, "--max-inflight-bytes size")
    check_inflight_limits(args.max_inflight, max_inflight_bytes)
    disk = None
    if args.disk:
        from .disks import open_disk
        disk = open_disk(args.disk)
    machine = Machine(image, memory_size=memory_size, disk=disk, console_sink=_sink(args),
                      console_input=_console_input(args.input),
                      disk_latency=args.disk_latency, disk_per_block=args.disk_per_block,
                      max_inflight=args.max_inflight, max_inflight_bytes=max_inflight_bytes,
                      engine=args.engine)
    return _execute(machine, args, _make_checkpointer(machine, args, lazy=True), None)


def cmd_resume(args) -> int:
    import time
    from .disks import PLAIN_MATCH
    from .resume import read_checkpoint, resolve_disk_chain, resume
    from .resumestats import ResumeStats
    from .store import FileStore
    if args.eager and args.lazy:
        raise MinivmError("--eager and --lazy are the two ways to resume: give one of them")
    started = time.perf_counter()
    ckpt = read_checkpoint(args.checkpoint)
    store = FileStore(args.checkpoint_dir)
    chain = None
    if ckpt.disk is not None:
        chain = resolve_disk_chain(ckpt, args.disk, args.allow_changed_disk,
                                   verify=args.verify_disk)
        for entry in chain:
            checked = (f"; checked by {show(entry['checked'])}"
                       if entry["status"] in ("unchanged", "CHANGED")
                       and entry["checked"] not in PLAIN_MATCH else "")
            _note(f"disk chain: {show(entry['kind'])} {show(entry['resolved'])} ({entry['status']}; "
                  f"opened read-only{checked})")
    machine, overlay = resume(ckpt, store, disk_override=args.disk, chain=chain,
                              console_sink=_sink(args),
                              console_input=_console_input(args.input),
                              group_blocks=args.cow_group, engine=args.engine,
                              eager=args.eager)
    stats = ResumeStats.of(machine, args.eager, time.perf_counter() - started, len(ckpt.pages))
    stats.announce = args.eager or args.lazy      # the summary line (docs/formats.md)
    note = None
    if overlay:
        note = (f"disk writes of this resumed run are in {os.path.relpath(overlay)}; the "
                "checkpointed disk is unchanged")
    _note(f"resuming {os.path.basename(args.checkpoint)} at tick {machine.tick}, pc {machine.pc}")
    return _execute(machine, args, _make_checkpointer(machine, args), note, stats)


def cmd_asm(args) -> int:
    from .assembler import assemble_file
    image = assemble_file(args.source)
    output = args.output or os.path.splitext(args.source)[0] + ".mvb"
    if os.path.abspath(output) == os.path.abspath(args.source):
        raise MinivmError(f"the output '{output}' would overwrite the source; give -o")
    try:
        image.save(output)
    except OSError as exc:
        raise MinivmError(f"cannot write '{output}': {exc.strerror}") from None
    _note(f"wrote {output}: {len(image.code)} instructions, {len(image.data)} data bytes")
    return 0


def cmd_disasm(args) -> int:
    from .disasm import listing
    from .program import load_program
    image = load_program(args.program)
    sys.stdout.write(listing(image, os.path.basename(args.program)))
    return 0


def cmd_inspect(args) -> int:
    from .resume import read_checkpoint
    from .report import describe_checkpoint, inspect_json, page_lines
    ckpt = read_checkpoint(args.checkpoint, follow=False)     # inspect tells of its parent
    if args.json:
        # The summary object is built whole before anything is written, so a
        # bad file prints its error alone, never part of a JSON object.
        for piece in inspect_json(ckpt, verify_disk=args.verify_disk, pages=args.pages):
            sys.stdout.write(piece)
        return 0
    sys.stdout.write(describe_checkpoint(ckpt, verify_disk=args.verify_disk))
    if args.pages:
        for line in page_lines(ckpt):
            sys.stdout.write(line + "\n")
    return 0


def cmd_disk(args) -> int:
    from .disks import BLOCK_SIZE, commit_overlay, create_raw_disk, describe_chain, open_disk
    from .memory import parse_size
    if args.disk_command == "create":
        size = parse_size(args.size, "disk size")
        create_raw_disk(args.file, size)
        _note(f"created {args.file}: {size} bytes, {size // BLOCK_SIZE} blocks")
        return 0
    if args.disk_command == "info":
        from .report import describe_disk
        sys.stdout.write(describe_disk(args.file))
        return 0
    if args.disk_command == "commit":
        from .disks import already_committed, close_chain
        chain = describe_chain(args.overlay)
        if chain[0]["kind"] != "overlay":
            raise MinivmError(f"'{show(args.overlay)}' is a raw disk image, not an overlay")
        # Only the named overlay is opened for writing (for its committed_as);
        # every file below it is read-only, and the parent is replaced, not written.
        overlay = open_disk(args.overlay, writable=True)
        try:
            if already_committed(overlay):
                _note(f"overlay '{show(args.overlay)}' has already been committed into "
                      f"'{show(chain[1]['path'])}'; nothing to do")
                return 0
            merged, parent = commit_overlay(overlay)
            parent.close()
        finally:
            close_chain(overlay)
        target = show(chain[1]["path"])
        further = ""
        if chain[1]["kind"] == "overlay" and merged:
            further = (f"; {target} is an overlay itself: 'minivm disk commit {target}' "
                       f"carries them on into {show(chain[2]['path'])}")
        _note(f"committed {merged} block group(s) from {show(args.overlay)} into {target}"
              + (f"; checkpoints that used {target} as their disk no longer match it"
                 if merged else " (nothing to merge; it is unchanged)") + further)
        return 0
    raise MinivmError("give a disk action: create, info or commit (see 'minivm disk --help')")


def cmd_export(args) -> int:
    from .resume import export_checkpoint, read_checkpoint
    written = export_checkpoint(read_checkpoint(args.checkpoint), args.folder,
                                chain=args.chain)
    for path in written:
        _note(f"wrote {show(path)}")                     # disk files are named by the checkpoint
    _note(f"take the folder anywhere and run: minivm resume "
          f"{show(os.path.join(args.folder, os.path.basename(written[0])))}")
    return 0


def cmd_demo(args) -> int:
    from .demos import list_demos, run_demo
    if args.name is None:
        sys.stdout.write(list_demos())
        return 0
    import shutil
    from .demos import colour_wanted
    width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else None
    return run_demo(args.name, pause=not args.no_pause and sys.stdin.isatty(),
                    checkpoint_dir=args.checkpoint_dir, engine=args.engine, width=width,
                    colour=colour_wanted(sys.stdout, args.no_color), pictures=args.pictures)


def cmd_repl(args) -> int:
    from .repl import main as repl_main
    return repl_main(args)


def cmd_bench(args) -> int:
    from .bench import main as bench_main
    return bench_main(quick=args.quick)


def _cmd_compare(args) -> int:
    from .labcli import cmd_compare
    return cmd_compare(args)


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "asm": cmd_asm, "disasm": cmd_disasm,
            "inspect": cmd_inspect, "disk": cmd_disk, "repl": cmd_repl, "bench": cmd_bench,
            "export": cmd_export, "demo": cmd_demo, "compare": _cmd_compare}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except MinivmError as exc:
        from .errors import GuestFault
        sys.stdout.flush()
        message = show(str(exc), keep="\n\t")       # see _note
        print(message if ": error:" in message or isinstance(exc, GuestFault)
              else f"minivm: error: {message}", file=sys.stderr)
        return EXIT_FAULT if isinstance(exc, GuestFault) else EXIT_USAGE
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    except OSError as exc:
        sys.stdout.flush()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"minivm: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nminivm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
