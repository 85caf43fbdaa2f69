"""Declared machine state (state.py): save -> restore -> save round trips on a
busy machine, the saved format, and a hostile value for every declared field
(each must be a clean StateError naming the field, before anything changes)."""

from __future__ import annotations

import copy

import pytest

from minivm import isa
from minivm.disks import create_raw_disk, open_disk
from minivm.machine import CPU_STATE, MACHINE_STATE
from minivm.report import device_changes
from minivm.state import (MAX_LIST, Bool, Bytes, CodeAddr, Field, Int, Limits, ListOf, OneOf,
                          Record, StateError, _bound, flatten, show_int)

from support import bounded, make_machine

BUSY = """
; the timer running, interrupts pending (disabled), writes and a read in flight
        out 0x11, th
        out 0x26, dh
        out 0x10, 7
        mov r5, 0
issue:  out 0x20, r5
        mul r6, r5, 512
        out 0x21, r6
        out 0x22, 1
        out 0x23, 2             ; write block r5 from memory r5 * 512
        add r5, r5, 1
        blt r5, 4, issue
        out 0x20, 9
        out 0x21, 0x2000
        out 0x23, 1             ; read block 9 into 0x2000
        out 0x00, 'x'
spin:   add r1, r1, 1
        blt r1, 10000, spin
        halt
th:     iret
dh:     iret
.data
        .ascii "data for the disk"
"""
BUSY_TICKS = 130                # the first write has completed, the rest are in flight


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    create_raw_disk(str(path), 65536)
    d = open_disk(str(path))
    yield d
    d.close()


@pytest.fixture
def busy(disk):
    machine = make_machine(BUSY, disk=disk)
    assert machine.run(BUSY_TICKS).reason == "limit"
    return machine


def fresh(disk):
    return make_machine(BUSY, disk=disk)


def test_busy_machine_is_busy(busy):
    state = busy.save_state()
    assert state["timer"]["period"] == 7 and state["timer"]["next_fire"] is not None
    sources = {p[3] for p in state["interrupts"]["pending"]}
    assert sources == {"timer", "disk"} and not state["interrupts"]["enabled"]
    commands = [r[1] for r in state["disk"]["queue"]]
    assert commands == [2, 2, 2, 1]                  # three writes and a read in flight
    assert state["console"]["bytes_written"] == 1


# --- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["interrupts", "console", "timer", "disk"])
def test_device_round_trip(busy, disk, name):
    device = getattr(busy, name)
    saved = device.save()
    other = getattr(fresh(disk), name)
    other.restore(saved)
    assert other.save() == saved
    assert type(device).STATE.validate(saved, Limits(code_size=busy.ncode)) is not None


def test_cpu_round_trip(busy, disk):
    saved = CPU_STATE.save(busy)
    other = fresh(disk)
    CPU_STATE.restore(other, saved, Limits(code_size=other.ncode))
    assert CPU_STATE.save(other) == saved
    assert other.regs[isa.ZERO_REG] == 0 and len(other.regs) == isa.ZERO_REG + 1


def test_machine_round_trip_and_same_future(busy, disk):
    saved = busy.save_state()
    other = fresh(disk)
    for i in busy.memory.nonzero_page_indexes():
        other.memory.load_page(i, busy.memory.page_bytes(i))
    other.restore_state(saved)
    assert other.save_state() == saved
    assert all(r.target is disk for r in other.disk.queue)
    assert busy.run(100_000).reason == other.run(100_000).reason == "halt"
    assert busy.save_state() == other.save_state()


