"""minivm's pytest plugin: the ``minivm`` fixture, for testing and grading
guest programs (docs/grading.md).

Installed with the package (entry point ``pytest11``), so any pytest run in
an environment where minivm is installed has it::

    def test_sum(minivm):
        r = minivm.run("student.asm", input=b"3 4\\n", max_ticks=10**6)
        assert r.output == b"7\\n"

``minivm.run`` and ``minivm.resume`` (from a checkpoint file) return the
Python API's :class:`minivm.api.Result`. Relative paths are taken from the
folder of the test file, not from where pytest was started. Everything a
test writes (its copy of a disk, the runs' checkpoints and disk overlays)
goes to that test's own ``tmp_path``, so tests can run in parallel
(``pytest -n auto`` with pytest-xdist).

When a test that used the fixture fails, its report gains a section on the
test's last run: the program, why it stopped, the tick and pc with the
source line, the end of its output; and a checkpoint of the machine at that
point is written (to the test's ``tmp_path``, or to ``--minivm-artifacts
DIR``) with the command that opens it: ``minivm repl PATH``.

This module is imported by every pytest session of such an environment:
it imports nothing of minivm until a test asks for the fixture.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil

import pytest

#: How many of the last output bytes the failure report shows.
OUTPUT_TAIL = 200
#: The title of the failure report's section.
SECTION = "minivm: the last run"
#: The checkpoint a failure writes in the test's tmp_path.
FAILURE_CHECKPOINT = "minivm-failure.mvc"

_RUNNER = pytest.StashKey["MinivmRunner"]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("minivm", "minivm guest programs (the 'minivm' fixture)")
    group.addoption("--minivm-artifacts", metavar="DIR", default=None,
                    help="write the checkpoint of each failed test's last run into DIR "
                         "(one folder per test, its disk files beside it) instead of the "
                         "test's tmp_path")
    group.addoption("--minivm-engine", metavar="NAME", default=None,
                    choices=("interp", "blocks"),  # a typo is one usage error, not N failures
                    help="the execution engine the fixture's runs use (interp or blocks; "
                         "default: minivm's default)")


class MinivmRunner:
    """What the ``minivm`` fixture gives a test: run guest programs, from
    the start or from a checkpoint, and look at the last machine."""

    def __init__(self, base: str, tmp_path, engine: str | None):
        self.base = base                   # the test file's folder
        self.tmp_path = tmp_path
        self.engine = engine
        self.vm = None                     # the last run's machine (a minivm.VM), kept open
        self.last = None                   # the last run's Result
        self.what = ""                     # what the last run started from
        self.input = b""
        self.max_ticks: int | None = None
        self.disk: str | None = None       # the last run's copy of its disk, if any (a
        # resume's writes go to an overlay: self.vm.read_disk reads either)
        self.error: Exception | None = None  # why the last run could not start
        self._runs = 0

    def __repr__(self) -> str:            # how a traceback shows the fixture
        if self.last is None:
            return "<minivm fixture: no run>"
        return (f"<minivm fixture: last run {self.what}, stopped ({self.last.stop}) "
                f"at tick {self.last.ticks}>")

    def path(self, name) -> str:
        """``name`` as an absolute path, a relative one taken from the test file's folder."""
        return os.path.join(self.base, os.fspath(name))

    def assemble(self, source: str, name: str = "<string>"):
        """An Image from source text (give ``name`` for the file:line in reports)."""
        from . import api
        return api.assemble(source, name)

    def run(self, program, *, input: bytes | str = b"", max_ticks: int | None = None,
            max_output: int | None = None, mem: str | int = "1M", disk=None):
        """Assemble (or load) ``program`` (a path or an Image), run it from
        tick 0 to the end or a limit, and return the Result. ``disk`` is a
        raw disk image: the run gets its own copy, so the file is not
        changed (the copy's path is ``self.disk`` afterwards). A program
        that does not assemble raises MinivmError (the report says why)."""
        __tracebackhide__ = True           # a failure points at the test's line
        from . import api
        is_image = isinstance(program, api.Image)
        self._start(program.source_file if is_image else _shown(self.path(program)),
                    input, max_ticks)

        def start():
            image = program if is_image else api.load(self.path(program))
            folder = self._next_folder()
            if disk is not None:
                self.disk = os.path.join(folder, os.path.basename(os.fspath(disk)))
                os.makedirs(folder, exist_ok=True)
                shutil.copyfile(self.path(disk), self.disk)
            return api.boot(image, mem=mem, disk=self.disk, input=_bytes(input),
                            checkpoint_dir=folder, **self._engine())
        self.vm = self._open(start)
        self.last = self.vm.run(max_ticks=max_ticks, max_output=max_output)
        return self.last

    def resume(self, checkpoint, *, input: bytes | str = b"", max_ticks: int | None = None,
               max_output: int | None = None):
        """Rebuild the machine saved in ``checkpoint`` (a .mvc file), give
        it ``input`` from that point on, run it to the end or a limit and
        return the Result (``ticks`` counts from the start of the original
        run). The checkpointed disk is not written: the run's disk writes go
        to an overlay in the test's tmp_path."""
        __tracebackhide__ = True
        from . import api
        self._start(f"checkpoint {_shown(self.path(checkpoint))}", input, max_ticks)
        self.vm = self._open(lambda: api.restore(self.path(checkpoint), input=_bytes(input),
                                                 checkpoint_dir=self._next_folder(),
                                                 **self._engine()))
        self.last = self.vm.run(max_ticks=max_ticks, max_output=max_output)
        return self.last

    # ---- the failure report ------------------------------------------------------------------
    def failure_section(self, artifacts: str | None, nodeid: str) -> str:
        """The report's text on the last run, after writing its checkpoint."""
        from .errors import MinivmError, show
        given = _bytes(self.input) if isinstance(self.input, (bytes, bytearray, str)) \
            else self.input
        lines = [f"program:    {show(self.what)}", f"input:      {given!r}"]
        if self.last is None:
            message = show(str(self.error), keep="\n\t").replace(self.base + os.sep, "")
            lines.append("not run:    " + message.replace("\n", "\n" + " " * 12))
            return "\n".join(lines)
        r, image = self.last, self.vm.machine.image
        lines.append(f"stopped:    {_stop_text(r, self.max_ticks)}")
        lines.append(f"tick:       {r.ticks}")
        where = image.location(r.pc)
        if os.path.isabs(image.source_file):
            where = where.replace(show(image.source_file), show(_shown(image.source_file)), 1)
        lines.append(f"pc:         {r.pc}  {where}  {show(image.source_text(r.pc).strip())}")
        before = len(r.output) - OUTPUT_TAIL
        tail = r.output[-OUTPUT_TAIL:]
        lines.append(f"output:     {tail!r}" if before <= 0 else
                     f"output:     ({len(r.output)} bytes, the last {OUTPUT_TAIL}) {tail!r}")
        try:
            path = self._write_checkpoint(artifacts, nodeid)
        except (MinivmError, OSError) as exc:     # the report still goes out
            lines.append(f"checkpoint: not written ({show(exc)})")
        else:
            lines.append(f"checkpoint: {show(_shown(path))} (the machine at tick {r.ticks})")
            lines.append(f"open it:    minivm repl {show(_quote(_shown(path)))}")
        return "\n".join(lines)

    def _write_checkpoint(self, artifacts: str | None, nodeid: str) -> str:
        path = self.vm.checkpoint(os.path.join(str(self.tmp_path), FAILURE_CHECKPOINT))
        if artifacts is None:
            return path
        from .resume import export_checkpoint, read_checkpoint
        folder = os.path.join(os.path.abspath(artifacts), _safe_name(nodeid))
        if os.path.isdir(folder):
            shutil.rmtree(folder)          # a run before this one's (pytest keeps no state)
        return export_checkpoint(read_checkpoint(path), folder)[0]

    # ---- inside ----------------------------------------------------------------------------------
    def _engine(self) -> dict:
        return {} if self.engine is None else {"engine": self.engine}

    def _next_folder(self) -> str:
        self._runs += 1
        return os.path.join(str(self.tmp_path), "minivm", f"run-{self._runs}")

    def _start(self, what: str, input, max_ticks) -> None:
        """Forget the run before (closing its machine): the report is on this one."""
        self.close()
        self.vm = self.last = self.error = self.disk = None
        self.what, self.input, self.max_ticks = what, input, max_ticks

    def _open(self, make):
        """``make()``, the machine of a run; a program or checkpoint that
        cannot be opened is noted for the report and raised as one
        MinivmError whose traceback ends at the test's line."""
        __tracebackhide__ = True
        from .errors import MinivmError, show
        try:
            return make()
        except (MinivmError, OSError) as exc:
            self.error = exc
            message = str(exc) if isinstance(exc, MinivmError) else \
                f"cannot read '{show(exc.filename)}': {exc.strerror}"
        raise MinivmError(message)         # outside the except: no chained traceback

    def close(self) -> None:
        if self.vm is not None:
            self.vm.close()

    @property
    def reportable(self) -> bool:
        """Whether a run was started (a failure then has something to report)."""
        return self.last is not None or self.error is not None


