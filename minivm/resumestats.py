"""How a resume went: eager or lazy, the time to its first instruction and
the pages it read from the checkpoint by the end of the run (``minivm
resume``'s summary line and the ``resume`` key of its ``--json``;
``minivm compare``).

*Time to first instruction* is host time from the start of the resume
(opening and checking the checkpoint file) until the machine is ready to run
its first instruction: an eager resume has read every saved page by then, a
lazy one none (post-copy's idea applied to a file: each page is read on the
guest's first access, so the time does not grow with the memory size).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResumeStats:
    mode: str                       # "eager" or "lazy"
    first_instruction_s: float      # host seconds until the first instruction can run
    pages_saved: int                # pages the checkpoint holds
    pages_loaded: int = 0           # pages read from it by the end of the run
    announce: bool = True           # minivm resume: print the summary line

    @classmethod
    def of(cls, machine, eager: bool, seconds: float, pages_saved: int) -> "ResumeStats":
        lazy = not eager and not isinstance(machine.memory.saved, tuple)
        return cls("lazy" if lazy else "eager", seconds, pages_saved)

    def finish(self, machine) -> "ResumeStats":
        """The run is over: count the pages read."""
        self.pages_loaded = machine.memory.pages_loaded
        return self

    def line(self) -> str:
        how = "lazily" if self.mode == "lazy" else "eagerly"
        return (f"resumed {how}: first instruction {self.first_instruction_s * 1e3:.2f} ms "
                f"after the start; {self.pages_loaded} of {self.pages_saved} saved page(s) "
                "loaded by the end")

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "first_instruction_us": round(self.first_instruction_s * 1e6, 1),
                "pages_saved": self.pages_saved, "pages_loaded": self.pages_loaded}
