"""``minivm demo NAME --pictures DIR``: the pictures of a demo, for a projector.

:class:`DemoPictures` watches a demo's REPL session command by command and
keeps what to draw at the demo's key moments: the page map each time the
demo shows ``pages`` (drawn then, since the map changes as the guest runs),
and the timeline of every machine that took checkpoints (drawn at the end,
when its checkpoints are complete, so it shows the whole run, even after a
``restore`` replaced that machine). A demo with neither gets the page map of
its last machine. The pictures are written atomically into DIR (created if
missing) as ``NAME.svg``, or ``NAME-1.svg``, ``NAME-2.svg``... in the order
the demo reached them, and listed.
"""

from __future__ import annotations

import os

from .container import write_text_atomically
from .errors import MinivmError, reason, show


class DemoPictures:
    """The pictures of one demo run; :meth:`watch` the session, then :meth:`write`."""

    def __init__(self, folder: str, name: str):
        self.shown = folder                    # as the user wrote it, for messages
        self.folder = os.path.abspath(folder)
        self.name = name
        self.items: list[tuple[str, object]] = []     # ("svg", text) or ("timeline", cp)
        self.session = None
        self.last_machine = None
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise MinivmError(f"cannot create the pictures folder '{show(folder)}': "
                              f"{reason(exc)}") from None

    def watch(self, session) -> None:
        """Follow every command the session executes (run_batch calls execute)."""
        self.session = session
        inner = session.execute

        def execute(line: str) -> bool:
            ok = inner(line)
            self._after(line, ok)
            return ok
        session.execute = execute

    def _after(self, line: str, ok: bool) -> None:
        s = self.session
        if s.machine is not None:
            self.last_machine = s.machine
        cp = s.checkpointer
        if cp is not None and cp.jobs:        # its timeline comes after its run's page maps
            self.items = [item for item in self.items if item[1] is not cp]
            self.items.append(("timeline", cp))
        command = s.last_command
        if ok and command is not None and command.name == "compare":
            from .labsvg import comparison_svg     # the strategies demo: its comparison
            self.items.append(("svg", comparison_svg(s.last_comparison)))
        if ok and command is not None and command.name == "pages" and s.machine is not None \
                and line.split()[0] != "#":
            text = self._page_map(s.machine, [job for job in cp.jobs if job.status == "saving"]
                                  if cp is not None else [])
            if text:
                self.items.append(("svg", text))

    @staticmethod
    def _page_map(machine, saving) -> str:
        from .repl.render import page_states
        from .timeline import page_map_svg
        memory = machine.memory
        if memory.page_count > 16384:
            return ""
        chars = page_states(memory, saving)
        states = "".join(chars.get(i, ".") for i in range(memory.page_count))
        return page_map_svg(states, f"minivm memory pages at tick {machine.tick} "
                                    f"({memory.page_count} pages of 4 KiB)")

    def pictures(self) -> list[str]:
        """The SVG texts, in order (timelines drawn now, their checkpoints complete)."""
        from .timeline import timeline_svg
        texts = [timeline_svg(item) if kind == "timeline" else item for kind, item in self.items]
        if not texts and self.last_machine is not None:
            texts = [self._page_map(self.last_machine, [])]
        return [t for t in texts if t]

    def write(self) -> list[str]:
        """Write the pictures, say each one's name; returns the paths written."""
        texts = self.pictures()
        names = ([f"{self.name}.svg"] if len(texts) == 1
                 else [f"{self.name}-{k}.svg" for k in range(1, len(texts) + 1)])
        written = []
        for fname, text in zip(names, texts):
            try:
                write_text_atomically(os.path.join(self.folder, fname), text)
            except OSError as exc:
                raise MinivmError(f"cannot write the picture '{show(os.path.join(self.shown, fname))}'"
                                  f": {reason(exc)}") from None
            written.append(os.path.join(self.shown, fname))
        if self.session is not None:
            self.session.say_lines([f"wrote {show(path)}" for path in written]
                                   or ["no picture to write: the demo showed no machine"])
            self.session.out.flush()
        return written
