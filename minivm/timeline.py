"""Pictures of the checkpoint protocol, as self-contained SVG.

:func:`timeline_svg` draws what a run's checkpoints did over virtual time:
the stop window of each checkpoint (P2; it takes host time, not ticks), the
disk requests in flight with their issue and completion (those in flight at
a checkpoint are the P5 cases), the saver's progress (P4), memory COW faults
and overlay writes (P3). :func:`page_map_svg` draws the memory page map the
REPL's ``pages`` command prints. Plain SVG text: no dependency, no script.
"""

from __future__ import annotations

from html import escape

WIDTH = 960
LEFT = 215               # room for the lane labels
RIGHT = 30
LANE = 70
MAX_REQUEST_ROWS = 24
COLORS = {"read": "#4c78a8", "write": "#f58518", "ckpt": "#d62728", "pages": "#54a24b",
          "cow": "#b279a2", "disk_cow": "#9d755d", "grid": "#dddddd", "text": "#222222"}


def _text(x, y, text, size=12, anchor="start", color=COLORS["text"], weight="normal"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-family="sans-serif" fill="{color}" font-weight="{weight}">'
            f"{escape(str(text))}</text>")


def _svg(width, height, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">\n<title>{escape(title)}</title>\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")


def _tick_marks(lo: int, hi: int, count: int = 8) -> list[int]:
    span = max(hi - lo, 1)
    raw = span / count
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def _requests(checkpointer) -> list[tuple]:
    """Completed and still-queued requests: (id, is_read, block, count, issued, done, queued)."""
    rows = [(*r, False) for r in checkpointer.completed_requests]
    for r in checkpointer.machine.disk.queue:
        rows.append((r.id, r.is_read, r.block, r.count, r.issued, r.done, True))
    return rows


def timeline_svg(checkpointer) -> str:
    jobs = checkpointer.jobs
    samples = checkpointer.samples
    if not jobs:
        raise ValueError("no checkpoint was taken, so there is no timeline to draw")
    first, last = jobs[0].tick, max(s.tick for s in samples)
    ends = [j.finished_tick for j in jobs if j.finished_tick is not None]
    inflight_ids = set().union(*(j.inflight_reads_at_stop | j.inflight_writes_at_stop for j in jobs))
    requests = _requests(checkpointer)
    window = max(last - first, 200)
    lo = max(0, first - window // 5)
    hi = max([last, *ends]) + window // 10
    shown = [r for r in requests if r[5] >= lo and r[4] <= hi]
    shown.sort(key=lambda r: (r[0] not in inflight_ids, r[0]))
    shown = sorted(shown[:MAX_REQUEST_ROWS], key=lambda r: r[0])
    lo = min([lo, *(r[4] for r in shown)])
    hi = max([hi, *(r[5] for r in shown)])
    plot_w = WIDTH - LEFT - RIGHT

    def x(tick):
        return LEFT + (tick - lo) * plot_w / max(hi - lo, 1)

    title = (f"minivm checkpoint timeline: {len(jobs)} checkpoint(s), ticks {lo}..{hi}")
    body = [_text(12, 24, title, 16, weight="bold"),
            _text(12, 44, "x axis: virtual time in ticks (one tick = one instruction). "
                          "The stop window takes host time only.", 11)]
    top = 60
    req_rows = max(len(shown), 1)
    lanes = [("guest + checkpoints (P2)", 50), (f"disk requests ({len(shown)} shown)", 14 * req_rows + 20),
             ("pages saved (P4)", LANE), ("memory COW faults (P3)", LANE),
             ("overlay writes / disk COW (P3)", LANE)]
    height = top + sum(h + 12 for _, h in lanes) + 60
    y = top
    frames = []
    for label, h in lanes:
        frames.append((y, h))
        body.append(f'<rect x="{LEFT}" y="{y}" width="{plot_w}" height="{h}" fill="#fafafa" '
                    f'stroke="{COLORS["grid"]}"/>')
        body.append(_text(LEFT - 8, y + 16, label, 12, "end"))
        y += h + 12
    for t in _tick_marks(lo, hi):
        body.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{y - 12}" '
                    f'stroke="{COLORS["grid"]}" stroke-dasharray="2,3"/>')
        body.append(_text(x(t), y + 4, t, 10, "middle"))

    # lane 1: the guest runs; each checkpoint is a stop of host time only.
    gy, gh = frames[0]
    body.append(f'<rect x="{LEFT}" y="{gy + 18}" width="{plot_w}" height="14" fill="#c7e9c0"/>')
    body.append(_text(LEFT + 4, gy + 29, "guest running", 10))
    for job in jobs:
        cx = x(job.tick)
        body.append(f'<line x1="{cx:.1f}" y1="{gy}" x2="{cx:.1f}" y2="{y - 12}" '
                    f'stroke="{COLORS["ckpt"]}" stroke-width="2"/>')
        body.append(_text(cx + 4, gy + 12, f"{job.name}: stop {job.pause_seconds * 1e3:.2f} ms "
                                             f"({job.mode})", 10, color=COLORS["ckpt"]))
        if job.finished_tick is not None:
            fx = x(job.finished_tick)
            body.append(f'<line x1="{cx:.1f}" y1="{gy + 44}" x2="{fx:.1f}" y2="{gy + 44}" '
                        f'stroke="{COLORS["pages"]}" stroke-width="3"/>')
            body.append(_text(fx + 3, gy + 47, "saved", 9, color=COLORS["pages"]))

    # lane 2: disk requests, issue -> completion.
    ry, _ = frames[1]
    for row, (rid, is_read, block, count, issued, done, queued) in enumerate(shown):
        yy = ry + 8 + row * 14
        color = COLORS["read" if is_read else "write"]
        stroke = ' stroke="black" stroke-width="1.5"' if rid in inflight_ids else ""
        width = max(x(done) - x(issued), 2)
        body.append(f'<rect x="{x(issued):.1f}" y="{yy}" width="{width:.1f}" height="10" '
                    f'fill="{color}" opacity="{0.5 if queued else 0.9}"{stroke}/>')
        kind = "read" if is_read else "write"
        note = " (in flight at a checkpoint: P5)" if rid in inflight_ids else ""
        body.append(_text(x(issued) + width + 4, yy + 9,
                          f"#{rid} {kind} blocks {block}..{block + count - 1}{note}", 9))

    labels_used = {}

    def line_chart(frame, points, color, label):
        fy, fh = frame
        if not points:
            return
        row = labels_used.get(fy, 0)
        labels_used[fy] = row + 1
        top_value = max(v for _, v in points)
        peak = max(top_value, 1)
        coords = []
        previous = None
        for t, v in points:                 # steps: a counter jumps, it does not slide
            yv = fy + fh - 6 - v * (fh - 30) / peak
            if previous is not None:
                coords.append(f"{x(t):.1f},{previous:.1f}")
            coords.append(f"{x(t):.1f},{yv:.1f}")
            previous = yv
        coords.append(f"{x(hi):.1f},{previous:.1f}")
        body.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" '
                    f'stroke-width="2"/>')
        body.append(_text(LEFT + plot_w - 4 - 230 * row, fy + 12,
                          f"{label}: {points[-1][1]} (max {top_value})", 10, "end", color))

    for job in jobs:
        line_chart(frames[2], [(s.tick, s.pages_done.get(job.name, 0)) for s in samples
                               if job.name in s.pages_done],
                   COLORS["pages"], f"{job.name} pages examined")
    line_chart(frames[3], [(s.tick, s.cow_faults) for s in samples], COLORS["cow"],
               "memory COW faults")
    line_chart(frames[4], [(s.tick, s.overlay_writes) for s in samples], COLORS["write"],
               "overlay writes")
    line_chart(frames[4], [(s.tick, s.disk_cow_faults) for s in samples],
               COLORS["disk_cow"], "disk COW faults")
    legend_y = y + 24
    for i, (name, color) in enumerate((("read", COLORS["read"]), ("write", COLORS["write"]),
                                       ("checkpoint", COLORS["ckpt"]), ("saved", COLORS["pages"]))):
        lx = LEFT + i * 120
        body.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="{color}"/>')
        body.append(_text(lx + 16, legend_y + 10, name, 11))
    body.append(_text(LEFT + 480, legend_y + 10, "outlined: in flight at a checkpoint (P5)", 11))
    return _svg(WIDTH, height + 10, body, title)