def _bytes(data) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _stop_text(r, max_ticks: int | None) -> str:
    if r.stop == "halt":
        return f"halt, exit status {r.exit_status}"
    if r.stop == "fault" and r.fault is not None:
        return f"fault: {r.fault.reason}"
    if r.stop == "limit":
        return f"limit: max_ticks={max_ticks} reached before the program halted"
    if r.stop == "output-limit":
        return "output-limit: max_output bytes printed before the program halted"
    return r.stop


def _safe_name(nodeid: str) -> str:
    """A test's node id as one file name, unique in the session:
    lab/test_a.py::test_x[3] -> lab-test_a.py-test_x-3 (a long one is cut,
    and ends with a hash of the whole id)."""
    name = re.sub(r"[^\w.-]+", "-", nodeid).strip("-") or "test"
    if len(name) > 150:
        name = name[:140] + "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:8]
    return name


def _shown(path: str) -> str:
    """A path as the report shows it: relative to the folder pytest runs in
    when it is inside it, else absolute."""
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _quote(path: str) -> str:
    return shlex.quote(path)


@pytest.fixture
def minivm(request, tmp_path):
    """Run minivm guest programs: ``minivm.run(PROG, input=..., max_ticks=...)``
    and ``minivm.resume(CKPT, ...)`` return a Result; paths are relative to
    the test file's folder; each test's files are in its tmp_path. If the
    test fails, its report tells where the last run stopped and writes a
    checkpoint there (``minivm repl PATH`` opens it)."""
    runner = MinivmRunner(str(request.path.parent), tmp_path,
                          request.config.getoption("minivm_engine"))
    request.node.stash[_RUNNER] = runner
    yield runner
    runner.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    runner = item.stash.get(_RUNNER, None)
    if report.when != "call" or runner is None:
        return
    artifacts = item.config.getoption("minivm_artifacts")
    if not (report.failed and runner.reportable):
        if artifacts is not None:          # a failure of an earlier session is not this one's
            shutil.rmtree(os.path.join(os.path.abspath(artifacts), _safe_name(item.nodeid)),
                          ignore_errors=True)
        return
    text = runner.failure_section(artifacts, item.nodeid)
    report.sections.append((SECTION, text))
