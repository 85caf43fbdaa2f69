"""The background save (P4) made visible: 'set save-rate', 'save-batch', and
'show', which lists the session's settings."""

from __future__ import annotations

import textwrap

from ...checkpoint import FIRST_SLICE_TICKS, SLICE_TICKS
from ...memory import format_size
from ..parsing import CommandError, parse_count, split_args
from ..registry import command

#: The settings 'set NAME VALUE' changes and 'show' lists.
SETTINGS = ("save-rate", "history-budget", "history-interval")
SAVE_RATE_USAGE = "set save-rate PAGES [TICKS] (or: set save-rate default)"
MAX_SAVE_RATE = 1 << 20


def describe_save_rate(s) -> str:
    pages, ticks = s.pages_per_slice, s.save_interval
    if pages is None:
        what = "sized by host time (adaptive)"
    else:
        what = f"{pages} page(s) per batch"
    if ticks > FIRST_SLICE_TICKS:
        when = (f"a batch every {ticks} guest ticks (the first {FIRST_SLICE_TICKS} ticks "
                "after a checkpoint, then twice as far apart each time)")
    else:
        when = f"a batch every {ticks} guest tick(s)"
    return f"{what}, {when}"


def set_save_setting(s, name: str, value: str) -> bool:
    """``set save-rate PAGES [TICKS]``; False if ``name`` is not this setting."""
    if name.lower() != "save-rate":
        return False
    from ..core import REPL_PAGES_PER_SLICE
    words = split_args(value)
    if words == ["default"]:
        pages, ticks = REPL_PAGES_PER_SLICE, SLICE_TICKS
    elif 1 <= len(words) <= 2:
        pages = parse_count(words[0], "the save rate (pages per batch)", SAVE_RATE_USAGE)
        ticks = (parse_count(words[1], "the ticks between batches", SAVE_RATE_USAGE)
                 if len(words) == 2 else s.save_interval)
        for what, number in (("pages per batch", pages), ("ticks between batches", ticks)):
            if number > MAX_SAVE_RATE:
                raise CommandError(f"{number} {what} is more than {MAX_SAVE_RATE}; "
                                   f"usage: {SAVE_RATE_USAGE}")
    else:
        raise CommandError(f"usage: {SAVE_RATE_USAGE}")
    s.pages_per_slice, s.save_interval = pages, ticks
    if s.checkpointer is not None:
        s.checkpointer.set_save_rate(pages, ticks)
    s.say_lines(textwrap.wrap(f"save rate: {describe_save_rate(s)}", 80, subsequent_indent="  "))
    return True


@command("save-batch", aliases=("sb",), usage="save-batch [PAGES]", group="checkpoints",
         needs="machine", max_args=1,
         summary="save one batch now (P4) and say which pages")
def save_batch(s, args: str) -> None:
    """
    A checkpoint is saved in the background, one batch of pages at a time between
    the guest's instructions (P4); 'set save-rate' says how big a batch is and how
    often one runs. 'save-batch' runs one batch now, of PAGES pages (default: the
    save rate), with the guest stopped where it is, and names the pages it saved:
    in 'pages' they turn from 'S' to 's' (or 'C' to 'c'). A checkpoint that waits
    for a disk read in flight at it (P5) saves nothing until the read lands.
    Examples:  save-batch      sb 1      save-batch 4
    """
    words = split_args(args)
    default = s.pages_per_slice or 16
    pages = parse_count(words[0], "the batch", "save-batch [PAGES]") if words else default
    saving = s.checkpointer.saving()
    if not saving:
        s.say("no checkpoint is saving: nothing to save ('checkpoint' takes one)")
        return
    for job, indexes in s.checkpointer.save_batch(pages):
        s.say(_batch_line(job, indexes))


def _batch_line(job, indexes: list[int]) -> str:
    if indexes:
        shown = ", ".join(str(i) for i in indexes[:16]) + (" ..." if len(indexes) > 16 else "")
        what = f"saved page(s) {shown}"
    elif job.status == "saving" and job.inflight_reads:
        what = (f"saved nothing: it waits for {len(job.inflight_reads)} disk read(s) "
                "in flight at the checkpoint (P5)")
    else:
        what = "saved no page"
    if job.status == "saving":
        left = max(job.pages_total - job.pages_done, 0)
        return f"{job.name}: {what}; {job.pages_done} of {job.pages_total} done, {left} to go"
    return f"{job.name}: {what}; {job.status}"


@command("show", usage="show [SETTING]", group="session", complete="settings", max_args=1,
         summary="the settings 'set' changes (save-rate, history-...)")
def show_(s, args: str) -> None:
    """
    Lists the session's settings and their values: save-rate (the background
    save, P4: pages per batch and guest ticks between batches), history-budget
    and history-interval (time travel). Change one with 'set SETTING VALUE'.
    Also: 'info settings'.
    Examples:  show      show save-rate      set save-rate 1 4
    """
    name = args.strip().lower()
    if name and name not in SETTINGS:
        raise CommandError(f"no setting named '{args.strip()}' ({', '.join(SETTINGS)})")
    budget = ("auto (the guest's touched memory + 64 MiB)" if s.history_budget is None
              else format_size(s.history_budget))
    values = {"save-rate": describe_save_rate(s), "history-budget": budget,
              "history-interval": str(s.history_interval or "auto")}
    for key in SETTINGS:
        if not name or key == name:
            s.say_lines(textwrap.wrap(f"{key:<17} {values[key]}", 80,
                                      subsequent_indent=" " * 18, break_on_hyphens=False))