PAGE_COLORS = {".": "#f0f0f0", "p": "#9ecae1", "S": "#fd8d3c", "s": "#fdd0a2",
               "C": "#d62728", "c": "#f7b6b6", "f": "#c7e9c0"}
PAGE_NAMES = {".": "untouched", "p": "private", "S": "shared, not yet saved",
              "s": "shared, saved", "C": "copied, original not yet saved",
              "c": "copied, original saved", "f": "in the checkpoint file (lazy)"}


def page_map_svg(states: str, title: str, per_row: int = 64, cell: int = 12) -> str:
    """One square per page; ``states`` has one character per page (see PAGE_NAMES)."""
    rows = -(-len(states) // per_row)
    width = max(per_row * cell + 120, 560)
    height = 70 + rows * cell + 50 + 18 * ((len(PAGE_COLORS) - 1) // 3 - 1)
    body = [_text(12, 24, title, 15, weight="bold")]
    for i, ch in enumerate(states):
        r, c = divmod(i, per_row)
        body.append(f'<rect x="{100 + c * cell}" y="{40 + r * cell}" width="{cell - 1}" '
                    f'height="{cell - 1}" fill="{PAGE_COLORS.get(ch, "#000")}"/>')
        if c == 0:
            body.append(_text(94, 40 + r * cell + cell - 2, f"0x{i * 4096:x}", 9, "end"))
    ly = 50 + rows * cell + 10
    for i, ch in enumerate(PAGE_COLORS):
        lx = 12 + (i % 3) * 200
        yy = ly + (i // 3) * 18
        body.append(f'<rect x="{lx}" y="{yy}" width="12" height="12" fill="{PAGE_COLORS[ch]}"/>')
        body.append(_text(lx + 16, yy + 10, PAGE_NAMES[ch], 11))
    return _svg(width, height + 10, body, title)