def _old_format(m) -> dict:
    """The state section exactly as the hand-written snapshot code made it before
    the declarations: the file format must not change (except for the in-flight
    limits, saved since issue 12; older files load with their defaults)."""
    d, irq, t, c = m.disk, m.interrupts, m.timer, m.console
    return {"version": 1,
            "cpu": {"regs": m.regs[:16], "pc": m.pc, "tick": m.tick, "halted": m.halted,
                    "interrupts_taken": m.interrupts_taken},
            "memory_size": m.memory.size,
            "interrupts": {"enabled": irq.enabled, "seq": irq._seq,
                           "pending": [list(p) for p in sorted(irq._pending)]},
            "console": {"input_consumed": c.input_consumed, "bytes_written": c.bytes_written},
            "timer": {"period": t.period, "handler": t.handler, "next_fire": t.next_fire,
                      "fired": t.fired},
            "disk": {"block": d.reg_block, "addr": d.reg_addr, "count": d.reg_count,
                     "next_id": d.next_id, "last_completed": d.last_completed,
                     "handler": d.handler, "busy_until": d.busy_until, "latency": d.latency,
                     "per_block": d.per_block, "max_inflight": d.max_inflight,
                     "max_inflight_bytes": d.max_inflight_bytes,
                     "queue": [[r.id, r.command, r.block, r.addr, r.count, r.issued, r.done,
                                r.data] for r in d.queue]}}


def test_saved_format_is_unchanged(busy):
    saved, old = busy.save_state(), _old_format(busy)
    assert saved == old
    assert list(saved) == list(old)                  # the key order is the file's order too
    for key in old:
        if isinstance(old[key], dict):
            assert list(saved[key]) == list(old[key])


def test_state_without_interrupts_taken_still_loads(busy, disk):
    saved = busy.save_state()
    del saved["cpu"]["interrupts_taken"]             # checkpoints from before the counter
    other = fresh(disk)
    other.restore_state(saved)
    assert other.interrupts_taken == 0


def test_flatten_and_named(busy):
    saved = busy.save_state()
    pairs = dict(flatten(MACHINE_STATE, saved))
    assert pairs["cpu.regs[15]"] == saved["cpu"]["regs"][15]
    assert pairs["disk.queue[3].command"] == 1 and pairs["disk.queue[3].data"] is None
    assert pairs["interrupts.pending[0].source"] in ("timer", "disk")
    assert pairs["timer.period"] == 7
    named = MACHINE_STATE.named(saved)
    assert named["disk"]["queue"][0]["id"] == saved["disk"]["queue"][0][0]
    assert named["interrupts"]["pending"][0]["tick"] == saved["interrupts"]["pending"][0][0]


# --- hostile values, one set per declared field kind ------------------------------------------

class Missing:
    """Delete the key instead of setting it."""


def _hostile(kind, limits: Limits) -> list:
    """Values the declaration must refuse, for one field kind."""
    values: list = []
    if isinstance(kind, Int):
        lo, hi = _bound(kind.lo, limits), _bound(kind.hi, limits)
        values = [lo - 1, hi + 1, 1 << 64, "7", 1.5, True, [1]]
    elif isinstance(kind, CodeAddr):
        values = [-1, limits.code_size, 1 << 40, "7", 2.0]
    elif isinstance(kind, Bool):
        values = [3, 0, "yes", [True]]
    elif isinstance(kind, Bytes):
        values = [7, "text", [1, 2]]
    elif isinstance(kind, OneOf):
        values = ["nope", 3.5, True, [kind.values[0]]]
    elif isinstance(kind, ListOf):
        hi = _bound(kind.max_len, limits)
        hi = MAX_LIST if hi is None else hi
        values = ["x", {}, 5, ("too long", hi + 1)]
        if kind.min_len:
            values.append(("too short", kind.min_len - 1))
    elif isinstance(kind, Record):
        values = ["x", 5] + ([{}] if kind.as_list else [[]])
        if kind.as_list:
            values += [("too short", len(kind.fields) - 1), ("too long", len(kind.fields) + 1)]
    if not kind.optional:
        values.append(None)
    return values


