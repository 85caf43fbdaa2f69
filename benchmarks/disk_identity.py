"""Run + one checkpoint, and resume, with a 4 GiB sparse disk vs a 1 MiB one
(issue 13, "Disk identity in O(1)"). Usage: python benchmarks/disk_identity.py [REPEATS]"""
import os
import subprocess
import sys
import tempfile
import time

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def best(cmd, cwd):
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times)


def measure(size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "p.asm"), "w") as f:
            f.write(".text\n    ckpt\n    halt\n")
        with open(os.path.join(d, "disk.img"), "wb") as f:
            f.truncate(size)
        py = [sys.executable, "-m", "minivm"]
        times = []
        for i in range(REPEATS):
            t = time.perf_counter()
            subprocess.run(py + ["run", "p.asm", "--disk", "disk.img",
                                 "--checkpoint-dir", f"ck{i}"], cwd=d, check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t)
        run = min(times)
        resume = best(py + ["resume", "ck0/ckpt-0001.mvc", "--checkpoint-dir", "r"], d)
        return run, resume


small, big = measure(1 << 20), measure(4 << 30)
print(f"run + checkpoint: 1 MiB disk {small[0]:.3f} s, 4 GiB sparse {big[0]:.3f} s, "
      f"ratio {big[0] / small[0]:.2f}x")
print(f"resume:           1 MiB disk {small[1]:.3f} s, 4 GiB sparse {big[1]:.3f} s, "
      f"ratio {big[1] / small[1]:.2f}x")
