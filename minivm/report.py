"""Readable summaries of checkpoints and disk files (``inspect``, ``disk info``).

Every string that comes from a file - names, paths, the program's source
lines, the metadata a checkpoint records - is printed through errors.show,
so a hostile file cannot put terminal escapes or line breaks on the screen.
"""

from __future__ import annotations

import os

from . import isa
from .devices import Request
from .disks import (BLOCK_SIZE, check_identity, close_chain, describe_chain, describe_record,
                    locate, open_disk)
from .errors import MinivmError, show
from .machine import MACHINE_STATE
from .memory import PAGE_SIZE, format_size
from .resume import resolve_disk_chain
from .state import ListOf


def _regs_table(regs: list[int]) -> list[str]:
    lines = []
    for row in range(0, isa.NUM_REGS, 4):
        cells = [f"{isa.reg_name(i):>3} {regs[i]:#010x}" for i in range(row, row + 4)]
        lines.append("    " + "   ".join(cells))
    return lines


#: The status of each file of a checkpoint's disk chain, in ``inspect``'s
#: text and in ``inspect --json`` (docs/formats.md, "inspect --json").
DISK_STATUSES = ("unchanged", "CHANGED", "committed-into", "MISSING", "unreadable")


def check_disk_chain(ckpt, verify: bool = False) -> tuple[list[dict], str | None]:
    """Each file of the checkpoint's disk chain, top first, checked once:
    ``path`` and ``kind`` as recorded, ``resolved`` (where it was found, or
    None), ``status`` (one of DISK_STATUSES), ``detail`` (how it was told, or
    why it differs: raw text, to be shown escaped) and the recorded
    ``fingerprint``; and, second, why resume could not use the chain as it is
    found (None when it can, a CHANGED file aside).

    The chain is resolved as resume sees it (resume.resolve_disk_chain, which
    checks each file once); only when that fails (a missing file, a chain that
    leads elsewhere) is each entry looked for on its own, by its recorded
    place. ``verify``: the whole-file SHA-256 too, where one was recorded."""
    try:                      # as resume sees it (a parent committed into reads the same)
        found, problem = resolve_disk_chain(ckpt, allow_changed=True, verify=verify), None
    except (OSError, MinivmError) as exc:
        found, problem = None, str(exc)
    rows, seen = [], {}
    for i, entry in enumerate(ckpt.disk["chain"]):
        row = {"path": entry["path"], "kind": entry["kind"], "fingerprint": entry["fingerprint"]}
        if found is None:
            row.update(_check_alone(entry, ckpt, seen, verify))
        elif found[i]["status"] in ("unchanged", "CHANGED"):
            row.update(resolved=found[i]["resolved"], status=found[i]["status"],
                       detail=found[i]["checked"])
        else:                 # the overlay above was committed into this file
            row.update(resolved=found[i]["resolved"], status="committed-into",
                       detail=found[i]["status"])
        rows.append(row)
    return rows, problem


def _check_alone(entry: dict, ckpt, seen: dict, verify: bool) -> dict:
    """One chain entry found by its recorded place and checked against its
    fingerprint. ``seen`` maps a file (device, inode) to its check, so that a
    file is read once however many entries name it (the loader refuses a path
    named twice; a link can still name one file twice)."""
    base = os.path.dirname(ckpt.path) if ckpt.path else os.getcwd()
    candidate = locate(base, entry["relpath"], entry["path"])
    if not os.path.exists(candidate):
        return {"resolved": None, "status": "MISSING", "detail": f"not found (looked for "
                f"'{show(candidate)}')"}
    try:
        info = os.stat(candidate)
        key = (info.st_dev, info.st_ino, repr(sorted(entry["fingerprint"].items())))
        if key not in seen:
            seen[key] = check_identity(candidate, entry["fingerprint"], verify)
        ok, how = seen[key]
    except (OSError, MinivmError) as exc:
        return {"resolved": candidate, "status": "unreadable", "detail": str(exc)}
    return {"resolved": candidate, "status": "unchanged" if ok else "CHANGED", "detail": how}


def _disk_status_text(row: dict) -> str:
    status, detail = row["status"], show(row["detail"])
    if status == "MISSING":
        return f"{show(row['path'])} (MISSING)"
    where = show(row["resolved"])
    if status == "unreadable":
        return f"{where} (cannot be read: {detail})"
    if status == "committed-into":
        return f"{where} (present, {detail})"
    said = "present, unchanged" if status == "unchanged" else "CHANGED since the checkpoint"
    return f"{where} ({said}; {detail})"


