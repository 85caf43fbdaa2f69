"""The REPL's commands, one module per group as 'help' lists them. Importing
this package registers them all in :data:`minivm.repl.registry.COMMANDS`, in
the order 'help' shows them."""

from . import (running, timetravel, breakpoints, catch, inspecting, checkpoints,  # noqa: F401
               lab, saving, session)
