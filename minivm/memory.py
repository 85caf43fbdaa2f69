"""Guest memory: a byte-addressed paged array with copy-on-write.

Two page tables, both plain lists indexed by ``address >> 12``:

* ``pages[i]`` is what page *i* holds: the shared read-only ``bytes`` zero
  page while untouched (so untouched pages cost nothing), else a bytearray.
* ``writable[i]`` is the same bytearray when the page may be written in
  place, else ``None``.

The interpreter's fast path loads through ``pages`` and stores through
``writable`` with no other test: storing into ``None`` raises, and the slow
path (:meth:`Memory.make_writable`) allocates the page, or copies it if a
checkpoint still shares it. That is the cheap COW check on the store path.

Marking memory copy-on-write for a checkpoint (:meth:`Memory.share`, P2)
copies nothing: it returns a :class:`FrozenMemory`, the checkpoint's view of
memory as it is now, which reads through the machine's own ``pages`` list
(the same list and the same page objects) except where ``originals`` holds a
page the machine has since replaced; and it swaps in an all-``None``
``writable`` table (a spare one, cleared in the background by
:meth:`Memory.tidy`), so that the first store to each page takes the slow
path, which moves the page object into every live view's ``originals``
before the machine writes a copy (P3). So the stop costs the same whatever
the guest has touched. The last page of a memory whose size is not a
multiple of 4096 is simply a shorter bytearray, so accesses past the end
fail the fast path and are refused by the slow one.

A lazily resumed memory (:meth:`Memory.attach_saved`) starts with ``None``
in every entry of ``pages``: the fast path fails on it (a load from ``None``
raises, as a store into ``None`` does), and the slow path reads the page from
the checkpoint file on its first access (:meth:`Memory.fetch`), read or
write, then serves it as any other page. Pages the guest never touches are
never read.
"""

from __future__ import annotations

import re
import struct

from .errors import GuestFault, MinivmError, OutOfMemory

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
MAX_MEMORY = 1 << 32
DEFAULT_MEMORY = 1 << 20

