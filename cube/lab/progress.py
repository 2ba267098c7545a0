"""A check's progress, one line updated in place: what it is doing, and for how long.

Some checks run for tens of seconds (a cluster's workers crash, a manager waits out a
backoff, etcd elects a new leader). A cell that stays silent that long looks hung, so
a check says each step as it starts ("crashing crashy (crash 1 of 2)…") and a ticker
refreshes the elapsed time twice a second until the verdict is in. In Jupyter the line
is a display updated in place (``display_id``); elsewhere (a test, a grader) nothing
is shown unless a sink is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Sink = Callable[[str], None]
TICK = 0.5  # seconds between refreshes of the elapsed time

_sinks: list[Callable[[], Sink | None]] = []  # where new progress lines go (tests add one)


def _jupyter() -> Sink | None:
    """A line in the running cell's output, updated in place; None outside a kernel."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    handle: Any = display({"text/plain": ""}, raw=True, display_id=True)

    def show(text: str) -> None:
        handle.update({"text/plain": text}, raw=True)

    return show


class Progress:
    """The line for one check: :meth:`say` a step; :meth:`done` when the verdict is in."""

    def __init__(self, exercise: str, sink: Sink | None = None) -> None:
        self.exercise, self.step = exercise, "starting"
        self.began = time.monotonic()
        self.sink = sink if sink is not None else _open_sink()
        self._over = threading.Event()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        if self.sink is not None:
            self._ticker = threading.Thread(target=self._tick, name="check-progress", daemon=True)
            self._ticker.start()

    def say(self, step: str) -> None:
        """The step the check is on now."""
        self.step = step
        self._show()

    def done(self) -> None:
        if self._over.is_set():
            return
        self._over.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        took = time.monotonic() - self.began
        self._emit(f"{self.exercise}: checked in {took:.1f} s")

    def _tick(self) -> None:
        while not self._over.wait(TICK):
            self._show()

    def _show(self) -> None:
        if not self._over.is_set():
            took = time.monotonic() - self.began
            self._emit(f"⏳ {self.exercise}: {self.step}… ({took:.0f} s)")

    def _emit(self, text: str) -> None:
        if self.sink is not None:
            with self._lock:
                self.sink(text)


def _open_sink() -> Sink | None:
    for factory in reversed(_sinks):
        if (sink := factory()) is not None:
            return sink
    return _jupyter()


def add_sink(factory: Callable[[], Sink | None]) -> Callable[[], None]:
    """Send every new check's progress to ``factory()`` (for a test or a grader);
    returns a function that undoes it."""
    _sinks.append(factory)
    return lambda: _sinks.remove(factory)
