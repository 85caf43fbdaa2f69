"""Pictures of the checkpoint protocol, as self-contained SVG.

:func:`timeline_svg` draws what a run's checkpoints did over virtual time:
the protocol's steps as labelled events (P2 stop, P4 complete, P5 requests in
flight landing, P6, P7, P8, P9), the disk requests with their issue and
completion, the saver's progress (P4), memory COW faults and overlay writes
and disk COW faults (P3), and, in host time, each checkpoint's stop window
(P2), the one thing that takes no ticks. :func:`page_map_svg` draws the
memory page map the REPL's ``pages`` command prints, with its letters.

Both are drawn 1280 units wide, for a projector: at 1280 px every text is
16 px or more, and labels are laid out in rows so that none overlaps another
or runs off the picture. Only what the run recorded is drawn. Plain SVG
text: no dependency, no script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

WIDTH = 1280
PLOT_L = 40                    # the plot spans PLOT_L .. PLOT_R
PLOT_R = WIDTH - 40
FONT = 16                      # the smallest text, in px at 1280 px wide
TITLE_FONT = 24
ROW = 26                       # one row of labels
CHART = 64                     # height of a counter's lane
MAX_REQUEST_ROWS = 10
MAX_LABELS_PER_STEP = 3
MAX_INSET_ROWS = 4
INSET_MS = 1.0                 # the host-time inset spans at least this much
COLORS = {"read": "#0072B2", "write": "#E69F00", "ckpt": "#D55E00", "pages": "#009E73",
          "cow": "#CC79A7", "disk_cow": "#56B4E9", "overlay": "#E69F00", "grid": "#cccccc",
          "text": "#111111", "guest": "#b8e0c8", "stop": "#D55E00"}
STEP_COLORS = {"P2": "#D55E00", "P4": "#007A5E", "P5": "#0060A0", "P6": "#9B4F7F",
               "P7": "#9B4F7F", "P8": "#A0522D", "P9": "#2F6F9F", "P3": "#555555"}


def text_width(text: str, size: float, bold: bool = False) -> float:
    """A generous estimate of how wide sans-serif ``text`` is drawn (for layout)."""
    return len(text) * size * (0.66 if bold else 0.62)


def _text(x, y, text, size=FONT, anchor="start", color=COLORS["text"], weight="normal",
          cls=""):
    extra = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-family="DejaVu Sans, Verdana, sans-serif" fill="{color}" '
            f'font-weight="{weight}"{extra}>{escape(str(text))}</text>')


def _rect(x, y, w, h, fill, extra=""):
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{fill}"{extra}/>'


def _svg(width, height, body: list[str], title: str, defs: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}">\n<title>{escape(title)}</title>\n'
            + (f"<defs>{defs}</defs>\n" if defs else "")
            + f'<rect width="{width}" height="{height:.0f}" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")


def _tick_marks(lo: int, hi: int, count: int = 8) -> list[int]:
    span = max(hi - lo, 1)
    raw = span / count
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


@dataclass
class Event:
    """A protocol step to label: at ``tick``, ``step`` ("P5"...), its text."""
    tick: int
    step: str
    text: str


def _requests(checkpointer) -> list[tuple]:
    """Completed and still-queued requests: (id, is_read, block, count, issued, done, queued)."""
    rows = [(*r, False) for r in checkpointer.completed_requests]
    for r in checkpointer.machine.disk.queue:
        rows.append((r.id, r.is_read, r.block, r.count, r.issued, r.done, True))
    return rows


def protocol_events(checkpointer) -> list[Event]:
    """Every recorded protocol step worth a label, in tick order; at most
    MAX_LABELS_PER_STEP of a kind, the last of them counting the rest."""
    events = []
    done = {r[0]: r for r in checkpointer.completed_requests}
    for job in checkpointer.jobs:
        events.append(Event(job.tick, "P2", f"{job.name}: stop {job.pause_seconds * 1e3:.2f} ms "
                                            f"({job.mode})"))
        if job.p8_drained:
            events.append(Event(job.tick, "P8", f"P8: {job.p8_drained} pending request(s) "
                                                "completed first"))
        for rid in sorted(job.inflight_reads_at_stop | job.inflight_writes_at_stop):
            if rid in done and job.mode != "stop-copy":
                what = (f"read #{rid} lands in {job.name} too" if done[rid][1]
                        else f"write #{rid} reaches {job.name}'s disk")
                events.append(Event(done[rid][5], "P5", f"P5: {what}"))
        if job.finished_tick is not None and job.status != "failed":
            events.append(Event(job.finished_tick, "P4", f"P4: {job.name} saved"))
    for e in checkpointer.events:
        if e.step == "P6":
            m = re.match(r"read #(\d+): (\d+)", e.detail)
            text = (f"P6: read #{m.group(1)} copies {m.group(2)} page(s) first" if m
                    else f"P6: {e.detail}")
            events.append(Event(e.tick, "P6", text))
        elif e.step in ("P7", "P9"):
            events.append(Event(e.tick, e.step, f"{e.step}: {e.detail}"))
    events.sort(key=lambda e: e.tick)
    kept, seen = [], {}
    for e in events:
        seen[e.step] = seen.get(e.step, 0) + 1
        if seen[e.step] <= MAX_LABELS_PER_STEP:
            kept.append(e)
    for step, n in seen.items():
        if n > MAX_LABELS_PER_STEP:
            last = [e for e in kept if e.step == step][-1]
            last.text += f" (+{n - MAX_LABELS_PER_STEP} more)"
    return kept


def layout_labels(items: list[tuple[float, float]], left: float, right: float,
                  gap: float = 12) -> list[tuple[float, int]]:
    """For labels wanted at x (with their widths), in that order: (x, row) for each,
    so that labels in a row do not overlap and none leaves [left, right]. A
    label starts at its x, or ends there if it would run off the right. Each
    label's leader line runs from its row down, at its x: a row is chosen, if
    one can be, where no leader crosses the label and its leader crosses no
    label below."""
    boxes: list[tuple[float, float, int, float]] = []        # (x0, x1, row, leader x)
    placed = []
    for want, width in items:
        x = want if want + width <= right else want - width
        x = min(max(x, left), max(right - width, left))
        x0, x1 = x - gap / 2, x + width + gap / 2

        def free(row, strict):
            for b0, b1, r, lead in boxes:
                if r == row and b0 < x1 and x0 < b1:
                    return False
                if strict and r > row and b0 <= want <= b1:
                    return False
                if strict and r < row and x0 <= lead <= x1:
                    return False
            return True

        rows = 1 + max((b[2] for b in boxes), default=-1)
        row = next((r for r in range(rows + 1) if free(r, True)), None)
        if row is None:
            row = next(r for r in range(rows + 1) if free(r, False))
        boxes.append((x0, x1, row, want))
        placed.append((x, row))
    return placed


class _Timeline:
    """One timeline picture being drawn (``timeline_svg`` below)."""

    def __init__(self, checkpointer):
        self.cp = checkpointer
        self.jobs = checkpointer.jobs
        self.body: list[str] = []
        self.run_end = max(checkpointer.machine.tick, max(s.tick for s in checkpointer.samples))
        self._axis(_requests(checkpointer))

    def _axis(self, requests) -> None:
        jobs, samples = self.jobs, self.cp.samples
        first, last = jobs[0].tick, max(s.tick for s in samples)
        ends = [j.finished_tick for j in jobs if j.finished_tick is not None]
        inflight = set().union(*(j.inflight_reads_at_stop | j.inflight_writes_at_stop
                                 for j in jobs))
        window = max(last - first, 200)
        lo = max(0, first - window // 5)
        hi = max([last, *ends]) + window // 10
        shown = [r for r in requests if r[5] >= lo and r[4] <= hi]
        shown.sort(key=lambda r: (r[0] not in inflight, r[0]))
        self.requests_total = len(shown)
        self.shown = sorted(shown[:MAX_REQUEST_ROWS], key=lambda r: r[0])
        lo = min([lo, *(r[4] for r in self.shown)])
        hi = max([hi, *(r[5] for r in self.shown)])
        if lo * 20 <= hi - lo:        # only a few ticks after 0: draw from 0, not "cropped"
            lo = 0
        self.end = max(self.run_end, *(r[5] for r in requests)) if requests else self.run_end
        self.lo, self.hi = lo, min(hi, max(self.end, lo + 1))
        self.inflight = inflight
        self.drained_at = {j.tick for j in jobs if j.p8_drained}

    def x(self, tick) -> float:
        return PLOT_L + (tick - self.lo) * (PLOT_R - PLOT_L) / max(self.hi - self.lo, 1)

    def cropped_note(self) -> str:
        notes = []
        if self.lo > 0 or self.hi < self.end:
            notes.append(f"axis cropped: ticks {self.lo}-{self.hi} of 0-{self.end}")
        if len(self.shown) < self.requests_total:
            notes.append(f"{len(self.shown)} of {self.requests_total} disk requests drawn")
        return "; ".join(notes)

    def lane_title(self, y, text) -> float:
        self.body.append(_rect(PLOT_L - 2, y + 2, text_width(text, 17, True) + 4, 22, "white"))
        self.body.append(_text(PLOT_L, y + 18, text, 17, weight="bold", cls="lane"))
        return y + 26

    def frame(self, y, h) -> None:
        """A lane's background, with the tick and checkpoint lines across it
        (under what the lane draws next)."""
        self.body.append(_rect(PLOT_L, y, PLOT_R - PLOT_L, h, "#f7f7f7",
                               f' stroke="{COLORS["grid"]}"'))
        self.marks(y, y + h)

    def marks(self, y0, y1) -> None:
        lines = [(self.x(t), COLORS["grid"], ' stroke-dasharray="2,3"')
                 for t in _tick_marks(self.lo, self.hi)]
        lines += [(self.x(j.tick), COLORS["ckpt"], ' stroke-width="2.5"')
                  for j in self.jobs if self.lo <= j.tick <= self.hi]
        for xt, color, style in lines:
            self.body.append(f'<line x1="{xt:.1f}" y1="{y0}" x2="{xt:.1f}" y2="{y1}" '
                             f'stroke="{color}"{style}/>')

    # --- the lanes -----------------------------------------------------------------------
    def events_lane(self, y) -> float:
        events = [e for e in protocol_events(self.cp) if self.lo <= e.tick <= self.hi]
        y = self.lane_title(y, "protocol steps (P2 stop, P4 saved, P5-P9)")
        wants = [(self.x(e.tick), text_width(e.text, FONT)) for e in events]
        placed = layout_labels(wants, PLOT_L, PLOT_R)
        rows = 1 + max((row for _, row in placed), default=0)
        bottom = y + rows * ROW + 8
        for e, (lx, row), (want, width) in zip(events, placed, wants):
            self.body.append(f'<line x1="{want:.1f}" y1="{y + row * ROW + ROW - 4:.1f}" '
                             f'x2="{want:.1f}" y2="{bottom:.1f}" stroke="'
                             f'{STEP_COLORS.get(e.step, COLORS["text"])}" stroke-width="1.5" '
                             'stroke-dasharray="3,2"/>')
        for e, (lx, row), (want, width) in zip(events, placed, wants):
            ty = y + row * ROW
            color = STEP_COLORS.get(e.step, COLORS["text"])
            self.body.append(_rect(lx - 2, ty, width + 4, ROW - 4, "white",
                                   f' stroke="{color}" class="label-box" data-step="{e.step}"'))
            self.body.append(_text(lx, ty + 17, e.text, FONT, color=color, cls="label"))
        return bottom

    def guest_lane(self, y) -> float:
        y = self.lane_title(y, "the guest, in virtual time (ticks): a checkpoint costs it none")
        self.body.append(_rect(PLOT_L, y, PLOT_R - PLOT_L, 24, COLORS["guest"]))
        self.marks(y, y + 36)
        self.body.append(_text(PLOT_L + 6, y + 18, "guest running", FONT))
        for job in self.jobs:
            if job.finished_tick is not None:
                x0, x1 = self.x(job.tick), self.x(min(job.finished_tick, self.hi))
                self.body.append(_rect(x0, y + 28, x1 - x0, 6, COLORS["pages"]))
        return y + 40

    def requests_lane(self, y) -> float:
        y = self.lane_title(y, f"disk requests, issue to completion ({len(self.shown)} drawn; "
                               "outlined: in flight at a checkpoint, P5)")
        rows = max(len(self.shown), 1)
        self.frame(y, rows * ROW + 8)
        for row, (rid, is_read, block, count, issued, done, queued) in enumerate(self.shown):
            yy = y + 6 + row * ROW
            x0 = self.x(max(issued, self.lo))
            x1 = max(self.x(min(done, self.hi)), x0 + 3)
            stroke = ' stroke="black" stroke-width="2.5"' if rid in self.inflight else ""
            self.body.append(_rect(x0, yy, x1 - x0, ROW - 8,
                                   COLORS["read" if is_read else "write"],
                                   f' opacity="{0.5 if queued else 1}"{stroke}'))
            label = (f"#{rid} {'read' if is_read else 'write'} blocks {block}-{block + count - 1}"
                     + (" (P5)" if rid in self.inflight else "")
                     + (" (P8: completed at the checkpoint)" if done in self.drained_at
                        and issued < done else "")
                     + (" (still in flight)" if queued else ""))
            w = text_width(label, FONT)
            lx = x1 + 6 if x1 + 6 + w <= PLOT_R else (x0 - 6 - w if x0 - 6 - w >= PLOT_L
                                                      else PLOT_R - w)
            self.body.append(_rect(lx - 2, yy - 1, w + 4, ROW - 6, "#f7f7f7"))
            self.body.append(_text(lx, yy + 15, label, FONT))
        return y + rows * ROW + 8

    def chart(self, y, title, points, color) -> float:
        """A counter over ticks, drawn as steps (it jumps, it does not slide)."""
        final = points[-1][1] if points else 0
        peak = max((v for _, v in points), default=0)
        y = self.lane_title(y, f"{title}: {final} at the end" + (f" (max {peak})"
                                                                   if peak != final else ""))
        self.frame(y, CHART)
        points = [(t, v) for t, v in points if t <= self.hi]
        if points:
            coords, previous = [], None
            for t, v in points:
                yv = y + CHART - 6 - v * (CHART - 14) / max(peak, 1)
                xt = self.x(max(t, self.lo))
                if previous is not None:
                    coords.append(f"{xt:.1f},{previous:.1f}")
                coords.append(f"{xt:.1f},{yv:.1f}")
                previous = yv
            coords.append(f"{self.x(self.hi):.1f},{previous:.1f}")
            self.body.append(f'<polyline points="{" ".join(coords)}" fill="none" '
                             f'stroke="{color}" stroke-width="3"/>')
        return y + CHART + 4

    def axis(self, y) -> float:
        """The tick numbers under the lanes."""
        for t in _tick_marks(self.lo, self.hi):
            self.body.append(_text(self.x(t), y + 20, t, FONT, "middle", cls="tick"))
        self.body.append(_text(PLOT_R, y + 44, "virtual time, ticks (one tick = one instruction)",
                               FONT, "end"))
        return y + 56

    def host_inset(self, y) -> float:
        """Each checkpoint's stop window (P2) in host time, all on one scale: the
        guest's lane has a gap where it was stopped."""
        jobs = self.jobs[:MAX_INSET_ROWS]
        longest = max(j.pause_seconds for j in self.jobs) * 1e3
        span = max(INSET_MS, longest * 1.25)
        more = f" (first {len(jobs)} of {len(self.jobs)})" if len(jobs) < len(self.jobs) else ""
        y = self.lane_title(y, f"the guest in host time: the gap is the stop window (P2), "
                               f"{span:g} ms across{more}")
        names = [f"{j.name} ({j.mode})" for j in jobs]
        bar_l = PLOT_L + max(text_width(n, FONT) for n in names) + 16
        bar_w = PLOT_R - bar_l
        for k, (job, name) in enumerate(zip(jobs, names)):
            yy = y + k * (ROW + 6)
            ms = job.pause_seconds * 1e3
            gap_x = bar_l + bar_w * 0.1
            gap_w = max(bar_w * ms / span, 2)
            self.body.append(_text(PLOT_L, yy + 18, name, FONT))
            self.body.append(_rect(bar_l, yy, gap_x - bar_l, ROW - 4, COLORS["guest"]))
            self.body.append(_rect(gap_x, yy, gap_w, ROW - 4, "white",
                                   f' stroke="{COLORS["stop"]}" stroke-width="2" '
                                   f'class="stop-gap" data-ms="{ms:.3f}"'))
            rest = gap_x + gap_w
            self.body.append(_rect(rest, yy, bar_l + bar_w - rest, ROW - 4, COLORS["guest"]))
            label = f"stopped {ms:.2f} ms"
            lx = rest + 8
            self.body.append(_rect(lx - 3, yy + 1, text_width(label, FONT) + 6, ROW - 6, "white"))
            self.body.append(_text(lx, yy + 17, label, FONT, color=COLORS["stop"]))
        return y + len(jobs) * (ROW + 6) + 4

    def legend(self, y) -> float:
        x = PLOT_L
        for name, color in (("read", COLORS["read"]), ("write", COLORS["write"]),
                            ("checkpoint (P2)", COLORS["ckpt"]),
                            ("saving, until complete (P4)", COLORS["pages"])):
            self.body.append(_rect(x, y + 2, 16, 16, color))
            self.body.append(_text(x + 22, y + 16, name, FONT))
            x += 22 + text_width(name, FONT) + 24
        return y + 28

    def draw(self) -> str:
        cp = self.cp
        title = f"minivm checkpoint timeline: {len(self.jobs)} checkpoint(s)"
        self.body.append(_text(PLOT_L, 34, title, TITLE_FONT, weight="bold"))
        note = self.cropped_note()
        self.body.append(_text(PLOT_L, 60, note or f"ticks {self.lo}-{self.hi} (the whole run)",
                               FONT, cls="crop" if note else ""))
        y = self.events_lane(74)
        y = self.guest_lane(y)
        y = self.requests_lane(y)
        samples = cp.samples
        for job in self.jobs:
            y = self.chart(y, f"{job.name}: pages examined by the saver (P4)",
                           [(s.tick, s.pages_done[job.name]) for s in samples
                            if job.name in s.pages_done], COLORS["pages"])
            if job is self.jobs[0] and len(self.jobs) > 2:
                break               # one saver is enough to show; the others are like it
        y = self.chart(y, "memory COW faults (P3, P6, P7)",
                       [(s.tick, s.cow_faults) for s in samples], COLORS["cow"])
        y = self.chart(y, "writes that reached an overlay (P3)",
                       [(s.tick, s.overlay_writes) for s in samples], COLORS["overlay"])
        y = self.chart(y, "disk COW faults: block groups copied into an overlay (P3, P9)",
                       [(s.tick, s.disk_cow_faults) for s in samples], COLORS["disk_cow"])
        y = self.axis(y)
        y = self.host_inset(y + 4)
        y = self.legend(y + 8)
        return _svg(WIDTH, y + 10, self.body, title)


