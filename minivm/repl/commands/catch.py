"""Commands for catchpoints, gdb's word for stopping at an event: here, a step
of the checkpoint protocol (minivm/probes.py): catch, catchpoints."""

from __future__ import annotations

import difflib

from ...memory import PAGE_SHIFT
from ...probes import EVENTS
from .. import catching, render
from ..parsing import CommandError, split_args
from ..registry import command

USAGE = "catch EVENT [PAGE|BLOCK]"


def _event_rows() -> str:
    width = max(len(name) + len(e.arg) + 1 for name, e in EVENTS.items())
    return "\n".join(f"  {(name + ' ' + e.arg).strip():<{width}}  {e.step:<5} {e.what}"
                     for name, e in EVENTS.items())


DETAILS = f"""
Stops the guest when a step of the checkpoint protocol happens (docs/protocol.md),
right after the instruction or at the instruction boundary where it happened, and
says which step it was, the claims of the patent it implements, the tick and the pc.
A step that happens at the prompt ('checkpoint', 'sync', 'commit') is reported there.
Catchpoints are numbered with breakpoints and watchpoints: 'catchpoints' ('info
catch') lists them with their hits, 'delete N' removes one. They stop forward runs
only: 'reverse-continue' does not look for them (a replay does not run the protocol
again). The events (PAGE is a page number, BLOCK a disk block; without one, any):
{_event_rows()}
Examples:  catch cow      catch cow 2      catch save      catch disk-cow 19      catch p8
"""


@command("catch", usage=USAGE, group="breakpoints", complete="catch", needs="machine",
         max_args=2, details=DETAILS,
         summary="stop at a protocol step (P2-P10); alone: the events")
def catch(s, args: str) -> None:
    parts = split_args(args)
    if not parts:
        s.say(f"usage: {USAGE}; the events:")
        s.say_lines(_event_rows().splitlines())
        return
    name = parts[0].lower()
    event = EVENTS.get(name)
    if event is None:
        close = [e for e in EVENTS if e.startswith(name)] \
            or difflib.get_close_matches(name, list(EVENTS), n=1)     # 'stop', then 'stp-window'
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise CommandError(f"no protocol event '{parts[0]}'{hint} (the events: "
                           f"{', '.join(EVENTS)}; 'help catch' says what each is)")
    arg = _argument(s, event, parts[1] if len(parts) > 1 else None)
    book = s.breakpoints
    old = book.catch_of(event.name, arg)
    if old is not None:
        s.say(f"catchpoint {old.number} already catches {render.catch_text(old)}")
        return
    cp = book.add_catch(event.name, arg, args)
    catching.sync(s)
    s.say(f"Catchpoint {cp.number}: {render.catch_text(cp)}, claims {event.claims}")


def _argument(s, event, text: str | None) -> int | None:
    """The page or block a catchpoint narrows to, checked; None: any."""
    if text is None:
        return None
    if not event.arg:
        raise CommandError(f"'catch {event.name}' takes no argument (only cow and save take "
                           "a PAGE, disk-cow a BLOCK)")
    value = s.evaluate(text, "value")
    m = s.machine
    if event.arg == "PAGE":
        pages = (m.memory.size - 1 >> PAGE_SHIFT) + 1
        if not 0 <= value < pages:
            raise CommandError(f"page {value} is outside memory (pages 0..{pages - 1}; "
                               f"page N holds addresses N*4096 .. N*4096+4095)")
        return value
    backing = m.disk.backing
    if backing is None:
        raise CommandError("no disk is attached, so there are no disk COW faults to catch "
                           "(start the REPL with --disk FILE)")
    if not 0 <= value < backing.block_count:
        raise CommandError(f"block {value} is outside the disk (blocks 0..{backing.block_count - 1})")
    return value


@command("catchpoints", aliases=("catches",), usage="catchpoints", group="breakpoints",
         max_args=0, summary="list catchpoints with their hits ('info catch')")
def catchpoints(s, args: str) -> None:
    """
    Lists every catchpoint with its number (for 'delete'), the event it catches,
    the page or block it is narrowed to, the protocol step and how many events it
    has caught. 'breakpoints' lists them too, with the breakpoints and watchpoints.
    Also: 'info catch'.
    Examples:  catchpoints      info catch
    """
    s.say_lines(render.catch_list(s.breakpoints))
