"""Worker processes that die with the process that started them.

``rttag train`` computes log-mel features and ``rttag data build`` decodes and mixes audio in
pools of forked worker processes. Were the parent killed outright (SIGKILL, the OOM killer, a
test's timeout), each worker would block for ever on its task queue, whose pipe its siblings
keep open, holding the parent's memory (hundreds of MB each). :func:`die_with_parent`, given as
the pool's initializer, asks the Linux kernel to kill the worker when its parent dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal this process gets when its parent dies."""


def die_with_parent(parent: int) -> None:
    """Pool initializer: on Linux, have the kernel send this worker SIGKILL when ``parent`` (the
    pid of the process that made the pool, ``os.getpid()`` there) dies; exit at once where it
    died before the request took effect. A no-op on other systems. (Strictly the kernel watches
    the thread that forked the worker: the pools here start their workers from the thread that
    makes and uses them, which outlives them.)"""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
