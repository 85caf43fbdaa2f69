"""Catchpoints in a session: arming the machine's protocol probes
(minivm/probes.py) from the breakpoint book, and reporting what they caught.
The commands are in commands/catch.py."""

from __future__ import annotations

from ..probes import EVENTS


def sync(s) -> None:
    """Arm the probes with every catchpoint of the book, on the session's
    machine; with none, detach them (the machine runs without any)."""
    probes, catches = s.probes, s.breakpoints.catches.values()
    probes.arm([(cp.event, cp.arg) for cp in catches])
    if catches and s.machine is not None:
        probes.attach(s.machine)
    else:
        probes.detach()


def describe_hit(hit, numbers: str) -> list[str]:
    """The catchpoints, the step and its claims, tick and pc; then what happened."""
    event = EVENTS[hit.event]
    return [f"Catchpoint {numbers} ({hit.event}): {event.step}, claims {event.claims}, "
            f"at tick {hit.tick}, pc {hit.pc}", f"  {hit.detail}"]


def report(s, stopped: bool) -> bool:
    """Say what the probes caught since the last report, one step a line
    (several can happen at one stop: a batch saves many pages, a 'ckpt' is
    P2 and P8); ``stopped``: the guest stopped for them. False if nothing was."""
    hits = s.probes.take_hits()
    if not hits:
        return False
    if s.machine is not None:
        s.machine.stop_requested = False
    by_event: dict[str, list] = {}
    for hit in hits:
        by_event.setdefault(hit.event, []).append(hit)
    first_numbers = ""
    for event, same in by_event.items():
        numbers: list[int] = []
        for hit in same:
            numbers += [cp.number for cp in s.breakpoints.hit_catches(hit)
                        if cp.number not in numbers]
        text = ", ".join(map(str, numbers)) or "?"
        first_numbers = first_numbers or text
        lines = describe_hit(same[0], text)
        if len(same) > 1:
            lines[-1] += f" (and {len(same) - 1} more{_args_text(same[1:])})"
        s.say_lines(lines)
    if stopped:
        s.last_stop = f"stopped at catchpoint {first_numbers}"
    elif not hits[0].running:
        s.say("  (caught while the guest was not running)")
    return True


def _args_text(hits) -> str:
    """': pages 1, 2, 4' or ': blocks 8..15, 16..23' (the first six), or nothing."""
    args = [h.arg for h in hits if h.arg is not None]
    if not args:
        return ""
    shown = [f"{a.start}..{a[-1]}" if isinstance(a, range) else str(a) for a in args[:6]]
    kind = "blocks" if isinstance(args[0], range) else "pages"
    return f": {kind} {', '.join(shown)}" + (", ..." if len(args) > 6 else "")
