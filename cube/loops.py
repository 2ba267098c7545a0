"""Background loops: one step, run again and again, on a thread or by a simulation.

A loop here is a **step**: a function that does one round of its work and answers how
many seconds until it wants to run again (``None``: it is finished). Written so, the
same code runs two ways:

- in production, :func:`start` gives the step a thread of its own, which sleeps
  between rounds and is woken early by :meth:`Loop.wake`;
- in :mod:`cube.replay`, a simulation swaps in its own runner (:func:`simulated`), which
  queues each round as an event of its seeded world, in one thread.

A lease's renewals, an election's campaign, a manager taking and leaving office are
loops (:mod:`cube.etcd.lease`, :mod:`cube.etcd.election`,
:mod:`cube.manager.leadership`). A step that raises is logged, and runs again after a
second: a loop outlives any one failed round, as a service must.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

log = logging.getLogger(__name__)

Step = Callable[[], "float | None"]
AFTER_ERROR = 1.0  # seconds before a step that raised runs again


class Loop(Protocol):
    def wake(self) -> None:
        """Run the next round now rather than when the last one asked."""

    def stop(self) -> None:
        """Run no more rounds (the one running, if any, finishes)."""


Runner = Callable[[str, Step], Loop]


def run_step(name: str, step: Step) -> float | None:
    """One round of ``step``; a round that raised asks for another after a while."""
    try:
        return step()
    except Exception:
        log.exception("%s: a round failed; trying again shortly", name)
        return AFTER_ERROR


class ThreadLoop:
    """A step on a daemon thread of its own."""

    def __init__(self, name: str, step: Step) -> None:
        self.name, self.step = name, step
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            wait = run_step(self.name, self.step)
            if wait is None:
                return
            self._wake.wait(max(0.0, wait))


_runner: Runner = ThreadLoop
_owner = 0  # the thread whose loops a simulation runs


def start(name: str, step: Step) -> Loop:
    """Run ``step`` now and then again whenever it asks, until it answers None or the
    loop is stopped."""
    if _runner is not ThreadLoop and threading.get_ident() != _owner:
        return ThreadLoop(name, step)  # another thread's loop: not the simulation's
    return _runner(name, step)


@contextlib.contextmanager
def simulated(runner: Runner) -> Iterator[None]:
    """Start every loop that this thread starts with ``runner`` instead of a thread of
    its own, until the block ends."""
    global _runner, _owner
    previous = _runner, _owner
    _runner, _owner = runner, threading.get_ident()
    try:
        yield
    finally:
        _runner, _owner = previous
