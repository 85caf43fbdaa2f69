"""Ctrl-C while the guest runs, for ``minivm run`` (cli.py) and the REPL.

The first SIGINT sets ``Machine.stop_requested``: the machine stops at the
next instruction boundary with every state intact. A second one before it has
stopped raises KeyboardInterrupt. The previous handler comes back on exit.
"""

from __future__ import annotations

import signal
import threading


class SigintGuard:
    """``with SigintGuard(machine): machine.run()``. ``seen`` tells whether a
    Ctrl-C arrived. Installs nothing when ``enabled`` is false or outside the
    main thread (Python delivers signals only there)."""

    def __init__(self, machine, enabled: bool = True):
        self.machine = machine
        self.enabled = enabled
        self.seen = False
        self._installed = False
        self._previous = None

    def _handler(self, signum, frame):
        self.seen = True
        if self.machine.stop_requested:
            raise KeyboardInterrupt
        self.machine.stop_requested = True

    def __enter__(self) -> "SigintGuard":
        self.seen = False
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> bool:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        return False