def timeline_svg(checkpointer) -> str:
    if not checkpointer.jobs:
        raise ValueError("no checkpoint was taken, so there is no timeline to draw")
    return _Timeline(checkpointer).draw()


# --- the page map -------------------------------------------------------------------------

#: Okabe-Ito colours (safe for colour-blind viewers); a saved state is the light,
#: hatched form of its unsaved one, and every cell also carries its letter.
PAGE_STYLE = {".": ("#f2f2f2", None, "#888888"), "p": ("#56B4E9", None, "#000000"),
              "S": ("#E69F00", None, "#000000"), "s": ("#FBE3B0", "#E69F00", "#000000"),
              "C": ("#D55E00", None, "#ffffff"), "c": ("#F6CDB3", "#D55E00", "#000000"),
              "f": ("#009E73", None, "#ffffff")}
PAGE_NAMES = {".": "untouched", "p": "private (the machine's own)",
              "S": "shared with the checkpoint, not yet saved", "s": "shared, saved",
              "C": "copied, the original not yet saved", "c": "copied, the original saved",
              "f": "in the checkpoint file (lazy resume)"}
MAP_LEFT = 150                 # room for the addresses


def _hatch_defs() -> str:
    out = []
    for ch, (fill, hatch, _) in PAGE_STYLE.items():
        if hatch:
            out.append(f'<pattern id="hatch-{ch}" width="8" height="8" patternUnits="userSpaceOnUse" '
                       f'patternTransform="rotate(45)"><rect width="8" height="8" fill="{fill}"/>'
                       f'<rect width="3" height="8" fill="{hatch}" opacity="0.55"/></pattern>')
    return "".join(out)


