"""Group commit: many writes, one flush to the disk.

A write that must survive a power cut costs a flush (``fsync``), and a flush costs the
same for one write as for a hundred. So writes are committed without one, and whoever
must be sure of them (before answering a client, before acting on a decision) calls
:meth:`GroupCommit.wait`. The first to ask flushes for every write committed so far;
those who ask meanwhile wait for that flush and, when their write came after it began,
for the next one, which one of them makes for all. This is how PostgreSQL commits in
groups and etcd batches its log entries.

Nobody holds a lock of their own while they wait, so writers keep writing during a
flush, and the next flush takes all of them at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


class GroupCommit:
    """Counts the writes committed, and flushes them in groups on demand."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._changed = threading.Condition(threading.Lock())
        self._written = 0  # writes committed so far
        self._flushed = 0  # of which made durable
        self._flushing = False
        self.flushes = 0  # how many flushes were made, for tests and benchmarks

    def wrote(self) -> None:
        """One more write is committed (not flushed yet). Call it after the commit."""
        with self._changed:
            self._written += 1

    @property
    def pending(self) -> int:
        """Writes committed and not flushed yet."""
        with self._changed:
            return self._written - self._flushed

    def wait(self) -> None:
        """Return once every write committed before this call is durable. Raises what
        the flush raised (an ``OSError``): then nothing is promised."""
        with self._changed:
            mine = self._written
            while self._flushed < mine:
                if self._flushing:
                    self._changed.wait()
                    continue
                self._flushing = True
                covers = self._written  # everything committed before the flush begins
                self._changed.release()
                try:
                    self._flush()
                finally:
                    self._changed.acquire()
                    self._flushing = False
                    self._changed.notify_all()
                self._flushed = max(self._flushed, covers)
                self.flushes += 1


def fsync_file(path: Path) -> None:
    """Flush a file's content to the disk by its name (a missing file has nothing to
    flush: SQLite removes its write-ahead log only after writing it into the database
    and flushing that)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