_WORD = struct.Struct("<I")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """'64K', '1M', '4G', '4096' -> bytes (K/M/G are powers of 1024)."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise MinivmError(f"bad {what} '{text}': give a number of bytes, optionally with "
                          "K, M or G (e.g. 64K, 1M, 4G)")
    number, suffix = int(match.group(1)), match.group(2).upper()
    return number << {"": 0, "K": 10, "M": 20, "G": 30}[suffix]


ZERO_PAGE = bytes(PAGE_SIZE)


def holds_data(page) -> bool:
    """Does ``page`` (bytes-like, a full page or a memory's short last one)
    hold a non-zero byte? Only such pages are stored in a checkpoint file."""
    return page != ZERO_PAGE if len(page) == PAGE_SIZE else page.count(0) != len(page)


def page_span(addr: int, length: int) -> range:
    """The indexes of the pages that [addr, addr + length) touches (length >= 1)."""
    return range(addr >> PAGE_SHIFT, ((addr + length - 1) >> PAGE_SHIFT) + 1)


def drop_pages(pages: dict, start: int, stop: int) -> None:
    """Remove the entries of ``pages`` (page index -> page) in [start, stop),
    in time proportional to the smaller of the two."""
    if not pages:
        return
    if stop - start < len(pages):
        for index in range(start, stop):
            pages.pop(index, None)
    else:
        for index in [i for i in pages if start <= i < stop]:
            del pages[index]


def format_size(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


class FrozenMemory:
    """The original memory of a checkpoint, frozen at P2 (claims 1, 19, 24).

    It shares the machine's page objects. Before the machine writes a page
    the frozen view still sees, it moves the page object here
    (``originals``) and writes a copy (P3); so a page the view sees is
    never written in place, except by a read that was in flight at the
    checkpoint, which lands in both (P5, P7; see :meth:`Memory.land_read`).
    """

    def __init__(self, memory: "Memory"):
        self._memory = memory
        self.originals: dict[int, object] = {}
        self.size = memory.size
        self.released = False
        self.allocated = memory.allocated     # pages that are not the zero page
        self._retired: object = None          # freed with the view, not during P2
        #: the saver has written every page below this one (P4): the view
        #: needs them no more, so a store there copies nothing (:meth:`needs`)
        self.saved_below = 0

    def needs(self, index: int) -> bool:
        """Must the machine keep page ``index`` as it is for this view (move
        it to ``originals`` and write a copy) before writing it?"""
        return index >= self.saved_below and index not in self.originals

    def saved_up_to(self, stop: int, start: int = 0) -> None:
        """The saver has written the pages in [start, stop) and every one
        before: their originals are dropped (their memory can serve the next
        copies), and later stores to them copy nothing."""
        drop_pages(self.originals, start, stop)
        self.saved_below = stop

    def _view(self, index: int):
        page = self.originals.get(index)
        if page is None:
            page = self._memory.pages[index]
            if page is None:               # lazily resumed, not read yet: from the file
                page = self._memory.saved_page(index)
        return page

    def page_count(self) -> int:
        return self._memory.page_count

    def allocated_pages(self, start: int, stop: int) -> list[int]:
        """Indexes in [start, stop) of pages that are not the zero page."""
        originals, pages = self.originals, self._memory.pages
        saved = self._memory.saved
        return [i for i in range(start, min(stop, len(pages)))
                if type(originals.get(i, pages[i])) is bytearray
                or (pages[i] is None and i not in originals and i in saved)]

    def page(self, index: int) -> bytes:
        return bytes(self._view(index))

    def original(self, index: int):
        """The page as the checkpoint sees it, not copied (bytes-like; the
        saver writes it to the file as it is)."""
        return self._view(index)

    def release(self) -> None:
        """The checkpoint is saved: its pages need no protection any more."""
        if not self.released:
            self.released = True
            self._memory._frozen.remove(self)
            self.originals = {}
            self._retired = None


class Memory:
    #: protocol probes (probes.Probes) while catchpoints are set, else None
    probes = None

    def __init__(self, size: int = DEFAULT_MEMORY):
        if not 1 <= size <= MAX_MEMORY:
            raise MinivmError(f"memory size {size} is out of range: give 1 byte to 4G")
        self.size = size
        full, tail = divmod(size, PAGE_SIZE)
        zero = bytes(PAGE_SIZE)
        self.pages: list = [zero] * full + ([bytes(tail)] if tail else [])
        self.writable: list = [None] * len(self.pages)
        self.page_count = len(self.pages)
        self.saved: object = ()       # a lazily resumed memory's saved pages (attach_saved)
        self.pages_loaded = 0         # pages read from the checkpoint file so far
        self.allocated = 0            # pages that are not the zero page
        self.cow_copies = 0           # memory COW faults since the last share()
        self.copied: set[int] = set()  # pages copied since the last share()
        self._frozen: list[FrozenMemory] = []
        # write trackers (track_writes): each a set that collects the index of
        # every page made writable, i.e. written for the first time since the
        # tracker's owner last cleared its entries in ``writable``
        self._trackers: list[set] = []
        # the time-travel history keeps page objects as versions: a page it may
        # hold is never written in place again, always copied first
        self.keep_versions = False
        # an all-None write table, ready for share(): allocated now, not in the stop
        self._spare: list | None = [None] * self.page_count
        self._retired_tables: list[list] = []  # old write tables, cleared in the background
        self._tidy_pos = 0                     # how far the oldest one is cleared

    # --- the slow path of every access ------------------------------------------
    def _check(self, addr: int, length: int, verb: str) -> None:
        if addr < 0 or addr + length > self.size:
            what = {1: "byte", 4: "word"}.get(length, f"{length}-byte range")
            raise GuestFault(f"memory access out of range: {verb} {what} at 0x{addr:08x} "
                             f"(memory is {format_size(self.size)}, 0x0 .. 0x{self.size - 1:x})")

    def attach_saved(self, saved) -> None:
        """Lazy resume: page *i* is ``saved[i]`` (a page of the checkpoint file)
        when ``i in saved``, else zeros, read on its first access (:meth:`fetch`).
        ``saved`` is a ckptfile.SavedPages (a Mapping, and its ``source``)."""
        # a new table (a list is only captured when the machine runs, after this):
        # half the cost of overwriting the old one entry by entry
        self.pages = [None] * self.page_count
        self.saved = saved
        self.allocated = len(saved)

    def saved_page(self, index: int):
        """A lazily resumed memory's page ``index`` as saved, not installed."""
        if index in self.saved:
            return self.saved[index]
        return self._zero_page(index)

    def _zero_page(self, index: int) -> bytes:
        full = self.size - index * PAGE_SIZE
        return bytes(PAGE_SIZE) if full >= PAGE_SIZE else bytes(full)

    def fetch(self, index: int):
        """The slow path's first access to a page a lazy resume has not read
        yet: read it from the checkpoint (checked: ckptfile.PageError if the
        file changed) and install it."""
        page = self.pages[index]
        if page is not None:
            return page
        if index in self.saved:
            try:
                page = bytearray(self.saved[index])
            except MemoryError:
                raise OutOfMemory(f"page {index} of {self.saved.source.what}", PAGE_SIZE) from None
            self.pages_loaded += 1
            if not self._frozen and not self._trackers:   # else the first store must be seen
                self.writable[index] = page
        else:
            page = self._zero_page(index)
        self.pages[index] = page
        return page

    def make_writable(self, index: int) -> bytearray:
        """Give page ``index`` a private, writable bytearray (lazy alloc / COW, P3)."""
        page = self.writable[index]
        if page is not None:
            return page
        current = self.pages[index]
        if current is None:
            current = self.fetch(index)
        preserved = False
        for view in self._frozen:                      # P3: the original stays theirs
            if view.needs(index):
                view.originals[index] = current
                preserved = True
        if type(current) is bytes:                     # untouched: allocate
            page = bytearray(len(current))
            self.allocated += 1
        elif preserved:                                # shared: copy (a memory COW fault)
            page = bytearray(current)
            self.cow_copies += 1
            self.copied.add(index)
            if self.probes is not None:
                self.probes.notify("cow", index, f"page {index} copied ({self.cow_copies} "
                                   "since the checkpoint)")
        elif self.keep_versions:                       # a version the history keeps
            page = bytearray(current)
        else:                                          # protection no longer needed
            page = current
        self.pages[index] = page
        self.writable[index] = page
        for tracker in self._trackers:
            tracker.add(index)
        return page

    # --- write tracking (incremental checkpoints, time travel) ----------------------
    def track_writes(self) -> set:
        """A new tracker: a set that from now on collects every page made
        writable (:meth:`make_writable`, by either engine) or replaced
        (:meth:`install_pages`). It sees every write to a page only if that
        page's ``writable`` entry is None when tracking starts or when the
        owner clears the set: :meth:`share` clears them all, :meth:`protect`
        the ones given. Stop with :meth:`untrack`."""
        tracker: set = set()
        self._trackers.append(tracker)
        return tracker

    def _counts(self, index: int, page) -> int:
        """1 if ``page`` as page ``index`` counts in ``allocated``."""
        return 1 if type(page) is bytearray or (page is None and index in self.saved) else 0

    def untrack(self, tracker: set) -> None:
        self._trackers = [t for t in self._trackers if t is not tracker]

    def protect(self, indexes) -> None:
        """Make the next store to each page of ``indexes`` take the slow path
        again (so a tracker sees it): O(len(indexes))."""
        writable = self.writable
        for index in indexes:
            writable[index] = None

    def protect_all(self) -> None:
        """:meth:`protect` every page, in O(1): a ready, all-None write table
        takes the place of the current one, which :meth:`tidy` clears later
        (:meth:`share`, and pre-copy's start, precopy.py)."""
        table = self._spare if self._spare is not None else [None] * self.page_count
        self._spare = None
        self._retired_tables.append(self.writable)
        self.writable = table

    def install_pages(self, versions: dict) -> None:
        """Time travel: page *i* becomes ``versions[i]`` (a page object, or
        None for a lazily resumed page still in the file), not writable in
        place. A checkpoint still being saved keeps the page it sees (P3)."""
        pages, writable = self.pages, self.writable
        for index, version in versions.items():
            current = pages[index]
            if current is version:
                writable[index] = None
                continue
            for view in self._frozen:
                if view.needs(index):
                    view.originals[index] = (current if current is not None
                                             else self.saved_page(index))
            self.allocated += self._counts(index, version) - self._counts(index, current)
            pages[index] = version
            writable[index] = None
            for tracker in self._trackers:
                tracker.add(index)

    # --- the compiled engine's misses (minivm.engine.emit) ---------------------
    # A compiled store writes ``pack(wr[a >> 12] or store_miss(a, 4), ...)``: a
    # page that is not writable in place is made so here, without leaving the
    # compiled code (the COW fault or first touch of make_writable, P3), when
    # the access lies inside one page of memory; anything else (an access
    # across a page boundary or past the end, an error reading a lazily
    # resumed page) raises IndexError, so the instruction is handed back to
    # the exact path, which does it, or faults, as the reference engine would,
    # with nothing done here first.
    def store_miss(self, addr: int, length: int) -> bytearray:
        return self._miss(addr, length, self.make_writable)

    def load_miss(self, addr: int, length: int):
        """A compiled load from a page a lazy resume has not read yet (see store_miss)."""
        return self._miss(addr, length, self.fetch)

    def _miss(self, addr: int, length: int, serve):
        if (addr & PAGE_MASK) > PAGE_SIZE - length or addr + length > self.size:
            raise IndexError(addr)
        try:
            return serve(addr >> PAGE_SHIFT)
        except (MinivmError, MemoryError):
            raise IndexError(addr) from None

    def load_word(self, addr: int) -> int:
        offset = addr & PAGE_MASK
        if offset <= PAGE_SIZE - 4 and 0 <= addr and addr + 4 <= self.size:
            # within one page (the usual case, e.g. ``iret``'s pop): one unpack
            page = self.pages[addr >> PAGE_SHIFT]
            if page is None:
                page = self.fetch(addr >> PAGE_SHIFT)
            return _WORD.unpack_from(page, offset)[0]
        self._check(addr, 4, "load")
        return int.from_bytes(self.read_bytes(addr, 4), "little")

    def load_byte(self, addr: int) -> int:
        self._check(addr, 1, "load")
        page = self.pages[addr >> PAGE_SHIFT]
        if page is None:
            page = self.fetch(addr >> PAGE_SHIFT)
        return page[addr & PAGE_MASK]

    def store_word(self, addr: int, value: int) -> None:
        offset = addr & PAGE_MASK
        if offset <= PAGE_SIZE - 4 and 0 <= addr and addr + 4 <= self.size:
            # within one page (the usual case, e.g. a COW fault): no byte shuffling
            _WORD.pack_into(self.make_writable(addr >> PAGE_SHIFT), offset, value & 0xFFFFFFFF)
            return
        self._check(addr, 4, "store")
        self.write_bytes(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def store_byte(self, addr: int, value: int) -> None:
        self._check(addr, 1, "store")
        self.make_writable(addr >> PAGE_SHIFT)[addr & PAGE_MASK] = value & 0xFF

    def read_bytes(self, addr: int, length: int) -> bytes:
        self._check(addr, length, "read")
        out = bytearray()
        while length:
            index, offset = addr >> PAGE_SHIFT, addr & PAGE_MASK
            n = min(length, PAGE_SIZE - offset)
            page = self.pages[index]
            if page is None:
                page = self.fetch(index)
            out += page[offset:offset + n]
            addr, length = addr + n, length - n
        return bytes(out)

    def write_bytes(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data), "write")
        pos = 0
        while pos < len(data):
            index, offset = addr >> PAGE_SHIFT, addr & PAGE_MASK
            n = min(len(data) - pos, PAGE_SIZE - offset)
            self.make_writable(index)[offset:offset + n] = data[pos:pos + n]
            addr, pos = addr + n, pos + n

    def check_range(self, addr: int, length: int, verb: str) -> None:
        self._check(addr, length, verb)

    # --- checkpoint interface (P2, P3, P5-P7) -------------------------------------
    def share(self) -> FrozenMemory:
        """P2: mark all memory copy-on-write; the current pages become the original.

        O(1): the frozen view shares the page objects, and the machine gets a
        ready, all-None write table (so every first store per page takes the
        slow path). Old write tables are cleared later, in the background
        (:meth:`tidy`), instead of being freed or allocated inside the stop.
        """
        frozen = FrozenMemory(self)
        self.protect_all()
        frozen._retired = self.copied
        self.copied = set()
        self.cow_copies = 0
        self._frozen.append(frozen)
        return frozen

    def tidy(self, entries: int = 1 << 16) -> bool:
        """Background work after :meth:`share`: clear up to ``entries`` entries of
        the old write tables, oldest first, so that one can serve as the next
        table. True if work remains."""
        while self._retired_tables and entries > 0:
            table = self._retired_tables[0]
            end = min(len(table), self._tidy_pos + entries)
            table[self._tidy_pos:end] = [None] * (end - self._tidy_pos)
            entries -= end - self._tidy_pos
            if end < len(table):
                self._tidy_pos = end
                return True
            self._tidy_pos = 0                 # the cursor belongs to the oldest table
            self._retired_tables.pop(0)
            if self._spare is None:
                self._spare = table
        return bool(self._retired_tables)

    def land_in_frozen(self, frozen: FrozenMemory, addr: int, data: bytes) -> None:
        """Write ``data`` into a checkpoint's memory only (stop-and-copy mode puts
        the data of in-flight reads there at the stop; P5)."""
        self._check(addr, len(data), "write")
        pos = 0
        while pos < len(data):
            index, offset = addr >> PAGE_SHIFT, addr & PAGE_MASK
            n = min(len(data) - pos, PAGE_SIZE - offset)
            original = frozen.originals.get(index)
            if original is None:                       # still the live page: copy it
                if self.pages[index] is None:
                    self.fetch(index)
                original = bytearray(self.pages[index])
                frozen.originals[index] = original
                if type(self.pages[index]) is bytes:
                    frozen.allocated += 1
            elif type(original) is bytes:
                original = bytearray(original)
                frozen.originals[index] = original
                frozen.allocated += 1
            original[offset:offset + n] = data[pos:pos + n]
            addr, pos = addr + n, pos + n

    def is_shared(self, index: int) -> bool:
        """Is page ``index`` still needed, as it is, by a checkpoint that is
        being saved (not yet written to its file)?"""
        return (type(self.pages[index]) is bytearray
                and any(view.needs(index) for view in self._frozen))

    def copied_in_range(self, addr: int, length: int) -> list[int]:
        """The pages of [addr, addr + length) (at least one byte) that the
        guest's copy-on-write has copied since the last checkpoint: where a
        read in flight at it lands twice (P7)."""
        span = page_span(addr, max(length, 1))
        return [i for i in range(span.start, min(span.stop, self.page_count))
                if i in self.copied]

    def unshare_range(self, addr: int, length: int) -> int:
        """P6: COW-fault every still-shared page a new DMA read will write."""
        faulted = 0
        if length <= 0 or not self._frozen:
            return 0
        for index in page_span(addr, length):
            if self.pages[index] is None:
                self.fetch(index)                       # as an eager resume would have it
            if self.writable[index] is None and self.is_shared(index):
                self.make_writable(index)
                faulted += 1
        return faulted

    def land_read(self, addr: int, data: bytes, frozen=()) -> None:
        """A DMA read completes. The data goes to the running memory; for a read
        that was in flight at a checkpoint, also to that checkpoint's original
        page (P5), even where the guest has written the page since (P7)."""
        if not frozen:
            self.write_bytes(addr, data)
            return
        self._check(addr, len(data), "write")
        pos = 0
        while pos < len(data):
            index, offset = addr >> PAGE_SHIFT, addr & PAGE_MASK
            n = min(len(data) - pos, PAGE_SIZE - offset)
            chunk = data[pos:pos + n]
            live = self.make_writable(index)        # preserves every original first
            live[offset:offset + n] = chunk
            for view in frozen:
                original = view.originals[index]
                if type(original) is bytes:         # the checkpoint saw zeros here
                    original = bytearray(len(original))
                    view.originals[index] = original
                    view.allocated += 1
                original[offset:offset + n] = chunk
            addr, pos = addr + n, pos + n

    # --- state for tools and restore --------------------------------------------------
    def page_kind(self, index: int) -> str:
        """untouched | on-file | private | shared | copied (for the REPL's page
        map); on-file: saved in the checkpoint this memory was lazily resumed
        from, not read yet."""
        page = self.pages[index]
        if page is None:
            return "on-file" if index in self.saved else "untouched"
        if type(page) is bytes:
            return "untouched"
        if index in self.copied:
            return "copied"
        if self.writable[index] is None and any(index not in view.originals
                                                for view in self._frozen):
            return "shared"         # the checkpoint's page (saved or not), not written since
        return "private"

    def nonzero_page_indexes(self) -> list[int]:
        pages = self.pages
        return [i for i in range(self.page_count)
                if type(pages[i] if pages[i] is not None else self.fetch(i)) is bytearray
                and pages[i].count(0) != len(pages[i])]

    def page_bytes(self, index: int) -> bytes:
        page = self.pages[index]
        return bytes(page if page is not None else self.fetch(index))

    def load_page(self, index: int, data: bytes) -> None:
        """Restore: install one saved page (exactly one page's worth of bytes)."""
        expected = len(self.pages[index])
        if len(data) != expected:
            raise MinivmError(f"page {index} has {len(data)} bytes, expected {expected}")
        page = bytearray(data)
        if type(self.pages[index]) is bytes:
            self.allocated += 1
        self.pages[index] = page
        self.writable[index] = page
