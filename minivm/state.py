"""Declared machine state: what a device saves, with types and ranges, in one place.

In the spirit of QEMU's ``VMStateDescription`` and Firecracker's ``Persist``:
each device (and the CPU, and the interrupt controller) describes its saved
fields once, as a :class:`Record` of :class:`Field` s, and the same
declaration does three jobs:

* ``save(obj)`` reads the fields off the live object and returns plain data
  (ints, bools, bytes, lists, maps) that msgpack can store;
* ``validate(data, limits)`` checks saved data against the declaration and
  returns it, checked, without touching any device: the first problem is a
  :class:`StateError` that names the field path and the cause
  (``disk.queue[3].block: 2^40 is out of range 0..2^32-1``);
* ``apply(obj, values)`` puts checked values into a device, and
  ``restore(obj, data, limits)`` is the two together.

A record may have a ``check(values, limits, path)`` hook for the rules that
tie fields together (a write carries its data, requests are in id order);
it runs inside ``validate``, on checked values, so a restore either fails
before anything changes or succeeds whole. :class:`Limits` carries what the
restoring machine can live with (its code size, memory size, disk size, how
many requests may be in flight); a field it leaves as None is not checked
against it.

Ranges are what the restoring code can live with, not just what the types
allow: a tick is at most :data:`MAX_TICK` (2^48), lists have a maximum
length, bytes a maximum size. :func:`flatten` turns saved data into
``(path, value)`` pairs and :meth:`Kind.named` turns a record saved as a
list into a map, so tools read saved state by name, not by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable

MAX_TICK = 1 << 48                 # a run's tick, and everything counted in ticks
MAX_FUTURE = 1 << 62               # a tick something is scheduled for (may lie ahead)
MAX_COUNT = 1 << 62                # ids and counters that grow by more than one per tick
MAX_LIST = 1 << 16                 # any list, unless a Limits field says less
SELF = object()                    # Field(attr=SELF): the nested record is the object itself


class StateError(ValueError):
    """Saved state that does not fit its declaration: ``path: cause``."""

    def __init__(self, path: str, cause: str, doc: str | None = None):
        self.path, self.cause = path, cause
        where = f"{path} ({doc})" if doc else path
        super().__init__(f"{where}: {cause}" if where else cause)


@dataclass(frozen=True)
class Limits:
    """What the restoring side can live with; None means 'not known, not checked'."""

    code_size: int | None = None        # handlers and the pc must be below it
    memory_size: int | None = None      # the saved memory size must equal it
    disk_blocks: int | None = None      # queued requests must lie inside the disk
    disk_attached: bool | None = None   # requests in flight need a disk


def show_int(n: int) -> str:
    """An integer for a message: 2^k and 2^k-1 spelled so, others in decimal."""
    if n >= 1 << 16:
        if n & (n - 1) == 0:
            return f"2^{n.bit_length() - 1}"
        if (n + 1) & n == 0:
            return f"2^{n.bit_length()}-1"
    return str(n)


def show(value) -> str:
    """A saved value for a message, short and escaped (it comes from a file)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return show_int(value)
    if isinstance(value, str):
        return f"text {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a map"
    return f"a {type(value).__name__}"


def _bound(bound, limits: Limits):
    return bound(limits) if callable(bound) else bound


# --- field kinds ---------------------------------------------------------------------

class Kind:
    """One kind of saved value. ``save`` makes plain data, ``load`` checks it."""

    optional = False
    scalar = True

    def save(self, value):
        return value

    def load(self, data, limits: Limits, path: str, doc: str | None = None):
        if data is None and self.optional:
            return None
        return self._load(data, limits, path, doc)

    def _load(self, data, limits, path, doc):
        raise NotImplementedError

    def named(self, data):
        return data

    def flatten(self, data, path: str, out: list) -> None:
        out.append((path, data))