def describe_checkpoint(ckpt, verify_disk: bool = False) -> str:
    """``verify_disk``: compare each disk file's whole-file SHA-256 too, where
    the checkpoint recorded one (``inspect --verify-disk``; reads the files)."""
    # By name, through the declarations: rows saved as lists become maps.
    state, meta = MACHINE_STATE.named(ckpt.state), ckpt.meta
    cpu = state["cpu"]
    image = ckpt.image
    pc = cpu["pc"]
    lines = [f"checkpoint {show(meta.get('name', '?'))}  ({show(ckpt.source)}, "
             f"{ckpt.file_size} bytes)",
             f"  taken at tick {cpu['tick']} by {show(meta.get('origin', '?'))} "
             f"({show(meta.get('mode', '?'))} mode), minivm {show(meta.get('minivm', '?'))}",
             f"  program {show(image.source_file)}: {len(image.code)} instructions, "
             f"{len(image.data)} data bytes",
             f"  pc {pc}  {show(image.location(pc))}: {show(image.source_text(pc))}",
             f"  halted: {'yes' if cpu['halted'] else 'no'}; interrupts "
             f"{'enabled' if state['interrupts']['enabled'] else 'disabled'}",
             "  registers:"]
    lines += _regs_table(cpu["regs"])
    pages = sorted(ckpt.pages)
    lines.append(f"  memory: {format_size(ckpt.memory_size)}; {len(pages)} non-zero page(s) "
                 f"saved ({len(pages) * PAGE_SIZE} bytes)")
    if pages:
        lines.append("    pages: " + index_ranges(pages, limit=200))
    timer = state["timer"]
    if timer["period"]:
        handler = timer["handler"]
        lines.append(f"  timer: period {timer['period']}, next at tick {timer['next_fire']}, "
                     f"handler {handler if handler is not None else 'none'}")
    else:
        lines.append("  timer: stopped")
    pending = state["interrupts"]["pending"]
    raised = ", ".join(f"{show(p['source'])} @ tick {p['tick']}" for p in pending)
    lines.append(f"  pending interrupts: {len(pending)}" + (f" ({raised})" if pending else ""))
    disk = state["disk"]
    queue = disk["queue"]
    lines.append(f"  disk queue: {len(queue)} request(s) in flight; last completed #"
                 f"{disk['last_completed']}; latency {disk['latency']} + {disk['per_block']}/block")
    for r in queue:
        read = r["command"] == Request.READ
        lines.append(f"    #{r['id']} {'read ' if read else 'write'} blocks "
                     f"{r['block']}..{r['block'] + r['count'] - 1} {'->' if read else '<-'} "
                     f"mem 0x{r['addr']:x}, issued tick {r['issued']}, "
                     f"completes at tick {r['done']}")
    if meta.get("p8_drained"):
        lines.append(f"  P8: {show(meta['p8_drained'])} pending request(s) completed before "
                     "the guest resumed (a pending read was followed by a write to the same block)")
    lines.append(f"  console: {state['console']['input_consumed']} input byte(s) consumed "
                 "(a resumed run reads its own input from the start)")
    if ckpt.disk is None:
        lines.append("  disk: none attached")
    else:
        lines.append("  disk chain (the checkpointed disk, top first):")
        for row in check_disk_chain(ckpt, verify_disk)[0]:
            lines.append(f"    {show(row['kind']):<7} {_disk_status_text(row)}")
            lines.append(f"            {describe_record(row['fingerprint'])}")
        late = ckpt.disk.get("reads_not_landed") or []
        if late:
            lines.append(f"  reads in flight that had not landed when the run ended: {late} "
                         "(they land when the checkpoint is resumed)")
    return "\n".join(lines) + "\n"


#: The device sections ``diff`` compares, in its order; ``seq`` only orders
#: interrupts raised at the same tick, so it is not a difference worth showing.
DIFF_SECTIONS = ("timer", "interrupts", "disk", "console")
DIFF_HIDDEN = frozenset({"seq"})


def device_changes(a: dict, b: dict) -> list[str]:
    """How two saved machine states (validated) differ in their devices, one
    phrase per field, read through the declarations: a list (the disk queue,
    the pending interrupts) by its length and its ``doc``, any other field by
    its value (``timer period 0 -> 50``)."""
    changes = []
    for section in DIFF_SECTIONS:
        record = MACHINE_STATE.field(section).kind
        sa, sb = a.get(section, {}), b.get(section, {})
        for f in sorted(record.fields, key=lambda f: f.name):
            va, vb = sa.get(f.name), sb.get(f.name)
            if f.name in DIFF_HIDDEN or va == vb:
                continue
            if isinstance(f.kind, ListOf):
                changes.append(f"{f.doc} {len(va or [])} -> {len(vb or [])}")
            else:
                changes.append(f"{section} {f.name} {show(va)} -> {show(vb)}")
    return changes


def index_ranges(indexes, limit: int | None = None) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (cut at ``limit`` characters)."""
    parts, start, prev = [], None, None
    for i in list(indexes) + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = i
    text = ", ".join(parts)
    return text if limit is None or len(text) < limit else text[:limit] + " ..."


def describe_disk(path: str) -> str:
    chain = describe_chain(path)
    lines = []
    for depth, entry in enumerate(chain):
        indent = "  " * depth
        size = os.path.getsize(entry["path"])
        if entry["kind"] == "raw":
            lines.append(f"{indent}{show(entry['path'])}: raw disk image, {size} bytes, "
                         f"{size // BLOCK_SIZE} blocks of {BLOCK_SIZE}")
        else:
            try:
                overlay = open_disk(entry["path"], verify=False, writable=False)
            except MinivmError as exc:
                lines.append(f"{indent}{show(entry['path'])}: overlay, unreadable: "
                             f"{show(exc)}")
                break
            try:
                groups = overlay.groups()
                fp = entry.get("parent_fingerprint")
                lines.append(f"{indent}{show(entry['path'])}: overlay, {len(groups)} block "
                             f"group(s) of {overlay.group_blocks} blocks written; parent "
                             f"{'fingerprint recorded' if fp else 'not yet sealed'}; on top of:")
            finally:
                close_chain(overlay)
    return "\n".join(lines) + "\n"
