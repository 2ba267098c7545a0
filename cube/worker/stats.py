"""Node statistics from psutil, in the JSON shape the Go Cube reads.

The book read ``/proc`` through goprocinfo, so it only ran on Linux, and computed CPU
usage from one snapshot (an average since boot). psutil works on Linux, macOS and
Windows; the key names stay goprocinfo's (memory in kB, disk in bytes, CPU in jiffies)
so a Go manager can schedule onto a Python worker. We add ``CpuPercent``: usage over the
interval since the previous sample, which is what a scheduler wants to know.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from cube.node import busy_percent

USER_HZ = 100  # jiffies per second in /proc/stat on Linux


class StatsCollector:
    """Samples the machine; CPU percent is measured between consecutive samples."""

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._lock = threading.Lock()
        self._last_times = psutil.cpu_times()
        self._last_at = time.monotonic()
        self._percent = psutil.cpu_percent(interval=None)

    def cpu_percent(self, min_interval: float = 0.2) -> float:
        """Busy share of all CPUs, 0-100, since the previous call (at least
        ``min_interval`` seconds back; a quicker call returns the last figure)."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_at >= min_interval:
                times = psutil.cpu_times()
                self._percent = busy_percent(self._last_times._asdict(), times._asdict())
                self._last_times, self._last_at = times, now
            return self._percent

    def sample(self, task_count: int) -> dict[str, Any]:
        """One ``/stats`` document."""
        return {
            "MemStats": mem_stats(),
            "DiskStats": disk_stats(self.disk_path),
            "CpuStats": cpu_stats(psutil.cpu_times()),
            "LoadStats": load_stats(),
            "TaskCount": task_count,
            "CpuPercent": round(self.cpu_percent(), 2),
            "Cores": psutil.cpu_count() or 1,
        }


def mem_stats() -> dict[str, int]:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    kb = 1024
    return {
        "mem_total": vm.total // kb,
        "mem_free": vm.free // kb,
        "mem_available": vm.available // kb,
        "buffers": getattr(vm, "buffers", 0) // kb,
        "cached": getattr(vm, "cached", 0) // kb,
        "active": getattr(vm, "active", 0) // kb,
        "inactive": getattr(vm, "inactive", 0) // kb,
        "shmem": getattr(vm, "shared", 0) // kb,
        "swap_total": swap.total // kb,
        "swap_free": swap.free // kb,
    }


def disk_stats(path: str) -> dict[str, int]:
    usage = psutil.disk_usage(path)
    try:
        free_inodes = os.statvfs(path).f_ffree
    except (AttributeError, OSError):  # Windows has no inodes
        free_inodes = 0
    return {"all": usage.total, "used": usage.used, "free": usage.free, "freeInodes": free_inodes}


def cpu_stats(times: Any) -> dict[str, Any]:
    """psutil's CPU times in jiffies, as the columns of /proc/stat's cpu line, in its
    order (0 for a column this system does not have)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest")
    jiffies = {name: int(getattr(times, name, 0.0) * USER_HZ) for name in (*names, "guest_nice")}
    return {"id": "cpu", **jiffies}


def load_stats() -> dict[str, Any]:
    one, five, fifteen = psutil.getloadavg()
    return {
        "last1min": round(one, 2),
        "last5min": round(five, 2),
        "last15min": round(fifteen, 2),
        **process_counts(),
    }


def process_counts() -> dict[str, int]:
    """Running/total processes and the last pid: one read of /proc/loadavg on Linux,
    a scan of the process table elsewhere."""
    try:
        with open("/proc/loadavg") as f:
            fields = f.read().split()
        running, total = fields[3].split("/")
        return {
            "process_running": int(running),
            "process_total": int(total),
            "last_pid": int(fields[4]),
        }
    except (OSError, IndexError, ValueError):
        pids = psutil.pids()
        return {"process_running": 0, "process_total": len(pids), "last_pid": max(pids, default=0)}


class Snapshot:
    """The latest result of a slow call, refreshed in the background.

    ``get()`` answers from the snapshot at once; when it is older than ``max_age`` it
    starts one refresh in a thread of its own, and the next callers see the new value.
    Only the first call waits. A worker's ``/stats`` answers this way (as the Go worker
    does), so a busy manager polling it costs one sample a second, not one a request."""

    def __init__(self, compute: Callable[[], Any], max_age: float = 1.0) -> None:
        self._compute, self.max_age = compute, max_age
        self._lock = threading.Lock()
        self._value: Any = None
        self._taken = 0.0
        self._refreshing = False

    def get(self) -> Any:
        with self._lock:
            value, age = self._value, time.monotonic() - self._taken
            stale = value is not None and age > self.max_age and not self._refreshing
            if stale:
                self._refreshing = True
        if value is None:
            return self._refresh()
        if stale:
            threading.Thread(target=self._refresh, name="stats-refresh", daemon=True).start()
        return value

    def _refresh(self) -> Any:
        try:
            value = self._compute()
            with self._lock:
                self._value, self._taken = value, time.monotonic()
            return value
        finally:
            with self._lock:
                self._refreshing = False