class Int(Kind):
    """An integer in ``lo..hi`` (either bound may be a function of the Limits)."""

    def __init__(self, lo, hi, optional: bool = False):
        self.lo, self.hi, self.optional = lo, hi, optional

    def _load(self, data, limits, path, doc):
        if type(data) is not int:
            raise StateError(path, f"{show(data)} is not an integer", doc)
        lo, hi = _bound(self.lo, limits), _bound(self.hi, limits)
        if not lo <= data <= hi:
            raise StateError(path, f"{show_int(data)} is out of range "
                                   f"{show_int(lo)}..{show_int(hi)}", doc)
        return data


class CodeAddr(Kind):
    """An instruction index: below the code size (handlers, the pc)."""

    def __init__(self, optional: bool = False):
        self.optional = optional

    def _load(self, data, limits, path, doc):
        if type(data) is not int:
            raise StateError(path, f"{show(data)} is not a code address", doc)
        size = limits.code_size
        if data < 0 or (size is not None and data >= size):
            span = f" (the code has {size} instructions)" if size is not None else ""
            raise StateError(path, f"{show_int(data)} is outside the code{span}", doc)
        return data


class Bool(Kind):
    def _load(self, data, limits, path, doc):
        if not isinstance(data, bool):
            raise StateError(path, f"{show(data)} is not a boolean (true or false)", doc)
        return data


class Bytes(Kind):
    """A byte string of at most ``max_len`` bytes."""

    def __init__(self, max_len: int, optional: bool = False):
        self.max_len, self.optional = max_len, optional

    def _load(self, data, limits, path, doc):
        if not isinstance(data, bytes):
            raise StateError(path, f"{show(data)} is not bytes", doc)
        if len(data) > self.max_len:
            raise StateError(path, f"{len(data)} bytes, more than the limit of "
                                   f"{show_int(self.max_len)}", doc)
        return data


class OneOf(Kind):
    """One of a few fixed values (a version, a command, a device name)."""

    def __init__(self, *values):
        self.values = values

    def _load(self, data, limits, path, doc):
        for value in self.values:
            if type(data) is type(value) and data == value:
                return data
        choices = ", ".join(repr(v) for v in self.values)
        raise StateError(path, f"{show(data)} is not one of {choices}", doc)


class ListOf(Kind):
    """A list of ``item`` s, ``min_len`` to ``max_len`` long (max may depend on Limits;
    a Limits value of None falls back to :data:`MAX_LIST`)."""

    scalar = False

    def __init__(self, item: Kind, max_len=MAX_LIST, min_len: int = 0):
        self.item, self.max_len, self.min_len = item, max_len, min_len

    def save(self, value):
        if self.item.scalar:
            return list(value)
        save = self.item.save
        return [save(x) for x in value]

    def _load(self, data, limits, path, doc):
        if not isinstance(data, list):
            raise StateError(path, f"{show(data)} is not a list", doc)
        hi = _bound(self.max_len, limits)
        hi = MAX_LIST if hi is None else hi
        if self.min_len == hi and len(data) != hi:
            raise StateError(path, f"{len(data)} items, expected exactly {hi}", doc)
        if len(data) > hi:
            raise StateError(path, f"{len(data)} items, too many (at most {show_int(hi)})", doc)
        if len(data) < self.min_len:
            raise StateError(path, f"{len(data)} items, too few (at least {self.min_len})", doc)
        load = self.item.load
        return [load(x, limits, f"{path}[{i}]", doc) for i, x in enumerate(data)]

    def named(self, data):
        return data if self.item.scalar else [self.item.named(x) for x in data]

    def flatten(self, data, path, out):
        for i, x in enumerate(data):
            self.item.flatten(x, f"{path}[{i}]", out)


@dataclass(frozen=True)
class Field:
    """One saved field: its key, its kind, and where it lives on the object.

    ``attr`` is the attribute it is read from and restored to (default: the
    key; ``SELF`` for a nested record that describes the object itself;
    None for a field that is saved but not restored, e.g. a constant, unless
    ``put`` says how). ``get(obj)`` / ``put(obj, value)`` replace the plain
    attribute access. ``default`` is used when an older file lacks the key.
    ``doc`` names the field in messages.
    """

    name: str
    kind: Kind
    attr: Any = ""
    get: Callable | None = None
    put: Callable | None = None
    default: Any = ...
    doc: str | None = None

    def where(self):
        return self.name if self.attr == "" else self.attr


