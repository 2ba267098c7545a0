"""Child processes: what one is doing now (running, paused by SIGSTOP, or stopped), and
how a pool's workers end with the process that started them.

The cluster's components and the etcd members it starts are shown in notebooks with
their state, read from the process table (psutil), so that a paused process is shown
as paused without being asked anything (it would not answer).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import psutil

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


def process_state(proc: subprocess.Popen[bytes] | None) -> str:
    """``running``, ``paused`` (stopped by a signal) or ``stopped`` (exited, or never
    started)."""
    if proc is None or proc.poll() is not None:
        return "stopped"
    try:
        paused = psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return "stopped"
    return "paused" if paused else "running"


def die_with_parent(parent: int) -> None:
    """Have the kernel end this process as soon as ``parent`` (the process that started
    it) ends, however it ends: for the workers of a process pool. Killed with their
    parent (a test's timeout, SIGKILL), they would otherwise wait on their queue for
    ever, since each of them holds that queue's other end open too. Linux only
    (``PR_SET_PDEATHSIG``); elsewhere it does nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent ended before the kernel was asked
        os._exit(1)
