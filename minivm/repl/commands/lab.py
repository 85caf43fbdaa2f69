"""The checkpoint-strategy lab in the REPL: ``compare`` (minivm/lab.py)."""

from __future__ import annotations

from ..parsing import CommandError, split_args
from ..registry import command


@command("compare", usage="compare [TICK]", group="checkpoints",
         needs="machine", max_args=1, too_many="usage: compare [TICK]",
         summary="the loaded program under every checkpoint strategy, side by side")
def compare(s, args: str) -> None:
    """
    Runs the loaded program from its start in fresh machines (the session's
    machine is not touched; each starts from a copy of the disk file as it is
    now): once without a checkpoint, then once per
    checkpoint mode - stop-copy (stop and save everything), cow (stop only
    to mark memory copy-on-write, save in the background), precopy (copy
    memory in rounds while the guest runs, stop for what is still dirty) -
    with a checkpoint asked for at tick TICK (default: the machine's current
    tick, or a quarter of the run if that is 0). Each checkpoint is resumed
    eagerly and lazily. Prints the costs of each (stop window, rounds, time
    until complete, bytes, resume time to the first instruction, pages loaded)
    and whether every resumed run ended identical to the uninterrupted one.
    The same as 'minivm compare PROG --at TICK' (docs/protocol.md).
    Examples:  compare      compare 6000
    """
    from ...lab import compare as run_compare, format_comparison
    words = split_args(args)
    at = s.machine.tick or None
    if words:
        try:
            at = int(words[0], 0)
        except ValueError:
            raise CommandError(f"'{words[0]}' is not a tick (give a whole number, e.g. 6000)") \
                from None
        if at < 0:
            raise CommandError("the tick must be 0 or more")
    # one line of progress, not ten: the table that follows must fit a screen
    s.say("  ... 10 runs: uninterrupted, then each mode, resumed eagerly and lazily")
    result = run_compare(s.image, memory_size=s.memory_size, disk=s.disk_path, engine=s.engine,
                         at=at)
    s.last_comparison = result          # for 'minivm demo --pictures' (minivm/pictures.py)
    for line in format_comparison(result).splitlines():
        s.say(line)
