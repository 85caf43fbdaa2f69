"""``minivm compare``: the command line of the checkpoint-strategy lab (lab.py).

Kept apart from cli.py, and importing the lab only when the command runs,
so that other commands never load it.
"""

from __future__ import annotations

import json
import sys

EXIT_DIFFERENT = 1


def add_parser(sub, add_engine_option) -> None:
    p = sub.add_parser(
        "compare", help="one program under every checkpoint strategy, side by side",
        description="Run PROG once without a checkpoint and once per checkpoint mode "
                    "(stop-copy, cow, precopy) with a checkpoint asked for at the same tick; "
                    "resume each checkpoint eagerly and lazily; print what each cost (stop "
                    "window, pre-copy rounds, time until the checkpoint is complete, guest "
                    "speed meanwhile, bytes, resume time to the first instruction, pages "
                    "loaded) and whether every resumed run ended exactly as the uninterrupted "
                    "one (exit status 1 if not). Every run gets no console input (reading "
                    "port 0x02 gives -1 at once). With --sweep, run the built-in lab guest at "
                    "a range of dirty rates instead: where pre-copy stops converging.")
    p.add_argument("program", nargs="?", help="the program (.asm or .mvb); not with --sweep")
    p.add_argument("--at", type=int, metavar="TICK",
                   help="ask for the checkpoint at TICK (default: a quarter of the way "
                        "through the uninterrupted run)")
    p.add_argument("--mem", default=None, metavar="SIZE",
                   help="memory size (default 1M; 8M with --sweep)")
    p.add_argument("--disk", metavar="FILE",
                   help="raw disk image; every run starts from a copy of it (it is not written)")
    p.add_argument("--svg", metavar="FILE.svg", help="also draw the comparison (with --sweep: the sweep) as a picture")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--sweep", nargs="?", const="", default=None, metavar="RATES",
                   help="pages written per 1,000 ticks to sweep (1 to 90), e.g. 8,16,32 or "
                        "8-88:8 (default 8,16,32,48,64,90); the table's 'written' column is the rate "
                        "the guest really writes")
    p.add_argument("--precopy-rate", type=int, default=None, metavar="PAGES",
                   help="pages pre-copy copies per 1,000 ticks (default 64)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="refuse a program that has not ended after N ticks "
                        "(default 100,000,000)")
    add_engine_option(p)


def cmd_compare(args) -> int:
    from . import lab
    from .errors import MinivmError
    from .memory import parse_size
    options = {}
    if args.precopy_rate is not None:
        if not 1 <= args.precopy_rate <= 1 << 20:
            raise MinivmError(f"--precopy-rate {args.precopy_rate}: give 1 to 1,048,576 pages")
        options = {"pages_per_slice": args.precopy_rate, "slice_ticks": 1000}
    if args.sweep is not None:
        return _sweep(args, options)
    if args.program is None:
        raise MinivmError("compare needs a program (or --sweep, which runs the built-in guest)")
    if args.at is not None and args.at < 0:
        raise MinivmError(f"--at {args.at}: give a tick of 0 or more")
    if args.max_steps is not None and args.max_steps < 1:
        raise MinivmError(f"--max-steps {args.max_steps}: give 1 or more ticks")
    from .program import load_program
    image = load_program(args.program)
    if args.svg:
        _check_svg_target(args.svg)
    if args.disk is not None:                 # every mode copies it: say so first, as run does
        from .disks import check_regular_file
        check_regular_file(args.disk, "disk file")
    result = lab.compare(image, memory_size=parse_size(args.mem or "1M", "memory size"),
                         disk=args.disk, engine=args.engine, at=args.at, progress=_progress,
                         precopy_options=options or None,
                         max_ticks=args.max_steps or lab.MAX_TICKS)
    print(json.dumps(lab.comparison_dict(result)) if args.json
          else lab.format_comparison(result))
    if args.svg:
        from .container import write_text_atomically
        from .labsvg import comparison_svg
        write_text_atomically(args.svg, comparison_svg(result))
        _progress(f"picture written to {args.svg}")
    return 0 if result.identical else EXIT_DIFFERENT


def _sweep(args, options: dict) -> int:
    from . import lab
    from .errors import MinivmError
    from .memory import parse_size
    if args.program is not None or args.disk or args.at is not None:
        raise MinivmError("--sweep runs the built-in lab guest with its own disk and "
                          "checkpoint tick: give no program, --disk or --at with it")
    if args.svg:
        _check_svg_target(args.svg)
    rates = lab.parse_rates(args.sweep or lab.DEFAULT_SWEEP)
    memory = parse_size(args.mem or "8M", "memory size")
    if memory < 1 << 20:                  # else its working set shrinks to a few pages
        raise MinivmError(f"--mem {args.mem}: the sweep's guest needs 1M of memory or more "
                          f"(it rewrites a working set of up to {lab.SWEEP_WORKING_SET} pages)")
    rows = lab.sweep(rates, memory_size=memory, engine=args.engine, progress=_progress,
                     precopy_options=options or None)
    print(json.dumps(lab.sweep_dict(rows, memory)) if args.json
          else lab.format_sweep(rows, memory))
    if args.svg:
        from .container import write_text_atomically
        from .labsvg import sweep_svg
        write_text_atomically(args.svg, sweep_svg(rows, memory))
        _progress(f"picture written to {args.svg}")
    return 0


def _check_svg_target(path: str) -> None:
    """Before a long run: the picture's folder must exist and be writable."""
    from .container import check_output_target
    check_output_target(path, "--svg", "compare.svg")


def _progress(text: str) -> None:
    print(f"compare: {text}", file=sys.stderr, flush=True)
