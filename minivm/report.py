"""Readable summaries of checkpoints and disk files (``inspect``, ``disk info``).

Every string that comes from a file - names, paths, the program's source
lines, the metadata a checkpoint records - is printed through errors.show,
so a hostile file cannot put terminal escapes or line breaks on the screen.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator

from . import isa
from .devices import Request
from .disks import (BLOCK_SIZE, check_identity, close_chain, describe_chain, describe_record,
                    locate, open_disk)
from .errors import MinivmError, show
from .machine import MACHINE_STATE
from .memory import PAGE_SIZE, format_size
from .resume import ParentError, follow_parents, locate_parent, open_parent, resolve_disk_chain
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
    place (which checks again the files resolving had checked before it
    failed: only a file that cannot be read makes it fail that late).
    ``verify``: the whole-file SHA-256 too, where one was recorded."""
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
                f"'{candidate}')"}
    try:
        info = os.stat(candidate)
        key = (info.st_dev, info.st_ino, repr(sorted(entry["fingerprint"].items())))
        if key not in seen:
            seen[key] = check_identity(candidate, entry["fingerprint"], verify)
        ok, how = seen[key]
    except (OSError, MinivmError) as exc:
        return {"resolved": candidate, "status": "unreadable", "detail": str(exc)}
    return {"resolved": candidate, "status": "unchanged" if ok else "CHANGED", "detail": how}


#: The status of an incremental checkpoint's parent, in ``inspect``.
PARENT_STATUSES = ("unchanged", "CHANGED", "MISSING", "unreadable")


def check_parent(ckpt) -> dict | None:
    """An incremental checkpoint's parent as ``inspect`` shows it: the record
    (``path``, ``relpath``, ``name``, ``tick``, ``size``, ``end_sha256``),
    where it was found (``resolved``), its ``status`` (PARENT_STATUSES) and
    ``detail``, and the whole chain: ``chain_files`` and ``chain_pages`` (the
    pages of the file and its parents together), or ``chain_error``, why
    resume would refuse the chain (then both are None). None for a
    standalone checkpoint. Each file is checked in O(1) (its end record)."""
    record = ckpt.parent
    if record is None:
        return None
    out = {key: record[key] for key in ("path", "relpath", "name", "tick", "size",
                                        "end_sha256")}
    out.update(resolved=None, status="MISSING", detail="", chain_files=None,
               chain_pages=None, chain_error=None)
    own = ckpt.own_pages if ckpt.own_pages is not None else ckpt.pages
    try:
        if not ckpt.parents:
            follow_parents(ckpt)
        out.update(resolved=ckpt.parents[0].path, status="unchanged",
                   detail="same file: size and end-record SHA-256",
                   chain_files=1 + len(ckpt.parents), chain_pages=len(ckpt.pages))
        return out
    except (OSError, MinivmError) as exc:
        out["chain_error"] = str(exc)
    finally:
        ckpt.pages = own                 # inspect describes the file's own pages
    where = locate_parent(ckpt)
    if not os.path.exists(where):
        out["detail"] = f"not found (looked for '{where}')"
        return out
    out["resolved"] = where
    try:
        parent = open_parent(ckpt)
        parent.own_pages.source.close()
        out.update(status="unchanged", detail="same file: size and end-record SHA-256")
    except ParentError as exc:
        changed = "changed or been replaced" in str(exc)
        out.update(status="CHANGED" if changed else "unreadable", detail=str(exc))
    except (OSError, MinivmError) as exc:
        out.update(status="unreadable", detail=str(exc))
    return out


def _parent_lines(ckpt) -> list[str]:
    row = check_parent(ckpt)
    if row is None:
        return []
    lines = [f"  incremental: holds only the pages written since its parent "
             f"{show(row['name'])} (tick {row['tick']})"]
    status, where = row["status"], show(row["resolved"] or row["path"])
    if status == "unchanged":
        lines.append(f"  parent: {where} (present, unchanged; {show(row['detail'])})")
    elif status == "MISSING":
        lines.append(f"  parent: {show(row['path'])} (MISSING; {show(row['detail'])})")
    else:
        lines.append(f"  parent: {where} ({status})")
    if row["chain_error"] is None:
        lines.append(f"  chain: {row['chain_files']} file(s), {row['chain_pages']} page(s) "
                     "in all ('minivm export' writes them as one standalone file)")
    else:
        lines.append(f"  resume would refuse it: {show(row['chain_error'])}")
    return lines


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
    own = _own_pages(ckpt)
    count = len(own)                        # keys only: the summary reads no page
    kind = "non-zero " if ckpt.parent is None else ""
    lines.append(f"  memory: {format_size(ckpt.memory_size)}; {count} {kind}page(s) "
                 f"saved ({count * PAGE_SIZE} bytes)")
    if count:
        lines.append("    pages: " + index_ranges(page_indexes(own), limit=200))
    lines += _parent_lines(ckpt)
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


def _own_pages(ckpt):
    """The pages the file itself holds (an incremental checkpoint's, not its chain's)."""
    if getattr(ckpt, "parent", None) is not None and ckpt.own_pages is not None:
        return ckpt.own_pages
    return ckpt.pages


def _meta_text(value):
    """A metadata string as the file holds it (JSON escapes it), None when
    absent; anything else a hostile file put there, as text (errors.show)."""
    return value if value is None or isinstance(value, str) else show(value)


