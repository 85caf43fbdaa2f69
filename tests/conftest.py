"""Settings for the whole suite (see docs/testing.md).

* Hypothesis profiles: 'ci' (default, fast) and 'long' (MINIVM_HYPOTHESIS=long);
  MINIVM_EXAMPLES overrides the number of examples per property in either
  profile, e.g. MINIVM_EXAMPLES=10000 for a long fuzzing run.
* The background save runs at a fixed rate (MINIVM_SAVE_RATE pages per batch),
  for every machine the tests build and every ``minivm`` they start, so that
  nothing a test compares depends on how fast the host is.
* The cache of assembled sources (minivm/program.py) is off, so that every
  test assembles what it runs and nothing is written outside the test's
  folders; tests/test_program_cache.py turns it on in a folder of its own.
"""

import os

os.environ.setdefault("MINIVM_SAVE_RATE", "16")
os.environ["MINIVM_ASM_CACHE"] = "off"

from hypothesis import HealthCheck, settings

_examples = os.environ.get("MINIVM_EXAMPLES")
settings.register_profile(
    "ci", max_examples=int(_examples or 40), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=int(_examples or 10_000), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("MINIVM_HYPOTHESIS", "ci"))


# --- every Python the tests start is this venv's -------------------------------------------
# A test that starts an interpreter outside the venv passes only where the
# dependencies are also installed outside it (a symlink to a venv's python
# does not carry the venv: it has no pyvenv.cfg beside it). This audit hook
# fails such a test on every machine, not only on a fresh one.

import shutil
import sys
from pathlib import Path

_IN_VENV = sys.prefix != sys.base_prefix


def _carries_venv(path: str) -> bool:
    """Whether running ``path`` gives this venv (not the bare base interpreter)."""
    p = Path(path)
    if not p.exists():
        return True                      # not ours to judge: the command fails by itself
    try:
        head = p.read_bytes()[:512]
    except OSError:
        return True
    if head.startswith(b"#!"):           # a wrapper script: it must exec this interpreter
        return sys.executable.encode() in head or str(p.resolve()).startswith(sys.prefix)
    return (p.parent.parent / "pyvenv.cfg").exists() and p.parent.parent.resolve() == \
        Path(sys.prefix).resolve()


def _pythons_named(args, env) -> list[str]:
    """The Python interpreters a subprocess's command line would run."""
    words = [args] if isinstance(args, (str, bytes)) else list(args)
    words = [w.decode() if isinstance(w, bytes) else str(w) for w in words]
    found = []
    if words and Path(words[0]).name.startswith("python"):
        found.append(words[0] if "/" in words[0] else
                     shutil.which(words[0], path=(env or os.environ).get("PATH")) or words[0])
    if words and Path(words[0]).name in ("bash", "sh") and "-c" in words:
        script = words[words.index("-c") + 1] if words.index("-c") + 1 < len(words) else ""
        for name in ("python3", "python"):
            if name in script.split() or f"{name} " in script:
                where = shutil.which(name, path=(env or os.environ).get("PATH"))
                if where:
                    found.append(where)
    return found


def _audit(event, args):
    if event != "subprocess.Popen" or not _IN_VENV:
        return
    _executable, argv, _cwd, env = args
    for path in _pythons_named(argv, env):
        if not _carries_venv(path):
            raise RuntimeError(
                f"a test started {path!r}, a Python interpreter outside this venv "
                f"({sys.prefix}); it would pass only where minivm's dependencies are "
                "installed outside the venv too. Start sys.executable (or a wrapper "
                "script that execs it) instead.")


sys.addaudithook(_audit)


# --- the engine a test runs on -----------------------------------------------------------
# Every test that drives the REPL, a demo or a checkpoint takes the fixture
# ``engine`` and passes it on (``engine=`` to a Session, Machine or resume;
# ``--engine`` to the command line), so it runs once per engine: the two must
# behave identically (docs/performance.md). Tests that do not depend on the
# engine (parsing, rendering, completion) do not take it and run once.

import pytest

from minivm.engine import ENGINES


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Each engine's name in turn, the reference ``interp`` first."""
    return request.param