def _cell_fill(ch: str) -> str:
    fill, hatch, _ = PAGE_STYLE.get(ch, ("#000000", None, "#ffffff"))
    return f"url(#hatch-{ch})" if hatch else fill


def map_rows(states: str, per_row: int) -> list[tuple[int, int] | tuple[int, int, str]]:
    """(start, stop) of each row to draw, with runs of untouched rows folded into
    one (start, stop, "fold") entry."""
    rows, fold = [], None
    for start in range(0, len(states), per_row):
        stop = min(start + per_row, len(states))
        if set(states[start:stop]) <= {"."} and start:
            fold = (fold[0], stop) if fold else (start, stop)
            continue
        if fold:
            rows.append((*fold, "fold"))
            fold = None
        rows.append((start, stop))
    if fold:
        rows.append((*fold, "fold"))
    return rows


def page_map_svg(states: str, title: str) -> str:
    """One square per page with its letter; ``states`` has one character per
    page (see PAGE_NAMES). Cells are as big as the width allows, up to 64 units."""
    n = max(len(states), 1)
    per_row = min(n, 16 if n <= 16 else 32)
    if len(map_rows(states, 32)) > 16:
        per_row = 64
    cell = min(64.0, (WIDTH - MAP_LEFT - 30) / per_row)
    font = max(round(cell * 0.55), 10)
    body = [_text(PLOT_L, 34, title, 22, weight="bold")]
    counts = [f"{states.count(ch)} {ch}" for ch in PAGE_STYLE if ch != "." and ch in states]
    body.append(_text(PLOT_L, 62, f"{len(states) - states.count('.')} of {len(states)} pages "
                                  "touched" + (": " + ", ".join(counts) if counts else ""), FONT))
    y = 78
    for entry in map_rows(states, per_row):
        if len(entry) == 3:
            first, stop, _ = entry
            body.append(_text(MAP_LEFT, y + 20, f"... pages {first}-{stop - 1} untouched "
                                                f"(0x{first * 4096:x}..0x{stop * 4096 - 1:x})",
                              FONT, cls="fold"))
            y += 30
            continue
        start, stop = entry
        body.append(_text(MAP_LEFT - 10, y + cell / 2 + 6, f"0x{start * 4096:x}", FONT, "end"))
        for i in range(start, stop):
            cx = MAP_LEFT + (i - start) * cell
            ch = states[i]
            ink = PAGE_STYLE.get(ch, (None, None, "#ffffff"))[2]
            body.append(_rect(cx, y, cell - 2, cell - 2, _cell_fill(ch), ' stroke="#555555" '
                              'stroke-width="0.5"'))
            body.append(_text(cx + (cell - 2) / 2, y + (cell - 2) / 2 + font * 0.36, ch, font,
                              "middle", ink, "bold", cls="cell"))
        y += cell
    y += 20
    body.append(_text(PLOT_L, y + 16, "legend (one square per 4 KiB page, its letter as in "
                                      "the REPL's 'pages'):", FONT, weight="bold"))
    y += 28
    keys = list(PAGE_STYLE)
    half = (len(keys) + 1) // 2
    for k, ch in enumerate(keys):
        lx = PLOT_L + (k // half) * 600
        ly = y + (k % half) * 34
        body.append(_rect(lx, ly, 28, 28, _cell_fill(ch), ' stroke="#555555"'))
        body.append(_text(lx + 14, ly + 21, ch, 18, "middle", PAGE_STYLE[ch][2], "bold",
                          cls="cell"))
        body.append(_text(lx + 40, ly + 21, PAGE_NAMES[ch], FONT))
    y += half * 34
    return _svg(WIDTH, y + 10, body, title, _hatch_defs())
