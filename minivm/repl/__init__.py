"""The REPL (``minivm repl``, docs/repl.md), as a package:

* ``registry``  - the command table: each command a function with its metadata;
  :func:`~.registry.invoke` checks arity and the machine once for all.
* ``commands/`` - the commands, one module per 'help' group: running,
  breakpoints, inspecting, checkpoints, session.
* ``core``      - :class:`Session`: the machine, the command boundary, names and
  locations, load/reset/restore, running under the shared SIGINT guard.
* ``books``     - the breakpoint book and the checkpoint book.
* ``render``    - pure renderers (registers, hex dump, disassembly, devices,
  page map, state diff, breakpoint list) returning lines.
* ``places``, ``parsing``, ``output`` - locations, argument text, the output stream.
* ``frontend``  - prompt_toolkit: completion, history, the prompt, batch mode.
"""

from __future__ import annotations

from . import commands as _commands  # noqa: F401  (registers every command)
from .core import Session
from .frontend import (BANNER, ReplCompleter, interact, main, make_prompt_session,
                       open_history, run_batch)
from .parsing import CommandError
from .registry import COMMANDS, GROUPS, INFO_TOPICS, command_names

__all__ = ["BANNER", "COMMANDS", "CommandError", "GROUPS", "INFO_TOPICS", "ReplCompleter",
           "Session", "command_names", "interact", "main", "make_prompt_session",
           "open_history", "run_batch"]
