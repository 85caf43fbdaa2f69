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


def _swatch(x: float, y: float, colour: str, label: str) -> list[str]:
    """A legend entry: a square of ``colour``, its label beside it."""
    return [f'<rect x="{x}" y="{y - 18}" width="22" height="22" fill="{colour}"/>',
            _text(x + 32, y, label, FONT)]


def _ms(value: float) -> str:
    return f"{value:,.3f} ms" if value < 10 else f"{value:,.1f} ms"


def _text(x: float, y: float, text: str, size: int, bold: bool = False,
          anchor: str = "") -> str:
    weight = ' font-weight="bold"' if bold else ""
    anchor = f' text-anchor="{anchor}"' if anchor else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{weight}{anchor}>'
            f'{escape(text)}</text>')


# --- the sweep (``minivm compare --sweep --svg``) ------------------------------------------

PLOT_LEFT = 130             # the value axis' labels
PLOT_W = WIDTH - PLOT_LEFT - 40
PLOT_H = 300
LIMIT_COLOUR = "#922b21"    # pre-copy's rounds hit their limit


def sweep_svg(rows, memory_size: int) -> str:
    """The sweep as two column charts over the guest's write rate: the pages
    pre-copy copies in its final stop (what it could not converge on), and
    both methods' stop windows; a column per rate, the rates left to right."""
    from .lab import SWEEP_WORKING_SET
    from .labguest import touched_pages
    from .memory import format_size
    out = []
    y = 50
    out.append(_text(24, y, "pre-copy against the COW method as the guest writes faster",
                     TITLE, bold=True))
    first = rows[0]
    working = min(SWEEP_WORKING_SET, touched_pages(memory_size))
    for line in (f"the lab guest: {format_size(memory_size)} of memory, a working set of "
                 f"{working} pages rewritten at each rate",
                 f"pre-copy copies {first.per_slice} pages per {first.slice_ticks:,} ticks "
                 f"and stops at {first.threshold} dirty pages or {first.max_rounds} rounds"):
        y += 32
        out.append(_text(24, y, line, FONT))
    n = len(rows)
    group = PLOT_W / n
    every = max(1, int(-(-56 // group)))          # rate labels at least 56 px apart

    def axis(top: float, unit) -> float:
        """The panel's axes, value labels, rates and caption; returns its base line."""
        base = y + PLOT_H
        out.append(f'<line x1="{PLOT_LEFT}" y1="{base}" x2="{PLOT_LEFT + PLOT_W}" y2="{base}" '
                   'stroke="#333" stroke-width="2"/>')
        for frac in (0.5, 1.0):
            ty = base - PLOT_H * frac
            out.append(f'<line x1="{PLOT_LEFT}" y1="{ty:.1f}" x2="{PLOT_LEFT + PLOT_W}" '
                       f'y2="{ty:.1f}" stroke="#ccc" stroke-width="1"/>')
            out.append(_text(24, ty + 7, unit(top * frac), FONT))
        for k, r in enumerate(rows):
            if k % every == 0:
                out.append(_text(PLOT_LEFT + group * (k + 0.5), base + 26, str(r.rate), FONT,
                                 anchor="middle"))
        out.append(_text(PLOT_LEFT, base + 58, "pages written per 1,000 ticks (the guest's rate)",
                         FONT))
        return base

    # panel 1: pages in pre-copy's final stop
    y += 56
    out.append(_text(24, y, "pages pre-copy copies in its final stop, guest stopped", FONT + 2,
                     bold=True))
    y += 20
    pages = [r.precopy.final_pages if r.precopy.rounds is not None else None for r in rows]
    top = max([p for p in pages if p is not None] + [first.threshold, 1])
    base = axis(top, lambda v: f"{v:,.0f}")
    limit_y = base - PLOT_H * first.threshold / top
    out.append(f'<line x1="{PLOT_LEFT}" y1="{limit_y:.1f}" x2="{PLOT_LEFT + PLOT_W}" '
               f'y2="{limit_y:.1f}" stroke="#333" stroke-width="2" stroke-dasharray="8,6"/>')
    for k, (r, p) in enumerate(zip(rows, pages)):
        x = PLOT_LEFT + group * k + group * 0.15
        if p is None:
            out.append(_text(x, base - 8, "-", FONT))
            continue
        h = max(2.0, PLOT_H * p / top)
        colour = COLOURS["precopy"] if r.converged else LIMIT_COLOUR
        out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{group * 0.7:.1f}" '
                   f'height="{h:.1f}" fill="{colour}"/>')
        if group >= 70:
            out.append(_text(x + group * 0.35, base - h - 8, f"{p:,}", FONT, anchor="middle"))
    y = base + 92
    out += _swatch(24, y, COLOURS["precopy"], "converged")
    out += _swatch(220, y, LIMIT_COLOUR, f"did not converge (its {first.max_rounds} rounds ran out)")
    out.append(f'<line x1="740" y1="{y - 7}" x2="790" y2="{y - 7}" stroke="#333" '
               'stroke-width="2" stroke-dasharray="8,6"/>')
    out.append(_text(800, y, f"threshold: {first.threshold} pages", FONT))

    # panel 2: the stop windows
    y += 56
    out.append(_text(24, y, "stop window (ms): pre-copy's final stop against cow's stop",
                     FONT + 2, bold=True))
    y += 20
    stops = [(r.precopy.stop_us / 1e3 if r.precopy.rounds is not None else None,
              r.cow.stop_us / 1e3 if r.cow.tick else None) for r in rows]
    top = max([v for pair in stops for v in pair if v is not None] + [0.001])
    base = axis(top, lambda v: f"{v:.2f}")
    for k, pair in enumerate(stops):
        for j, (mode, v) in enumerate(zip(("precopy", "cow"), pair)):
            if v is None:
                continue
            h = max(2.0, PLOT_H * v / top)
            x = PLOT_LEFT + group * k + group * (0.1 + 0.4 * j)
            out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{group * 0.38:.1f}" '
                       f'height="{h:.1f}" fill="{COLOURS[mode]}"/>')
    y = base + 92
    for x, mode in ((24, "precopy"), (220, "cow")):
        out += _swatch(x, y, COLOURS[mode], mode)
    out.append(_text(400, y, "host times: they vary from run to run", FONT))

    # the lesson, in words
    converged = [r.rate for r in rows if r.converged]
    failed = [r for r in rows if r.precopy.rounds is not None and not r.converged]
    y += 50
    if failed:
        worst = max(failed, key=lambda r: r.precopy.final_pages)
        line = (f"from rate {min(r.rate for r in failed)} on, pre-copy did not converge: "
                f"up to {worst.precopy.final_pages:,} pages copied while stopped")
    elif converged:
        line = "pre-copy converged at every rate swept: sweep faster rates to see it fail"
    else:
        line = "pre-copy took no checkpoint at the rates swept"
    out.append(_text(24, y, line, FONT, bold=True))
    y += 32
    out.append(_text(24, y, "cow stops only to mark memory copy-on-write, whatever the rate",
                     FONT, bold=True))
    height = y + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">\n'
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n'
            + "\n".join(out) + "\n</svg>\n")