def _meta_number(value):
    """A metadata number, or None (absent, not a number, or not finite)."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    return None


def checkpoint_json(ckpt, verify_disk: bool = False) -> dict:
    """What ``inspect --json`` prints, as a dict of plain JSON values: the keys
    docs/formats.md ("inspect --json") lists. Like the text summary, it reads
    no page (``pages`` is the count of the index's keys) and each disk file
    once."""
    state, meta = MACHINE_STATE.named(ckpt.state), ckpt.meta
    cpu, image = state["cpu"], ckpt.image
    pc = cpu["pc"]
    timer, disk_state = state["timer"], state["disk"]
    out = {
        "format_version": getattr(ckpt, "format_version", 1),
        "file": ckpt.path,
        "file_size": ckpt.file_size,
        "name": _meta_text(meta.get("name")),
        "origin": _meta_text(meta.get("origin")),
        "mode": _meta_text(meta.get("mode")),
        "minivm": _meta_text(meta.get("minivm")),
        "created": _meta_number(meta.get("created")),
        "pause_us": _meta_number(meta.get("pause_us")),
        "p8_drained": _meta_number(meta.get("p8_drained")),
        "tick": cpu["tick"],
        "pc": pc,
        "program": image.source_file,
        "line": image.lines[pc] if 0 <= pc < len(image.lines) else None,
        "line_file": image.file_of(pc),
        "source_line": image.source_text(pc),
        "instructions": len(image.code),
        "data_bytes": len(image.data),
        "halted": bool(cpu["halted"]),
        "interrupts_enabled": bool(state["interrupts"]["enabled"]),
        "pending_interrupts": len(state["interrupts"]["pending"]),
        "regs": list(cpu["regs"]),
        "memory_size": ckpt.memory_size,
        "page_size": PAGE_SIZE,
        "pages": len(_own_pages(ckpt)),
        "timer": {"period": timer["period"], "next_fire": timer["next_fire"],
                  "handler": timer["handler"]},
        "inflight": len(disk_state["queue"]),
        "console_input_consumed": state["console"]["input_consumed"],
        "disk": None,
        "disk_error": None,
        "reads_not_landed": [],
        "parent": check_parent(ckpt) if getattr(ckpt, "parent", None) else None,
    }
    if ckpt.disk is not None:
        rows, problem = check_disk_chain(ckpt, verify_disk)
        out["disk"] = [{**row, "parent": None} for row in rows]
        out["disk_error"] = problem
        out["reads_not_landed"] = list(ckpt.disk.get("reads_not_landed") or [])
    return out


def dump_json(value) -> str:
    """One line of JSON, ASCII only: a string from a file reaches the
    terminal as JSON escapes (\\u001b), never raw."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=False)


def _saved_pages(ckpt) -> Iterator[tuple[int, bytes]]:
    """Each saved page in address order, read one at a time (``ckpt.pages[i]``),
    never all held at once."""
    own = _own_pages(ckpt)
    for index in page_indexes(own):
        yield index, own[index]


def page_records(ckpt) -> Iterator[dict]:
    """Each saved page for ``inspect --json --pages``: index, address, size
    and SHA-256."""
    for index, data in _saved_pages(ckpt):
        yield {"index": index, "address": index * PAGE_SIZE, "size": len(data),
               "sha256": hashlib.sha256(data).hexdigest()}


def inspect_json(ckpt, verify_disk: bool = False, pages: bool = False) -> Iterator[str]:
    """``inspect --json`` as text, in pieces: the whole summary object first
    (so that an error in it prints nothing), then, with ``pages``, a
    ``page_list`` key streamed page by page, then the closing brace and a
    newline."""
    head = dump_json(checkpoint_json(ckpt, verify_disk))
    if not pages:
        yield head + "\n"
        return
    yield head[:-1] + ', "page_list": ['
    for n, record in enumerate(page_records(ckpt)):
        yield (", " if n else "") + dump_json(record)
    yield "]}\n"


def page_lines(ckpt) -> Iterator[str]:
    """``inspect --pages``: a heading, then one line per saved page, in
    address order: index, address range, a SHA-256 prefix and the first
    non-zero bytes (at most 8, with their offset in the page)."""
    yield (f"  saved pages ({len(_own_pages(ckpt))}; index, addresses, SHA-256 prefix, "
           "first non-zero bytes):")
    for index, data in _saved_pages(ckpt):
        address = index * PAGE_SIZE
        stripped = data.lstrip(b"\0")
        if stripped:
            offset = len(data) - len(stripped)
            first = f"+0x{offset:03x}: {stripped[:8].hex(' ')}"
        else:
            first = "all zero"
        yield (f"    {index:>7}  0x{address:08x}-0x{address + len(data) - 1:08x}  "
               f"sha256 {hashlib.sha256(data).hexdigest()[:16]}  {first}")


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
    """[1, 2, 3, 7] -> '1-3, 7' (cut at ``limit`` characters). ``indexes``
    are in increasing order; they are read one at a time, and no further
    than the cut needs (a checkpoint's million page indexes, shown in 200
    characters, cost 200 characters' worth)."""
    parts: list[str] = []
    length, start, prev = 0, None, None

    def close() -> int:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        return len(parts[-1]) + (2 if len(parts) > 1 else 0)

    for i in indexes:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            length += close()
            start = prev = i
            if limit is not None and length >= limit:
                break
    else:
        if start is not None:
            close()
    text = ", ".join(parts)
    return text if limit is None or len(text) < limit else text[:limit] + " ..."


def page_indexes(pages):
    """A checkpoint's saved page indexes in increasing order, without a copy
    when the mapping already yields them in order (one pass over the keys to
    tell; a version-2 file's index does), else sorted. Keys only: no page is
    read."""
    prev = -1
    for i in pages:
        if i <= prev:
            return sorted(pages)
        prev = i
    return pages


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