class Record(Kind):
    """Named fields, saved as a map (or, with ``as_list``, as a list in field order).

    ``check(values, limits, path)`` is the cross-field hook: it sees the
    checked values and raises :class:`StateError` for what no single field
    shows. ``prefix`` starts the paths in messages (default: the name; the
    machine's whole state uses none, so paths read ``disk.queue[3].block``)."""

    scalar = False

    def __init__(self, name: str, fields: list[Field], *, as_list: bool = False,
                 check: Callable | None = None, prefix: str | None = None):
        self.name, self.fields, self.as_list = name, fields, as_list
        self.check = check
        self.prefix = name if prefix is None else prefix
        self.keys = [f.name for f in fields]
        if as_list:
            assert all(f.kind.scalar and f.get is None for f in fields)
            self._getter = attrgetter(*(f.where() for f in fields))

    # --- saving ------------------------------------------------------------------
    def save(self, obj):
        if self.as_list:
            return list(obj) if isinstance(obj, (tuple, list)) else list(self._getter(obj))
        out = {}
        for f in self.fields:
            if f.get is not None:
                value = f.get(obj)
            elif f.attr is SELF:
                value = obj
            else:
                value = getattr(obj, f.where())
            out[f.name] = value if f.kind.scalar else f.kind.save(value)
        return out

    # --- validating --------------------------------------------------------------
    def _load(self, data, limits, path, doc):
        what = path or self.name
        if self.as_list:
            if not isinstance(data, list):
                raise StateError(what, f"{show(data)} is not a list of {len(self.fields)}")
            if len(data) != len(self.fields):
                raise StateError(what, f"{len(data)} items, expected {len(self.fields)} "
                                       f"({', '.join(self.keys)})")
            items = zip(self.fields, data)
        else:
            if not isinstance(data, dict):
                raise StateError(what, f"{show(data)} is not a map")
            items = []
            for f in self.fields:
                if f.name not in data:
                    if f.default is ...:
                        raise StateError(self._path(path, f.name), "missing", f.doc)
                    items.append((f, f.default))
                else:
                    items.append((f, data[f.name]))
        values = {}
        for f, value in items:
            values[f.name] = f.kind.load(value, limits, self._path(path, f.name), f.doc)
        if self.check is not None:
            self.check(values, limits, path)
        return values

    @staticmethod
    def _path(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    def validate(self, data, limits: Limits = Limits()) -> dict:
        """Check saved data; returns the checked values (a map per record)."""
        return self.load(data, limits, self.prefix)

    # --- restoring ---------------------------------------------------------------
    def apply(self, obj, values: dict) -> None:
        """Put checked values (from :meth:`validate`) into ``obj``."""
        for f in self.fields:
            value = values[f.name]
            if f.put is not None:
                f.put(obj, value)
            elif f.attr is SELF:
                f.kind.apply(obj, value)
            elif f.attr is None:
                continue
            elif isinstance(f.kind, Record):
                f.kind.apply(getattr(obj, f.where()), value)
            else:
                setattr(obj, f.where(), value)

    def restore(self, obj, data, limits: Limits = Limits()) -> None:
        """Validate ``data`` whole, then apply it: nothing changes if it is bad."""
        self.apply(obj, self.validate(data, limits))

    # --- reading saved data by name ------------------------------------------------
    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def named(self, data) -> dict:
        """Saved data (already validated) as maps all the way down."""
        if self.as_list:
            return dict(zip(self.keys, data))
        return {f.name: f.kind.named(data[f.name]) for f in self.fields if f.name in data}

    def flatten(self, data, path, out):
        if self.as_list:
            data = dict(zip(self.keys, data))
        for f in self.fields:
            if f.name in data:
                f.kind.flatten(data[f.name], self._path(path, f.name), out)


def flatten(record: Record, saved) -> list[tuple[str, object]]:
    """Validated saved data as ``(path, value)`` leaves, in declaration order:
    ``[("cpu.regs[0]", 0), ..., ("disk.queue[0].block", 2), ...]``."""
    out: list = []
    record.flatten(saved, "", out)
    return out
