"""Pool workers die with the process that started them (rttag.workers.die_with_parent): a
real parent process with a real pool of two workers is killed with SIGKILL, and its workers
must be gone within seconds; the same pool without the initializer, the control, leaves both
workers behind (which the test then kills), so the check can tell the two apart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from rttag.workers import die_with_parent

def nap(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(120)

if __name__ == "__main__":
    path, guarded = sys.argv[1], sys.argv[2] == "guarded"
    kw = {"initializer": die_with_parent, "initargs": (os.getpid(),)} if guarded else {}
    pool = ProcessPoolExecutor(2, **kw)
    for _ in range(2):
        pool.submit(nap, path)
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def workers_after_parent_killed(tmp_path: Path, mode: str) -> list[int]:
    """Start the parent above, wait for its two workers, SIGKILL the parent; the workers still
    running 5 s later."""
    pids_file = tmp_path / f"{mode}.pids"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pids_file), mode], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(pids_file.read_text().split() if pids_file.exists() else []) < 2:
        time.sleep(0.1)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_workers_die_with_their_parent(tmp_path):
    assert workers_after_parent_killed(tmp_path, "guarded") == []


def test_without_it_workers_outlive_their_parent(tmp_path):
    left = workers_after_parent_killed(tmp_path, "unguarded")
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert len(left) == 2
