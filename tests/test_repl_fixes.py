"""REPL behaviour a class ran into (issue 16): a guest's own checkpoint
announced when it happens, the timeline of the whole session, console input
fed after a halt, 'commit' and 'diff', and text typed while the guest runs."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from minivm.disks import create_raw_disk
from minivm.repl import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_commands import DISK  # noqa: E402  (the disk-writing guest of the command tests)

ROOT = Path(__file__).resolve().parents[1]


class Repl:
    """A Session on ``source`` writing to a buffer; ``run`` returns what a line printed."""

    def __init__(self, tmp_path, source: str, engine: str, **options):
        self.buffer = io.StringIO()
        prog = tmp_path / "prog.asm"
        prog.write_text(source)
        self.s = Session(str(prog), out=self.buffer, checkpoint_dir=str(tmp_path / "ckpts"),
                         engine=engine, **options)

    def run(self, line: str, ok: bool = True) -> str:
        start = len(self.buffer.getvalue())
        done = self.s.execute(line)
        text = self.buffer.getvalue()[start:]
        assert done == ok, f"{line!r}:\n{text}"
        return text


# --- 'commit' and 'diff' -----------------------------------------------------------------

def test_commit_says_it_once_and_warns_about_the_checkpoints_on_its_target(tmp_path, engine):
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), 16 * 512)
    r = Repl(tmp_path, DISK, engine, disk=str(disk))
    r.run("break second")
    r.run("run")
    r.run("checkpoint a")
    r.run("delete")
    r.run("continue")
    text = r.run("commit")
    assert text.count("committed 1 block group(s) from a.cow") == 1, text
    assert f"warning: {disk} was the disk of checkpoint(s) a; so they no longer match it" \
        in text and "'restore' refuses them (as after 'minivm disk commit')" in text
    assert "has changed since the checkpoint was taken" in r.run("restore a", ok=False)
    assert "too many arguments; usage: commit" in r.run("commit now", ok=False)


def test_a_deferred_commit_warns_when_it_starts(tmp_path, engine):
    disk = tmp_path / "disk.img"
    create_raw_disk(str(disk), 16 * 512)
    r = Repl(tmp_path, DISK, engine, disk=str(disk))
    r.run("break second")
    r.run("run")
    r.run("checkpoint a")
    r.run("delete")
    r.run("break drain")
    r.run("continue")                    # the write to block 1 (to a.cow) is in flight
    r.run("sync")
    text = r.run("commit")
    assert "a.cow is merged into its parent once its pending writes complete" in text
    assert "once the merge is done they no longer match it" in text, text
    assert "committed" not in text