def _cases(record: Record, path: list, shown: str, limits: Limits, sample):
    """(path in the saved data, value, path the error must name) for every field."""
    for i, field in enumerate(record.fields):
        key = i if record.as_list else field.name
        fpath, fshown = path + [key], f"{shown}.{field.name}" if shown else field.name
        kind = field.kind
        if not record.as_list and field.default is ...:
            yield fpath, Missing, fshown
        for value in _hostile(kind, limits):
            yield fpath, value, fshown
        if isinstance(kind, Record):
            yield from _cases(kind, fpath, fshown, limits, sample[key])
        elif isinstance(kind, ListOf):
            assert sample[key], f"the busy machine must have an item in {fshown}"
            epath, eshown = fpath + [0], f"{fshown}[0]"
            if isinstance(kind.item, Record):
                for value in _hostile(kind.item, limits):
                    yield epath, value, eshown
                yield from _cases(kind.item, epath, eshown, limits, sample[key][0])
            else:
                for value in _hostile(kind.item, limits):
                    yield epath, value, eshown


def _build(sample, value):
    if isinstance(value, tuple):                 # ("too long", n): n copies of a valid item
        item = sample[0] if isinstance(sample, list) and sample else 0
        return [copy.deepcopy(item) for _ in range(value[1])]
    return value


def _all_cases(busy):
    saved, limits = busy.save_state(), busy.state_limits()
    cases = []
    for path, value, shown in _cases(MACHINE_STATE, [], "", limits, saved):
        target = saved
        for key in path[:-1]:
            target = target[key]
        bad = copy.deepcopy(saved)
        spot = bad
        for key in path[:-1]:
            spot = spot[key]
        if value is Missing:
            del spot[path[-1]]
        else:
            spot[path[-1]] = _build(target[path[-1]], value)
        label = value.__name__ if value is Missing else (
            value[0] if isinstance(value, tuple) else repr(value)[:20])
        cases.append((shown, label, bad))
    return cases


def test_every_field_refuses_hostile_values(busy, disk):
    cases = _all_cases(busy)
    fields = {shown for shown, _, _ in cases}
    assert {"cpu.regs[0]", "disk.queue[0].block", "interrupts.pending[0].source",
            "timer.next_fire", "console.bytes_written", "version"} <= fields
    assert len(cases) > 250
    target = fresh(disk)
    before = target.save_state()
    ckpt_limits = Limits(code_size=target.ncode, disk_attached=True)
    for shown, label, bad in cases:
        # a huge count or size must be refused, not allocated (and must not hang)
        with bounded(f"restoring {shown} = {label}", megabytes=16):
            with pytest.raises(StateError) as info:
                target.restore_state(bad)
            message = str(info.value)
            assert message.startswith(shown), (shown, label, message)
            assert "Traceback" not in message and len(message) < 300, message
            assert target.save_state() == before, f"{shown} = {label} changed the machine"
            with pytest.raises(StateError) as again:         # as the checkpoint loader sees it
                MACHINE_STATE.validate(bad, ckpt_limits)
            assert str(again.value) == message


def test_messages_name_the_path_and_the_cause(busy, disk):
    saved = busy.save_state()
    saved["disk"]["queue"][3][2] = 1 << 40
    with pytest.raises(StateError) as info:
        fresh(disk).restore_state(saved)
    assert str(info.value) == "disk.queue[3].block: 2^40 is out of range 0..2^32-1"
    saved = busy.save_state()
    saved["cpu"]["regs"][2] = "r2"
    with pytest.raises(StateError) as info:
        fresh(disk).restore_state(saved)
    assert str(info.value) == "cpu.regs[2] (the registers): text 'r2' is not an integer"
    saved = busy.save_state()
    saved["interrupts"]["pending"][0][3] = "keyboard\n\x1b[2J"
    with pytest.raises(StateError) as info:
        fresh(disk).restore_state(saved)
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value)


def test_bytes_over_the_limit():
    kind = Record("r", [Field("b", Bytes(4))])
    assert kind.validate({"b": b"1234"}) == {"b": b"1234"}
    with pytest.raises(StateError, match=r"^r\.b: 5 bytes, more than the limit of 4$"):
        kind.validate({"b": b"12345"})


def test_show_int():
    assert [show_int(n) for n in (5, 65535, 1 << 16, (1 << 32) - 1, 1 << 48, 70000)] == \
        ["5", "65535", "2^16", "2^32-1", "2^48", "70000"]


# --- the rules between fields ---------------------------------------------------------------------

def _edit(saved, fn):
    saved = copy.deepcopy(saved)
    fn(saved)
    return saved


