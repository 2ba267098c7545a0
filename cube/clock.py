"""The time Cube's manager and worker read: the machine's, or a simulation's.

Every decision that depends on time (a due restart, a worker silent for too long, a
finished task past retention) reads it here, never from :mod:`time` directly. In
production these are the machine's clocks. :mod:`cube.replay` swaps in a virtual clock
that only moves when its scheduler says so, which is what lets one seed replay one run
exactly (FoundationDB's simulator swaps its clock the same way, behind one global).

The swap holds for one thread only: the simulator runs every component in the thread
that called :func:`simulated`, and any other thread of the process (a test's leftover
lease keeper, say) goes on reading the machine's clocks, so it can neither see virtual
time nor disturb a run.
"""

from __future__ import annotations

import contextlib
import threading
import time as _time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (what is stored: due times survive a restart)."""

    def monotonic(self) -> float:
        """Seconds that never go back (for intervals within one life of a process)."""


class MachineClock:
    """The machine's own clocks."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)


_MACHINE = MachineClock()
_clock: Clock = _MACHINE
_owner = 0  # the thread the simulated clock is for


def _current() -> Clock:
    clock = _clock
    if clock is not _MACHINE and threading.get_ident() != _owner:
        return _MACHINE
    return clock


def simulating() -> bool:
    """Whether this thread runs on a simulated clock."""
    return _current() is not _MACHINE


def now() -> float:
    """Seconds since the epoch, as :func:`time.time`."""
    return _current().time()


def monotonic() -> float:
    """As :func:`time.monotonic`."""
    return _current().monotonic()


def sleep(seconds: float) -> None:
    """As :func:`time.sleep`. A simulated component never sleeps: its time moves only
    between events, so a sleep there is a bug, and raises."""
    if simulating():
        raise RuntimeError(f"a simulated component tried to sleep {seconds:.3f} s")
    _time.sleep(seconds)


def utcnow() -> datetime:
    """The current time, in UTC."""
    clock = _current()
    if clock is _MACHINE:
        return datetime.now(UTC)
    return datetime.fromtimestamp(clock.time(), UTC)


@contextlib.contextmanager
def simulated(clock: Clock) -> Iterator[Clock]:
    """Read ``clock`` instead of the machine's, in this thread, until the block ends."""
    global _clock, _owner
    previous = _clock, _owner
    _clock, _owner = clock, threading.get_ident()
    try:
        yield clock
    finally:
        _clock, _owner = previous
