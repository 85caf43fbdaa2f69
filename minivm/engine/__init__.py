"""The execution engines: how decoded code runs.

* :mod:`.decode`: image -> the tuples every engine executes;
* :mod:`.semantics`: what each opcode does, once; :mod:`.generate` writes
  :mod:`.reference` (the ``interp`` engine, ``run_fast``) and :mod:`.exact`
  (the exact path, ``step_exact``) from it;
* :mod:`.blocks`: the ``blocks`` engine (hot code compiled to Python
  functions), with its region builder (:mod:`.regions`) and emitter
  (:mod:`.emit`).

An engine is a function ``engine(machine, deadline)`` with the contract of
:func:`~minivm.engine.reference.run_fast`.
"""

from __future__ import annotations

from ..errors import MinivmError

#: Every engine, the reference first.
ENGINES = ("interp", "blocks")
#: What a machine runs unless told otherwise: the compiled engine, which the
#: differential tests (tests/test_engines.py, and every REPL, demo and
#: checkpoint test, run on both) keep bit-identical to the reference.
DEFAULT_ENGINE = "blocks"


def select_engine(name: str):
    """The engine called ``name``: ``interp`` is the per-instruction reference;
    ``blocks`` compiles hot code (see docs/performance.md)."""
    if name == "interp":
        from .reference import run_fast
        return run_fast
    if name == "blocks":
        from .blocks import run_blocks
        return run_blocks
    raise MinivmError(f"unknown engine '{name}' (choose from {', '.join(ENGINES)})")