RULES = {
    "timer running with no next firing": (
        lambda s: s["timer"].update(next_fire=None), "timer.next_fire"),
    "timer stopped with a next firing": (
        lambda s: s["timer"].update(period=0), "timer.next_fire"),
    "request ids out of order": (
        lambda s: s["disk"]["queue"][1].__setitem__(0, 1), "disk.queue[1].id"),
    "request id not below next_id": (
        lambda s: s["disk"].update(next_id=3), "disk.queue[1].id"),
    "request done before issued": (
        lambda s: s["disk"]["queue"][0].__setitem__(6, 0), "disk.queue[0].done"),
    "requests complete out of order": (
        lambda s: s["disk"]["queue"][2].__setitem__(6, s["disk"]["queue"][1][6] - 1),
        "disk.queue[2].done"),
    "write without its data": (
        lambda s: s["disk"]["queue"][0].__setitem__(7, None), "disk.queue[0].data"),
    "write with too little data": (
        lambda s: s["disk"]["queue"][0].__setitem__(7, bytes(511)), "disk.queue[0].data"),
    "read carrying data": (
        lambda s: s["disk"]["queue"][3].__setitem__(7, bytes(512)), "disk.queue[3].data"),
    "request outside the disk": (
        lambda s: s["disk"]["queue"][3].__setitem__(2, 128), "disk.queue[3].block"),
    "DMA outside memory": (
        lambda s: s["disk"]["queue"][3].__setitem__(3, s["memory_size"] - 4), "disk.queue[3].addr"),
    "more input read than ticks": (
        lambda s: s["console"].update(input_consumed=s["cpu"]["tick"] + 1),
        "console.input_consumed"),
    "more output than ticks allow": (
        lambda s: s["console"].update(bytes_written=11 * s["cpu"]["tick"] + 1),
        "console.bytes_written"),
    "another memory size": (
        lambda s: s.update(memory_size=s["memory_size"] // 2), "memory_size"),
}


@pytest.mark.parametrize("case", list(RULES), ids=list(RULES))
def test_cross_field_rules(busy, disk, case):
    edit, shown = RULES[case]
    saved = busy.save_state()
    target = fresh(disk)
    before = target.save_state()
    with pytest.raises(StateError) as info:
        target.restore_state(_edit(saved, edit))
    assert str(info.value).startswith(shown + ":"), str(info.value)
    assert target.save_state() == before


def test_requests_in_flight_need_a_disk(busy):
    saved = busy.save_state()
    diskless = make_machine(BUSY)
    with pytest.raises(StateError, match=r"^disk\.queue: 4 request\(s\) in flight but no disk"):
        diskless.restore_state(saved)
    # the checkpoint loader, which does not open the disk: fine if the file has one
    MACHINE_STATE.validate(saved, Limits(code_size=diskless.ncode, disk_attached=True))
    with pytest.raises(StateError):
        MACHINE_STATE.validate(saved, Limits(code_size=diskless.ncode, disk_attached=False))


def _old_device_diff(a: dict, b: dict) -> list[str]:
    """The REPL diff's device lines as they were computed by key before report.device_changes."""
    devices = []
    for section in ("timer", "interrupts", "disk", "console"):
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            va, vb = sa.get(key), sb.get(key)
            if key == "seq" or va == vb:
                continue
            if key == "queue":
                devices.append(f"disk requests in flight {len(va or [])} -> {len(vb or [])}")
            elif key == "pending":
                devices.append(f"pending interrupts {len(va or [])} -> {len(vb or [])}")
            else:
                devices.append(f"{section} {key} {va} -> {vb}")
    return devices


def test_device_changes_reads_the_declarations(busy, disk):
    start, now = fresh(disk).save_state(), busy.save_state()
    changes = device_changes(start, now)
    assert changes == _old_device_diff(start, now)
    assert "disk requests in flight 0 -> 4" in changes and "timer period 0 -> 7" in changes
    assert any(c.startswith("pending interrupts 0 -> ") for c in changes)
    assert device_changes(now, copy.deepcopy(now)) == []
