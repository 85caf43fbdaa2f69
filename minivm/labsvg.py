"""``minivm compare --svg``: the comparison as a picture for a projector.

1280 pixels wide, every text at least 20 px: one panel per cost (the stop
window, the time until the checkpoint is complete, the time to the first
instruction of the eager and the lazy resumes), a bar per mode, each panel
on its own scale (the picture says so) with the value written beside each bar,
pre-copy's rounds, and a last line saying whether every resumed run ended
identical to the uninterrupted one.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

WIDTH = 1280
LEFT = 190                  # mode names
BAR_MAX = 760               # the longest bar of a panel
BAR_H = 34
GAP = 10
FONT = 20
TITLE = 26
COLOURS = {"stop-copy": "#c0392b", "cow": "#2471a3", "precopy": "#d68910"}


def _panels(c) -> list[tuple[str, list[tuple[str, float]]]]:
    def value(m, what):
        if not m.resumed:
            return None
        return {"stop": m.stop_us / 1e3, "complete": m.complete_s * 1e3,
                "eager": m.resumed["eager"].stats.first_instruction_s * 1e3,
                "lazy": m.resumed["lazy"].stats.first_instruction_s * 1e3}[what]
    panels = [(title, [(m.mode + (", eager" if what == "eager" else ""), value(m, what))
                       for m in c.modes]) for title, what in (
        ("stop window: the guest does not run (ms)", "stop"),
        ("until the checkpoint is complete (ms)", "complete"),
        ("resume: time to the first instruction, eager and lazy (ms)", "eager"))] + [
        ("", [(f"{m.mode}, lazy", value(m, "lazy")) for m in c.modes])]
    return panels


def comparison_svg(c) -> str:
    from .memory import format_size
    out = []
    y = 50
    out.append(_text(24, y, f"{os.path.basename(c.program)}: one run, three checkpoint "
                            "strategies", TITLE, bold=True))
    y += 36
    out.append(_text(24, y, f"checkpoint asked for at tick {c.at:,}; memory "
                            f"{format_size(c.memory_size)}; engine {c.engine}", FONT))
    if c.ended:
        y += 30
        out.append(_text(24, y, f"the program did not halt: it ended with a "
                                f"{c.ended.split(' (')[0]}", FONT))
    y += 30
    out.append(_text(24, y, "each panel has its own scale: compare bars within a panel, "
                            "and the values across panels", FONT))
    for m in c.modes:
        if m.rounds is not None:
            y += 30
            out.append(_text(24, y, f"{m.mode}: {m.rounds} round(s), {m.final_pages:,} page(s) "
                                    f"copied in the final stop, at tick {m.tick:,}", FONT))
    y += 30
    panels = _panels(c)
    for k, (title, bars) in enumerate(panels):
        if title:
            y += 24
            out.append(_text(24, y, title, FONT + 2, bold=True))
            y += 14
        # a panel without a title shares the scale of the one before it
        scale = bars + (panels[k + 1][1] if k + 1 < len(panels) and not panels[k + 1][0]
                        else []) + (panels[k - 1][1] if not title else [])
        top = max((v for _, v in scale if v is not None), default=0) or 1.0
        for label, v in bars:
            mode = label.split(",")[0]
            out.append(_text(24, y + BAR_H - 9, label, FONT))
            if v is None:
                out.append(_text(LEFT + 60, y + BAR_H - 9, "not taken", FONT))
            else:
                width = max(2.0, BAR_MAX * v / top)
                out.append(f'<rect x="{LEFT + 60}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
                           f'fill="{COLOURS.get(mode, "#555")}"/>')
                out.append(_text(LEFT + 60 + width + 10, y + BAR_H - 9, _ms(v), FONT))
            y += BAR_H + GAP
    y += 30
    missing = [m.mode for m in c.modes if not m.resumed]
    if missing:                      # as the table says it: nothing to compare there
        verdict = (f"no checkpoint was taken in {', '.join(missing)} mode: nothing resumed "
                   "to compare there")
    else:
        verdict = ("every resumed run (eager and lazy, every mode) ended identical to the "
                   "uninterrupted run" if c.identical else
                   "NOT every resumed run ended identical to the uninterrupted run")
    out.append(_text(24, y, verdict, FONT, bold=True))
    height = y + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">\n'
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n'
            + "\n".join(out) + "\n</svg>\n")


def _ms(value: float) -> str:
    return f"{value:,.3f} ms" if value < 10 else f"{value:,.1f} ms"


def _text(x: float, y: float, text: str, size: int, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{weight}>'
            f'{escape(text)}</text>')
